"""Time-based alerts (check-in overdue, cycle ending): raised by a clock tick, once per
period however often the clock ticks. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from goalledger.api.bootstrap import System, bootstrap
from goalledger.core.settings import Settings
from goalledger.core.subscriptions import Channel
from goalledger.projections.alert_clock import AlertClock
from goalledger.projections.alerts import alert_id

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
TODAY = NOW.date()


@pytest.fixture
def system(settings: Settings) -> Iterator[System]:
    built = bootstrap(settings)
    try:
        yield built
    finally:
        built.close()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def queued(system: System) -> set[tuple[str, str]]:
    with system.store.read() as tx:
        return set(tx.all("SELECT alert_id, subscription_id FROM gl_outbox"))


def test_a_cycle_ending_soon_is_announced_once(system: System) -> None:
    ledger = system.ledger
    sub = str(
        ledger.subscribe(
            alert_kinds=["cycle_ending"], team_ids=[], channel=Channel("log", {}), actor="a"
        ).id
    )
    ending = ledger.define_cycle(
        name="Q4", starts_on=TODAY - timedelta(days=80), ends_on=TODAY + timedelta(days=5),
        actor="a",
    ).id  # fmt: skip
    ledger.define_cycle(
        name="FY", starts_on=TODAY - timedelta(days=80), ends_on=TODAY + timedelta(days=200),
        actor="a",
    )  # fmt: skip
    system.catch_up()
    clock = Clock(NOW)
    alarm = AlertClock(system.store, system.queries, clock=clock)
    raised = alarm.tick()
    ends = (TODAY + timedelta(days=5)).isoformat()
    assert [(a.kind, a.subject_id, a.title) for a in raised] == [
        ("cycle_ending", str(ending), "Cycle Q4 ends in 5 days")
    ]
    assert raised[0].id == alert_id("cycle_ending", str(ending), ends)
    assert queued(system) == {(raised[0].id, sub)}
    clock.now = NOW + timedelta(days=3)
    assert alarm.tick() == []  # the same end date: raised already
    assert AlertClock(system.store, system.queries, clock=clock).tick() == []  # another worker


def test_an_overdue_check_in_is_raised_once_per_missed_due_date(system: System) -> None:
    ledger = system.ledger
    team = ledger.form_team(name="Platform", check_in_interval_days=7, actor="a").id
    sub = str(
        ledger.subscribe(
            alert_kinds=["check_in_overdue"], team_ids=[team], channel=Channel("log", {}),
            actor="a",
        ).id
    )  # fmt: skip
    cycle = ledger.define_cycle(
        name="Q", starts_on=TODAY - timedelta(days=30), ends_on=TODAY + timedelta(days=60),
        actor="a",
    ).id  # fmt: skip
    began = NOW - timedelta(days=30)
    objective = ledger.define_objective(
        title="Grow", cycle_id=cycle, team_id=team, owner="o", kind="committed",
        effective_at=began, actor="a",
    ).id  # fmt: skip
    kr = ledger.define_key_result(
        objective, title="Adoption", kind="increase_to", start=Decimal(0), target=Decimal(100),
        effective_at=began, actor="a",
    ).id  # fmt: skip
    checked = NOW - timedelta(days=10)
    ledger.check_in(kr, value=Decimal(30), effective_at=checked, actor="a")
    system.catch_up()
    clock = Clock(NOW)
    alarm = AlertClock(system.store, system.queries, clock=clock)
    first = alarm.tick()
    due = (checked + timedelta(days=7)).isoformat()
    assert [(a.kind, a.subject_id, a.team_id) for a in first] == [
        ("check_in_overdue", str(kr), str(team))
    ]
    assert first[0].id == alert_id("check_in_overdue", str(kr), due)
    assert first[0].title == "Check-in overdue: Adoption"
    assert alarm.tick() == []
    ledger.check_in(kr, value=Decimal(50), effective_at=NOW, actor="a")
    system.catch_up()
    assert alarm.tick() == []  # checked in: nothing is overdue
    clock.now = NOW + timedelta(days=8)
    second = alarm.tick()
    assert [a.id for a in second] == [
        alert_id("check_in_overdue", str(kr), (NOW + timedelta(days=7)).isoformat())
    ]
    assert queued(system) == {(first[0].id, sub), (second[0].id, sub)}
