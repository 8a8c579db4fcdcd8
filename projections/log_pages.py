"""The ledger's log in decoded pages, for the projector, and read ahead in a thread for a rebuild.

A page is the rows (position, aggregate id, version, topic, stored state) of
consecutive events and, for each, its typed fields as `MsgspecMapper.decode_fields`
gives them — or the exception decoding raised, for the projector to report at that
event. A rebuild reads and decodes the next pages in a thread while it writes the
current one: SQLite releases the GIL while it steps, so reading the ledger, decoding,
making audit rows, hashing the chain and writing the views overlap on two cores. At
most `depth` pages wait, so memory stays flat however long the log.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.sqlite import SQLiteApplicationRecorder

from goalledger.core.ledger import Ledger
from goalledger.projections import chain
from goalledger.projections.views import audit_row

Row = tuple[int, str, int, str, bytes]  # position, aggregate id, version, topic, state

# SQLite keeps ids as 32 hex digits: give them their usual hyphenated form in SQL (C)
# rather than in Python, row by row; anything else is left for `_canonical` to judge.
_HYPHENATED = (
    "CASE WHEN length(originator_id) = 32 THEN substr(originator_id, 1, 8) || '-' ||"
    " substr(originator_id, 9, 4) || '-' || substr(originator_id, 13, 4) || '-' ||"
    " substr(originator_id, 17, 4) || '-' || substr(originator_id, 21) ELSE NULL END"
)


class Page(NamedTuple):
    """Consecutive events of the log and their decoded fields (or decoding errors).

    `audits` are their rows in the audit timeline (None where one could not be made:
    the projector makes it again, and reports why); `links` the hash chain's
    (position, hash) rows for `rows`, when computed ahead.
    """

    rows: list[Row]
    fields: list[Any]
    audits: list[tuple[Any, ...] | None]
    links: list[tuple[int, str]] | None = None


def read_rows(ledger: Ledger, after: int, limit: int) -> list[Row]:
    """`Ledger.notification_rows`, with SQLite's ids hyphenated by SQLite itself."""
    recorder: Any = ledger.recorder
    if not isinstance(recorder, SQLiteApplicationRecorder):
        return ledger.notification_rows(after, limit)
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.sqlite_cursor.row_factory = None  # plain tuples
        cursor.execute(
            f"SELECT rowid, {_HYPHENATED}, originator_version, topic, state, originator_id"
            f" FROM {recorder.events_table_name} WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (after, limit),
        )
        return [row[:5] if row[1] is not None else _canonical(row) for row in cursor.fetchall()]


def _canonical(row: tuple[Any, ...]) -> Row:
    position, _, version, topic, state, stored_id = row
    return (position, str(UUID(stored_id)), version, topic, state)


def decode(ledger: Ledger, rows: list[Row]) -> list[Any]:
    """The typed fields of each row's event, or the exception its decoding raised."""
    decode_fields = ledger.mapper.decode_fields  # type: ignore[attr-defined]
    fields: list[Any] = []
    for row in rows:
        try:
            fields.append(decode_fields(row[3], row[4]))
        except Exception as error:  # reported by the projector, at this event
            fields.append(error)
    return fields


def audits(rows: list[Row], fields: list[Any]) -> list[tuple[Any, ...] | None]:
    """Each event's audit-timeline row, or None where it cannot be made."""
    made: list[tuple[Any, ...] | None] = []
    for (position, aggregate_id, version, topic, _), e in zip(rows, fields, strict=True):
        try:
            made.append(audit_row(position, aggregate_id, version, topic, e))
        except Exception:  # the projector makes it again at this event, and reports it
            made.append(None)
    return made


def page(ledger: Ledger, after: int, limit: int) -> Page:
    """The next `limit` events after position `after`, decoded."""
    rows = read_rows(ledger, after, limit)
    fields = decode(ledger, rows)
    return Page(rows, fields, audits(rows, fields))


class ReadAhead:
    """Pages of the log in (after, upto], read and decoded in a thread `depth` pages ahead.

    With `link` (the chain's link at `after`), each page also carries its chain rows.
    Iterate it for the pages in order; `close()` stops the thread (also on an error).
    """

    _END = None

    def __init__(
        self,
        ledger: Ledger,
        after: int,
        upto: int,
        size: int,
        depth: int = 2,
        link: bytes | None = None,
    ) -> None:
        self.ledger, self.after, self.upto, self.size, self.link = ledger, after, upto, size, link
        self._pages: queue.Queue[Page | BaseException | None] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._read, name="goalledger-read-ahead", daemon=True
        )
        self._thread.start()

    def _read(self) -> None:
        after = self.after
        try:
            while after < self.upto and not self._stop.is_set():
                rows = read_rows(self.ledger, after, min(self.size, self.upto - after))
                if rows and rows[-1][0] > self.upto:
                    rows = [row for row in rows if row[0] <= self.upto]
                if not rows:
                    break
                after = rows[-1][0]
                fields = decode(self.ledger, rows)
                self._put(Page(rows, fields, audits(rows, fields), self._links(rows)))
        except BaseException as error:  # handed to the consumer, who raises it
            self._put(error)
        self._put(self._END)

    def _links(self, rows: list[Row]) -> list[tuple[int, str]] | None:
        if self.link is None:
            return None
        try:
            computed = chain.links(self.link, rows)
        except ValueError:  # not a UUID: the projector's own chain step reports it
            self.link = None
            return None
        self.link = computed[-1]
        return [(row[0], link.hex()) for row, link in zip(rows, computed, strict=True)]

    def _put(self, item: Page | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._pages.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Page]:
        while True:
            item = self._pages.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
