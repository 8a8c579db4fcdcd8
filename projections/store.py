"""Where read models live: an SQLite file beside the ledger, or the ledger's PostgreSQL database.

One small interface over both so the projector and the queries are written once.
SQL is written with `?` placeholders; the PostgreSQL side rewrites them to `%s`.
Read-model tables carry a generation prefix (`g1_`, `g2_`, …): a rebuild fills a
fresh generation beside the live one and swaps by updating one row.
"""

from __future__ import annotations

import os
import select
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol

import psycopg

from goalledger.core.breaker import Breaker
from goalledger.core.settings import Settings, Storage


class Cursor(Protocol):
    """The part of a DB-API cursor the read models use."""

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchone(self) -> Any: ...


class ViewStore:
    """A connection factory and transaction helper for read-model tables."""

    kind: str

    def transaction(self) -> Any:
        """A context manager yielding a `Tx` that commits on success."""
        raise NotImplementedError

    def read(self) -> Any:
        """A context manager yielding a `Tx` for consistent reads (no writes)."""
        raise NotImplementedError

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Settings for writing many transactions in a row from this thread (a rebuild)."""
        yield

    @contextmanager
    def sorting(self) -> Iterator[None]:
        """Settings for sorting many rows from this thread (a rebuild's indexes)."""
        yield

    def close(self) -> None:
        """Release connections."""


class Tx:
    """One open transaction: execute, executemany and fetch, with `?` placeholders."""

    def __init__(self, cursor: Any, rewrite: bool) -> None:
        self._cursor = cursor
        self._rewrite = rewrite

    @property
    def postgres(self) -> bool:
        """Whether this transaction runs on PostgreSQL (else SQLite)."""
        return self._rewrite

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._rewrite else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Tx:
        self._cursor.execute(self._sql(sql), params)
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cursor.executemany(self._sql(sql), rows)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(self._sql(sql), params)
        return [tuple(row) for row in self._cursor.fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self._cursor.execute(self._sql(sql), params)
        row = self._cursor.fetchone()
        return None if row is None else tuple(row)

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.one(sql, params)
        return None if row is None else row[0]


# Page cache per connection: small for the many readers' threads (their queries are
# indexed), large while a rebuild loads (see `bulk_load`). Bounded, so memory stays flat.
READ_CACHE_KIB = 4 * 1024
VIEW_CACHE_KIB = 64 * 1024
# Readers overlap all the time under load, so SQLite's automatic (passive) checkpoints
# never get to restart the WAL and it grows without end (1.3 GB in a 5-minute soak).
# The projector's commits force one that waits for readers every few seconds instead,
# and the file is cut back to this size afterwards.
CHECKPOINT_SECONDS = 2.0
CHECKPOINT_WAIT_MS = 200
BUSY_TIMEOUT_MS = 30_000
WAL_LIMIT_BYTES = 64 * 1024 * 1024
# WAL pages after which a commit checkpoints by itself (SQLite's default: 1,000). Each
# projector batch dirties hundreds of index pages at random places, so at 1,000 nearly
# every commit checkpointed and synced; the forced RESTART above still bounds the WAL.
AUTOCHECKPOINT_PAGES = 10_000
# WAL pages between checkpoints while a rebuild writes (SQLite's default is 1,000): each
# checkpoint syncs, and copies the last pages of every growing table once more.
BULK_CHECKPOINT_PAGES = 25_000
# Creating an index sorts its table: in runs of this much memory, each on a helper thread.
SORT_CACHE_KIB = 16 * 1024
SORT_THREADS = os.cpu_count() or 1


class SQLiteViewStore(ViewStore):
    """Read models in their own SQLite file, so projection writes never block appends.

    Views can always be rebuilt from the ledger and commit together with their
    tracking position, so they use synchronous=NORMAL: a power cut can only roll
    both back together, never apart.
    """

    kind = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: dict[threading.Thread, sqlite3.Connection] = {}
        self._lock = threading.Lock()
        self._checkpointed = time.monotonic()

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(f"PRAGMA cache_size=-{READ_CACHE_KIB}")
            connection.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            connection.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
            connection.execute("PRAGMA foreign_keys=OFF")
            self._local.connection = connection
            with self._lock:
                _adopt(self._connections, connection)
        return connection

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        connection = self._connection()
        cursor = connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield Tx(cursor, rewrite=False)
        except BaseException:
            connection.rollback()
            raise
        else:
            connection.commit()
            self._checkpoint_now_and_then(connection)
        finally:
            cursor.close()

    def _checkpoint_now_and_then(self, connection: sqlite3.Connection) -> None:
        if getattr(self._local, "bulk", False):
            return  # a rebuild checkpoints on its own schedule
        now = time.monotonic()
        if now - self._checkpointed >= CHECKPOINT_SECONDS:
            self._checkpointed = now
            # Wait a little for readers to move on, never long: a checkpoint that cannot
            # finish now simply tries again next time.
            connection.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
            try:
                connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            finally:
                connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    @contextmanager
    def read(self) -> Iterator[Tx]:
        connection = self._connection()
        cursor = connection.cursor()
        cursor.execute("BEGIN")
        try:
            yield Tx(cursor, rewrite=False)
        finally:
            connection.rollback()
            cursor.close()

    @contextmanager
    def bulk_load(self) -> Iterator[None]:
        """Checkpoint the WAL less often while this thread loads (same durability: a
        checkpoint still syncs the WAL first), and fold it into the file at the end."""
        connection = self._connection()
        (pages,) = connection.execute("PRAGMA wal_autocheckpoint").fetchone()
        connection.execute(f"PRAGMA wal_autocheckpoint={BULK_CHECKPOINT_PAGES}")
        # A rebuild inserts into indexes keyed by random ids (reading keys); with a
        # small cache that turns into disk reads past ~200k events.
        connection.execute(f"PRAGMA cache_size=-{VIEW_CACHE_KIB}")
        self._local.bulk = True
        try:
            yield
        finally:
            self._local.bulk = False
            connection.execute(f"PRAGMA cache_size=-{READ_CACHE_KIB}")
            connection.execute(f"PRAGMA wal_autocheckpoint={int(pages)}")
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")

    @contextmanager
    def sorting(self) -> Iterator[None]:
        """Sort on every core: SQLite's sorter gives sorted runs to helper threads only
        once they outgrow its memory, so that memory is kept small (the rebuild's
        indexes of 1M events: 3.8-4.0 s -> 2.7-3.1 s, and 20 MB less peak RSS)."""
        connection = self._connection()
        (cache,) = connection.execute("PRAGMA cache_size").fetchone()
        connection.execute(f"PRAGMA threads={SORT_THREADS}")
        connection.execute(f"PRAGMA cache_size=-{SORT_CACHE_KIB}")
        try:
            yield
        finally:
            connection.execute("PRAGMA threads=0")
            connection.execute(f"PRAGMA cache_size={int(cache)}")

    def close(self) -> None:
        with self._lock:
            for connection in self._connections.values():
                connection.close()
            self._connections.clear()
        self._local = threading.local()


class PostgresViewStore(ViewStore):
    """Read models in the ledger's PostgreSQL database, one connection per thread."""

    kind = "postgresql"
    breaker: Breaker | None = None  # set by the system: fail at once while the database is down

    def __init__(self, storage: Storage) -> None:
        self.conninfo = psycopg.conninfo.make_conninfo(
            host=storage.host,
            port=storage.port,
            user=storage.user,
            password=storage.password or None,
            dbname=storage.dbname,
            connect_timeout=5,
        )
        self._local = threading.local()
        self._connections: dict[threading.Thread, psycopg.Connection] = {}
        self._lock = threading.Lock()

    def _connection(self) -> psycopg.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is not None and _dropped(connection):
            connection.close()  # the server went away while it sat idle: open a new one
        if connection is None or connection.closed or connection.broken:
            connection = psycopg.connect(self.conninfo, autocommit=True)
            self._local.connection = connection
            with self._lock:
                _adopt(self._connections, connection)
        return connection

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._guarding():
            connection = self._connection()
            with connection.transaction(), connection.cursor() as cursor:
                yield Tx(cursor, rewrite=True)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with self._guarding():
            connection = self._connection()
            with connection.transaction(), connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                yield Tx(cursor, rewrite=True)

    def _guarding(self) -> AbstractContextManager[None]:
        return self.breaker.guarding() if self.breaker is not None else nullcontext()

    def close(self) -> None:
        with self._lock:
            for connection in self._connections.values():
                connection.close()
            self._connections.clear()
        self._local = threading.local()


def _adopt(connections: dict[threading.Thread, Any], connection: Any) -> None:
    """Keep this thread's connection; close those of threads that have ended. A server's
    worker threads come and go: their connections (and page caches) must not pile up."""
    for thread in [thread for thread in connections if not thread.is_alive()]:
        connections.pop(thread).close()
    connections[threading.current_thread()] = connection


def _dropped(connection: psycopg.Connection) -> bool:
    """Whether an idle connection was closed by the other end (a database outage or
    restart): it is then readable (EOF or a termination notice) though nothing was asked."""
    if connection.closed or connection.broken:
        return False
    readable, _, _ = select.select([connection.fileno()], [], [], 0)
    return bool(readable)


def open_view_store(settings: Settings) -> ViewStore:
    """The read-model store that goes with the ledger the settings name."""
    storage = settings.storage()
    if storage.kind == "sqlite":
        path = storage.sibling_path("projections")
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteViewStore(str(path))
    return PostgresViewStore(storage)
