"""Aggregates kept in memory between commands, kept current by tailing the SQLite log.

eventsourcing's own cache fast-forwards a cached aggregate with a query per use (a
check-in uses two aggregates: two queries, each a pooled BEGIN/SELECT/ROLLBACK). On
SQLite the log says at once whether anything changed: its rowids are the notification
ids, handed out in commit order (one writer at a time, each new row max(rowid) + 1). So
one `max(rowid)` per use tells whether any thread or process has written since, and
the rows after the last position seen are exactly what changed; the cache applies
those to the aggregates it holds. Commands get copies; the cached aggregates change
only here, under a lock. A stale write is still refused by the store's unique
(aggregate id, version) key, whatever the cache held.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from goalledger.core.model import LedgerAggregate

# Beyond this many new rows since the last use, dropping the cache is cheaper than
# reading them all (a bulk import by another process, say).
CATCH_UP_ROWS = 5000


class LogTailCache:
    """An LRU cache of aggregates by id, brought up to date from the log on each use."""

    def __init__(
        self,
        path: str,
        table: str,
        to_domain_event: Callable[[StoredEvent], Any],
        maxsize: int,
    ) -> None:
        # A connection of its own, used only under the lock: reads need no pool.
        self._connection = sqlite3.connect(
            path, uri=True, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._head_sql = f"SELECT max(rowid) FROM {table}"
        self._tail_sql = (
            "SELECT originator_id, originator_version, topic, state"
            f" FROM {table} WHERE rowid > ? AND rowid <= ? ORDER BY rowid"
        )
        self._events_sql = (
            f"SELECT originator_version, topic, state FROM {table}"
            " WHERE originator_id = ? ORDER BY originator_version"
        )
        self._to_domain_event = to_domain_event
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._aggregates: OrderedDict[str, LedgerAggregate] = OrderedDict()
        self._position = self._head()
        self._asked = time.monotonic()  # when the log was last asked for its head

    def get(
        self, aggregate_id: UUID, *, catch_up: bool = True, staleness: float = 0.0
    ) -> LedgerAggregate | None:
        """A copy of the aggregate as the log has it now (None when it has no events).

        One not cached yet is read from the log and kept: it holds at least every event
        up to the position the cache reflects, and the catch-up skips any it holds.
        `catch_up=False` skips asking the log whether anything changed (its caller just
        asked, for another aggregate of the same command); `staleness` skips it if the
        log was asked less than that many seconds ago (this process's own writes are
        in the cache as they commit; other processes' may then be missed for as long).
        """
        key = aggregate_id.hex
        with self._lock:
            if catch_up and (staleness <= 0 or time.monotonic() - self._asked >= staleness):
                self._catch_up()
            cached = self._aggregates.get(key)
            if cached is None:
                cached = self._read(aggregate_id)
                if cached is None:
                    return None
                self._keep(key, cached)
            else:
                self._aggregates.move_to_end(key)
            return cached.__deepcopy__({})

    def forget_freshness(self) -> None:
        """Ask the log at the next use, whatever the staleness allowed (a write was just
        refused as stale: someone else wrote)."""
        self._asked = 0.0

    def holds(self, aggregate_id: UUID) -> bool:
        """Whether the aggregate is cached (a `get` then reads at most the log's tail)."""
        return aggregate_id.hex in self._aggregates

    def saved(self, aggregates: Iterable[LedgerAggregate], first: int, last: int) -> None:
        """This process committed rows `first`..`last`, holding the aggregates' new events.

        Cached aggregates take their saved state; when no one wrote between the position
        the cache reflects and `first`, the cache now reflects `last`.
        """
        with self._lock:
            for aggregate in aggregates:
                if aggregate.version == 1:
                    continue  # created by this save: it cannot be cached
                key = aggregate.id.hex
                cached = self._aggregates.get(key)
                if cached is not None and cached.version < aggregate.version:
                    self._aggregates[key] = aggregate.__deepcopy__({})
            if first == self._position + 1:
                self._position = last

    def close(self) -> None:
        """Close the cache's connection."""
        with self._lock:
            self._aggregates.clear()
            self._connection.close()

    def _head(self) -> int:
        return self._connection.execute(self._head_sql).fetchone()[0] or 0

    def _read(self, aggregate_id: UUID) -> LedgerAggregate | None:
        aggregate = None
        rows = self._connection.execute(self._events_sql, (aggregate_id.hex,))
        for version, topic, state in rows:
            event = self._to_domain_event(StoredEvent(aggregate_id, version, topic, state))
            aggregate = event.mutate(aggregate)
        return aggregate

    def _catch_up(self) -> None:
        self._asked = time.monotonic()
        head = self._head()
        if head == self._position:
            return
        if not self._aggregates or not 0 < head - self._position <= CATCH_UP_ROWS:
            self._aggregates.clear()
            self._position = head
            return
        rows = self._connection.execute(self._tail_sql, (self._position, head)).fetchall()
        for hex_id, version, topic, state in rows:
            cached = self._aggregates.get(hex_id)
            if cached is None or version <= cached.version:
                continue  # not cached, or its state already holds this event
            if version == cached.version + 1:
                try:
                    stored = StoredEvent(UUID(hex_id), version, topic, state)
                    event = self._to_domain_event(stored)
                    event.mutate(cached)
                    continue
                except Exception:  # an event it cannot apply: forget the aggregate
                    pass
            del self._aggregates[hex_id]
        self._position = head

    def _keep(self, key: str, aggregate: LedgerAggregate) -> None:
        cached = self._aggregates.get(key)
        if cached is not None and cached.version >= aggregate.version:
            return
        self._aggregates[key] = aggregate
        self._aggregates.move_to_end(key)
        while len(self._aggregates) > self._maxsize:
            self._aggregates.popitem(last=False)
