"""Ledger commands on a real store: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path
from typing import NamedTuple
from uuid import uuid4

import pytest

from goalledger.core.cycles import Cycle
from goalledger.core.errors import DomainError, NotFound
from goalledger.core.kpis import Kpi, thresholds_for
from goalledger.core.ledger import Ledger, ReadingInput, Written
from goalledger.core.model import utc_now
from goalledger.core.objectives import KeyResult, Objective
from goalledger.core.settings import Settings
from goalledger.core.teams import Team
from goalledger.core.tokens import Token

WEEK_AGO = utc_now() - timedelta(days=7)


class Plan(NamedTuple):
    cycle: Written
    team: Written
    objective: Written
    key_result: Written


def plan(ledger: Ledger) -> Plan:
    cycle = ledger.define_cycle(
        name="2026-Q1", starts_on=date(2026, 1, 1), ends_on=date(2026, 3, 31), actor="alice"
    )
    team = ledger.form_team(name="Platform", actor="alice")
    objective = ledger.define_objective(
        title="Make the platform fast",
        cycle_id=cycle.id,
        team_id=team.id,
        owner="bob",
        kind="committed",
        actor="alice",
    )
    kr = ledger.define_key_result(
        objective.id,
        actor="alice",
        title="Cut p99 latency",
        kind="decrease_to",
        start=D(800),
        target=D(250),
        unit="ms",
    )
    return Plan(cycle, team, objective, kr)


def latency_kpi(ledger: Ledger) -> Written:
    return ledger.define_kpi(
        name="p99 latency",
        unit="ms",
        direction="lower_is_better",
        target=D(250),
        thresholds=thresholds_for("lower_is_better", 300, 500),
        frequency="daily",
        actor="alice",
    )


def expect(thing: object, **expected: object) -> None:
    """Assert that `thing` has the expected attribute values."""
    assert {name: getattr(thing, name) for name in expected} == expected


def last_event(ledger: Ledger) -> object:
    return list(ledger.read_events(ledger.head_position() - 1))[-1][1]


def test_definitions_round_trip(ledger: Ledger) -> None:
    p = plan(ledger)
    cycle = ledger.load(p.cycle.id, Cycle)
    expect(cycle, name="2026-Q1", starts_on=date(2026, 1, 1), ends_on=date(2026, 3, 31))
    expect(cycle, status="open", rule=None, version=1)
    sre = ledger.form_team(name="SRE", parent_id=p.team.id, check_in_interval_days=14, actor="a")
    expect(ledger.load(sre.id, Team), name="SRE", parent_id=p.team.id, check_in_interval_days=14)
    objective = ledger.load(p.objective.id, Objective)
    expect(objective, title="Make the platform fast", owner="bob", status="active")
    expect(objective, cycle_id=p.cycle.id, team_id=p.team.id, kind="committed")
    kr = ledger.load(p.key_result.id, KeyResult)
    expect(kr, kind="decrease_to", start=D(800), target=D(250), unit="ms", weight=D(1))
    expect(kr, objective_id=p.objective.id, owner="bob", check_ins=0, version=1)
    kpi = ledger.load(latency_kpi(ledger).id, Kpi)
    expect(kpi, name="p99 latency", direction="lower_is_better", target=D(250), frequency="daily")
    assert kpi.thresholds.as_contract("lower_is_better") == {"green": D(300), "amber": D(500)}


def test_changes_round_trip(ledger: Ledger) -> None:
    p = plan(ledger)
    parent = ledger.define_objective(
        title="Keep customers",
        cycle_id=p.cycle.id,
        team_id=p.team.id,
        owner="carol",
        kind="aspirational",
        actor="a",
    )
    oid = p.objective.id
    ledger.edit_objective(oid, title="Faster", owner="dave", actor="a", reason="reorg")
    ledger.align_objective(oid, parent_objective_id=parent.id, parent_key_result_id=None, actor="a")
    written = ledger.change_objective_status(oid, status="closed", actor="a", reason="done")
    objective = ledger.load(oid, Objective)
    expect(objective, title="Faster", owner="dave", status="closed", version=written.version)
    expect(objective, parent_objective_id=parent.id, parent_key_result_id=None, version=4)

    ledger.change_key_result_target(
        p.key_result.id, target=D(200), weight=D(3), actor="a", reason="stretch"
    )
    expect(ledger.load(p.key_result.id, KeyResult), target=D(200), weight=D(3), version=2)
    ledger.change_team(p.team.id, name="Platform Eng", check_in_interval_days=3, actor="a")
    expect(ledger.load(p.team.id, Team), name="Platform Eng", check_in_interval_days=3)

    kpi_id = latency_kpi(ledger).id
    ledger.change_kpi(kpi_id, name="p99 API latency", target=D(200), actor="a")
    new_thresholds = thresholds_for("lower_is_better", 250, 400)
    ledger.change_kpi_thresholds(
        kpi_id, thresholds=new_thresholds, effective_from=WEEK_AGO, actor="a"
    )
    ledger.bind_kpi_source(kpi_id, source=None, actor="a", reason="source retired")
    kpi = ledger.load(kpi_id, Kpi)
    expect(kpi, name="p99 API latency", target=D(200), thresholds=new_thresholds, version=4)
    bound = last_event(ledger)
    assert isinstance(bound, Kpi.SourceBound)
    expect(bound, source=None, reason="source retired", actor="a")


def test_check_in_and_close_round_trip(ledger: Ledger) -> None:
    p = plan(ledger)
    written = ledger.check_in(
        p.key_result.id,
        value=D("612.5"),
        confidence=D("0.6"),
        note="cache landed",
        effective_at=WEEK_AGO,
        actor="bob",
    )
    assert (written.id, written.version) == (p.key_result.id, 2)
    checked_in = last_event(ledger)
    assert isinstance(checked_in, KeyResult.CheckedIn)
    expect(checked_in, value=D("612.5"), confidence=D("0.6"), note="cache landed")
    expect(checked_in, effective_at=WEEK_AGO, actor="bob", done=None)
    expect(ledger.load(p.key_result.id, KeyResult), check_ins=1)
    ledger.close_cycle(p.cycle.id, rule="linear-v1", actor="alice", reason="quarter over")
    expect(ledger.load(p.cycle.id, Cycle), status="closed", rule="linear-v1", is_open=False)


def test_positions_increase_and_the_log_names_every_actor(ledger: Ledger) -> None:
    assert ledger.is_empty() and ledger.head_position() == 0
    p = plan(ledger)
    checked = ledger.check_in(p.key_result.id, value=D(700), actor="bob")
    positions = [written.position for written in (*p, checked)]
    assert positions == sorted(set(positions))
    assert ledger.head_position() == checked.position
    events = list(ledger.read_events())
    assert [position for position, _ in events] == positions
    assert [(type(e).__qualname__, e.actor) for _, e in events] == [
        ("Cycle.Defined", "alice"),
        ("Team.Formed", "alice"),
        ("Objective.Defined", "alice"),
        ("KeyResult.Defined", "alice"),
        ("KeyResult.CheckedIn", "bob"),
    ]
    assert list(ledger.read_events(after=p.key_result.position)) == events[-1:]


def test_unknown_ids_are_not_found_naming_the_field(ledger: Ledger) -> None:
    p = plan(ledger)
    nowhere = uuid4()
    objective = {"title": "x", "owner": "o", "kind": "committed", "actor": "a"}
    cases = {
        "cycle_id": lambda: ledger.define_objective(
            cycle_id=nowhere, team_id=p.team.id, **objective
        ),
        "team_id": lambda: ledger.define_objective(
            cycle_id=p.cycle.id, team_id=nowhere, **objective
        ),
        "parent_id": lambda: ledger.form_team(name="x", parent_id=nowhere, actor="a"),
        "objective_id": lambda: ledger.define_key_result(
            nowhere, title="x", kind="milestone", actor="a"
        ),
        "kpi_id": lambda: ledger.define_key_result(
            p.objective.id, title="x", kind="stay_below", target=D(1), kpi_id=nowhere, actor="a"
        ),
        "parent_key_result_id": lambda: ledger.align_objective(
            p.objective.id, parent_objective_id=None, parent_key_result_id=nowhere, actor="a"
        ),
        "readings[0].kpi_id": lambda: ledger.record_readings(
            [ReadingInput(nowhere, "r1", D(1), WEEK_AGO)], source="manual", actor="a"
        ),
        "reading_id": lambda: ledger.correct_reading(
            latency_kpi(ledger).id, "never-sent", value=D(1), reason="typo", actor="a"
        ),
    }
    for field, command in cases.items():
        with pytest.raises(NotFound) as raised:
            command()
        assert raised.value.field == field
    with pytest.raises(NotFound):
        ledger.load(p.team.id, Cycle, "cycle_id")  # an id of another kind is not a cycle


def test_a_closed_cycle_s_key_results_take_no_check_ins_or_target_changes(ledger: Ledger) -> None:
    p = plan(ledger)
    ledger.close_cycle(p.cycle.id, rule="linear-v1", actor="alice")
    head = ledger.head_position()
    refusals = {
        "key_result_id": [
            lambda: ledger.check_in(p.key_result.id, value=D(500), actor="bob"),
            lambda: ledger.change_key_result_target(
                p.key_result.id, target=D(100), actor="bob", reason="late"
            ),
        ],
        "objective_id": [
            lambda: ledger.define_key_result(p.objective.id, title="x", kind="milestone", actor="b")
        ],
    }
    for field, commands in refusals.items():
        for command in commands:
            with pytest.raises(DomainError) as raised:
                command()
            assert raised.value.field == field
    assert ledger.head_position() == head
    expect(ledger.load(p.key_result.id, KeyResult), check_ins=0, target=D(250), version=1)


def test_alignment_loops_are_refused(ledger: Ledger) -> None:
    p = plan(ledger)
    where = {"cycle_id": p.cycle.id, "team_id": p.team.id, "owner": "o", "kind": "committed"}
    child = ledger.define_objective(
        title="Child", parent_key_result_id=p.key_result.id, actor="a", **where
    )
    grandchild = ledger.define_objective(
        title="Grandchild", parent_objective_id=child.id, actor="a", **where
    )
    grandchild_kr = ledger.define_key_result(grandchild.id, title="x", kind="milestone", actor="a")
    head = ledger.head_position()
    loops = [
        (p.objective.id, grandchild.id, None, "parent_objective_id"),
        (p.objective.id, None, grandchild_kr.id, "parent_key_result_id"),
        (p.objective.id, None, p.key_result.id, "parent_key_result_id"),  # its own KR
        (child.id, child.id, None, "parent_objective_id"),  # itself
    ]
    for objective_id, parent_objective_id, parent_key_result_id, field in loops:
        with pytest.raises(DomainError) as raised:
            ledger.align_objective(
                objective_id,
                parent_objective_id=parent_objective_id,
                parent_key_result_id=parent_key_result_id,
                actor="a",
            )
        assert raised.value.field == field
    sre = ledger.form_team(name="SRE", parent_id=p.team.id, actor="a")
    with pytest.raises(DomainError) as raised:
        ledger.change_team(p.team.id, parent_id=sre.id, actor="a")
    assert raised.value.field == "parent_id"
    assert ledger.head_position() == sre.position == head + 1  # only the new team


def test_readings_are_idempotent_and_corrections_keep_history(ledger: Ledger) -> None:
    kpi_id = latency_kpi(ledger).id
    day = timedelta(days=1)
    batch = [
        ReadingInput(kpi_id, "2026-02-01", D("287.5"), WEEK_AGO),
        ReadingInput(kpi_id, "2026-02-02", D("301.25"), WEEK_AGO + day),
        ReadingInput(kpi_id, "2026-02-02", D("999"), WEEK_AGO + day),  # repeated in the batch
    ]
    first = ledger.record_readings(batch, source="prometheus", actor="ingest")
    expect(first, recorded=["2026-02-01", "2026-02-02"], duplicates=["2026-02-02"])
    assert first.position == ledger.head_position()
    again = ledger.record_readings(batch[:2], source="prometheus", actor="ingest")
    expect(again, recorded=[], duplicates=["2026-02-01", "2026-02-02"], position=None)
    assert ledger.head_position() == first.position

    ledger.correct_reading(kpi_id, "2026-02-02", value=D("310.125"), reason="late", actor="sre")
    reading = ledger.reading(kpi_id, "2026-02-02")
    expect(reading, value=D("310.125"), source="prometheus", observed_at=WEEK_AGO + day, version=2)
    history = [e for _, e in ledger.read_events() if e.originator_id == reading.id]
    assert [(type(e).__qualname__, e.value) for e in history] == [
        ("Reading.Recorded", D("301.25")),
        ("Reading.Corrected", D("310.125")),
    ]


def test_tokens_authenticate_until_revoked_or_expired(ledger: Ledger, monkeypatch) -> None:
    team = ledger.form_team(name="Platform", actor="admin")
    issued, secret = ledger.issue_token(name="ci", role="manager", team_id=team.id, actor="admin")
    token = ledger.authenticate(secret)
    assert token is not None
    expect(token, id=issued.id, name="ci", role="manager", team_id=team.id, revoked=False)
    assert ledger.authenticate(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert ledger.authenticate("gl_not-a-token") is None
    assert ledger.authenticate(f"gl_{uuid4().hex}_unknown") is None
    assert ledger.authenticate(f"gl_{team.id.hex}_a-team-is-no-token") is None

    ledger.revoke_token(issued.id, actor="admin", reason="leaked")
    expect(ledger.load(issued.id, Token), revoked=True, version=2)
    assert ledger.authenticate(secret) is None

    expires_at = utc_now() + timedelta(hours=1)
    _, short_lived = ledger.issue_token(
        name="demo", role="viewer", expires_at=expires_at, actor="admin"
    )
    assert ledger.authenticate(short_lived) is not None
    monkeypatch.setattr("goalledger.core.ledger_access.utc_now", lambda: expires_at)
    assert ledger.authenticate(short_lived) is None


def test_token_secrets_are_never_stored(ledger: Ledger) -> None:
    secrets = [ledger.issue_token(name=f"t{i}", role="viewer", actor="admin")[1] for i in range(3)]
    stored = b"".join(n.state for n in ledger.notifications())
    assert len(stored) > 0
    for secret in secrets:
        random_part = secret[len("gl_") + 32 + 1 :]  # the urlsafe part may itself hold "_"
        assert len(random_part) >= 43
        assert secret.encode() not in stored and random_part.encode() not in stored


def test_sqlite_ledger_creates_its_directory_on_first_use(sqlite_url: str) -> None:
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    assert not path.parent.exists()
    ledger = Ledger(Settings(database_url=sqlite_url))
    try:
        ledger.define_cycle(
            name="FY2026", starts_on=date(2026, 1, 1), ends_on=date(2026, 12, 31), actor="a"
        )
        assert path.is_file() and ledger.head_position() == 1
    finally:
        ledger.close()


def test_a_source_binding_round_trips(ledger) -> None:
    from goalledger.core.kpis import Kpi, SourceBinding, thresholds_for

    kpi = ledger.define_kpi(
        name="Signups", direction="higher_is_better", frequency="daily", actor="t",
        thresholds=thresholds_for("higher_is_better", 100, 50),
        source=SourceBinding(plugin="http-json", config={"url": "http://127.0.0.1/x", "n": 2}),
    )  # fmt: skip
    ledger.bind_kpi_source(
        kpi.id, source=SourceBinding(plugin="csv", config={"path": "a.csv"}), actor="t"
    )
    stored = ledger.load(kpi.id, Kpi)
    assert stored.source == SourceBinding(plugin="csv", config={"path": "a.csv"})
    events = [event for _, event in ledger.read_events() if event.originator_id == kpi.id]
    assert events[0].source.config == {"url": "http://127.0.0.1/x", "n": 2}


def test_several_objective_changes_are_recorded_together_or_not_at_all(ledger) -> None:
    from goalledger.core.errors import DomainError
    from goalledger.core.objectives import Objective

    cycle = ledger.define_cycle(
        name="Q", starts_on=date(2026, 1, 1), ends_on=date(2026, 3, 31), actor="t"
    )
    team = ledger.form_team(name="Ops", actor="t")
    objective = ledger.define_objective(
        title="Old", cycle_id=cycle.id, team_id=team.id, owner="o", kind="committed", actor="t"
    )
    head = ledger.head_position()
    with pytest.raises(DomainError) as refused:
        ledger.revise_objective(
            objective.id, actor="t", edits={"title": "New"}, status="no-such-status"
        )
    assert refused.value.field == "status"
    assert ledger.head_position() == head
    written = ledger.revise_objective(
        objective.id, actor="t", reason="scope", edits={"title": "New"}, status="closed"
    )
    stored = ledger.load(objective.id, Objective)
    assert (stored.title, stored.status, stored.version) == ("New", "closed", 3)
    assert written.version == 3


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "sNaN"])
def test_non_finite_numbers_are_refused_everywhere(ledger, value: str) -> None:
    from decimal import Decimal

    from goalledger.core.errors import DomainError
    from goalledger.core.kpis import thresholds_for
    from goalledger.core.ledger import ReadingInput

    kpi = ledger.define_kpi(
        name="K", direction="higher_is_better", frequency="daily", actor="t",
        thresholds=thresholds_for("higher_is_better", 2, 1),
    )  # fmt: skip
    head = ledger.head_position()
    bad = Decimal(value)
    with pytest.raises(DomainError, match="finite"):
        ledger.record_readings(
            [ReadingInput(kpi.id, "r", bad, datetime.now(UTC))], source="t", actor="t"
        )
    with pytest.raises(DomainError, match="finite"):
        ledger.change_kpi(kpi.id, target=bad, actor="t")
    assert ledger.head_position() == head
