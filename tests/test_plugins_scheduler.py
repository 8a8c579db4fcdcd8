"""The scheduler polls each bound KPI once per period of its frequency, idempotently,
learns bindings from the ledger, and lets a failing source back off alone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import msgspec
import pytest

from goalledger.api.bootstrap import System, bootstrap
from goalledger.core.kpis import Reading, thresholds_for
from goalledger.core.ledger import ReadingInput
from goalledger.core.settings import Settings
from goalledger.plugins import Observation, SourceError, hookimpl
from goalledger.plugins.fetch import SourceRunner
from goalledger.plugins.manager import load_plugins
from goalledger.plugins.periods import period_id, period_start
from goalledger.plugins.scheduler import Scheduler

T0 = datetime(2026, 3, 14, 9, 15, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class TickConfig(msgspec.Struct):
    fail: bool = False


class TickSource:
    """One reading per KPI period, like a gauge read 'now'."""

    name = "tick"
    config_type = TickConfig

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls = 0

    def fetch(self, config: TickConfig, kpi, since):
        self.calls += 1
        if config.fail:
            raise SourceError("gauge offline")
        now = self.clock()
        return [Observation(period_id(period_start(now, kpi.frequency), kpi.frequency), 1, now)]


class TickPlugin:
    def __init__(self, source: TickSource) -> None:
        self.source = source

    @hookimpl
    def register_metric_sources(self, register):
        register(self.source)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def source(clock: Clock) -> TickSource:
    return TickSource(clock)


@pytest.fixture
def system(sqlite_url: str, source: TickSource) -> Iterator[System]:
    registry = load_plugins(entry_points_=[], extra=[("tick", TickPlugin(source))])
    with bootstrap(Settings(database_url=sqlite_url), registry) as built:
        yield built


@pytest.fixture
def scheduler(system: System, clock: Clock) -> Scheduler:
    runner = SourceRunner(system.ledger, system.plugins, clock=clock, timeout=5)
    return Scheduler(system.ledger, runner, clock=clock)


def define(system: System, frequency: str, **config: object) -> UUID:
    return system.ledger.define_kpi(
        name=f"{frequency} {config}",
        direction="higher_is_better",
        thresholds=thresholds_for("higher_is_better", 10, 5),
        frequency=frequency,
        source=system.plugins.validate_source("tick", config),
        actor="test",
    ).id


def readings(system: System) -> list[Reading.Recorded]:
    return [e for _, e in system.ledger.read_events() if isinstance(e, Reading.Recorded)]


def test_each_bound_kpi_is_polled_once_per_period(
    system: System, scheduler: Scheduler, clock: Clock, source: TickSource
) -> None:
    hourly, daily = define(system, "hourly"), define(system, "daily")
    system.ledger.define_kpi(
        name="manual",
        direction="higher_is_better",
        thresholds=thresholds_for("higher_is_better", 10, 5),
        frequency="hourly",
        actor="test",
    )
    first = scheduler.tick()
    assert {(p.kpi_id, p.recorded, p.error) for p in first} == {(hourly, 1, None), (daily, 1, None)}
    clock.now += timedelta(minutes=30)
    assert scheduler.tick() == []  # still the same hour and day
    clock.now += timedelta(minutes=30)
    assert [p.kpi_id for p in scheduler.tick()] == [hourly]
    clock.now += timedelta(days=1)
    assert {p.kpi_id for p in scheduler.tick()} == {hourly, daily}
    assert source.calls == 5
    assert {e.actor for e in readings(system)} == {"scheduler"}
    assert len(readings(system)) == 5


def test_a_restarted_scheduler_records_nothing_twice(
    system: System, scheduler: Scheduler, clock: Clock
) -> None:
    define(system, "daily")
    scheduler.tick()
    fresh = Scheduler(system.ledger, SourceRunner(system.ledger, system.plugins, clock=clock))
    (again,) = fresh.tick()  # it does not know what was polled: it polls once more…
    assert again.recorded == 0 and again.error is None  # …and records nothing new
    assert len(readings(system)) == 1


def test_bindings_are_learned_from_the_ledger(
    system: System, scheduler: Scheduler, clock: Clock
) -> None:
    kpi_id = define(system, "daily")
    assert len(scheduler.tick()) == 1
    system.ledger.bind_kpi_source(kpi_id, source=None, actor="test")
    clock.now += timedelta(days=1)
    assert scheduler.tick() == []  # unbound: not polled
    system.ledger.bind_kpi_source(
        kpi_id, source=system.plugins.validate_source("tick", {}), actor="test"
    )
    assert [p.kpi_id for p in scheduler.tick()] == [kpi_id]  # re-bound: polled at once
    system.ledger.change_kpi(kpi_id, frequency="hourly", actor="test")
    clock.now += timedelta(hours=1)
    assert [p.kpi_id for p in scheduler.tick()] == [kpi_id]
    assert scheduler.kpis[kpi_id].frequency == "hourly"


def test_a_binding_behind_thousands_of_other_events_is_learned(
    system: System, scheduler: Scheduler, clock: Clock
) -> None:
    manual = system.ledger.define_kpi(
        name="manual", direction="higher_is_better", frequency="hourly", actor="test",
        thresholds=thresholds_for("higher_is_better", 10, 5),
    ).id  # fmt: skip
    assert scheduler.tick() == []
    start = clock.now - timedelta(days=30)
    backlog = [
        ReadingInput(manual, f"r{n}", Decimal(n), start + timedelta(minutes=n)) for n in range(6000)
    ]
    system.ledger.record_readings(backlog, source="import", actor="test")
    bound = define(system, "daily")
    assert [p.kpi_id for p in scheduler.tick()] == [bound]
    assert scheduler._position == system.ledger.head_position() - 1  # its own reading came after


def test_a_failing_source_backs_off_without_holding_up_the_others(
    system: System, scheduler: Scheduler, clock: Clock
) -> None:
    broken, healthy = define(system, "hourly", fail=True), define(system, "hourly")
    outcomes = {p.kpi_id: p for p in scheduler.tick()}
    assert outcomes[broken].error == "gauge offline"
    assert outcomes[healthy].recorded == 1
    clock.now += timedelta(seconds=59)
    assert scheduler.tick() == []  # within the first backoff (1 minute)
    clock.now += timedelta(seconds=1)
    assert [p.kpi_id for p in scheduler.tick()] == [broken]  # retried; backoff now 2 min
    clock.now += timedelta(minutes=1)
    assert scheduler.tick() == []
    clock.now = T0.replace(minute=0) + timedelta(hours=1)
    assert {p.kpi_id for p in scheduler.tick()} == {broken, healthy}


def test_the_scheduler_runs_in_the_background_until_stopped(system: System) -> None:
    kpi_id = define(system, "daily")
    system.scheduler.start(interval=0.05)
    try:
        deadline = time.monotonic() + 10
        while not readings(system) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        system.scheduler.stop()
    assert [e.kpi_id for e in readings(system)] == [kpi_id]
    assert readings(system)[0].value == Decimal(1)
    assert system.scheduler._thread is not None and not system.scheduler._thread.is_alive()
