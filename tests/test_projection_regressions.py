"""Regressions found in review: failures seen across processes, restarts, and time travel
over renamed, re-parented or archived things."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from projection_fixtures import (
    days_ago,
    increase_kr,
    mark,
    plan,
    system_fixture,  # noqa: F401 (the `system` fixture)
    uptime_kpi,
)

from goalledger.api.bootstrap import System
from goalledger.core.errors import DomainError
from goalledger.core.ledger import ReadingInput
from goalledger.core.objectives import KeyResult
from goalledger.projections import views
from goalledger.projections.history import kpi_history
from goalledger.projections.projector import ProjectionFailed, Projector
from goalledger.projections.schema import from_ts, ts


def _fault(*_: object) -> None:
    raise RuntimeError("simulated fault")


def test_a_failure_is_visible_to_other_processes_and_a_restart_clears_it(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = plan(system.ledger)
    kr = increase_kr(system.ledger, p.objective)
    system.catch_up()
    failing = system.ledger.check_in(kr.id, value=Decimal(5), actor="bob")
    monkeypatch.setitem(views.HANDLERS, KeyResult.CheckedIn.TOPIC, _fault)
    system.projector.start(poll_interval=0.01)
    deadline = datetime.now(UTC) + timedelta(seconds=5)
    while system.projector.failure is None and datetime.now(UTC) < deadline:
        system.projector.wait_for(failing.position, 0.05)
    assert isinstance(system.projector.failure, ProjectionFailed)

    # Another projector (standing for another process) reads the recorded failure.
    elsewhere = Projector(system.ledger, system.store)
    assert f"position {failing.position}" in (elsewhere.lag().failed or "")

    monkeypatch.undo()
    system.projector.start(poll_interval=0.01)  # the stopped thread is started again
    assert system.projector.wait_for(failing.position, 5)
    assert system.projector.lag().failed is None
    assert elsewhere.lag().failed is None


def test_known_at_shows_teams_and_objectives_as_they_were(system: System) -> None:
    ledger = system.ledger
    p = plan(ledger)
    before = mark()
    parent = ledger.form_team(name="Company", actor="alice")
    ledger.change_team(p.team.id, parent_id=parent.id, name="Platform Team", actor="alice")
    ledger.edit_objective(p.objective.id, title="Renamed later", actor="alice", reason="wording")
    ledger.change_objective_status(p.objective.id, status="archived", actor="alice")
    system.catch_up()

    then = system.queries.scoreboard(cycle_id=p.cycle.id, known_at=before)
    assert [(o.title, o.status) for o in then.objectives] == [("Run a reliable platform", "active")]
    assert [(team.name, team.parent_id) for team in then.teams] == [("Platform", None)]
    tree = system.queries.alignment(cycle_id=p.cycle.id, known_at=before)
    assert [(node.title, node.status) for node in tree.roots] == [
        ("Run a reliable platform", "active")
    ]

    now = system.queries.scoreboard(cycle_id=p.cycle.id)
    assert [(o.title, o.status) for o in now.objectives] == [("Renamed later", "archived")]
    assert {team.name: team.parent_id for team in now.teams} == {
        "Company": None,
        "Platform Team": parent.id,
    }


def test_kpi_name_under_known_at_is_the_name_it_had(system: System) -> None:
    kpi = uptime_kpi(system.ledger)
    before = mark()
    system.ledger.change_kpi(kpi.id, name="Availability", actor="alice")
    system.catch_up()
    assert kpi_history(system.queries, kpi.id, known_at=before).name == "Uptime"
    assert kpi_history(system.queries, kpi.id).name == "Availability"


@pytest.mark.parametrize("field", ["from", "to", "cursor"])
def test_naive_history_bounds_are_refused(system: System, field: str) -> None:
    kpi = uptime_kpi(system.ledger)
    system.ledger.record_readings(
        [ReadingInput(kpi.id, "r1", Decimal("99.5"), days_ago(1))], source="m", actor="bot"
    )
    system.catch_up()
    naive = datetime(2026, 1, 1)
    arguments = {"from": {"start": naive}, "to": {"end": naive}, "cursor": {"after": (naive, 1)}}
    with pytest.raises(DomainError) as refused:
        kpi_history(system.queries, kpi.id, limit=10, **arguments[field])
    assert refused.value.field == field


def test_stored_times_are_exact_far_from_1970() -> None:
    for moment in (
        datetime(1000, 1, 1, 0, 0, 0, 123457, tzinfo=UTC),
        datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, 0, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ):
        assert from_ts(ts(moment)) == moment


def test_a_closed_cycle_is_judged_at_its_close(system: System) -> None:
    ledger = system.ledger
    p = plan(ledger)
    kr = increase_kr(ledger, p.objective)
    ledger.check_in(kr.id, value=Decimal(50), actor="bob")
    ledger.close_cycle(p.cycle.id, rule="linear-v1", actor="alice")
    system.catch_up()
    at_close = system.queries.scoreboard(cycle_id=p.cycle.id)
    later = system.queries.scoreboard(
        cycle_id=p.cycle.id, as_of=datetime.now(UTC) + timedelta(days=1)
    )
    assert later.at == at_close.at
    assert later.objectives[0].key_results[0].pace == at_close.objectives[0].key_results[0].pace
    assert later.objectives[0].key_results[0].status == (
        at_close.objectives[0].key_results[0].status
    )
