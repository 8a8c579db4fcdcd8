"""KPI history (buckets, filters, cursors), scoreboard roll-ups and rules, and audit history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from uuid import uuid4

import pytest
from projection_fixtures import (
    at_start,
    days_ago,
    increase_kr,
    plan,
    system_fixture,  # noqa: F401 (the `system` fixture)
    uptime_kpi,
)

from goalledger.api.bootstrap import System
from goalledger.core.errors import DomainError, NotFound
from goalledger.core.kpis import thresholds_for
from goalledger.core.ledger import ReadingInput, Written
from goalledger.core.scoring import LINEAR_V1, GradeBands, ScoringRule
from goalledger.projections.audit import FieldChange, aggregate_history
from goalledger.projections.history import audit_events, kpi_history
from goalledger.projections.queries import Views
from goalledger.projections.shapes import Provenance

D = Decimal


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# A small known series; thresholds (higher is better): green >= 35, amber >= 15.
SERIES = [
    ("a", "10", utc(2025, 3, 3, 9)),  # Monday
    ("b", "20.5", utc(2025, 3, 3, 15)),
    # 01:00 at +02:00 is 23:00 UTC the day before: buckets are UTC days.
    ("c", "30", datetime(2025, 3, 5, 1, tzinfo=timezone(timedelta(hours=2)))),
    ("d", "40", utc(2025, 3, 10, 8)),  # the next Monday
    ("e", "50", utc(2025, 4, 1)),
]


def series_kpi(system: System) -> Written:
    kpi = system.ledger.define_kpi(
        name="Signups", direction="higher_is_better",
        thresholds=thresholds_for("higher_is_better", 35, 15), frequency="daily", actor="alice",
    )  # fmt: skip
    system.ledger.record_readings(
        [ReadingInput(kpi.id, rid, D(value), observed) for rid, value, observed in SERIES],
        source="csv",
        actor="bot",
    )
    system.catch_up()
    return kpi


def test_buckets_summarise_a_known_series(system: System) -> None:
    kpi = series_kpi(system)

    def buckets(size: str) -> list[tuple]:
        history = kpi_history(system.queries, kpi.id, bucket=size)
        assert history.buckets is not None
        return [(b.start, b.count, b.min, b.max, b.mean, b.last, b.health) for b in history.buckets]

    assert buckets("day") == [
        (utc(2025, 3, 3), 2, D(10), D("20.5"), D("15.25"), D("20.5"), "amber"),
        (utc(2025, 3, 4), 1, D(30), D(30), D(30), D(30), "amber"),
        (utc(2025, 3, 10), 1, D(40), D(40), D(40), D(40), "green"),
        (utc(2025, 4, 1), 1, D(50), D(50), D(50), D(50), "green"),
    ]
    assert buckets("week") == [
        (utc(2025, 3, 3), 3, D(10), D(30), D("20.1667"), D(30), "amber"),
        (utc(2025, 3, 10), 1, D(40), D(40), D(40), D(40), "green"),
        (utc(2025, 3, 31), 1, D(50), D(50), D(50), D(50), "green"),
    ]
    assert buckets("month") == [
        (utc(2025, 3, 1), 4, D(10), D(40), D("25.125"), D(40), "green"),
        (utc(2025, 4, 1), 1, D(50), D(50), D(50), D(50), "green"),
    ]
    history = kpi_history(system.queries, kpi.id)
    assert history.buckets is None
    assert [(i.reading_id, i.health) for i in history.items] == [
        ("a", "red"), ("b", "amber"), ("c", "amber"), ("d", "green"), ("e", "green"),
    ]  # fmt: skip


def test_start_and_end_filter_by_observed_time(system: System) -> None:
    kpi = series_kpi(system)

    def ids(**bounds: datetime) -> list[str]:
        return [i.reading_id for i in kpi_history(system.queries, kpi.id, **bounds).items]

    assert ids(start=utc(2025, 3, 4), end=utc(2025, 3, 10, 8)) == ["c", "d"]  # inclusive
    assert ids(start=utc(2025, 3, 10)) == ["d", "e"]
    assert ids(end=utc(2025, 3, 3, 15)) == ["a", "b"]
    assert ids(start=utc(2025, 5, 1)) == []
    weeks = kpi_history(system.queries, kpi.id, bucket="week", end=utc(2025, 3, 5)).buckets
    assert [(b.start, b.count) for b in weeks or []] == [(utc(2025, 3, 3), 3)]


def test_cursor_paginates_without_gaps_or_repeats(system: System) -> None:
    ledger = system.ledger
    kpi = uptime_kpi(ledger)
    base = utc(2025, 6, 1)
    # Recorded newest first, in separate writes, with pairs sharing an observed time.
    for i in reversed(range(12)):
        observed = base + timedelta(hours=i // 2)
        ledger.record_readings(
            [ReadingInput(kpi.id, f"r{i:02}", D(99) + D(i) / 100, observed)],
            source="m",
            actor="bot",
        )
    system.catch_up()
    everything = kpi_history(system.queries, kpi.id).items
    assert len(everything) == 12
    order = [(i.observed_at, i.position) for i in everything]
    assert order == sorted(order)

    pages, after = [], None
    while True:
        page = kpi_history(system.queries, kpi.id, limit=5, after=after).items
        if not page:
            break
        assert len(page) <= 5
        pages.append(page)
        after = (page[-1].observed_at, page[-1].position)
    assert [len(page) for page in pages] == [5, 5, 2]
    assert [item for page in pages for item in page] == everything


def test_bad_queries_name_the_offending_field(system: System) -> None:
    p = plan(system.ledger)
    kpi = uptime_kpi(system.ledger)
    system.catch_up()
    with pytest.raises(DomainError) as bad_bucket:
        kpi_history(system.queries, kpi.id, bucket="fortnight")
    assert bad_bucket.value.field == "bucket"
    with pytest.raises(NotFound) as no_kpi:
        kpi_history(system.queries, uuid4())
    assert no_kpi.value.field == "kpi_id"
    with pytest.raises(DomainError) as bad_rule:
        system.queries.scoreboard(cycle_id=p.cycle.id, rule="no-such-rule-v9")
    assert bad_rule.value.field == "rule"
    assert "linear-v1" in bad_rule.value.message  # says which rules exist
    with pytest.raises(NotFound) as no_team:
        system.queries.scoreboard(cycle_id=p.cycle.id, team_id=uuid4())
    assert no_team.value.field == "team_id"
    with pytest.raises(NotFound) as no_cycle:
        system.queries.scoreboard(cycle_id=uuid4())
    assert no_cycle.value.field == "cycle_id"


def test_scoreboard_rolls_up_each_team_with_its_sub_teams(system: System) -> None:
    ledger = system.ledger
    cycle = plan(ledger).cycle
    company = ledger.form_team(name="Company", actor="alice")
    eng = ledger.form_team(name="Eng", parent_id=company.id, actor="alice")
    platform = ledger.form_team(name="Platform Team", parent_id=eng.id, actor="alice")
    sales = ledger.form_team(name="Sales", parent_id=company.id, actor="alice")
    for team, value in ((eng, 50), (platform, 100), (sales, 20)):
        objective = ledger.define_objective(
            title=f"Objective of {team.id}", cycle_id=cycle.id, team_id=team.id, owner="o",
            kind="committed", actor="alice", effective_at=at_start(),
        )  # fmt: skip
        kr = increase_kr(ledger, objective)
        ledger.check_in(kr.id, value=D(value), actor="o")
    system.catch_up()

    def rollups(**scope: object) -> dict[str, tuple[int, Decimal | None, str | None]]:
        board = system.queries.scoreboard(cycle_id=cycle.id, **scope)
        return {r.name: (r.objectives, r.score, r.grade) for r in board.teams}

    whole = rollups()
    assert whole["Company"] == (3, D("0.5667"), "yellow")
    assert whole["Eng"] == (2, D("0.75"), "green")
    assert whole["Platform Team"] == (1, D(1), "green")
    assert whole["Sales"] == (1, D("0.2"), "red")
    assert whole["Platform"] == (1, None, None)  # plan()'s objective has no KRs
    assert rollups(team_id=eng.id) == {
        "Eng": (2, D("0.75"), "green"), "Platform Team": (1, D(1), "green"),
    }  # fmt: skip
    scoped = system.queries.scoreboard(cycle_id=cycle.id, team_id=eng.id)
    assert {o.team_id for o in scoped.objectives} == {eng.id, platform.id}


def test_scoreboard_provenance_carries_rule_and_position(system: System) -> None:
    ledger = system.ledger
    p = plan(ledger)
    kr = increase_kr(ledger, p.objective)
    checked = ledger.check_in(kr.id, value=D(30), actor="bob")
    ledger.issue_token(name="later", role="viewer", actor="admin")
    system.catch_up()
    head = ledger.head_position()
    board = system.queries.scoreboard(cycle_id=p.cycle.id)
    expected = Provenance(rule="linear-v1", position=head)
    assert (board.rule, board.position) == ("linear-v1", head)
    assert board.objectives[0].provenance == expected
    assert board.objectives[0].key_results[0].provenance == expected
    then = system.queries.scoreboard(cycle_id=p.cycle.id, known_at=days_ago(0))
    assert then.position == head
    what_if = system.queries.scoreboard(cycle_id=p.cycle.id, rule=LINEAR_V1.id)
    assert what_if.objectives[0].score == board.objectives[0].score == D("0.3")
    assert checked.position < head


class StrictRule(ScoringRule):
    """A stricter rule a plugin might register: green only from 0.9."""

    name = "strict"
    version = 2
    grade_bands = GradeBands(green_from=D("0.9"), yellow_from=D("0.6"))


def test_closed_cycle_keeps_its_rule_and_freezes_at_the_close(system: System) -> None:
    ledger = system.ledger
    strict = StrictRule()
    queries = Views(system.store, rules={rule.id: rule for rule in (LINEAR_V1, strict)})
    p = plan(ledger)
    kr = increase_kr(ledger, p.objective)
    kpi = uptime_kpi(ledger)
    ledger.define_key_result(
        p.objective.id, title="Stay up", kind="stay_above", target=D("99.5"), kpi_id=kpi.id,
        actor="alice", effective_at=at_start(),
    )  # fmt: skip
    ledger.check_in(kr.id, value=D(75), actor="bob")
    ledger.record_readings(
        [ReadingInput(kpi.id, "ok", D("99.8"), days_ago(1))], source="m", actor="bot"
    )
    system.catch_up()
    open_board = queries.scoreboard(cycle_id=p.cycle.id)
    assert (open_board.rule, open_board.cycle.status, open_board.cycle.rule) == (
        "linear-v1", "open", None,
    )  # fmt: skip
    assert (open_board.objectives[0].score, open_board.objectives[0].grade) == (D("0.875"), "green")

    closed = ledger.close_cycle(p.cycle.id, rule=strict.id, actor="carol", reason="quarter end")
    with pytest.raises(DomainError):
        ledger.check_in(kr.id, value=D(100), actor="bob")
    # Readings of the linked KPI keep arriving after the close.
    ledger.record_readings(
        [ReadingInput(kpi.id, "outage", D("90"), days_ago(0))], source="m", actor="bot"
    )
    system.catch_up()
    assert ledger.head_position() > closed.position

    board = queries.scoreboard(cycle_id=p.cycle.id)
    assert board.rule == board.cycle.rule == "strict-v2"
    assert board.cycle.status == "closed"
    assert board.position == closed.position
    objective = board.objectives[0]
    assert (objective.score, objective.grade) == (D("0.875"), "yellow")
    assert objective.provenance == Provenance(rule="strict-v2", position=closed.position)
    assert [k.value for k in objective.key_results] == [D(75), D("99.8")]  # frozen
    assert [i.reading_id for i in kpi_history(queries, kpi.id).items] == ["ok", "outage"]

    # What-if under another rule: same frozen figures, other grades; nothing recorded.
    head = ledger.head_position()
    what_if = queries.scoreboard(cycle_id=p.cycle.id, rule="linear-v1")
    assert (what_if.rule, what_if.cycle.rule) == ("linear-v1", "strict-v2")
    assert (what_if.objectives[0].score, what_if.objectives[0].grade) == (D("0.875"), "green")
    assert ledger.head_position() == head
    # Known before the close, the cycle was still open under the default rule.
    before = queries.scoreboard(cycle_id=p.cycle.id, known_at=_recorded_before(system, closed))
    assert (before.rule, before.cycle.status) == ("linear-v1", "open")


def _recorded_before(system: System, written: Written) -> datetime:
    (event,) = audit_events(system.queries, after=written.position - 1, limit=1)
    return event.recorded_at - timedelta(microseconds=1)


def test_aggregate_history_shows_field_changes_with_actor_and_reason(system: System) -> None:
    ledger = system.ledger
    p = plan(ledger)
    kr = increase_kr(ledger, p.objective)
    effective = days_ago(5)
    changed = ledger.change_key_result_target(
        kr.id, target=D(80), actor="carol", reason="scope cut", effective_at=effective
    )
    ledger.check_in(kr.id, value=D(40), confidence=D("0.6"), note="halfway", actor="bob")
    system.catch_up()

    defined, target_change, check_in = aggregate_history(ledger, system.queries, kr.id)
    assert (defined.topic, defined.actor, defined.reason, defined.version) == (
        "goalledger/key-result/defined", "alice", None, 1,
    )  # fmt: skip
    assert defined.position == kr.position
    assert FieldChange("target", None, D(100)) in defined.changes

    assert target_change.topic == "goalledger/key-result/target-changed"
    assert (target_change.actor, target_change.reason) == ("carol", "scope cut")
    assert (target_change.position, target_change.version) == (changed.position, 2)
    assert target_change.effective_at == effective
    fields = {c.field: (c.before, c.after) for c in target_change.changes}
    assert fields["target"] == (D(100), D(80))
    assert "weight" not in fields  # unchanged fields are not reported

    fields = {c.field: (c.before, c.after) for c in check_in.changes}
    assert fields["value"] == (None, D(40))
    assert fields["note"] == (None, "halfway")
    assert check_in.actor == "bob"

    timeline = audit_events(system.queries, aggregate_id=kr.id)
    assert [(e.topic, e.actor, e.reason) for e in timeline] == [
        ("goalledger/key-result/defined", "alice", None),
        ("goalledger/key-result/target-changed", "carol", "scope cut"),
        ("goalledger/key-result/checked-in", "bob", None),
    ]
    with pytest.raises(NotFound) as missing:
        aggregate_history(ledger, system.queries, uuid4())
    assert missing.value.field == "id"
