"""A circuit breaker for the PostgreSQL ledger: while the database is unreachable, calls
fail at once (`DatabaseDown`, answered 503) instead of each waiting for a pooled
connection ten times over (eventsourcing retries every recorder call).

A connection failure (refused, lost, no pooled connection in time) only makes the
breaker suspect an outage: it then probes the database on a short-lived connection of
its own, `SELECT 1` with bounded timeouts, from a thread of its own. Only a failed probe
opens it, so a pool drained by a burst of requests (the server still answers) never
does. While open it probes every `PROBE_INTERVAL_SECONDS` and closes on the first
answer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from goalledger.core.settings import Storage
from goalledger.core.unavailable import DatabaseDown, database_unavailable

log = logging.getLogger(__name__)
PROBE_INTERVAL_SECONDS = 1.0
PROBE_TIMEOUT_SECONDS = 1  # libpq's connect_timeout: whole seconds
TOO_MANY_CONNECTIONS = "53300"  # the server answers, busy: not an outage


class Breaker:
    """Open while probes find the database unreachable; one per process."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._open = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._probing = False

    @classmethod
    def for_storage(cls, storage: Storage) -> Breaker:
        """A breaker probing the PostgreSQL database that `storage` names."""
        return cls(
            psycopg.conninfo.make_conninfo(
                host=storage.host, port=storage.port, user=storage.user,
                password=storage.password or None, dbname=storage.dbname,
                connect_timeout=PROBE_TIMEOUT_SECONDS,
                options=f"-c statement_timeout={PROBE_TIMEOUT_SECONDS * 1000}",
            )
        )  # fmt: skip

    @property
    def is_open(self) -> bool:
        """Whether the last probe found the database unreachable."""
        return self._open.is_set()

    @property
    def probing(self) -> bool:
        """Whether a probe is under way (it started before the failure was raised)."""
        return self._probing

    @contextmanager
    def guarding(self) -> Iterator[None]:
        """Fail at once while open; suspect an outage when the block's database fails."""
        if self._open.is_set():
            raise DatabaseDown("the database is unreachable (a probe found it down)")
        try:
            yield
        except Exception as error:
            if database_unavailable(error):
                self.suspect()
            raise

    def suspect(self) -> None:
        """A connection failed: probe the database unless a probe is under way."""
        with self._lock:
            if self._probing or self._stopped.is_set():
                return
            self._probing = True
        threading.Thread(target=self._probe_until_reachable, name="db-breaker", daemon=True).start()

    def reachable(self) -> bool:
        """Whether a fresh connection to the database answers `SELECT 1`."""
        try:
            with psycopg.connect(self._conninfo, autocommit=True) as connection:
                connection.execute("SELECT 1")
        except psycopg.Error as error:
            return error.sqlstate == TOO_MANY_CONNECTIONS
        return True

    def close(self) -> None:
        """Stop probing."""
        self._stopped.set()

    def _probe_until_reachable(self) -> None:
        try:
            while not self._stopped.is_set():
                if self.reachable():
                    if self._open.is_set():
                        log.warning("database reachable again: breaker closed")
                    self._open.clear()
                    return
                if not self._open.is_set():
                    log.warning("database unreachable: breaker open, probing every %g s",
                                PROBE_INTERVAL_SECONDS)  # fmt: skip
                self._open.set()
                self._stopped.wait(PROBE_INTERVAL_SECONDS)
        finally:
            with self._lock:
                self._probing = False


def guard_datastore(datastore: Any, breaker: Breaker) -> None:
    """Route every connection of eventsourcing's PostgreSQL datastore (its recorders'
    and the ledger's writer's) through `breaker`. `DatabaseDown` is not one of the
    errors eventsourcing retries, so an open breaker costs a call nothing."""
    get_connection = datastore.get_connection

    @contextmanager
    def guarded_connection() -> Iterator[Any]:
        with breaker.guarding(), get_connection() as connection:
            yield connection

    datastore.get_connection = guarded_connection
