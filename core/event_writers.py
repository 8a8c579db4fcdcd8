"""Writing stored events into the ledger's events table: one writer per store.

Both writers put rows into eventsourcing's own table, so the notification log, its
readers and the unique (aggregate id, version) key that makes a stale write a
conflict are the library's. They skip its per-event objects and round trips:

- `insert`: a command's events, atomically; a stale version is eventsourcing's
  `IntegrityError` and nothing is written. `submit` is the same without waiting (a
  future), for the event loop; a command it queues may follow another queued one
  (decided on that one's uncommitted state), and is refused if that one was.
- `insert_new`: first events of new readings, each with a new time-ordered id and a
  name (KPI and reading id) it claims in the reading-name table, 500 rows to a
  statement in one transaction; a row whose name is held already records nothing, the
  writer reports which rows it skipped, and every new row commits or none does. The
  ids append at the end of the events table's key, so a batch touches a few index
  pages where ids derived from the names (random) touched one page a row.
- `prepare_reading_names` makes the reading-name table, once per database, naming the
  readings recorded before it (older ledgers keyed readings by a hash of the name).

On SQLite one connection takes every write under a lock: SQLite lets one writer in at
a time anyway, and eventsourcing's pool costs a checkout and a fresh prepare of each
statement (its connections cache one), about a quarter of a single-event command. It
uses the configured `PRAGMA synchronous`, so a commit is as durable as the setting
says before it returns. Commands that arrive while a commit is under way share the
next one (group commit), led by a waiting caller or by the writer's committer thread:
with `synchronous=FULL` a commit waits for the disk, and one wait then acknowledges
every command in the group. A group is one multi-row INSERT, its own transaction; if
the database refuses it, nothing of it was written and the group is tried again
command by command under savepoints, so a stale command is refused alone.

On PostgreSQL each write is one call of a function in the database that takes the
table lock eventsourcing's inserts take, so commit order is the order of notification
ids.
"""

from __future__ import annotations

import functools
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import msgspec
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError
from eventsourcing.utils import retry
from psycopg.sql import SQL, Identifier

log = logging.getLogger(__name__)

# Rows per INSERT statement (SQLite allows 32,766 parameters a statement): new readings
# take 3 parameters each, a group commit's rows 4.
NEW_ROWS_PER_STATEMENT = 500
ROWS_PER_STATEMENT = 2000

# Reading names (`kpis.reading_name`) to the id of the reading that holds each.
READING_NAMES = "reading_names"
BACKFILL_ROWS = 5000  # held readings named per step when the table is made

# PostgreSQL writes, as eventsourcing's recorder retries them.
WRITE_ATTEMPTS = 10
RETRY_WAIT_SECONDS = 0.2

Row = tuple[str, int, str, bytes]  # aggregate id (32 hex digits), version, topic, state
Committed = Callable[[int, int], None]  # told the positions of a command's rows once committed
# Stored (aggregate id, state) of held readings -> (name, aggregate id) of each.
Namer = Callable[[Sequence[tuple[Any, bytes]]], list[tuple[str, Any]]]


class Appended(msgspec.Struct, frozen=True):
    """What `insert_new` did: the aggregate ids it skipped (32 hex digits, their names
    held already) and the positions of the rows it inserted (None when it inserted
    nothing)."""

    skipped: frozenset[str]
    first: int | None
    last: int | None


NOTHING = Appended(skipped=frozenset(), first=None, last=None)


def _follows_refused(command: _Command, refused_here: Sequence[Future[Any]]) -> bool:
    """Whether the command was decided on one that was refused: earlier (its future
    holds the error) or in this group so far (`refused_here`)."""
    after = command.after
    if after is None:
        return False
    if any(after is future for future in refused_here):
        return True
    return after.done() and after.exception() is not None


def write_future() -> Future[Any]:
    """A future for a queued write. It cannot be cancelled: once queued, the write
    commits or fails on its own; a caller that stops waiting only drops the answer."""
    future: Future[Any] = Future()
    future.set_running_or_notify_cancel()
    return future


