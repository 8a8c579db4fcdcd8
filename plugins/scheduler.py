"""The metric-source scheduler: polls each bound KPI once per period of its frequency.

Which KPIs are bound is learned by tailing the ledger (only KPI events are decoded),
so a KPI defined, re-bound or unbound anywhere is picked up on the next tick. Polling
is idempotent (sources give deterministic reading ids), so a restart, which polls
every KPI once more, records nothing twice. A failing source waits out its backoff
(`SourceRunner.due`) and never holds up the others: fetches run on a small pool.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from uuid import UUID

import msgspec

from goalledger.core.kpis import Kpi
from goalledger.core.ledger import Ledger
from goalledger.core.unavailable import LoopFailures, database_unavailable
from goalledger.plugins.fetch import FetchFailed, FetchResult, SourceRunner
from goalledger.plugins.periods import period_start

log = logging.getLogger("goalledger.scheduler")
KPI_TOPICS = (Kpi.Defined.TOPIC, Kpi.Changed.TOPIC, Kpi.SourceBound.TOPIC)


class Polled(msgspec.Struct, frozen=True):
    """What one tick did for one KPI."""

    kpi_id: UUID
    plugin: str
    recorded: int
    error: str | None = None


class BoundKpi(msgspec.Struct):
    plugin: str | None
    frequency: str


class Scheduler:
    """Decides which bound KPIs are due and fetches them through a `SourceRunner`."""

    def __init__(
        self,
        ledger: Ledger,
        runner: SourceRunner,
        *,
        workers: int = 4,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ledger, self.runner, self.clock = ledger, runner, clock
        self.workers = workers
        self.kpis: dict[UUID, BoundKpi] = {}
        self._position = 0
        self._polled: dict[UUID, datetime] = {}  # KPI -> start of the period last polled
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def refresh(self) -> None:
        """Learn KPI definitions and bindings recorded since the last refresh.

        The database picks the KPI events out of everything recorded since (readings and
        check-ins are most of it), up to the head read first; the log commits in position
        order, so nothing below that head can appear later.
        """
        head = self.ledger.head_position()
        if head <= self._position:
            return
        to_event = self.ledger.mapper.to_domain_event
        kpi_events = self.ledger.notifications(
            self._position, batch=5000, stop=head, topics=KPI_TOPICS
        )
        for notification in kpi_events:
            event = to_event(notification)
            kpi = self.kpis.setdefault(event.originator_id, BoundKpi(None, "daily"))
            if isinstance(event, Kpi.Defined):
                kpi.plugin = event.source.plugin if event.source else None
                kpi.frequency = event.frequency
            elif isinstance(event, Kpi.SourceBound):
                kpi.plugin = event.source.plugin if event.source else None
                self._polled.pop(event.originator_id, None)  # a new binding polls at once
            elif isinstance(event, Kpi.Changed):
                kpi.frequency = event.frequency
        self._position = head

    def due(self, now: datetime) -> list[UUID]:
        """Bound KPIs not yet polled in their current period and not backing off."""
        due = []
        for kpi_id, kpi in self.kpis.items():
            if kpi.plugin is None or not self.runner.due(kpi_id, now):
                continue
            polled = self._polled.get(kpi_id)
            if polled is None or polled < period_start(now, kpi.frequency):
                due.append(kpi_id)
        return due

    def tick(self) -> list[Polled]:
        """Refresh, then fetch every due KPI; returns what happened to each."""
        self.refresh()
        now = self.clock()
        due = self.due(now)
        if not due:
            return []
        with ThreadPoolExecutor(self.workers, thread_name_prefix="goalledger-poll") as pool:
            outcomes = list(pool.map(self._poll, due))
        for kpi_id, outcome in zip(due, outcomes, strict=True):
            if outcome.error is None:
                self._polled[kpi_id] = period_start(now, self.kpis[kpi_id].frequency)
        return outcomes

    def _poll(self, kpi_id: UUID) -> Polled:
        plugin = self.kpis[kpi_id].plugin or ""
        try:
            result: FetchResult = self.runner.fetch(kpi_id, actor="scheduler")
        except FetchFailed as failure:
            log.warning(
                "source %s for KPI %s failed: %s", plugin, kpi_id, failure.health.last_error
            )
            return Polled(kpi_id, plugin, 0, failure.health.last_error)
        except Exception as error:  # the ledger itself failed: try again next tick
            if database_unavailable(error):  # one line: the tick's own report says the rest
                log.warning("polling KPI %s: the database is unavailable: %s", kpi_id, error)
            else:
                log.exception("polling KPI %s failed", kpi_id)
            return Polled(kpi_id, plugin, 0, f"{type(error).__name__}: {error}")
        return Polled(kpi_id, plugin, len(result.recorded))

    # -- running in the background ---------------------------------------------------

    def start(self, interval: float = 30.0) -> None:
        """Tick every `interval` seconds on a daemon thread until `stop()`."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(interval,), name="goalledger-scheduler", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the loop to stop and wait for the current tick to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, interval: float) -> None:
        failures = LoopFailures(log, "scheduler tick")
        while not self._stop.is_set():
            try:
                self.tick()
                failures.succeeded()
            except Exception as error:  # never let the loop die: log and try again
                failures.failed(error)
            self._stop.wait(interval)
