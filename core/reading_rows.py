"""Readings straight to stored rows: the bulk-ingestion half of `record_readings`.

Building a `Reading.Recorded` event object per reading, then mapping it, costs more
than storing it. Here each input is checked exactly as `Reading.observed` checks it,
named as `reading_name` names it, given a new time-ordered id (`ordered_ids`), and
encoded into the very bytes the mapper would store for that event (`state_struct`),
without the event object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.utils import get_topic

from goalledger.core.errors import DomainError
from goalledger.core.kpis import Reading, reading_name
from goalledger.core.mapper import encode_struct, state_struct
from goalledger.core.model import as_decimal, non_blank
from goalledger.core.objectives import FUTURE_TOLERANCE, effective_time
from goalledger.core.ordered_ids import ordered_hex

RECORDED_TOPIC = get_topic(Reading.Recorded)
READING_ID_MAX = 200
_RecordedState = state_struct(Reading.Recorded)


class ReadingInput(msgspec.Struct, frozen=True, gc=False):
    """One reading to record for a KPI (untracked by the collector: its fields are
    values that cannot form a cycle, and batches hold thousands)."""

    kpi_id: UUID
    reading_id: str
    value: Decimal
    observed_at: datetime


class ReadingRows(msgspec.Struct):
    """New readings as stored rows, in input order, and the ids repeated within the batch.

    Parallel lists rather than a tuple per row: fewer objects for the garbage collector
    to track on the bulk path.
    """

    names: list[str]  # `reading_name` of each: what makes it a duplicate
    keys: list[str]  # new aggregate ids, 32 hex digits, increasing
    states: list[bytes]  # stored state of each
    reading_ids: list[str]  # of each
    repeats: list[str]


def reading_rows(
    items: Iterable[ReadingInput],
    *,
    source: str,
    actor: str,
    now: datetime,
    seal: Callable[[bytes], bytes] | None,
    kpi_seen: Callable[[UUID, int], None],
) -> ReadingRows:
    """Check, key and encode readings; a reading id repeated in the batch counts once.

    `kpi_seen(kpi_id, index)` is called at each KPI's first reading (it raises for an
    unknown KPI); `seal` compresses/encrypts as the mapper is configured to. The checks
    are `Reading.observed`'s, with the common valid case decided inline.
    """
    latest = now + FUTURE_TOLERANCE
    topic = Reading.TOPIC
    # Per KPI: its name prefix, and the reading ids taken so far. Keyed by the UUID's
    # int, which hashes in C (UUID.__hash__ is Python).
    kpis: dict[Any, tuple[str, set[str]]] = {}
    taken_by_prefix: dict[str, set[str]] = {}
    batch = ReadingRows(names=[], keys=[], states=[], reading_ids=[], repeats=[])
    names, states, reading_ids = batch.names, batch.states, batch.reading_ids
    for index, item in enumerate(items):
        kpi_id = item.kpi_id
        kpi = kpis.get(kpi_id.int if type(kpi_id) is UUID else kpi_id)
        if kpi is None:
            kpi_seen(kpi_id, index)
            prefix = reading_name(kpi_id, "")  # one KPI however its id is given
            kpi = kpis[kpi_id.int if type(kpi_id) is UUID else kpi_id] = (
                prefix,
                taken_by_prefix.setdefault(prefix, set()),
            )
        prefix, taken = kpi
        reading_id = item.reading_id
        if type(reading_id) is str:
            reading_id = reading_id.strip()
        if not reading_id or type(reading_id) is not str or len(reading_id) > READING_ID_MAX:
            reading_id = _check(
                index, non_blank, item.reading_id, "reading_id", max_length=READING_ID_MAX
            )
        value = item.value
        if type(value) is not Decimal or not value.is_finite():
            value = _check(index, as_decimal, value, "value")
        observed_at = item.observed_at
        if (
            type(observed_at) is not datetime
            or observed_at.utcoffset() is None
            or observed_at > latest
        ):
            observed_at = _check(index, effective_time, observed_at, "observed_at")
        if reading_id in taken:  # the same name: `reading_name` of the same pair
            batch.repeats.append(reading_id)
            continue
        taken.add(reading_id)
        names.append(prefix + reading_id)
        state = encode_struct(
            _RecordedState(
                timestamp=now,
                originator_topic=topic,
                actor=actor,
                kpi_id=kpi_id,
                reading_id=reading_id,
                value=value,
                observed_at=observed_at,
                source=source,
            )
        )
        states.append(seal(state) if seal else state)
        reading_ids.append(reading_id)
    batch.keys = ordered_hex(len(names))
    return batch


def _check(index: int, check: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a domain check on a field of `readings[index]`; its error names that path."""
    try:
        return check(*args, **kwargs)
    except DomainError as error:
        raise DomainError(f"readings[{index}].{error.field}", error.message) from None
