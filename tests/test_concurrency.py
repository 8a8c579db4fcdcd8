"""Optimistic concurrency: a stale write is a Conflict, never a lost update (both stores)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal as D
from uuid import UUID

import pytest

from goalledger.core.errors import Conflict
from goalledger.core.kpis import thresholds_for
from goalledger.core.ledger import Ledger
from goalledger.core.objectives import KeyResult

ROUNDS = 3


def key_results(ledger: Ledger, count: int) -> list[UUID]:
    cycle = ledger.define_cycle(
        name="2026-Q1", starts_on=date(2026, 1, 1), ends_on=date(2026, 3, 31), actor="a"
    )
    team = ledger.form_team(name="Platform", actor="a")
    objective = ledger.define_objective(
        title="Fast", cycle_id=cycle.id, team_id=team.id, owner="o", kind="committed", actor="a"
    )
    return [
        ledger.define_key_result(
            objective.id, title=f"KR {i}", kind="increase_to", start=D(0), target=D(100), actor="a"
        ).id
        for i in range(count)
    ]


def race(ledger: Ledger, kr_ids: list[UUID], value: D) -> list[tuple[int, object]]:
    """Each thread loads its KR, checks in, waits for the other, then records."""
    barrier = threading.Barrier(len(kr_ids))

    def check_in(kr_id: UUID) -> tuple[int, object]:
        kr = ledger.load(kr_id, KeyResult)
        kr.check_in(value=value, note=threading.current_thread().name, actor="racer")
        barrier.wait(timeout=30)  # both hold the same version before either writes
        try:
            return kr.version - 1, ledger.record(kr)
        except Conflict as conflict:
            return kr.version - 1, conflict

    with ThreadPoolExecutor(max_workers=len(kr_ids)) as pool:
        return list(pool.map(check_in, kr_ids))


def check_ins_of(ledger: Ledger, kr_id: UUID) -> list[KeyResult.CheckedIn]:
    return [
        event
        for _, event in ledger.read_events()
        if isinstance(event, KeyResult.CheckedIn) and event.originator_id == kr_id
    ]


def test_racing_check_ins_on_one_key_result_make_exactly_one_write(ledger: Ledger) -> None:
    (kr_id,) = key_results(ledger, 1)
    for round_number in range(1, ROUNDS + 1):
        head = ledger.head_position()
        outcomes = race(ledger, [kr_id, kr_id], D(round_number))
        loaded_versions = {version for version, _ in outcomes}
        assert loaded_versions == {round_number}  # both read the same version
        conflicts = [o for _, o in outcomes if isinstance(o, Conflict)]
        positions = [o for _, o in outcomes if isinstance(o, int)]
        assert len(conflicts) == 1 and len(positions) == 1
        assert conflicts[0].aggregate_id == kr_id
        assert positions[0] > head and ledger.head_position() == positions[0]
    kr = ledger.load(kr_id, KeyResult)
    assert (kr.check_ins, kr.version) == (ROUNDS, ROUNDS + 1)
    assert [event.value for event in check_ins_of(ledger, kr_id)] == [D(1), D(2), D(3)]


def test_concurrent_check_ins_on_different_key_results_both_succeed(ledger: Ledger) -> None:
    first, second = key_results(ledger, 2)
    positions = [outcome for _, outcome in race(ledger, [first, second], D(42))]
    assert all(isinstance(position, int) for position in positions), positions
    assert sorted(positions)[-1] == ledger.head_position()
    assert len(check_ins_of(ledger, first)) == len(check_ins_of(ledger, second)) == 1


@pytest.mark.parametrize(
    "command",
    [
        lambda ledger, kr, version: ledger.check_in(
            kr, value=D(5), actor="a", expected_version=version
        ),
        lambda ledger, kr, version: ledger.change_key_result_target(
            kr, target=D(90), actor="a", reason="stretch", expected_version=version
        ),
    ],
    ids=["check_in", "change_key_result_target"],
)
def test_expected_version_mismatch_is_a_conflict_that_records_nothing(
    ledger: Ledger, command: Callable[[Ledger, UUID, int], object]
) -> None:
    (kr_id,) = key_results(ledger, 1)
    ledger.check_in(kr_id, value=D(1), actor="a")  # now at version 2
    head = ledger.head_position()
    for stale in (1, 3):
        with pytest.raises(Conflict) as raised:
            command(ledger, kr_id, stale)
        assert raised.value.aggregate_id == kr_id
        assert "version 2" in str(raised.value)
    assert ledger.head_position() == head
    assert ledger.load(kr_id, KeyResult).version == 2
    command(ledger, kr_id, 2)
    assert ledger.load(kr_id, KeyResult).version == 3


def test_expected_version_guards_every_kind_of_change(ledger: Ledger) -> None:
    kpi = ledger.define_kpi(
        name="Uptime",
        direction="higher_is_better",
        thresholds=thresholds_for("higher_is_better", "99.9", "99.5"),
        frequency="daily",
        actor="a",
    )
    cycle = ledger.define_cycle(
        name="FY", starts_on=date(2026, 1, 1), ends_on=date(2026, 12, 31), actor="a"
    )
    head = ledger.head_position()
    with pytest.raises(Conflict):
        ledger.change_kpi(kpi.id, name="Availability", actor="a", expected_version=2)
    with pytest.raises(Conflict):
        ledger.close_cycle(cycle.id, rule="linear-v1", actor="a", expected_version=0)
    assert ledger.head_position() == head
    assert (
        ledger.change_kpi(kpi.id, name="Availability", actor="a", expected_version=1).version == 2
    )


def test_concurrent_check_ins_to_one_key_result_all_land(ledger: Ledger) -> None:
    """Check-ins append: threads of one process racing on one key result never conflict."""
    [kr_id] = key_results(ledger, 1)
    writers, each = 16, 10
    barrier = threading.Barrier(writers)

    def writer(number: int) -> list[int]:
        barrier.wait(timeout=30)
        return [
            ledger.check_in(kr_id, value=D(step), note=f"w{number} s{step}", actor="racer").version
            for step in range(each)
        ]

    with ThreadPoolExecutor(max_workers=writers) as pool:
        versions = [v for vs in pool.map(writer, range(writers)) for v in vs]

    assert sorted(versions) == list(range(2, 2 + writers * each))  # each got its own version
    notes = [event.note for event in check_ins_of(ledger, kr_id)]
    assert sorted(notes) == sorted(f"w{n} s{s}" for n in range(writers) for s in range(each))
