"""The worker: runs background services (projector, scheduler, alert clock, dispatcher)
while it holds the active lock; several may run, one active and the others on standby.

On PostgreSQL the lock is a session advisory lock (`pg_try_advisory_lock`) on a
connection of its own: when the active worker dies, even by SIGKILL, its connection
closes, the server releases the lock, and a standby takes over at its next poll. On
SQLite it is an exclusive `flock` on a file beside the ledger, which the kernel
releases when the process dies.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import psycopg

from goalledger.core.settings import Settings
from goalledger.core.unavailable import LoopFailures

log = logging.getLogger("goalledger.worker")
# The advisory lock's key: "goalledg" as a 64-bit integer.
LOCK_KEY = int.from_bytes(b"goalledg", "big")


class Service(Protocol):
    """Something the active worker runs in the background."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


class ActiveLock(Protocol):
    """Decides which worker is active."""

    def acquire(self) -> bool:
        """Try once; True when this process holds the lock now."""
        ...

    def holds(self) -> bool:
        """Whether the lock is still held (False: lost, e.g. the connection broke)."""
        ...

    def release(self) -> None: ...


class PostgresLock:
    """A session advisory lock on a dedicated connection."""

    def __init__(self, conninfo: str, key: int = LOCK_KEY) -> None:
        self.conninfo, self.key = conninfo, key
        self._connection: psycopg.Connection[Any] | None = None

    def acquire(self) -> bool:
        try:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(self.conninfo, autocommit=True)
            row = self._connection.execute(
                "SELECT pg_try_advisory_lock(%s)", (self.key,)
            ).fetchone()
        except psycopg.Error as error:
            log.warning("cannot reach PostgreSQL for the worker lock: %s", error)
            self._close()
            return False
        return bool(row and row[0])

    def holds(self) -> bool:
        try:
            assert self._connection is not None
            self._connection.execute("SELECT 1")
        except (psycopg.Error, AssertionError):
            self._close()
            return False
        return True

    def release(self) -> None:
        try:
            if self._connection is not None and not self._connection.closed:
                self._connection.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        except psycopg.Error:
            pass  # closing the session releases it anyway
        self._close()

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None


class FileLock:
    """An exclusive, non-blocking `flock` on a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a")  # noqa: SIM115 - held open while the lock is held
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def holds(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def lock_for(settings: Settings) -> ActiveLock:
    """The active-worker lock that goes with the ledger the settings name."""
    storage = settings.storage()
    if storage.kind == "sqlite":
        return FileLock(storage.sibling_path("worker").with_suffix(".lock"))
    conninfo = psycopg.conninfo.make_conninfo(
        host=storage.host, port=storage.port, user=storage.user,
        password=storage.password or None, dbname=storage.dbname, connect_timeout=5,
    )  # fmt: skip
    return PostgresLock(conninfo)


class Ticker:
    """Calls `function` every `interval` seconds on a daemon thread (a `Service`)."""

    def __init__(self, name: str, function: Callable[[], object], interval: float) -> None:
        self.name, self.function, self.interval = name, function, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _run(self) -> None:
        failures = LoopFailures(log, self.name)
        while not self._stop.is_set():
            try:
                self.function()
                failures.succeeded()
            except Exception as error:  # never let the loop die: log and try at the next tick
                failures.failed(error)
            self._stop.wait(self.interval)


class Worker:
    """Runs `services` while holding `lock`; waits on standby while another worker does."""

    def __init__(
        self,
        services: Sequence[Service],
        lock: ActiveLock,
        *,
        standby_poll: float = 1.0,
        on_state: Callable[[str], None] | None = None,
    ) -> None:
        self.services, self.lock = list(services), lock
        self.standby_poll = standby_poll
        self.on_state = on_state or (lambda state: log.info("worker %s", state))
        self.state = "starting"

    def _become(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.on_state(state)

    def run(self, stop: threading.Event) -> None:
        """Until `stop` is set: be active when the lock can be had, else stand by."""
        try:
            while not stop.is_set():
                if not self.lock.acquire():
                    self._become(f"standby (pid {os.getpid()})")
                    stop.wait(self.standby_poll)
                    continue
                self._become(f"active (pid {os.getpid()})")
                self._run_active(stop)
        finally:
            self._become("stopped")

    def _run_active(self, stop: threading.Event) -> None:
        started: list[Service] = []
        try:
            for service in self.services:
                service.start()
                started.append(service)
            while not stop.wait(self.standby_poll):
                if not self.lock.holds():
                    log.error("lost the worker lock; stopping and standing by")
                    break
        finally:
            for service in reversed(started):
                service.stop()
            self.lock.release()