class _Command:
    """One command's rows waiting for a group commit, and how it ended."""

    __slots__ = ("after", "done", "error", "future", "on_commit", "rows", "span")

    def __init__(
        self,
        rows: Sequence[Row],
        on_commit: Committed | None,
        future: Future[Any] | None = None,
        after: Future[Any] | None = None,
    ) -> None:
        self.rows = rows
        self.on_commit = on_commit
        self.future = future  # set for queued commands: resolved by whoever commits them
        self.after = after  # the queued command this one was decided on top of
        self.span: tuple[int, int] = (0, 0)
        self.error: BaseException | None = None
        self.done = False

    def outcome(self) -> tuple[int, int]:
        if self.error is not None:
            raise self.error
        return self.span

    def finish(self) -> None:
        self.done = True
        if self.future is not None:
            if self.error is not None:
                self.future.set_exception(self.error)
            else:
                self.future.set_result(self.span)


class SQLiteWriter:
    """Transactions on the SQLite events table, one at a time."""

    def __init__(self, path: str, table: str, synchronous: str, timeout: float = 30) -> None:
        self._connection = sqlite3.connect(
            path, uri=True, check_same_thread=False, isolation_level=None, timeout=timeout
        )
        self._connection.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._lock = threading.Lock()
        # Group commit: commands queue here; the first to find no commit under way
        # leads one transaction for everything queued, the others wait for it. Queued
        # commands (`submit`, from code that must not block) are led by a committer
        # thread of the writer's own when no caller is leading.
        self._queue: list[_Command] = []
        self._turn = threading.Condition(threading.Lock())
        self._leading = False
        self._committer: threading.Thread | None = None
        self._closed = False
        self._table = table
        self._insert = f"INSERT INTO {table} VALUES (?, ?, ?, ?)"
        self._max = f"SELECT max(rowid) FROM {table}"

    def insert(self, rows: Sequence[Row], on_commit: Committed | None = None) -> tuple[int, int]:
        """Insert one command's rows atomically; their positions run from first to last.

        The command may share its transaction with others queued at the same moment;
        it returns once that transaction has committed. `on_commit(first, last)` runs
        before anything later is committed, in commit order (the ledger's cache keeps
        its place in the log that way).
        """
        command = _Command(rows, on_commit)
        with self._turn:
            self._queue.append(command)
            while self._leading and not command.done:
                self._turn.wait()
            if command.done:
                return command.outcome()
            self._leading = True
            group, self._queue = self._queue, []
        self._lead(group)
        return command.outcome()

    def submit(
        self,
        rows: Sequence[Row],
        on_commit: Committed | None = None,
        after: Future[tuple[int, int]] | None = None,
    ) -> Future[tuple[int, int]]:
        """`insert` without waiting: the future gives the positions once committed (or
        the error that refused the rows). For an event loop, which must not block.

        `after`: the future of a command submitted earlier that these rows were decided
        on (its events are their predecessors, not yet committed). If that command is
        refused, so is this one, with `IntegrityError`, and nothing of it is written:
        commands commit in the order they were queued, so its fate is known by then."""
        future: Future[tuple[int, int]] = write_future()
        command = _Command(rows, on_commit, future, after)
        with self._turn:
            if self._closed:
                raise InterfaceError("the ledger's writer is closed")
            if self._committer is None or not self._committer.is_alive():
                self._committer = threading.Thread(
                    target=self._commit_queued, name="goalledger-committer", daemon=True
                )
                self._committer.start()
            self._queue.append(command)
            self._turn.notify_all()
        return future

    def _commit_queued(self) -> None:
        """The committer: lead a commit whenever commands wait and no one is leading."""
        while True:
            with self._turn:
                while not self._closed and (self._leading or not self._queue):
                    self._turn.wait()
                if self._closed and not self._queue:
                    return
                self._leading = True
                group, self._queue = self._queue, []
            try:
                self._lead(group)
            except BaseException:  # each command of the group holds its error
                log.debug("queued commit failed", exc_info=True)

    def _lead(self, group: list[_Command]) -> None:
        try:
            self._commit(group)
        finally:
            with self._turn:
                self._leading = False
                self._turn.notify_all()

    def _commit(self, group: list[_Command]) -> None:
        """One transaction for the group; a command the database refuses is undone alone."""
        try:
            spans = None
            if not any(_follows_refused(command, ()) for command in group):
                spans = self._insert_together(group)
            if spans is None:  # something was refused: command by command, to find it
                with self._transaction() as cursor:
                    spans = self._insert_commands(cursor, group)
        except BaseException as error:
            for command in group:
                command.error = error
                command.finish()
            raise
        for command, span in zip(group, spans, strict=True):
            if isinstance(span, BaseException):
                command.error = span
            else:
                command.span = span
        try:
            for command in group:
                if command.error is None and command.on_commit is not None:
                    try:
                        command.on_commit(*command.span)
                    except Exception:  # the rows are committed: the command succeeded
                        log.exception("after committing positions %d..%d", *command.span)
                command.finish()
        finally:  # a hook that raised past Exception leaves no caller waiting forever
            for command in group:
                if not command.done:
                    command.finish()

    def _insert_together(self, group: list[_Command]) -> list[Any] | None:
        """The usual case in one step: every row of the group in one INSERT, which is its
        own transaction (the connection autocommits). Each SQLite call lets go of the
        GIL and must win it back from the busy event loop, so one call, not one per row
        plus BEGIN and COMMIT, is what keeps a group commit short. None when the
        database refused the statement: nothing of it was written."""
        rows = [row for command in group for row in command.rows]
        if len(rows) > ROWS_PER_STATEMENT:
            return None
        values = [value for row in rows for value in row]
        with self._lock:
            cursor = self._connection.cursor()
            try:
                cursor.execute(_insert_rows(self._table, len(rows)), values)
            except sqlite3.Error:
                return None
            last: int = cursor.lastrowid  # type: ignore[assignment]
        # The statement held the write lock: its rows took consecutive rowids, in order.
        spans: list[Any] = []
        first = last - len(rows) + 1
        for command in group:
            spans.append((first, first + len(command.rows) - 1))
            first += len(command.rows)
        return spans

    def _insert_commands(
        self, cursor: sqlite3.Cursor, group: list[_Command]
    ) -> list[tuple[int, int] | BaseException]:
        """Each command of the group in turn; one that follows a command refused (in
        this group or before it) is refused without being tried."""
        spans: list[tuple[int, int] | BaseException] = []
        refused: list[Future[Any]] = []
        for command in group:
            if _follows_refused(command, refused):
                span: tuple[int, int] | BaseException = IntegrityError(
                    "refused: it was decided on a queued command that was refused"
                )
            else:
                span = self._insert_command(cursor, command.rows)
            if isinstance(span, BaseException) and command.future is not None:
                refused.append(command.future)
            spans.append(span)
        return spans

    def _insert_command(
        self, cursor: sqlite3.Cursor, rows: Sequence[Row]
    ) -> tuple[int, int] | BaseException:
        """Insert one command's rows; what refused them is returned, not raised, so the
        rest of the group can commit. A failed INSERT undoes only itself; several rows
        take a savepoint to be undone together."""
        savepoint = len(rows) > 1
        if savepoint:
            cursor.execute("SAVEPOINT command")
        try:
            if len(rows) == 1:
                cursor.execute(self._insert, rows[0])
                last: Any = cursor.lastrowid
            else:
                cursor.executemany(self._insert, rows)
                # The write lock is held: this command's rows are the newest rowids,
                # numbered one after another (SQLite gives a new row max(rowid) + 1).
                last = cursor.execute(self._max).fetchone()[0]
        except sqlite3.Error as error:
            if not self._connection.in_transaction:
                raise  # SQLite ended the transaction: nothing of the group stands
            if savepoint:
                cursor.execute("ROLLBACK TO command")
                cursor.execute("RELEASE command")
            return IntegrityError(error) if isinstance(error, sqlite3.IntegrityError) else error
        if savepoint:
            cursor.execute("RELEASE command")
        return last - len(rows) + 1, last

    def insert_new(
        self, topic: str, names: Sequence[str], keys: Sequence[str], states: Sequence[bytes]
    ) -> Appended:
        """Insert version-1 events of `topic` with new ids `keys`, in order, skipping the
        rows whose names are held already."""
        if not keys:
            return NOTHING
        with self._transaction() as cursor:
            claimed: set[str] = set()
            for chunk in _chunks(len(keys), NEW_ROWS_PER_STATEMENT):
                values = [v for i in chunk for v in (names[i], keys[i])]
                claimed.update(row[0] for row in cursor.execute(_claim_rows(len(chunk)), values))
            if not claimed:
                return Appended(skipped=frozenset(keys), first=None, last=None)
            new = [i for i, key in enumerate(keys) if key in claimed]
            for chunk in _chunks(len(new), NEW_ROWS_PER_STATEMENT):
                values = [v for i in chunk for v in (keys[new[i]], topic, states[new[i]])]
                cursor.execute(_insert_new_rows(self._table, len(chunk)), values)
            last = cursor.execute(self._max).fetchone()[0]
        skipped = frozenset(keys) - claimed if len(new) < len(keys) else frozenset()
        return Appended(skipped=skipped, first=last - len(new) + 1, last=last)

    def prepare_reading_names(self, topic: str, names_of: Namer) -> int:
        """Make the reading-name table if the database has none, naming every reading
        of `topic` held already, in the same transaction (so another process sees no
        table or a full one); returns how many it named. Usually the table is there: a
        plain read says so, without taking the write lock every open would wait for."""
        held = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        with self._lock:
            if self._connection.execute(held, (READING_NAMES,)).fetchone():
                return 0
        with self._transaction() as cursor:
            if cursor.execute(held, (READING_NAMES,)).fetchone():
                return 0  # another process made it meanwhile
            cursor.execute(
                f"CREATE TABLE {READING_NAMES} (name TEXT PRIMARY KEY,"
                " originator_id TEXT NOT NULL) WITHOUT ROWID"
            )
            return self.name_held_readings(cursor, topic, names_of)

    def name_held_readings(self, cursor: Any, topic: str, names_of: Namer) -> int:
        """Name the readings of `topic` the events table holds, in `cursor`'s transaction
        (the table being empty of them: a new table, or a ledger just imported)."""
        select = (
            f"SELECT rowid, originator_id, state FROM {self._table}"
            " WHERE rowid > ? AND topic = ? AND originator_version = 1 ORDER BY rowid LIMIT ?"
        )
        named, after = 0, 0
        while True:
            cursor.execute(select, (after, topic, BACKFILL_ROWS))
            rows = cursor.fetchall()
            if not rows:
                return named
            after = rows[-1][0]
            pairs = names_of([(row[1], row[2]) for row in rows])
            cursor.executemany(f"INSERT INTO {READING_NAMES} VALUES (?, ?)", pairs)
            named += len(pairs)

    def named(self, name: str) -> str | None:
        """The aggregate id (32 hex digits) of the reading called `name`, if held."""
        with self._lock:
            row = self._connection.execute(
                f"SELECT originator_id FROM {READING_NAMES} WHERE name = ?", (name,)
            ).fetchone()
        return row[0] if row else None

    def synchronous(self) -> int:
        """The connection's `PRAGMA synchronous` (1 NORMAL, 2 FULL)."""
        with self._lock:
            return self._connection.execute("PRAGMA synchronous").fetchone()[0]

    def close(self) -> None:
        """Commit what is queued, stop the committer, close the connection."""
        with self._turn:
            self._closed = True
            self._turn.notify_all()
        if self._committer is not None:
            self._committer.join(timeout=30)
        with self._lock:
            self._connection.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """Committed when the block ends, rolled back if it raises."""
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


