"""Fetching a KPI's source: readings recorded idempotently under the plugin's name;
a raising or hanging source is timed out, recorded, backed off, and isolated."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import msgspec
import pytest

from goalledger.api.bootstrap import System, bootstrap
from goalledger.core.errors import DomainError
from goalledger.core.kpis import Reading, SourceBinding, thresholds_for
from goalledger.core.settings import Settings
from goalledger.plugins import Observation, SourceError, hookimpl
from goalledger.plugins.fetch import FetchFailed, SourceRunner, fetch_now
from goalledger.plugins.manager import PluginRegistry, load_plugins

T0 = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
RELEASE = threading.Event()  # lets hanging sources finish when a test ends


class ScriptedConfig(msgspec.Struct, forbid_unknown_fields=True):
    value: Decimal = Decimal("1.5")
    days: int = 1
    behaviour: str = "ok"  # ok | raise | fail | hang | junk | naive | nan


class ScriptedSource:
    """Returns `days` daily readings, or misbehaves as configured."""

    name = "test-source"
    config_type = ScriptedConfig

    def __init__(self) -> None:
        self.calls: list[datetime | None] = []

    def fetch(self, config: ScriptedConfig, kpi, since):
        self.calls.append(since)
        if config.behaviour == "raise":
            raise RuntimeError("upstream exploded")
        if config.behaviour == "fail":
            raise SourceError("upstream answered HTTP 503")
        if config.behaviour == "hang":
            RELEASE.wait(30)
            return []
        if config.behaviour == "junk":
            return [Observation("a", Decimal(1), T0), {"reading_id": "b"}]
        if config.behaviour == "naive":
            return [Observation("a", Decimal(1), T0.replace(tzinfo=None))]
        if config.behaviour == "nan":
            return [Observation("a", Decimal("NaN"), T0)]
        return [
            Observation(f"2026-03-{14 - day:02d}", config.value + day, T0 - timedelta(days=day))
            for day in range(config.days)
        ]


class ScriptedPlugin:
    def __init__(self) -> None:
        self.source = ScriptedSource()

    @hookimpl
    def register_metric_sources(self, register):
        register(self.source)


@pytest.fixture
def plugin() -> ScriptedPlugin:
    return ScriptedPlugin()


@pytest.fixture
def registry(plugin: ScriptedPlugin) -> PluginRegistry:
    return load_plugins(entry_points_=[], extra=[("test-plugin", plugin)])


@pytest.fixture
def system(sqlite_url: str, registry: PluginRegistry) -> Iterator[System]:
    with bootstrap(Settings(database_url=sqlite_url), registry) as built:
        yield built
    RELEASE.set()
    RELEASE.clear()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def define(system: System, plugin: str = "test-source", **config: object) -> UUID:
    binding = system.plugins.validate_source(plugin, config)
    return system.ledger.define_kpi(
        name=f"KPI {config}",
        direction="higher_is_better",
        thresholds=thresholds_for("higher_is_better", 10, 5),
        frequency="daily",
        source=binding,
        actor="test",
    ).id


def recorded(system: System, kpi_id: UUID) -> list[Reading.Recorded]:
    return [
        e
        for _, e in system.ledger.read_events()
        if isinstance(e, Reading.Recorded) and e.kpi_id == kpi_id
    ]


def test_hook_register_metric_sources(system: System, plugin: ScriptedPlugin) -> None:
    kpi_id = define(system, days=3)
    result = fetch_now(system, kpi_id, actor="user:ana")
    assert result.plugin == "test-source"
    assert result.recorded == ["2026-03-14", "2026-03-13", "2026-03-12"]
    assert result.duplicates == [] and result.position is not None
    events = recorded(system, kpi_id)
    assert {(e.source, e.actor) for e in events} == {("test-source", "user:ana")}
    assert [e.value for e in events] == [Decimal("1.5"), Decimal("2.5"), Decimal("3.5")]
    # Fetching the same data again records nothing new.
    again = fetch_now(system, kpi_id)
    assert again.recorded == [] and again.position is None
    assert sorted(again.duplicates) == ["2026-03-12", "2026-03-13", "2026-03-14"]
    assert len(recorded(system, kpi_id)) == 3
    # The second call was told what the first one saw.
    assert plugin.source.calls == [None, T0]
    (health,) = system.sources.health(kpi_id)
    assert health.attempts == 0 and health.last_error is None
    assert health.last_observed_at == T0


def test_a_failing_source_is_recorded_and_backs_off_exponentially(
    system: System, registry: PluginRegistry
) -> None:
    clock = Clock()
    runner = SourceRunner(system.ledger, registry, clock=clock)
    kpi_id = define(system, behaviour="fail")
    for attempt, wait in ((1, 1), (2, 2), (3, 4)):
        with pytest.raises(FetchFailed) as caught:
            runner.fetch(kpi_id)
        health = caught.value.health
        assert health.attempts == attempt
        assert health.last_error == "upstream answered HTTP 503"
        assert health.next_retry_at == clock.now + timedelta(minutes=wait)
        assert not runner.due(kpi_id, clock.now + timedelta(minutes=wait, seconds=-1))
        assert runner.due(kpi_id, clock.now + timedelta(minutes=wait))
        clock.now += timedelta(minutes=wait)
    assert str(caught.value) == "source 'test-source' failed: upstream answered HTTP 503"
    assert recorded(system, kpi_id) == []
    # Re-bound to a working config, the KPI recovers and its backoff is cleared.
    system.ledger.bind_kpi_source(
        kpi_id, source=registry.validate_source("test-source", {}), actor="test"
    )
    assert runner.fetch(kpi_id).recorded == ["2026-03-14"]
    (health,) = runner.health(kpi_id)
    assert (health.attempts, health.failures, health.next_retry_at) == (0, 3, None)
    assert health.last_error == "upstream answered HTTP 503"  # history stays visible


def test_backoff_is_capped(system: System, registry: PluginRegistry) -> None:
    runner = SourceRunner(system.ledger, registry, clock=Clock(), max_backoff=timedelta(minutes=5))
    kpi_id = define(system, behaviour="raise")
    for _ in range(6):
        with pytest.raises(FetchFailed) as caught:
            runner.fetch(kpi_id)
    assert caught.value.health.next_retry_at == T0 + timedelta(minutes=5)
    assert caught.value.health.last_error == "RuntimeError: upstream exploded"


def test_a_hanging_source_is_abandoned_and_others_keep_working(
    system: System, registry: PluginRegistry
) -> None:
    runner = SourceRunner(system.ledger, registry, timeout=0.3)
    hanging = define(system, behaviour="hang")
    healthy = define(system, days=2)
    started = time.monotonic()
    with pytest.raises(FetchFailed) as caught:
        runner.fetch(hanging)
    assert time.monotonic() - started < 2
    assert caught.value.health.last_error == "timed out after 0.3s"
    assert runner.fetch(healthy).recorded == ["2026-03-14", "2026-03-13"]
    # While the abandoned call still runs, the KPI is not fetched a second time.
    with pytest.raises(FetchFailed) as again:
        runner.fetch(hanging)
    assert "still running" in (again.value.health.last_error or "")
    RELEASE.set()
    deadline = time.monotonic() + 5
    while runner.isolated.busy(hanging) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.fetch(hanging).recorded == []  # released: it returns nothing, cleanly


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ("junk", "observation 1 is a dict, not an Observation"),
        ("naive", "observation 0: observed_at must be a timezone-aware datetime"),
        ("nan", "observation 0: value is not a finite number"),
    ],
)
def test_what_a_source_returns_is_checked(system: System, behaviour: str, reason: str) -> None:
    kpi_id = define(system, behaviour=behaviour)
    with pytest.raises(FetchFailed) as caught:
        fetch_now(system, kpi_id)
    assert caught.value.health.last_error == reason
    assert recorded(system, kpi_id) == []  # all or nothing


def test_a_source_that_is_no_longer_loaded_fails_visibly(system: System) -> None:
    kpi_id = system.ledger.define_kpi(
        name="orphan",
        direction="higher_is_better",
        thresholds=thresholds_for("higher_is_better", 10, 5),
        frequency="daily",
        source=SourceBinding(plugin="uninstalled", config={}),
        actor="test",
    ).id
    with pytest.raises(FetchFailed) as caught:
        fetch_now(system, kpi_id)
    assert caught.value.health.last_error == (
        "source.plugin: no metric source named 'uninstalled'; "
        "known: csv, http-json, prometheus, sql, test-source"
    )
    stale = system.ledger.define_kpi(
        name="stale config",
        direction="higher_is_better",
        thresholds=thresholds_for("higher_is_better", 10, 5),
        frequency="daily",
        source=SourceBinding(plugin="test-source", config={"days": "many"}),
        actor="test",
    ).id
    with pytest.raises(FetchFailed) as caught:
        fetch_now(system, stale)
    assert caught.value.health.last_error == "source.config.days: must be int, got str"
    assert {h.kpi_id for h in system.sources.health()} == {kpi_id, stale}


def test_a_kpi_without_a_source_is_a_domain_error(system: System) -> None:
    kpi_id = system.ledger.define_kpi(
        name="manual",
        direction="higher_is_better",
        thresholds=thresholds_for("higher_is_better", 10, 5),
        frequency="daily",
        actor="test",
    ).id
    with pytest.raises(DomainError) as caught:
        fetch_now(system, kpi_id)
    assert caught.value.field == "kpi_id"
    assert system.sources.health() == []
