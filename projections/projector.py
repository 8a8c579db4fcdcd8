"""The projector: pulls the notification log in batches into the read models.

Each batch's view rows and the tracking position commit in one transaction, so a
crash at any point either keeps a whole batch or none of it: exactly-once, and
resumable from the tracking position. Events no view cares about still advance
tracking, so waiting for the head never hangs.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec

from goalledger.core.kpis import Reading
from goalledger.core.ledger import Ledger
from goalledger.core.unavailable import database_unavailable
from goalledger.projections import chain, log_pages, read_ahead, schema
from goalledger.projections.alert_detector import AlertDetector
from goalledger.projections.log_pages import READING_RECORDED, ReadingFacts
from goalledger.projections.store import Tx, ViewStore
from goalledger.projections.views import ViewWriter

log = logging.getLogger(__name__)
RETRY_MAX_SECONDS = 5.0  # the background loop's longest wait for an unreachable database
# Under a stream of small writes, how long the next batch may gather events (a reader
# waiting for a position cuts it short).
LINGER_SECONDS = 0.005
# How often a reader re-reads the tracking position while the projector runs in another
# process (nothing here is told when it commits): a cheap SELECT, a few per wait.
ELSEWHERE_POLL_SECONDS = 0.002
Progress = Callable[[int, int], None]


class ProjectionFailed(Exception):
    """An event could not be applied; the projection stopped before it."""

    def __init__(self, position: int, topic: str, reason: str) -> None:
        super().__init__(f"projection stopped at position {position} ({topic}): {reason}")
        self.position = position
        self.topic = topic
        self.reason = reason


class _Unapplied(Exception):
    """Carries an apply error out of the batch transaction, so it rolls back first."""

    def __init__(self, position: int, topic: str, error: Exception) -> None:
        super().__init__(position, topic, error)
        self.position, self.topic, self.error = position, topic, error


class Lag(msgspec.Struct, frozen=True):
    """How far the read models trail the ledger."""

    head: int
    position: int
    positions_behind: int
    seconds_behind: float
    failed: str | None


class Projector:
    """Applies ledger events to one generation of read models (the live one by default)."""

    def __init__(
        self,
        ledger: Ledger,
        store: ViewStore,
        *,
        batch_size: int = 2000,
        generation: int | None = None,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.batch_size = batch_size
        self._fixed_generation = generation
        self._applied = threading.Condition()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._hurry = threading.Event()  # someone waits for a position: do not linger
        self._thread: threading.Thread | None = None
        self._elsewhere: Callable[[bool], object] | None = None  # wakes another process's
        self.failure: ProjectionFailed | None = None
        self.interrupted: str | None = None  # why the background loop waits for the database
        self.alerts = AlertDetector()  # alerts and their outbox, in each batch's transaction
        self.setup()

    # -- set-up and state -------------------------------------------------------------

    def setup(self) -> None:
        """Create the generation register and, on first use, generation 1 (live).

        Every process that opens the views runs this. On PostgreSQL, processes starting
        at once on a new database raced in CREATE TABLE IF NOT EXISTS (a unique
        violation in pg_type) and could each create generation 1: an advisory lock for
        the transaction makes them take turns (SQLite's BEGIN IMMEDIATE already does)."""
        with self.store.transaction() as tx:
            if tx.postgres:
                tx.execute("SELECT pg_advisory_xact_lock(hashtext('goalledger_views_setup'))")
            schema.ensure_meta(tx)
            if self._fixed_generation is not None:
                schema.create_generation(tx, self._fixed_generation, query_indexes=False)
            elif schema.live_generation(tx) is None:
                generation = schema.next_generation(tx)
                schema.create_generation(tx, generation)
                schema.make_live(tx, generation)
            chain.ensure_table(tx, self._generation(tx))  # generations older than the chain
            self.alerts.setup(tx)

    def _generation(self, tx: Tx) -> int:
        if self._fixed_generation is not None:
            return self._fixed_generation
        generation = schema.live_generation(tx)
        assert generation is not None, "setup() creates the live generation"
        return generation

    def position(self) -> int:
        """The last ledger position applied to the read models."""
        with self.store.read() as tx:
            return _tracking(tx, self._generation(tx), lock=False)

    # -- applying events ----------------------------------------------------------------

    def run_batch(self) -> int:
        """Apply the next batch of events; returns how many were applied (0 when caught up)."""
        start = self.position()
        return self.apply_page(start, log_pages.page(self.ledger, start, self.batch_size))

    def apply_page(self, start: int, page: log_pages.Page) -> int:
        """Apply `page`, the events right after tracking position `start`, in one transaction.

        Returns how many were applied: 0 when the page is empty or another projector
        applied events after `start` first.
        """
        rows = page.rows
        if not rows:
            return 0
        try:
            with self.store.transaction() as tx:
                generation = self._generation(tx)
                if _tracking(tx, generation, lock=self.store.kind == "postgresql") != start:
                    return 0  # another projector applied this batch first
                if self._fixed_generation is not None and _looks_up_readings(rows):
                    # A rebuild defers its indexes; a correction finds its reading by one.
                    schema.create_indexes(tx, generation, only=schema.PROJECTION_INDEXES)
                writer = ViewWriter(tx, generation)
                self.alerts.begin(tx, writer.t, start, writer.flush)
                alert, write = self.alerts.apply, writer.apply
                # Most events are readings: a short path, on their facts (`ReadingFacts`).
                alert_reading, write_reading = self.alerts.reading, writer.record_reading
                for (position, aggregate_id, version, topic, _), fields in zip(
                    rows, page.fields, strict=True
                ):
                    try:
                        if isinstance(fields, Exception):
                            raise fields
                        if topic == READING_RECORDED:
                            if type(fields) is not ReadingFacts:  # not decoded ahead
                                fields = log_pages.reading_facts(fields)
                            alert_reading(position, aggregate_id, fields)
                            write_reading(position, aggregate_id, version, fields)
                        else:
                            alert(position, aggregate_id, topic, fields)
                            write(position, aggregate_id, version, topic, fields)
                    except Exception as error:
                        raise _Unapplied(position, topic, error) from error
                try:
                    writer.flush()
                    self.alerts.finish()
                    chain.extend(tx, generation, rows, start, self.ledger, page.links)
                except Exception as error:
                    raise _Unapplied(rows[-1][0], "batch", error) from error
                tx.execute(
                    f"UPDATE {schema.table(generation, 'tracking')} SET position = ?"
                    " WHERE name = 'views'",
                    (rows[-1][0],),
                )
        except _Unapplied as unapplied:
            # Recorded only now, after the batch rolled back, so other processes see it.
            raise self._fail(unapplied.position, unapplied.topic, unapplied.error) from (
                unapplied.error
            )
        self.alerts.committed(rows[-1][0])
        self.failure = None
        with self._applied:
            self._applied.notify_all()
        return len(rows)

    def _fail(self, position: int, topic: str, error: Exception) -> ProjectionFailed:
        failure = ProjectionFailed(position, topic, f"{type(error).__name__}: {error}")
        self.failure = failure
        log.error("%s", failure)
        try:
            with self.store.transaction() as tx:
                generation = self._generation(tx)
                tx.execute(f"DELETE FROM {schema.STATUS_TABLE} WHERE generation = ?", (generation,))
                tx.execute(
                    f"INSERT INTO {schema.STATUS_TABLE} VALUES (?, ?, ?, ?, ?)",
                    (generation, position, topic, failure.reason, schema.ts(_now())),
                )
        except Exception:  # recording the failure must not hide it
            log.exception("could not record the projection failure")
        return failure

    def catch_up(self, progress: Progress | None = None) -> int:
        """Apply batches until the read models reach the head the ledger had on entry."""
        head = self.ledger.head_position()
        applied = 0
        first = self.position()
        while self.position() < head:
            count = self.run_batch()
            applied += count
            if progress is not None:
                progress(self.position() - first, head - first)
        return applied

    # -- read-your-writes and lag ---------------------------------------------------------

    def wait_for(self, position: int, timeout: float) -> bool:
        """Wait until `position` is applied (True) or `timeout` seconds pass (False).

        With the projector running in this process, its commits wake the wait; otherwise
        (another process projects) the position is re-read every few milliseconds.
        """
        deadline = time.monotonic() + timeout
        hurried = False
        while True:
            if self.position() >= position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            here = self._thread is not None and self._thread.is_alive()
            if here or not hurried:  # once is enough for another process: it reads them all
                self.hurry()
                hurried = True
            with self._applied:
                self._applied.wait(min(remaining, 0.05 if here else ELSEWHERE_POLL_SECONDS))

    def lag(self) -> Lag:
        """Positions and seconds between the ledger's head and the read models."""
        head = self.ledger.head_position()
        position = self.position()
        seconds = 0.0
        if head > position:
            pending = self.ledger.recorder.select_notifications(
                position, 1, inclusive_of_start=False
            )
            if pending:
                event = self.ledger.mapper.to_domain_event(pending[0])
                seconds = max(0.0, (_now() - event.timestamp).total_seconds())
        return Lag(
            head=head,
            position=position,
            positions_behind=max(0, head - position),
            seconds_behind=seconds,
            failed=str(self.failure) if self.failure else self.recorded_failure(),
        )

    def recorded_failure(self) -> str | None:
        """The failure a projector (in any process) recorded for the live generation."""
        with self.store.read() as tx:
            row = tx.one(
                f"SELECT position, topic, reason FROM {schema.STATUS_TABLE} WHERE generation = ?",
                (self._generation(tx),),
            )
        if row is None:
            return None
        return str(ProjectionFailed(row[0], row[1], row[2]))

    # -- running in the background ----------------------------------------------------------

    def start(self, poll_interval: float = 0.05) -> None:
        """Run in a daemon thread until `stop()`; stops (and reports) on a failure."""
        if self._thread is not None and self._thread.is_alive():
            return
        self.failure = None
        with self.store.transaction() as tx:  # a restart retries a recorded failure
            tx.execute(
                f"DELETE FROM {schema.STATUS_TABLE} WHERE generation = ?",
                (self._generation(tx),),
            )
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(poll_interval,), name="goalledger-projector", daemon=True
        )
        self._thread.start()

    def _run(self, poll_interval: float) -> None:
        delay = 0.0
        while not self._stop.is_set():
            try:
                applied = self.run_batch()
            except Exception as error:
                unavailable = database_unavailable(error)  # the error or its cause
                if isinstance(error, ProjectionFailed) and not unavailable:
                    return  # recorded; readiness reports it
                delay = min(RETRY_MAX_SECONDS, delay * 2 or 0.25)
                if unavailable:  # the database failed, not an event: retry until it is back
                    self.failure, self.interrupted = None, f"{type(error).__name__}: {error}"
                    log.warning("projector: retry in %.2g s: %s", delay, self.interrupted)
                else:
                    log.exception("projector batch failed; retrying in %.2g s", delay)
                self._stop.wait(delay)
                continue
            delay, self.interrupted = 0.0, None
            if applied == 0:
                self._wake.wait(poll_interval)
                self._wake.clear()
            elif applied < self.batch_size:
                # Writes arrive one by one (check-ins): let the next batch gather for a
                # moment, so they are applied many to a transaction (a transaction costs
                # ~200 us of the projector's time whatever it holds: bench/README.md).
                self._hurry.wait(LINGER_SECONDS)
                self._hurry.clear()

    def notify(self) -> None:
        """Wake the background projector (e.g. right after a write)."""
        self._wake.set()
        if self._elsewhere is not None:
            self._elsewhere(False)

    def hurry(self) -> None:
        """Wake the background projector and cut its lingering short: a reader waits."""
        self._wake.set()
        self._hurry.set()
        if self._elsewhere is not None:
            self._elsewhere(True)

    def runs_elsewhere(self, wake: Callable[[bool], object] | None) -> None:
        """Pass `notify` and `hurry` on to a projector in another process, as
        `wake(hurry)`; None stops passing them on."""
        self._elsewhere = wake

    def stop(self) -> None:
        """Stop the background thread, finishing the batch in hand."""
        self._stop.set()
        self._wake.set()
        self._hurry.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None


