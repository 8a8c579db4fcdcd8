"""Which errors mean "the database cannot serve this right now": unreachable, connection
lost, no pooled connection in time, locked. The caller should try again later (HTTP 503),
rather than treat them as a bug (500) or as an event that cannot be applied."""

from __future__ import annotations

import logging
import sqlite3

import psycopg
from eventsourcing.persistence import ConnectionUnavailableError


class DatabaseDown(Exception):
    """The circuit breaker (core/breaker.py) found the database unreachable: not tried."""


def database_unavailable(error: BaseException | None) -> bool:
    """Whether `error`, or an error that caused it, says the database is unavailable."""
    while error is not None:
        if isinstance(
            error,
            (
                DatabaseDown,
                psycopg.OperationalError,
                psycopg.InterfaceError,
                ConnectionUnavailableError,
            ),
        ):
            return True  # psycopg: connection refused or lost, pool timeout, lock timeout
        if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
            return True  # another process held the SQLite file past the busy timeout
        error = error.__cause__
    return False


class LoopFailures:
    """How a background loop (dispatcher, scheduler, clock) reports a failed round.

    A database outage is one warning when it begins, naming what failed, and one line
    when the database answers again; the rounds in between stay quiet and wait longer
    each time (doubling from `first` to `longest` seconds), so an outage neither floods
    the log with tracebacks nor hammers the database. Any other error is a bug or a bad
    configuration: it is logged with its traceback every time.
    """

    def __init__(
        self, log: logging.Logger, what: str, *, first: float = 0.25, longest: float = 5.0
    ) -> None:
        self.log, self.what = log, what
        self.first, self.longest = first, longest
        self.waiting = 0.0  # the current wait; 0 while the database answers

    def failed(self, error: BaseException) -> float:
        """Log `error` as its kind deserves; return how long to wait before the next round."""
        if not database_unavailable(error):
            self.log.error("%s failed", self.what, exc_info=error)
            return self.longest
        if self.waiting == 0.0:
            self.log.warning(
                "%s: the database is unavailable (%s: %s); retrying quietly until it answers",
                self.what, type(error).__name__, error,
            )  # fmt: skip
        self.waiting = min(self.longest, self.waiting * 2 or self.first)
        return self.waiting

    def succeeded(self) -> None:
        """A round went through: after an outage, say so once."""
        if self.waiting:
            self.log.warning("%s: the database answers again", self.what)
            self.waiting = 0.0
