"""Fetching a KPI's bound metric source now: isolated, recorded, retried with backoff.

A failure is kept per KPI (last error, consecutive attempts, next retry), visible
through `SourceRunner.health`, and raised as `FetchFailed`; it never touches another
KPI's source, and nothing already recorded is lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import msgspec

from goalledger.core.errors import DomainError
from goalledger.core.kpis import Kpi
from goalledger.core.ledger import Ledger, ReadingInput
from goalledger.plugins.catalogue import Catalogue
from goalledger.plugins.contracts import KpiRef, Observation, SourceError
from goalledger.plugins.isolation import Isolated, reason
from goalledger.plugins.payloads import to_decimal

MAX_OBSERVATIONS = 100_000


class FetchResult(msgspec.Struct, frozen=True):
    """What one fetch brought: readings recorded, readings already held, log position."""

    kpi_id: UUID
    plugin: str
    observed: int
    recorded: list[str]
    duplicates: list[str]
    position: int | None


class SourceHealth(msgspec.Struct):
    """How a KPI's source has fared in this process (failures are kept in memory)."""

    kpi_id: UUID
    plugin: str
    attempts: int = 0  # consecutive failures; 0 after a success
    failures: int = 0  # all failures since the process started
    last_error: str | None = None
    last_failure_at: datetime | None = None
    next_retry_at: datetime | None = None
    last_success_at: datetime | None = None
    last_observed_at: datetime | None = None  # newest observed_at seen: the next `since`


class FetchFailed(Exception):
    """A source failed; the failure is recorded in its `health`."""

    def __init__(self, health: SourceHealth) -> None:
        super().__init__(f"source {health.plugin!r} failed: {health.last_error}")
        self.health = health


class HasSources(Protocol):
    sources: SourceRunner


class SourceRunner:
    """Runs metric sources for KPIs and keeps each one's health."""

    def __init__(
        self,
        ledger: Ledger,
        catalogue: Catalogue,
        *,
        timeout: float = 30.0,
        backoff: timedelta = timedelta(minutes=1),
        max_backoff: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ledger, self.catalogue = ledger, catalogue
        self.timeout, self.backoff, self.max_backoff = timeout, backoff, max_backoff
        self.clock = clock
        self.isolated = Isolated()
        self._lock = threading.Lock()
        self._health: dict[UUID, SourceHealth] = {}

    def health(self, kpi_id: UUID | None = None) -> list[SourceHealth]:
        """Health of every KPI fetched so far (or of one), as copies."""
        with self._lock:
            if kpi_id is None:
                states = list(self._health.values())
            else:
                states = [self._health[kpi_id]] if kpi_id in self._health else []
            return [msgspec.structs.replace(state) for state in states]

    def due(self, kpi_id: UUID, now: datetime) -> bool:
        """False while a failed source waits out its backoff."""
        with self._lock:
            state = self._health.get(kpi_id)
            return state is None or state.next_retry_at is None or now >= state.next_retry_at

    def fetch(self, kpi_id: UUID, *, actor: str | None = None) -> FetchResult:
        """Fetch the KPI's bound source now and record what is new; `FetchFailed` on failure."""
        kpi = self.ledger.load(kpi_id, Kpi, "kpi_id")
        if kpi.source is None:
            raise DomainError("kpi_id", f"KPI {kpi_id} has no metric source bound")
        plugin = kpi.source.plugin
        since = self._since(kpi_id, plugin)
        try:
            source = self.catalogue.source(plugin)
            config = self.catalogue.config_of(kpi.source)
            ref = KpiRef(kpi.id, kpi.name, kpi.unit, kpi.direction, kpi.frequency, kpi.team_id)
            found = self.isolated.call(kpi_id, self.timeout, source.fetch, config, ref, since)
            readings = _readings(kpi_id, found)
        except Exception as error:
            raise FetchFailed(self._failed(kpi_id, plugin, reason(error))) from error
        written = self.ledger.record_readings(
            readings, source=plugin, actor=actor or f"source:{plugin}"
        )
        newest = max((r.observed_at for r in readings), default=None)
        self._succeeded(kpi_id, plugin, newest)
        return FetchResult(
            kpi_id=kpi_id,
            plugin=plugin,
            observed=len(readings),
            recorded=written.recorded,
            duplicates=written.duplicates,
            position=written.position,
        )

    def _state(self, kpi_id: UUID, plugin: str) -> SourceHealth:
        state = self._health.get(kpi_id)
        if state is None or state.plugin != plugin:  # a re-bound KPI starts afresh
            state = self._health[kpi_id] = SourceHealth(kpi_id=kpi_id, plugin=plugin)
        return state

    def _since(self, kpi_id: UUID, plugin: str) -> datetime | None:
        with self._lock:
            return self._state(kpi_id, plugin).last_observed_at

    def _failed(self, kpi_id: UUID, plugin: str, why: str) -> SourceHealth:
        now = self.clock()
        with self._lock:
            state = self._state(kpi_id, plugin)
            state.attempts += 1
            state.failures += 1
            state.last_error, state.last_failure_at = why, now
            delay = min(self.backoff * 2 ** (state.attempts - 1), self.max_backoff)
            state.next_retry_at = now + delay
            return msgspec.structs.replace(state)

    def _succeeded(self, kpi_id: UUID, plugin: str, newest: datetime | None) -> None:
        with self._lock:
            state = self._state(kpi_id, plugin)
            state.attempts, state.next_retry_at = 0, None
            state.last_success_at = self.clock()
            if newest is not None and (
                state.last_observed_at is None or newest > state.last_observed_at
            ):
                state.last_observed_at = newest


def fetch_now(system: HasSources, kpi_id: UUID, *, actor: str | None = None) -> FetchResult:
    """Fetch a KPI's bound source now (what `POST /v1/kpis/{id}/source/fetch` does)."""
    return system.sources.fetch(kpi_id, actor=actor)


def _readings(kpi_id: UUID, found: Any) -> list[ReadingInput]:
    """Check what a source returned and turn it into readings to record."""
    if not isinstance(found, Sequence) or isinstance(found, (str, bytes)):
        raise SourceError(f"fetch returned {type(found).__name__}, not a list of Observation")
    if len(found) > MAX_OBSERVATIONS:
        raise SourceError(f"fetch returned more than {MAX_OBSERVATIONS} observations")
    readings = []
    for index, item in enumerate(found):
        where = f"observation {index}"
        if not isinstance(item, Observation):
            raise SourceError(f"{where} is a {type(item).__name__}, not an Observation")
        if not isinstance(item.reading_id, str) or not 0 < len(item.reading_id.strip()) <= 200:
            raise SourceError(f"{where}: reading_id must be a non-blank string of <= 200 chars")
        observed_at = item.observed_at
        if not isinstance(observed_at, datetime) or observed_at.utcoffset() is None:
            raise SourceError(f"{where}: observed_at must be a timezone-aware datetime")
        readings.append(
            ReadingInput(
                kpi_id=kpi_id,
                reading_id=item.reading_id.strip(),
                value=to_decimal(item.value, f"{where}: value"),
                observed_at=observed_at,
            )
        )
    return readings
