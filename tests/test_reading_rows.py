"""core/reading_rows.py: rows named exactly as `reading_name`, with new increasing ids,
repeats within a batch counted once, refusals naming `readings[i]`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from goalledger.core.errors import DomainError
from goalledger.core.kpis import reading_name
from goalledger.core.reading_rows import ReadingInput, reading_rows

NOW = datetime(2026, 1, 1, tzinfo=UTC)
KPIS = [uuid.UUID(int=n * 7919 + 1, version=4) for n in range(7)]


def rows(items: list[ReadingInput], seen: list | None = None):
    return reading_rows(
        items, source="test", actor="t", now=NOW, seal=None,
        kpi_seen=lambda kpi, index: seen.append((kpi, index)) if seen is not None else None,
    )  # fmt: skip


def test_rows_are_named_in_input_order_with_new_increasing_ids():
    items = [
        ReadingInput(KPIS[n % 7], f"reading {n} é", Decimal(n), NOW - timedelta(minutes=n))
        for n in range(1000)
    ]
    seen: list = []
    batch = rows(items, seen)
    assert batch.names == [reading_name(i.kpi_id, i.reading_id) for i in items]
    assert batch.keys == sorted(set(batch.keys)) and len(batch.keys) == 1000
    assert {uuid.UUID(hex=key).version for key in batch.keys} == {7}
    assert not set(rows(items).keys) & set(batch.keys)  # the same readings again: new ids
    assert batch.reading_ids == [i.reading_id for i in items]
    assert len(batch.states) == 1000 and batch.repeats == []
    assert seen == [(KPIS[n], n) for n in range(7)]  # each KPI checked once, at first sight


def test_a_reading_repeated_in_a_batch_counts_once_however_its_kpi_is_given():
    items = [
        ReadingInput(KPIS[0], "a", Decimal(1), NOW),
        ReadingInput(KPIS[1], "a", Decimal(1), NOW),  # another KPI: another reading
        ReadingInput(KPIS[0], " a ", Decimal(2), NOW),  # ids are stripped
        ReadingInput(str(KPIS[0]), "a", Decimal(3), NOW),  # type: ignore[arg-type]
    ]
    batch = rows(items)
    assert batch.reading_ids == ["a", "a"]
    assert batch.names == [reading_name(KPIS[0], "a"), reading_name(KPIS[1], "a")]
    assert batch.repeats == ["a", "a"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reading_id": "  "}, "readings[2].reading_id"),
        ({"reading_id": "x" * 201}, "readings[2].reading_id"),
        ({"value": Decimal("NaN")}, "readings[2].value"),
        ({"observed_at": datetime(2026, 1, 1)}, "readings[2].observed_at"),
        ({"observed_at": datetime(2999, 1, 1, tzinfo=UTC)}, "readings[2].observed_at"),
    ],
)
def test_a_bad_reading_is_refused_naming_its_index(change: dict, field: str):
    good = {"kpi_id": KPIS[0], "reading_id": "r", "value": Decimal(1), "observed_at": NOW}
    items = [ReadingInput(**{**good, "reading_id": f"r{n}"}) for n in range(2)]
    items.append(ReadingInput(**{**good, **change}))
    with pytest.raises(DomainError) as refused:
        rows(items)
    assert refused.value.field == field