class PostgresWriter:
    """Writes through two functions in the database: one round trip per write.

    Each takes the table lock eventsourcing's inserts take, so commit order is the order
    of notification ids (a reader tailing the log never passes a gap that a slower
    transaction fills later), sends NOTIFY (delivered on commit) and returns one
    summary row. Arrays go as text literals: PostgreSQL parses them in C, where the
    pure-Python driver would adapt thousands of values one by one.
    """

    def __init__(self, recorder: Any) -> None:
        self._recorder = recorder
        datastore = recorder.datastore
        table = SQL("{}.{}").format(
            Identifier(datastore.schema), Identifier(recorder.events_table_name)
        )
        name = recorder.events_table_name
        self._table = table
        self._names_table = SQL("{}.{}").format(
            Identifier(datastore.schema), Identifier(READING_NAMES)
        )
        insert_fn = SQL("{}.{}").format(Identifier(datastore.schema), Identifier(f"{name}_insert"))
        insert_new_fn = SQL("{}.{}").format(
            Identifier(datastore.schema), Identifier(f"{name}_insert_new")
        )
        prologue = SQL(
            "SET LOCAL lock_timeout = '{timeout}s';"
            " LOCK TABLE {table} IN EXCLUSIVE MODE;"
            " NOTIFY {channel};"
        ).format(
            timeout=SQL(str(int(datastore.lock_timeout))),
            table=table,
            channel=Identifier(recorder.channel_name),
        )
        summary = SQL(" SELECT count(*), min(notification_id), max(notification_id) FROM inserted;")
        self._functions = [
            SQL(
                "CREATE OR REPLACE FUNCTION {fn}(ids uuid[], versions bigint[], topics text[],"
                " states bytea[]) RETURNS TABLE (n bigint, first bigint, last bigint)"
                " LANGUAGE plpgsql AS $body$ BEGIN {prologue}"
                " RETURN QUERY WITH inserted AS ("
                " INSERT INTO {table} (originator_id, originator_version, topic, state)"
                " SELECT r.id, r.version, r.topic, r.state"
                " FROM unnest(ids, versions, topics, states)"
                " WITH ORDINALITY AS r(id, version, topic, state, k)"
                " ORDER BY r.k RETURNING notification_id){summary} END $body$"
            ).format(fn=insert_fn, prologue=prologue, table=table, summary=summary),
            # Before reading names, readings were keyed by their names' hash.
            SQL("DROP FUNCTION IF EXISTS {fn}(text, uuid[], bytea[])").format(fn=insert_new_fn),
            SQL(
                "CREATE OR REPLACE FUNCTION {fn}(new_topic text, names bytea[], ids uuid[],"
                " states bytea[]) RETURNS TABLE (n bigint, first bigint, last bigint)"
                " LANGUAGE plpgsql AS $body$ BEGIN {prologue}"
                " RETURN QUERY WITH claimed AS ("
                " INSERT INTO {names_table} (name, originator_id)"
                " SELECT * FROM unnest(names, ids) ON CONFLICT DO NOTHING"
                " RETURNING originator_id), inserted AS ("
                " INSERT INTO {table} (originator_id, originator_version, topic, state)"
                " SELECT r.id, 1, new_topic, r.state"
                " FROM unnest(ids, states) WITH ORDINALITY AS r(id, state, k)"
                # Rows whose names are held are left out before they draw a notification
                # id (no gaps); the table lock keeps the claim true until commit.
                " WHERE r.id IN (SELECT originator_id FROM claimed)"
                " ORDER BY r.k RETURNING notification_id){summary}"
                " END $body$"
            ).format(
                fn=insert_new_fn,
                prologue=prologue,
                table=table,
                summary=summary,
                names_table=self._names_table,
            ),
        ]
        self._insert = SQL(
            "SELECT * FROM {fn}(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[])"
        ).format(fn=insert_fn)
        self._insert_new = SQL(
            "SELECT * FROM {fn}(%s, %s::bytea[], %s::uuid[], %s::bytea[])"
        ).format(fn=insert_new_fn)
        # After commit the ids first..last stay this insert's: they were drawn under the lock.
        self._inserted_ids = SQL(
            "SELECT replace(originator_id::text, '-', '') AS id FROM {table}"
            " WHERE notification_id BETWEEN %s AND %s"
        ).format(table=table)
        self._held_rows = SQL(
            "SELECT t.notification_id, t.topic, t.state FROM {table} AS t"
            " JOIN unnest(%s::uuid[], %s::bigint[]) WITH ORDINALITY AS r(id, version, k)"
            " ON t.originator_id = r.id AND t.originator_version = r.version ORDER BY r.k"
        ).format(table=table)
        self._create_functions()

    def insert(self, rows: Sequence[Row], on_commit: Committed | None = None) -> tuple[int, int]:
        """Insert rows in one transaction; their positions run from first to last.

        As eventsourcing's recorder, a dropped connection or a lock timeout is retried.
        A connection can drop after the commit, before its answer arrives: the retry
        then finds its own rows in place (a unique-key violation). Those rows, same
        aggregate, version, topic and bytes, are this write's, so it reports them
        rather than a conflict, which a caller would answer by appending the change
        a second time.
        """
        params = (
            _array(row[0] for row in rows),
            _array(str(row[1]) for row in rows),
            _array(_quoted(row[2]) for row in rows),
            _bytea_array(row[3] for row in rows),
        )
        uncertain = False  # a try failed with no answer: it may have committed
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                summary = self._call(self._insert, params)
                break
            except IntegrityError:
                landed = self._landed(rows) if uncertain else None
                if landed is None:
                    raise
                summary = landed
                break
            except (InterfaceError, OperationalError):
                if attempt == WRITE_ATTEMPTS:
                    raise
                uncertain = True
                time.sleep(RETRY_WAIT_SECONDS * random.uniform(0.95, 1.05))
        if on_commit is not None:
            on_commit(summary["first"], summary["last"])
        return summary["first"], summary["last"]

    def _landed(self, rows: Sequence[Row]) -> dict[str, int] | None:
        """The positions of `rows` if the log holds exactly them (None otherwise)."""
        ids = _array(row[0] for row in rows)
        versions = _array(str(row[1]) for row in rows)
        with self._recorder.datastore.get_connection() as conn:
            found = conn.execute(self._held_rows, (ids, versions)).fetchall()
        if [(f["topic"], bytes(f["state"])) for f in found] != [(r[2], r[3]) for r in rows]:
            return None
        positions = [f["notification_id"] for f in found]
        return {"n": len(rows), "first": positions[0], "last": positions[-1]}

    # Readings are idempotent by name: a retry after a lost answer reports them held.
    @retry((InterfaceError, OperationalError), max_attempts=WRITE_ATTEMPTS, wait=RETRY_WAIT_SECONDS)
    def insert_new(
        self, topic: str, names: Sequence[str], keys: Sequence[str], states: Sequence[bytes]
    ) -> Appended:
        """Insert version-1 events of `topic` with new ids `keys`, in order, skipping the
        rows whose names are held already."""
        if not keys:
            return NOTHING
        params = (
            topic,
            _bytea_array(n.encode() for n in names),
            _array(keys),
            _bytea_array(states),
        )
        summary = self._call(self._insert_new, params)
        if summary["n"] == 0:
            return Appended(skipped=frozenset(keys), first=None, last=None)
        skipped: frozenset[str] = frozenset()
        if summary["n"] < len(keys):
            with self._recorder.datastore.get_connection() as conn:
                rows = conn.execute(self._inserted_ids, (summary["first"], summary["last"]))
                skipped = frozenset(keys) - {row["id"] for row in rows}
        return Appended(skipped=skipped, first=summary["first"], last=summary["last"])

    def prepare_reading_names(self, topic: str, names_of: Namer) -> int:
        """Make the reading-name table if the database has none, naming every reading
        of `topic` held already, in the same transaction (writers wait for it: it holds
        the events table in SHARE mode); returns how many it named."""
        with self._recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('goalledger_reading_names'))")
            cursor.execute(
                "SELECT to_regclass(%s) IS NOT NULL AS found",
                (f"{self._recorder.datastore.schema}.{READING_NAMES}",),
            )
            named = 0
            if not cursor.fetchone()["found"]:
                cursor.execute(SQL("LOCK TABLE {} IN SHARE MODE").format(self._table))
                cursor.execute(
                    SQL("CREATE TABLE {} (name bytea PRIMARY KEY, originator_id uuid NOT NULL)")
                    .format(self._names_table)
                )  # fmt: skip
                named = self.name_held_readings(cursor, topic, names_of)
        return named

    def name_held_readings(self, cursor: Any, topic: str, names_of: Namer) -> int:
        """Name the readings of `topic` the events table holds, in `cursor`'s transaction
        (the table being empty of them: a new table, or a ledger just imported)."""
        select = SQL(
            "SELECT notification_id, originator_id, state FROM {} WHERE notification_id > %s"
            " AND topic = %s AND originator_version = 1 ORDER BY notification_id LIMIT %s"
        ).format(self._table)
        insert = SQL("INSERT INTO {} SELECT * FROM unnest(%s::bytea[], %s::uuid[])").format(
            self._names_table
        )
        named, after = 0, 0
        while rows := cursor.execute(select, (after, topic, BACKFILL_ROWS)).fetchall():
            after = rows[-1]["notification_id"]
            pairs = names_of([(row["originator_id"], bytes(row["state"])) for row in rows])
            names = _bytea_array(name.encode() for name, _ in pairs)
            cursor.execute(insert, (names, _array(str(key) for _, key in pairs)))
            named += len(pairs)
        return named

    def named(self, name: str) -> str | None:
        """The aggregate id (32 hex digits) of the reading called `name`, if held."""
        select = SQL("SELECT originator_id FROM {} WHERE name = %s").format(self._names_table)
        with self._recorder.datastore.get_connection() as conn:
            row = conn.execute(select, (name.encode(),)).fetchone()
        return row["originator_id"].hex if row else None

    def _call(self, statement: Any, params: tuple[Any, ...]) -> Any:
        with self._recorder.datastore.get_connection() as conn:
            return conn.execute(statement, params, prepare=True).fetchone()

    def _create_functions(self) -> None:
        """(Re)define the functions; an advisory lock keeps starting processes apart."""
        with self._recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('goalledger_event_writers'))")
            for statement in self._functions:
                cursor.execute(statement)


