"""`goalledger` command line with prototypes of SQLiteWriter.insert_new patched in (what-ifs
for bench/ingest_http.py; not core code, which is core/event_writers.py's).

GOALLEDGER_WHATIF picks them, comma-separated:

- `multirow`: one multi-row `INSERT … VALUES (…), (…), …` per CHUNK rows instead of
  `executemany`, which runs one `sqlite3_step` per row and so drops and retakes the GIL
  per row (beside the projector and the event loop, each retake waits its turn).
- `group`: reading batches that arrive while one is being written share the next
  transaction (each keeps its own statement, rowcount and positions; only the commit is
  shared): one commit writes the index pages the batches dirtied once, not once each.

    GOALLEDGER_WHATIF=group python bench/ingest_whatif.py --database-url sqlite:///x.db serve
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from collections.abc import Sequence
from itertools import chain, repeat
from typing import Any

from goalledger.core import event_writers
from goalledger.core.event_writers import Appended, SQLiteWriter

CHUNK = 500  # 1,500 bound values a statement: far below SQLite's 32,766
WHATIF = set(filter(None, os.environ.get("GOALLEDGER_WHATIF", "").split(",")))


def _insert_rows(
    writer: SQLiteWriter, cursor: sqlite3.Cursor, topic: str, keys: Sequence[str],
    states: Sequence[bytes],
) -> Appended:  # fmt: skip
    """One batch inside an open transaction, answered as insert_new answers."""
    if "multirow" in WHATIF:
        inserted = 0
        for start in range(0, len(keys), CHUNK):
            part_keys, part_states = keys[start : start + CHUNK], states[start : start + CHUNK]
            values = ", ".join(["(?, 1, ?, ?)"] * len(part_keys))
            statement = f"INSERT INTO {writer._table} VALUES {values} ON CONFLICT DO NOTHING"
            params = chain.from_iterable(zip(part_keys, repeat(topic), part_states, strict=False))
            cursor.execute(statement, list(params))
            inserted += cursor.rowcount
    else:
        cursor.executemany(writer._insert_new, zip(keys, repeat(topic), states, strict=False))
        inserted = cursor.rowcount
    if inserted == 0:
        return Appended(skipped=frozenset(keys), first=None, last=None)
    last = cursor.execute(writer._max).fetchone()[0]
    first = last - inserted + 1
    skipped: frozenset[str] = frozenset()
    if inserted < len(keys):
        cursor.execute(f"SELECT originator_id FROM {writer._table} WHERE rowid >= ?", (first,))
        skipped = frozenset(keys) - {row[0] for row in cursor.fetchall()}
    return Appended(skipped=skipped, first=first, last=last)


class _Batch:
    __slots__ = ("appended", "done", "error", "keys", "states", "topic")

    def __init__(self, topic: str, keys: Sequence[str], states: Sequence[bytes]) -> None:
        self.topic, self.keys, self.states = topic, keys, states
        self.appended: Appended | None = None
        self.error: BaseException | None = None
        self.done = False


_GROUPS: dict[int, Any] = {}
_GROUPS_LOCK = threading.Lock()


def _group_state(writer: SQLiteWriter) -> Any:
    with _GROUPS_LOCK:
        state = _GROUPS.get(id(writer))
        if state is None:
            state = _GROUPS[id(writer)] = {
                "turn": threading.Condition(), "queue": [], "leading": False,
            }  # fmt: skip
        return state


def insert_new(
    self: SQLiteWriter, topic: str, keys: Sequence[str], states: Sequence[bytes]
) -> Appended:
    """As SQLiteWriter.insert_new, with the what-ifs asked for."""
    if not keys:
        return event_writers.NOTHING
    if "group" not in WHATIF:
        with self._transaction() as cursor:
            return _insert_rows(self, cursor, topic, keys, states)
    state = _group_state(self)
    batch = _Batch(topic, keys, states)
    with state["turn"]:
        state["queue"].append(batch)
        while state["leading"] and not batch.done:
            state["turn"].wait()
        if not batch.done:
            state["leading"] = True
            group, state["queue"] = state["queue"], []
        else:
            group = []
    if group:
        try:
            with self._transaction() as cursor:
                answers = [_insert_rows(self, cursor, b.topic, b.keys, b.states) for b in group]
            for member, appended in zip(group, answers, strict=True):
                member.appended = appended
        except BaseException as error:
            for member in group:
                member.error = error
        finally:
            with state["turn"]:
                for member in group:
                    member.done = True
                state["leading"] = False
                state["turn"].notify_all()
    if batch.error is not None:
        raise batch.error
    assert batch.appended is not None
    return batch.appended


if __name__ == "__main__":
    SQLiteWriter.insert_new = insert_new  # type: ignore[method-assign]
    from goalledger.api.cli import main

    sys.argv[0] = "goalledger"
    sys.exit(main())