def _tracking(tx: Tx, generation: int, *, lock: bool) -> int:
    suffix = " FOR UPDATE" if lock else ""
    value = tx.scalar(
        f"SELECT position FROM {schema.table(generation, 'tracking')} WHERE name = 'views'{suffix}"
    )
    return int(value or 0)


def _now() -> datetime:
    return datetime.now(UTC)


def _looks_up_readings(rows: list[log_pages.Row]) -> bool:
    corrected = Reading.Corrected.TOPIC
    return any(row[3] == corrected for row in rows)


def rebuild(
    ledger: Ledger, store: ViewStore, progress: Progress | None = None, batch_size: int = 20000
) -> int:
    """Build every read model afresh beside the live ones, then swap them in atomically.

    Returns the new generation. It never sends notifications: it only writes views.
    """
    with store.transaction() as tx:
        schema.ensure_meta(tx)
        generation = schema.next_generation(tx)
        schema.drop_generation(tx, generation)  # leftovers of an interrupted rebuild
    builder = Projector(ledger, store, batch_size=batch_size, generation=generation)
    with store.bulk_load(), _collector_paused():
        first = start = builder.position()
        head = ledger.head_position()
        with closing(read_ahead.pages(ledger, start, head, batch_size)) as pages:
            for page in pages:
                if builder.apply_page(start, page) != len(page.rows):
                    raise RuntimeError(f"generation {generation} was written by someone else")
                start = page.rows[-1][0]
                if progress is not None:
                    progress(start - first, head - first)
        with store.sorting(), store.transaction() as tx:
            schema.create_indexes(tx, generation)
    builder.catch_up()  # what arrived while the indexes were built
    with store.transaction() as tx:
        previous = schema.live_generation(tx)
        schema.make_live(tx, generation)
        tx.execute(f"DELETE FROM {schema.STATUS_TABLE} WHERE generation = ?", (generation,))
    if previous is not None and previous != generation:
        with store.transaction() as tx:
            schema.drop_generation(tx, previous)
    return generation


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a rebuild loads: its pages are millions of
    short-lived tuples, which set off collections (3-4% of the time) and form no cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def view_state(store: ViewStore, generation: int | None = None) -> dict[str, list[Any]]:
    """Every row of every read model (ordered), for comparing live views with a rebuild."""
    with store.read() as tx:
        generation = generation or schema.live_generation(tx)
        assert generation is not None
        return {
            name: sorted(tx.all(f"SELECT * FROM {schema.table(generation, name)}"), key=repr)
            for name in schema.TABLES
            if name != "tracking"
        }
