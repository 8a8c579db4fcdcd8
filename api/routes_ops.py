"""Operations: liveness, readiness (database and projector lag), Prometheus metrics."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import msgspec
from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from goalledger.api.bootstrap import System
from goalledger.api.http_json import JsonResponse

log = logging.getLogger(__name__)
# Ready means: the database answers, the projector has not failed, and it trails the
# ledger by less than this.
READY_MAX_LAG_SECONDS = 30.0
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class Health(msgspec.Struct, frozen=True):
    """Liveness: the process answers."""

    status: str


class Readiness(msgspec.Struct, frozen=True):
    """Whether this process can serve reads: database, projector position, lag, failure."""

    status: str
    database: str
    head: int | None = None
    position: int | None = None
    positions_behind: int | None = None
    seconds_behind: float | None = None
    failed: str | None = None


class _LedgerCollector(Collector):
    """Ledger figures, read at scrape time."""

    def __init__(self, system: System) -> None:
        self.system = system

    def collect(self) -> Iterator[Metric]:
        try:
            lag = self.system.projector.lag()
        except Exception:  # a scrape must not fail because the database blinked
            log.warning("metrics: could not read the projector's lag", exc_info=True)
            return
        figures = (
            ("goalledger_ledger_head_position", "Position of the newest event in the ledger.",
             lag.head),
            ("goalledger_projection_position", "Ledger position the read models reflect.",
             lag.position),
            ("goalledger_projector_lag_positions", "Events recorded but not yet projected.",
             lag.positions_behind),
            ("goalledger_projector_lag_seconds", "Age of the oldest unprojected event.",
             lag.seconds_behind),
            ("goalledger_projector_failed", "1 when the projection stopped on an event.",
             1 if lag.failed else 0),
        )  # fmt: skip
        for name, documentation, value in figures:
            yield GaugeMetricFamily(name, documentation, value=value)
        yield from self._sources()

    def _sources(self) -> Iterator[Metric]:
        """Each fetched metric source's consecutive and total failures, by KPI and plugin."""
        labels = ["kpi_id", "plugin"]
        failing = GaugeMetricFamily(
            "goalledger_source_consecutive_failures",
            "Failed fetches of a KPI's metric source since its last success.",
            labels=labels,
        )
        failures = CounterMetricFamily(
            "goalledger_source_failures",
            "Failed fetches of a KPI's metric source since this process started.",
            labels=labels,
        )
        for health in self.system.sources.health():
            key = [str(health.kpi_id), health.plugin]
            failing.add_metric(key, health.attempts)
            failures.add_metric(key, health.failures)
        yield failing
        yield failures


class LedgerMetrics:
    """This app's Prometheus figures: ledger and projector gauges, ingestion counts."""

    def __init__(self, system: System) -> None:
        self.registry = CollectorRegistry()
        self.readings = Counter(
            "goalledger_readings_ingested",
            "Readings received over the API, by outcome (recorded or duplicate).",
            ["outcome"],
            registry=self.registry,
        )
        self.registry.register(_LedgerCollector(system))

    def readings_recorded(self, recorded: int, duplicates: int) -> None:
        """Count readings received."""
        if recorded:
            self.readings.labels("recorded").inc(recorded)
        if duplicates:
            self.readings.labels("duplicate").inc(duplicates)

    def exposition(self) -> bytes:
        """Every figure in the Prometheus text format (HTTP metrics come from the default
        registry, where Litestar's middleware keeps them)."""
        return generate_latest(REGISTRY) + generate_latest(self.registry)


@get("/health", operation_id="health", security=[], tags=["operations"], sync_to_thread=False)
def health() -> Health:
    """Liveness: answers while the process runs."""
    return Health(status="ok")


@get("/ready", operation_id="ready", security=[], tags=["operations"], sync_to_thread=True)
def ready(system: NamedDependency[System]) -> JsonResponse[Readiness]:
    """Readiness: the database answers and the projector keeps up (503 otherwise)."""
    breaker_open = system.breaker is not None and system.breaker.is_open
    if breaker_open or system.projector.interrupted is not None:  # found the database down
        return JsonResponse(
            Readiness(status="unavailable", database="unreachable"), status_code=503
        )
    try:
        lag = system.projector.lag()
    except Exception as error:
        log.warning("readiness: database unreachable: %s", error)
        return JsonResponse(
            Readiness(status="unavailable", database="unreachable"), status_code=503
        )
    ok = lag.failed is None and lag.seconds_behind < READY_MAX_LAG_SECONDS
    body = Readiness(
        status="ready" if ok else "lagging" if lag.failed is None else "failed",
        database="ok", head=lag.head, position=lag.position,
        positions_behind=lag.positions_behind, seconds_behind=lag.seconds_behind,
        failed=lag.failed,
    )  # fmt: skip
    return JsonResponse(body, status_code=200 if ok else 503)


@get(
    "/metrics", operation_id="metrics", security=[], tags=["operations"], sync_to_thread=True,
    media_type=MediaType.TEXT,
)  # fmt: skip
def metrics(metrics: NamedDependency[LedgerMetrics]) -> Response[bytes]:
    """Prometheus metrics: HTTP by route template, ledger head, projector lag, ingestion."""
    return Response(metrics.exposition(), media_type=PROMETHEUS_TEXT)


OPS_ROUTES = [health, ready, metrics]
