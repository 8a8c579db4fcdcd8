"""Reads on two time axes: `as_of` (effective time) and `known_at` (recorded time)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from projection_fixtures import (
    at_start,
    days_ago,
    increase_kr,
    mark,
    plan,
    system_fixture,  # noqa: F401 (the `system` fixture)
    uptime_kpi,
)

from goalledger.api.bootstrap import System
from goalledger.core.kpis import thresholds_for
from goalledger.core.ledger import ReadingInput
from goalledger.projections.history import kpi_history
from goalledger.projections.queries import AlignmentNode


def readings(system: System, kpi_id: UUID, **when: Any) -> list[tuple[str, Decimal]]:
    """(reading_id, value) of a KPI's history at a moment."""
    return [(i.reading_id, i.value) for i in kpi_history(system.queries, kpi_id, **when).items]


def health(system: System, kpi_id: UUID, **when: Any) -> list[tuple[str, str]]:
    """(reading_id, health) of a KPI's history at a moment."""
    return [(i.reading_id, i.health) for i in kpi_history(system.queries, kpi_id, **when).items]


def kr_value(system: System, cycle_id: UUID, **when: Any) -> Decimal | None:
    """The value of the single key result on a cycle's scoreboard at a moment."""
    board = system.queries.scoreboard(cycle_id=cycle_id, **when)
    return board.objectives[0].key_results[0].value


def record(system: System, kpi_id: UUID, reading_id: str, value: str, observed: datetime) -> int:
    written = system.ledger.record_readings(
        [ReadingInput(kpi_id, reading_id, Decimal(value), observed)], source="manual", actor="bot"
    )
    assert written.position is not None
    return written.position


def test_back_dated_reading_changes_as_of_but_not_what_was_known(system: System) -> None:
    ledger = system.ledger
    p = plan(ledger)
    kpi = uptime_kpi(ledger)
    ledger.define_key_result(
        p.objective.id, title="Stay up", kind="stay_above", target=Decimal("99.5"),
        kpi_id=kpi.id, actor="alice", effective_at=at_start(),
    )  # fmt: skip
    record(system, kpi.id, "recent", "99.8", days_ago(2))
    before = mark()
    record(system, kpi.id, "late", "97.0", days_ago(20))  # arrives late, back-dated
    system.catch_up()

    past = days_ago(10)
    assert readings(system, kpi.id, as_of=past) == [("late", Decimal("97.0"))]
    assert readings(system, kpi.id, as_of=past, known_at=before) == []
    assert readings(system, kpi.id) == [("late", Decimal("97.0")), ("recent", Decimal("99.8"))]
    assert readings(system, kpi.id, known_at=before) == [("recent", Decimal("99.8"))]

    # The KR linked to the KPI follows the same readings on the scoreboard.
    board = system.queries.scoreboard(cycle_id=p.cycle.id, as_of=past)
    kr = board.objectives[0].key_results[0]
    assert kr.value == Decimal("97.0")
    assert kr.progress is not None and kr.progress.clamped < 1
    assert kr.status != "on_track"
    then = system.queries.scoreboard(cycle_id=p.cycle.id, as_of=past, known_at=before)
    assert then.objectives[0].key_results[0].value is None
    assert then.objectives[0].key_results[0].progress is None
    assert then.position < board.position
    assert kr_value(system, p.cycle.id) == Decimal("99.8")
    assert kr_value(system, p.cycle.id, known_at=before) == Decimal("99.8")


def test_threshold_change_recomputes_health_from_its_effective_date(system: System) -> None:
    ledger = system.ledger
    kpi = uptime_kpi(ledger, green="99.9", amber="99")
    record(system, kpi.id, "d10", "99.5", days_ago(10))
    record(system, kpi.id, "d3", "99.5", days_ago(3))
    record(system, kpi.id, "d1", "99.95", days_ago(1))
    before = mark()
    ledger.change_kpi_thresholds(
        kpi.id, thresholds=thresholds_for("higher_is_better", "99.4", "99.0"),
        effective_from=days_ago(5), actor="carol", reason="relaxed SLO",
    )  # fmt: skip
    system.catch_up()

    # Readings before the effective date keep their health; later ones are recomputed.
    assert health(system, kpi.id) == [("d10", "amber"), ("d3", "green"), ("d1", "green")]
    assert health(system, kpi.id, known_at=before) == [
        ("d10", "amber"),
        ("d3", "amber"),
        ("d1", "green"),
    ]
    assert health(system, kpi.id, as_of=days_ago(2.5)) == [("d10", "amber"), ("d3", "green")]
    history = kpi_history(system.queries, kpi.id)
    assert [period.thresholds.green_low for period in history.thresholds] == [
        Decimal("99.9"),
        Decimal("99.4"),
    ]
    assert len(kpi_history(system.queries, kpi.id, known_at=before).thresholds) == 1

    # A reading recorded after the change, observed before its effective date, keeps the
    # old thresholds; one observed after it gets the new ones.
    record(system, kpi.id, "d8", "99.5", days_ago(8))
    record(system, kpi.id, "d2", "99.5", days_ago(2))
    system.catch_up()
    assert dict(health(system, kpi.id)) == {
        "d10": "amber", "d8": "amber", "d3": "green", "d2": "green", "d1": "green",
    }  # fmt: skip


