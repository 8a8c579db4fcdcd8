"""The ledger's log in decoded pages: what the projector applies, one page per transaction.

A page is the rows (position, aggregate id, version, topic, stored state) of
consecutive events and, for each, its typed fields as `MsgspecMapper.decode_fields`
gives them — or the exception decoding raised, for the projector to report at that
event.

No read-ahead thread: SQLite releases the GIL at every row it steps, so beside a busy
Python thread each row of an `executemany` waits for the GIL (a bare insert of 200k rows:
66 s instead of 0.2 s here), and a threaded rebuild measured no faster. Parallel work
needs a second process: see `read_ahead`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import msgspec
from eventsourcing.sqlite import SQLiteApplicationRecorder

from goalledger.core.kpis import Reading
from goalledger.core.ledger import Ledger
from goalledger.core.mapper import decode_struct
from goalledger.projections.schema import from_ts, ts

Row = tuple[int, str, int, str, bytes]  # position, aggregate id, version, topic, state
READING_RECORDED = Reading.Recorded.TOPIC


class ReadingFacts(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A recorded reading (most events) as the projector uses it: ids and value as their
    stored text, times as stored (`schema.ts`). The read-ahead child sends readings in
    this form, so this process neither decodes them nor converts their times."""

    kpi_id: str
    reading_id: str
    value: str
    observed: int
    recorded: int
    actor: str
    source: str

    @property
    def timestamp(self) -> datetime | None:
        """The event's recorded time (an alert it raises carries it)."""
        return from_ts(self.recorded)


def reading_facts(e: Any) -> ReadingFacts:
    """The facts of a `Reading.Recorded` event from its decoded fields."""
    return ReadingFacts(
        e.kpi_id, e.reading_id, e.value, ts(e.observed_at), ts(e.timestamp), e.actor, e.source
    )


def as_facts(e: Any) -> ReadingFacts:
    """A recorded reading's facts, whether read ahead as such or decoded here."""
    return e if type(e) is ReadingFacts else reading_facts(e)


def recorded_reading(state: bytes) -> ReadingFacts | None:
    """The facts of a stored `Reading.Recorded` state (neither sealed nor compressed), or
    None if it does not decode: then the projector decodes it and reports the error."""
    try:
        return reading_facts(decode_struct(Reading.Recorded, state, textual=True))
    except Exception:
        return None


class Page(NamedTuple):
    """Consecutive events of the log and their decoded fields (or decoding errors)."""

    rows: list[Row]  # read ahead, a recorded reading's row has no state (b"")
    fields: list[Any]  # or, for readings read ahead, their ReadingFacts
    # Chain links hashed ahead (`read_ahead`): the link before the page (hex) and each
    # row's (position, link as hex); the projector uses them if that link is its head.
    links: tuple[str, list[tuple[int, str]]] | None = None


def read_rows(ledger: Ledger, after: int, limit: int) -> list[Row]:
    """`Ledger.notification_rows`, with SQLite's ids hyphenated more cheaply."""
    recorder: Any = ledger.recorder
    if not isinstance(recorder, SQLiteApplicationRecorder):
        return ledger.notification_rows(after, limit)
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.sqlite_cursor.row_factory = None  # plain tuples
        return select_rows(cursor, recorder.events_table_name, after, limit)


def select_rows(cursor: Any, table: str, after: int, limit: int) -> list[Row]:
    """`read_rows` on a cursor of the SQLite ledger whose events table is `table`."""
    return [
        (position, hyphenated(stored_id), version, topic, state)
        for position, stored_id, version, topic, state in select_stored_rows(
            cursor, table, after, limit
        )
    ]


def select_stored_rows(cursor: Any, table: str, after: int, limit: int) -> list[Row]:
    """The rows after position `after` with their ids as stored (what the chain hashes)."""
    cursor.execute(
        "SELECT rowid, originator_id, originator_version, topic, state"
        f" FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?",
        (after, limit),
    )
    return cursor.fetchall()


def hyphenated(stored_id: str) -> str:
    """A stored id in its usual form: SQLite keeps 32 hex digits, hyphenated here (a
    join: 0.74 us a row, substr and || in SQL took 1.0); any other text through `UUID`."""
    if len(stored_id) == 32:
        s = stored_id
        return "-".join((s[:8], s[8:12], s[12:16], s[16:20], s[20:]))
    return str(UUID(stored_id))


def decode(
    ledger: Ledger, rows: list[Row], ready: list[ReadingFacts | None] | None = None
) -> list[Any]:
    """The typed fields of each row's event, or the exception its decoding raised;
    `ready` holds facts already decoded (None for the rows still to decode)."""
    decode_fields = ledger.mapper.decode_fields  # type: ignore[attr-defined]
    fields: list[Any] = [None] * len(rows) if ready is None else list(ready)
    for index, row in enumerate(rows):
        if fields[index] is not None:
            continue
        try:
            fields[index] = decode_fields(row[3], row[4])
        except Exception as error:  # reported by the projector, at this event
            fields[index] = error
    return fields


def page(ledger: Ledger, after: int, limit: int) -> Page:
    """The next `limit` events after position `after`, decoded."""
    rows = read_rows(ledger, after, limit)
    return Page(rows, decode(ledger, rows))
