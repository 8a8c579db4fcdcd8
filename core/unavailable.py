"""Which errors mean "the database cannot serve this right now": unreachable, connection
lost, no pooled connection in time, locked. The caller should try again later (HTTP 503),
rather than treat them as a bug (500) or as an event that cannot be applied."""

from __future__ import annotations

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