def test_correction_shows_old_value_before_and_new_value_after(system: System) -> None:
    ledger = system.ledger
    p = plan(ledger)
    kpi = uptime_kpi(ledger)
    ledger.define_key_result(
        p.objective.id, title="Stay up", kind="stay_above", target=Decimal("99.5"),
        kpi_id=kpi.id, actor="alice", effective_at=at_start(),
    )  # fmt: skip
    recorded = record(system, kpi.id, "r", "99.0", days_ago(2))
    before = mark()
    correction = ledger.correct_reading(
        kpi.id, "r", value=Decimal("99.95"), reason="meter reset", actor="carol"
    )
    after = mark()
    system.catch_up()

    def items(**when: Any) -> list[tuple[Decimal, str, int, int, int | None]]:
        history = kpi_history(system.queries, kpi.id, **when)
        return [(i.value, i.health, i.version, i.position, i.superseded_by) for i in history.items]

    old = (Decimal("99.0"), "amber", 1, recorded, None)
    new = (Decimal("99.95"), "green", 2, correction.position, None)
    assert items(known_at=before) == [old]
    assert items(known_at=after) == [new]
    assert items() == [new]
    assert items(include_superseded=True) == [(*old[:4], correction.position), new]
    assert items(include_superseded=True, known_at=before) == [old]
    assert kr_value(system, p.cycle.id, known_at=before) == Decimal("99.0")
    assert kr_value(system, p.cycle.id) == Decimal("99.95")


def test_re_parented_objective_shows_old_tree_before_the_move(system: System) -> None:
    ledger = system.ledger
    p = plan(ledger)
    a = p.objective
    b = ledger.define_objective(
        title="Grow revenue", cycle_id=p.cycle.id, team_id=p.team.id, owner="dana",
        kind="aspirational", actor="alice", effective_at=at_start(),
    )  # fmt: skip
    c = ledger.define_objective(
        title="Ship faster", cycle_id=p.cycle.id, team_id=p.team.id, owner="eve",
        kind="committed", parent_objective_id=a.id, actor="alice", effective_at=at_start(),
    )  # fmt: skip
    a_kr = increase_kr(ledger, a)
    before = mark()
    ledger.align_objective(
        c.id, parent_objective_id=b.id, parent_key_result_id=None, effective_at=days_ago(10),
        actor="alice", reason="reorg",
    )  # fmt: skip
    between = mark()
    ledger.align_objective(
        c.id, parent_objective_id=None, parent_key_result_id=a_kr.id, effective_at=days_ago(3),
        actor="alice", reason="supports adoption",
    )  # fmt: skip
    system.catch_up()

    def tree(**when: Any) -> dict[str, list[str]]:
        return _children(system.queries.alignment(cycle_id=p.cycle.id, **when).roots)

    old = {"Run a reliable platform": ["Ship faster"], "Grow revenue": []}
    moved = {"Run a reliable platform": [], "Grow revenue": ["Ship faster"]}
    assert tree(as_of=days_ago(20)) == old
    assert tree(as_of=days_ago(5)) == moved
    assert tree() == old  # aligned (through A's key result) under A again
    assert tree(known_at=before) == old
    assert tree(known_at=between) == moved
    assert tree(as_of=days_ago(20), known_at=between) == old
    roots = system.queries.alignment(cycle_id=p.cycle.id).roots
    (ship,) = next(node for node in roots if node.id == a.id).children
    assert (ship.parent_objective_id, ship.parent_key_result_id) == (None, a_kr.id)
    # Before the cycle began none of the objectives was in force.
    assert system.queries.alignment(cycle_id=p.cycle.id, as_of=days_ago(90)).roots == []


def test_as_of_and_known_at_combine(system: System) -> None:
    ledger = system.ledger
    p = plan(ledger)
    kr = increase_kr(ledger, p.objective)
    ledger.check_in(kr.id, value=Decimal(40), actor="bob", effective_at=days_ago(20))
    first = mark()
    ledger.check_in(kr.id, value=Decimal(70), actor="bob", effective_at=days_ago(15))  # late
    second = mark()
    ledger.check_in(kr.id, value=Decimal(90), actor="bob")
    system.catch_up()

    cycle = p.cycle.id
    ten_days_ago, eighteen_days_ago = days_ago(10), days_ago(18)
    assert kr_value(system, cycle, as_of=ten_days_ago, known_at=first) == Decimal(40)
    assert kr_value(system, cycle, as_of=ten_days_ago, known_at=second) == Decimal(70)
    assert kr_value(system, cycle, as_of=ten_days_ago) == Decimal(70)
    assert kr_value(system, cycle, as_of=eighteen_days_ago) == Decimal(40)
    assert kr_value(system, cycle, as_of=eighteen_days_ago, known_at=second) == Decimal(40)
    assert kr_value(system, cycle, known_at=first) == Decimal(40)
    assert kr_value(system, cycle, known_at=second) == Decimal(70)
    assert kr_value(system, cycle) == Decimal(90)
    board = system.queries.scoreboard(cycle_id=cycle, as_of=ten_days_ago, known_at=second)
    assert (board.at, board.known_at) == (ten_days_ago, second)
    assert board.objectives[0].key_results[0].progress.clamped == Decimal("0.7000")
    assert board.objectives[0].score == Decimal("0.7000")
    # Before anything was recorded there is nothing to show.
    before_all = system.queries.scoreboard(cycle_id=cycle, as_of=days_ago(25), known_at=first)
    assert before_all.objectives[0].key_results[0].value is None


def _children(roots: list[AlignmentNode]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    frontier = list(roots)
    while frontier:
        node = frontier.pop()
        found[node.title] = sorted(child.title for child in node.children)
        frontier += node.children
    return {title: kids for title, kids in found.items() if title != "Ship faster"}
