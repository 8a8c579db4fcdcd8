"""Bulk appends of new aggregates' first events, skipping aggregates the log already holds.

Bulk ingestion (readings) creates thousands of one-event aggregates whose ids follow
from their content, so a re-sent item maps to an aggregate that exists already. Here
such rows go into the same events table and notification log as every other event,
in one transaction and one statement, with `ON CONFLICT DO NOTHING`: a row whose
(aggregate id, version 1) is held records nothing, and the database reports which
rows it did insert. Either every new row commits or none does.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

import msgspec
from psycopg.sql import SQL, Identifier

from goalledger.core.sqlite_writer import SQLiteWriter


class Appended(msgspec.Struct, frozen=True):
    """What an append inserted: the aggregate ids (32 hex digits) and the last position.

    `skipped` lists the ids that were held already; `first`/`last` are the positions
    of the inserted rows (None when nothing was inserted).
    """

    skipped: frozenset[str]
    first: int | None
    last: int | None


def append_first_events(
    store: SQLiteWriter | Any, topic: str, keys: Sequence[str], states: Sequence[bytes]
) -> Appended:
    """Insert version-1 events of `topic`, in order: aggregate ids as 32 hex digits and
    the stored state of each. Rows whose aggregate has a first event already are skipped.

    `store` is the ledger's `SQLiteWriter`, or its PostgreSQL recorder.
    """
    if not keys:
        return Appended(skipped=frozenset(), first=None, last=None)
    if isinstance(store, SQLiteWriter):
        return _append_sqlite(store, topic, keys, states)
    return _append_postgres(store, topic, keys, states)


def _append_sqlite(
    writer: SQLiteWriter, topic: str, keys: Sequence[str], states: Sequence[bytes]
) -> Appended:
    table = writer.table
    insert = f"INSERT INTO {table} VALUES (?, 1, ?, ?) ON CONFLICT DO NOTHING"
    with writer.transaction() as cursor:
        cursor.executemany(insert, zip(keys, repeat(topic), states))
        inserted = cursor.rowcount
        if inserted == 0:
            return Appended(skipped=frozenset(keys), first=None, last=None)
        # The write lock is held, so this transaction's rows are the newest rowids,
        # numbered one after another (SQLite gives a new row max(rowid) + 1).
        last = cursor.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]
        first = last - inserted + 1
        skipped: frozenset[str] = frozenset()
        if inserted < len(keys):
            cursor.execute(f"SELECT originator_id FROM {table} WHERE rowid >= ?", (first,))
            skipped = frozenset(keys) - {row[0] for row in cursor.fetchall()}
    return Appended(skipped=skipped, first=first, last=last)


def _append_postgres(
    recorder: Any, topic: str, keys: Sequence[str], states: Sequence[bytes]
) -> Appended:
    # Two array literals as text parameters: PostgreSQL parses them in C, where the
    # pure-Python driver would adapt 2,000 values one by one. Hex ids and hex bytea
    # need no quoting.
    ids = "{" + ",".join(keys) + "}"
    blobs = "{" + ",".join(["\\\\x" + state.hex() for state in states]) + "}"
    insert = SQL(
        "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)"
        " SELECT r.id, 1, %s, r.state"
        " FROM unnest(%s::uuid[], %s::bytea[]) WITH ORDINALITY AS r(id, state, n)"
        # Held rows are left out before they draw a notification id (no gaps); the
        # table lock keeps the check true until commit.
        " WHERE NOT EXISTS (SELECT FROM {schema}.{table} AS t WHERE t.originator_id = r.id)"
        " ORDER BY r.n"
        " ON CONFLICT DO NOTHING"
        " RETURNING originator_id, notification_id"
    ).format(
        schema=Identifier(recorder.datastore.schema),
        table=Identifier(recorder.events_table_name),
    )
    with recorder.datastore.transaction(commit=True) as cursor:
        # As eventsourcing's own insert: the table lock makes commit order the order of
        # notification ids, so a reader tailing the log never passes a gap that a slower
        # transaction fills later; NOTIFY wakes subscribers.
        for statement in recorder.lock_table_statements:
            cursor.execute(statement)
        cursor.execute(insert, (topic, ids, blobs))
        returned = cursor.fetchall()
        if returned:
            cursor.execute(SQL("NOTIFY {0}").format(Identifier(recorder.channel_name)))
    if not returned:
        return Appended(skipped=frozenset(keys), first=None, last=None)
    positions = [row["notification_id"] for row in returned]
    skipped: frozenset[str] = frozenset()
    if len(returned) < len(keys):
        skipped = frozenset(keys) - {row["originator_id"].hex for row in returned}
    return Appended(skipped=skipped, first=min(positions), last=max(positions))