@functools.lru_cache(maxsize=256)
def _insert_rows(table: str, rows: int) -> str:
    """One INSERT of `rows` whole rows (a group commit's)."""
    return f"INSERT INTO {table} VALUES {', '.join(['(?, ?, ?, ?)'] * rows)}"


@functools.lru_cache(maxsize=256)
def _insert_new_rows(table: str, rows: int) -> str:
    """One statement for `rows` new rows: SQLite steps it once, where `executemany` steps
    once per row and lets go of the GIL each time (beside a busy thread, such as the
    projector's, each of those waits to get it back: ~2x slower per row)."""
    return f"INSERT INTO {table} VALUES {', '.join(['(?, 1, ?, ?)'] * rows)}"


@functools.lru_cache(maxsize=256)
def _claim_rows(rows: int) -> str:
    """Claim `rows` reading names; answers the ids of the rows whose names were free."""
    values = ", ".join(["(?, ?)"] * rows)
    return (
        f"INSERT INTO {READING_NAMES} VALUES {values}"
        " ON CONFLICT DO NOTHING RETURNING originator_id"
    )


def _chunks(count: int, size: int) -> Iterator[range]:
    """Indexes 0..count-1 in runs of at most `size`."""
    return (range(start, min(start + size, count)) for start in range(0, count, size))


def _array(items: Any) -> str:
    return "{" + ",".join(items) + "}"


def _bytea_array(states: Any) -> str:
    return "{" + ",".join(["\\\\x" + state.hex() for state in states]) + "}"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
