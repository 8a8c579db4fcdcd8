"""The ledger's foundation: one eventsourcing Application, its storage and its writes.

One application means one notification log, so every event in goalledger has one
global position. This module holds what every command shares: loading aggregates,
recording events (a conflict when stale), and reading the log back in bulk.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any, TypeVar
from uuid import UUID

import msgspec
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, Mapper, Notification
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import Environment

from goalledger.core.aggregate_cache import LogTailCache
from goalledger.core.errors import Conflict, NotFound
from goalledger.core.event_writers import PostgresWriter, SQLiteWriter, write_future
from goalledger.core.mapper import MsgspecMapper
from goalledger.core.model import LedgerAggregate
from goalledger.core.settings import Settings

A = TypeVar("A", bound=LedgerAggregate)
# Ids `require_exists` remembers before it starts afresh.
FOUND_IDS = 100_000


class Unchanged(enum.Enum):
    """Marks an optional argument that was not given (None has a meaning of its own)."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED


class Written(msgspec.Struct, frozen=True):
    """Where a command's events landed: the aggregate, its new version, the log position."""

    id: UUID
    version: int
    position: int


class LedgerBase(Application[UUID]):
    """Storage, loading and recording; the commands live in mixins (see `Ledger`)."""

    name = "goalledger"

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        storage = self.settings.storage()
        env = storage.eventsourcing_env(self.settings)
        self._cache: LogTailCache | None = None
        self._found: set[tuple[UUID, type]] = set()
        self._append_locks = tuple(threading.Lock() for _ in range(_APPEND_LOCK_STRIPES))
        # Aggregates with queued, uncommitted events: their state after those events and
        # the newest queued commit (the committer thread drops an entry once it ends).
        self._queued: dict[UUID, tuple[LedgerAggregate, Future[tuple[int, int]]]] = {}
        self._queued_lock = threading.Lock()
        self._writer: SQLiteWriter | PostgresWriter
        if storage.kind == "sqlite":
            # On SQLite the ledger keeps its own cache, fresh from the log's tail.
            env = {k: v for k, v in env.items() if k not in _EVENTSOURCING_CACHE_KEYS}
        super().__init__(env=env)
        if storage.kind == "sqlite":
            _set_sqlite_synchronous(self, self.settings.sqlite_synchronous)
            table = self.recorder.events_table_name  # type: ignore[attr-defined]
            self._writer = SQLiteWriter(storage.path, table, self.settings.sqlite_synchronous)
            if self.settings.aggregate_cache_size > 0:
                self._cache = LogTailCache(
                    storage.path,
                    table,
                    self.mapper.to_domain_event,
                    self.settings.aggregate_cache_size,
                )
        else:
            self._writer = PostgresWriter(self.recorder)

    def close(self) -> None:
        """Close the store and the ledger's own SQLite connections."""
        if self._cache is not None:
            self._cache.close()
        if isinstance(self._writer, SQLiteWriter):
            self._writer.close()
        super().close()

    def construct_env(self, name: str, env: Any = None) -> Any:
        """Only the environment goalledger derives from its settings.

        eventsourcing would merge `os.environ`, where `GOALLEDGER_*` keys (this
        application's prefix) could silently override the database the URL chose.
        """
        return Environment(name, dict(env or {}))

    def construct_mapper(self) -> Mapper[UUID]:
        """Use msgspec, keeping any cipher or compressor the environment configures."""
        return MsgspecMapper(
            transcoder=None, cipher=self.factory.cipher(), compressor=self.factory.compressor()
        )

    # -- reading the ledger ----------------------------------------------------------

    def load(
        self,
        aggregate_id: UUID,
        kind: type[A],
        field: str = "id",
        *,
        just_read: bool = False,
        staleness: float = 0.0,
    ) -> A:
        """The current state of one aggregate of the given kind, or `NotFound` naming `field`.

        `just_read`: the command read the log a moment ago (loading another aggregate),
        so the cache need not ask it again whether anything changed since. `staleness`:
        the cache need not ask if it asked less than that many seconds ago.
        """
        if self._cache is not None:
            aggregate = self._cache.get(aggregate_id, catch_up=not just_read, staleness=staleness)
        else:
            try:
                aggregate = self.repository.get(aggregate_id, projector_func=_replay)
            except AggregateNotFoundError:
                aggregate = None
        if not isinstance(aggregate, kind):
            raise NotFound(field, f"no {_label(kind)} with id {aggregate_id}")
        return aggregate

    def require_exists(self, aggregate_id: UUID, kind: type[A], field: str) -> None:
        """Refuse an id that is not a `kind` (`NotFound` naming `field`).

        Aggregates are never deleted and never change kind, so an id found once is not
        looked up again (bulk ingestion checks its KPIs with each batch).
        """
        if (aggregate_id, kind) in self._found:
            return
        self.load(aggregate_id, kind, field)
        if len(self._found) >= FOUND_IDS:
            self._found.clear()
        self._found.add((aggregate_id, kind))

    def head_position(self) -> int:
        """The position of the newest event in the log (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    def notifications(
        self,
        after: int = 0,
        *,
        batch: int = 1000,
        stop: int | None = None,
        topics: Sequence[str] = (),
    ) -> Iterator[Notification]:
        """Stored notifications after `after`, in order, read in batches (never all at once);
        only those of `topics` when given (the database filters them)."""
        position = after
        while True:
            page = self.recorder.select_notifications(
                position, batch, stop=stop, topics=topics, inclusive_of_start=False
            )
            yield from page
            if len(page) < batch:
                return
            position = page[-1].id

    def notification_rows(self, after: int, limit: int) -> list[tuple[int, str, int, str, bytes]]:
        """(position, aggregate id, version, topic, state) rows after `after`: the fast path
        for bulk readers such as the projector, skipping eventsourcing's per-row objects."""
        recorder = self.recorder
        if isinstance(recorder, SQLiteApplicationRecorder):
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(
                    "SELECT rowid, originator_id, originator_version, topic, state"
                    f" FROM {recorder.events_table_name} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    (after, limit),
                )
                # The SQLite store keeps ids as 32 hex digits; give them their usual form.
                return [
                    (row[0], _hyphenate(row[1]), row[2], row[3], row[4])
                    for row in cursor.fetchall()
                ]
        return [
            (n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
            for n in recorder.select_notifications(after, limit, inclusive_of_start=False)
        ]

    def read_events(self, after: int = 0, *, batch: int = 1000) -> Iterator[tuple[int, Any]]:
        """(position, domain event) pairs after `after`, decoded in batches."""
        to_domain_event = self.mapper.to_domain_event
        for notification in self.notifications(after, batch=batch):
            yield notification.id, to_domain_event(notification)

    def is_empty(self) -> bool:
        """Whether nothing has been recorded yet."""
        return self.head_position() == 0

    # -- writing ---------------------------------------------------------------------

    def record(self, *aggregates: LedgerAggregate) -> int:
        """Save the aggregates' pending events atomically; return the last one's position.

        A stale version is a `Conflict` and nothing is recorded. This is
        `Application.save` without its per-object protocol checks, which cost as
        much as the insert itself (bench/profile_append.py), and without its event
        store's objects and round trips (`event_writers`).
        """
        rows = self._rows(aggregates)
        if not rows:
            return self.head_position()
        try:
            _, last = self._writer.insert(rows, self._on_commit(aggregates))
        except IntegrityError as error:
            raise _conflict(aggregates) from error
        return last

    @property
    def queues_writes(self) -> bool:
        """Whether `record_queued` is available (SQLite: the writer has a committer)."""
        return isinstance(self._writer, SQLiteWriter)

    def record_queued(
        self, aggregate: LedgerAggregate, after: Future[tuple[int, int]] | None = None
    ) -> Future[Written]:
        """`_written` for code that must not block (an event loop): the aggregate's new
        events join the next group commit, and the future gives where they landed, or the
        `Conflict`.

        Until they commit, `queued_state` hands out the aggregate as they leave it, so
        the next command can be decided at once instead of after this one's commit. An
        aggregate decided on such a state is passed with the commit `queued_state` gave
        with it (`after`): it commits after that one, or is refused (a `Conflict`) if
        that one is, even if it ended meanwhile."""
        assert isinstance(self._writer, SQLiteWriter), "queued writes need the SQLite writer"
        aggregates = (aggregate,)
        rows = self._rows(aggregates)
        written: Future[Written] = write_future()
        if not rows:
            written.set_result(Written(aggregate.id, aggregate.version, self.head_position()))
            return written

        def settle(committed: Future[tuple[int, int]]) -> None:
            with self._queued_lock:
                if self._queued.get(aggregate.id, (None, None))[1] is committed:
                    del self._queued[aggregate.id]
            error = committed.exception()
            if error is None:
                last = committed.result()[1]
                written.set_result(Written(aggregate.id, aggregate.version, last))
            elif isinstance(error, IntegrityError):
                if self._cache is not None:
                    self._cache.forget_freshness()  # another process wrote: look next time
                conflict = _conflict(aggregates)
                conflict.__cause__ = error
                written.set_exception(conflict)
            else:
                written.set_exception(error)

        committed = self._writer.submit(rows, self._on_commit(aggregates), after)
        with self._queued_lock:
            if not committed.done():  # else settle has run, or waits for this lock
                self._queued[aggregate.id] = (aggregate, committed)
        committed.add_done_callback(settle)
        return written

    def queued_state(
        self, aggregate_id: UUID
    ) -> tuple[LedgerAggregate, Future[tuple[int, int]]] | None:
        """A copy of the aggregate as this process's queued, uncommitted events leave it,
        with the commit that carries the newest of them; None when it has none. A command
        decided on the copy is passed to `record_queued` with that commit as `after`."""
        with self._queued_lock:
            entry = self._queued.get(aggregate_id)
        return None if entry is None else (entry[0].__deepcopy__({}), entry[1])

    def queued_commit(self, aggregate_id: UUID) -> Future[tuple[int, int]] | None:
        """The newest queued commit of the aggregate's events, None when none waits."""
        with self._queued_lock:
            entry = self._queued.get(aggregate_id)
        return None if entry is None else entry[1]

    def cached(self, aggregate_id: UUID) -> bool:
        """Whether loading the aggregate needs no replay from the log (it is cached)."""
        return self._cache is not None and self._cache.holds(aggregate_id)

    def _rows(self, aggregates: Sequence[LedgerAggregate]) -> list[Any]:
        events: list[Any] = []
        for aggregate in aggregates:
            events.extend(aggregate.collect_events())
        return list(map(self.mapper.to_row, events))  # type: ignore[attr-defined]

    def _on_commit(self, aggregates: Sequence[LedgerAggregate]) -> Callable[[int, int], None]:
        return lambda first, last: self._appended(first, last, aggregates)

    def _appended(
        self, first: int | None, last: int | None, aggregates: Sequence[LedgerAggregate] = ()
    ) -> None:
        """Tell the cache about rows this process just committed."""
        if self._cache is not None and first is not None and last is not None:
            self._cache.saved(aggregates, first, last)

    def _written(self, aggregate: LedgerAggregate) -> Written:
        position = self.record(aggregate)
        return Written(id=aggregate.id, version=aggregate.version, position=position)

    def _appending_to(self, aggregate_id: UUID) -> AbstractContextManager[Any]:
        """Serialise appends to one aggregate within this process (load, decide, save).

        Appends such as check-ins do not conflict in meaning; without this, threads of one
        server racing on one key result would turn each other's saves into conflicts.
        Other processes can still race; callers retry those on the new version.
        """
        return self._append_locks[aggregate_id.int % _APPEND_LOCK_STRIPES]

    def _change(
        self,
        aggregate_id: UUID,
        kind: type[A],
        expected_version: int | None,
        staleness: float = 0.0,
    ) -> A:
        aggregate = self.load(aggregate_id, kind, staleness=staleness)
        expect_version(aggregate, expected_version)
        return aggregate


_APPEND_LOCK_STRIPES = 64

# eventsourcing's per-use cache; on SQLite the ledger has its own (`LogTailCache`).
_EVENTSOURCING_CACHE_KEYS = frozenset(
    {"AGGREGATE_CACHE_MAXSIZE", "AGGREGATE_CACHE_FASTFORWARD", "DEEPCOPY_FROM_AGGREGATE_CACHE"}
)


def expect_version(aggregate: LedgerAggregate, expected_version: int | None) -> None:
    """`Conflict` when `expected_version` is given and the aggregate is not at it."""
    if expected_version is not None and aggregate.version != expected_version:
        raise Conflict(
            f"{_label(type(aggregate))} {aggregate.id} is at version {aggregate.version}, "
            f"not {expected_version}",
            aggregate_id=aggregate.id,
        )


def _replay(aggregate: Any, events: Iterable[Any]) -> Any:
    """Apply events in order; eventsourcing's version asserts a protocol per event,
    which costs more than the replay itself."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def _hyphenate(hex_id: str) -> str:
    if len(hex_id) != 32:
        return str(UUID(hex_id))
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def _conflict(aggregates: Sequence[LedgerAggregate]) -> Conflict:
    ids = ", ".join(str(a.id) for a in aggregates)
    return Conflict(
        f"{ids} changed since it was read; reload and try again", aggregate_id=aggregates[0].id
    )


def _label(kind: type) -> str:
    return {"KeyResult": "key result", "Kpi": "KPI"}.get(kind.__name__, kind.__name__.lower())


def _set_sqlite_synchronous(ledger: LedgerBase, mode: str) -> None:
    """Apply `PRAGMA synchronous` to every connection of the SQLite store's pool.

    eventsourcing opens its connections itself and leaves SQLite's default (FULL);
    goalledger makes the durability trade-off a setting, so it hooks connection creation.
    """
    pool = ledger.factory.datastore.pool  # type: ignore[attr-defined]
    pragma = f"PRAGMA synchronous={mode.upper()};"
    create = pool._create_connection

    def create_with_pragma() -> Any:
        connection = create()
        connection._sqlite_conn.execute(pragma)
        return connection

    pool._create_connection = create_with_pragma
    for connection in list(pool._pool):
        connection._sqlite_conn.execute(pragma)
