"""The ledger's one write connection to its SQLite file.

SQLite lets one writer in at a time, so a process gains nothing from a pool of write
connections; going through eventsourcing's pool costs a checkout, a context manager
stack and a fresh prepare of each statement (its connections cache one statement),
about a quarter of a single-event command. Here one connection, with its statements
prepared once, takes every write under a lock. It uses the configured
`PRAGMA synchronous`, so a commit is as durable as the setting says before it returns.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import IntegrityError


class SQLiteWriter:
    """Transactions on the ledger's events table, one at a time."""

    def __init__(self, path: str, table: str, synchronous: str, timeout: float = 30) -> None:
        self._connection = sqlite3.connect(
            path, uri=True, check_same_thread=False, isolation_level=None, timeout=timeout
        )
        self._connection.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._lock = threading.Lock()
        self.table = table
        self._insert = f"INSERT INTO {table} VALUES (?, ?, ?, ?)"
        self._max = f"SELECT max(rowid) FROM {table}"

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """A write transaction: committed when the block ends, rolled back if it raises.

        A unique-key violation (a stale version) is eventsourcing's `IntegrityError`.
        """
        with self._lock:
            cursor = self._connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
                cursor.execute("COMMIT")
            except BaseException as error:
                if self._connection.in_transaction:
                    self._connection.rollback()
                if isinstance(error, sqlite3.IntegrityError):
                    raise IntegrityError(error) from error
                raise

    def insert(self, rows: Sequence[tuple[str, int, str, bytes]]) -> tuple[int, int]:
        """Insert (aggregate id as hex, version, topic, state) rows in one transaction;
        their positions are consecutive, from the first returned to the last."""
        with self.transaction() as cursor:
            if len(rows) == 1:
                cursor.execute(self._insert, rows[0])
                last: Any = cursor.lastrowid
            else:
                cursor.executemany(self._insert, rows)
                # The write lock is held: this transaction's rows are the newest rowids.
                last = cursor.execute(self._max).fetchone()[0]
        return last - len(rows) + 1, last

    def synchronous(self) -> int:
        """The connection's `PRAGMA synchronous` (1 NORMAL, 2 FULL)."""
        with self._lock:
            return self._connection.execute("PRAGMA synchronous").fetchone()[0]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._connection.close()
