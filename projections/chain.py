"""The hash chain over the notification log: links kept beside the read models.

link_0 is 32 zero bytes; link_n = sha256(link_{n-1} || canonical(event n)), where
canonical(event) is, big-endian: position (8 bytes), aggregate id (the UUID's 16 bytes),
version (8 bytes), length of the topic (4 bytes), length of the stored state (4 bytes),
the topic (UTF-8), then the stored state bytes (which hold the recorded time). Every
variable field is length-prefixed, so no two events share an encoding.

The projector extends the chain inside each batch's transaction (`extend`), so a
generation's links always cover exactly the events its read models have applied.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.sqlite import SQLiteApplicationRecorder

from goalledger.core.ledger import Ledger
from goalledger.projections import log_pages, schema
from goalledger.projections.store import Tx, ViewStore

ALGORITHM = "sha256-chain-v1"
GENESIS = bytes(32)
BACKFILL_BATCH = 5000
_HEAD = struct.Struct(">q16sqII")
Row = tuple[int, str, int, str, bytes]  # position, aggregate id, version, topic, state


class Link(msgspec.Struct, frozen=True):
    """One link of the chain: the event's position and the hash covering it and all before."""

    position: int
    hash: str


def log_rows(ledger: Ledger, after: int, limit: int) -> list[Row]:
    """`Ledger.notification_rows`, except that SQLite's ids stay as stored (32 hex digits).

    The chain hashes an id's 16 bytes: hyphenating each id only to strip it again would
    cost verification a third of its time.
    """
    recorder: Any = ledger.recorder
    if not isinstance(recorder, SQLiteApplicationRecorder):
        return ledger.notification_rows(after, limit)
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.sqlite_cursor.row_factory = None  # plain tuples
        return log_pages.select_stored_rows(cursor, recorder.events_table_name, after, limit)


def links(previous: bytes, rows: Sequence[Row]) -> list[bytes]:
    """The links of consecutive events following the link `previous`."""
    pack, fromhex, sha256 = _HEAD.pack, bytes.fromhex, hashlib.sha256
    out = []
    for position, aggregate_id, version, topic, state in rows:
        name, uid = topic.encode(), fromhex(aggregate_id.replace("-", ""))
        if len(uid) != 16:  # "16s" would pad or cut it: two ids must never encode alike
            raise ValueError(f"aggregate id {aggregate_id!r} at {position} is not a UUID")
        head = pack(position, uid, version, len(name), len(state))
        previous = sha256(b"".join((previous, head, name, state))).digest()
        out.append(previous)
    return out


# -- the chain table of a generation ------------------------------------------------------


def ensure_table(tx: Tx, generation: int) -> None:
    """Create the chain table of a generation made before the chain existed."""
    columns = schema.TABLES["chain"]
    tx.execute(f"CREATE TABLE IF NOT EXISTS {schema.table(generation, 'chain')} ({columns})")


def extend(
    tx: Tx,
    generation: int,
    rows: Sequence[Row],
    start: int,
    ledger: Ledger,
    hashed: tuple[str, list[tuple[int, str]]] | None = None,
) -> None:
    """Add the links of `rows` (the events after tracking position `start`), in `tx`.

    A generation whose chain lags its tracking position (its views were projected
    before the chain existed) is first caught up from the ledger, in the same
    transaction: the chain then vouches for the ledger as it is at that moment.
    `hashed` is the rows' links computed ahead, from the link before them (hex): used
    only if that link is this chain's head, else the links are computed here (from
    the ledger's rows: rows read ahead may lack their states).
    """
    chain = schema.table(generation, "chain")
    head = tx.one(f"SELECT position, hash FROM {chain} ORDER BY position DESC LIMIT 1")
    if hashed is not None:
        previous_hex, chain_rows = hashed
        positions = [row[0] for row in rows]
        if (
            start == (0 if head is None else int(head[0]))
            and previous_hex == (GENESIS.hex() if head is None else head[1])
            and [row[0] for row in chain_rows] == positions
        ):
            tx.executemany(f"INSERT INTO {chain} (position, hash) VALUES (?, ?)", chain_rows)
            return
        # Rows read ahead may lack their states: hash the ledger's own.
        rows = log_rows(ledger, start, len(rows))
        if [row[0] for row in rows] != positions:
            raise RuntimeError(f"the ledger's events after {start} are not the page's")
    previous = GENESIS if head is None else bytes.fromhex(head[1])
    chained = 0 if head is None else int(head[0])
    while chained < start:
        behind = [r for r in log_rows(ledger, chained, BACKFILL_BATCH) if r[0] <= start]
        if not behind:
            break
        previous = _insert(tx, chain, previous, behind)
        chained = behind[-1][0]
    _insert(tx, chain, previous, rows)


def _insert(tx: Tx, chain: str, previous: bytes, rows: Sequence[Row]) -> bytes:
    computed = links(previous, rows)
    tx.executemany(
        f"INSERT INTO {chain} (position, hash) VALUES (?, ?)",
        [(row[0], link.hex()) for row, link in zip(rows, computed, strict=True)],
    )
    return computed[-1] if computed else previous


def _live(store: ViewStore, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of `sql` over the live generation, whose `{chain}` and `{events}` it names."""
    with store.read() as tx:
        generation = schema.live_generation(tx)
        if generation is None:
            return []
        tables = {name: schema.table(generation, name) for name in ("chain", "events")}
        return tx.all(sql.format(**tables), params)


def head(store: ViewStore) -> Link | None:
    """The newest link of the live generation's chain (None before any event is chained)."""
    rows = _live(store, "SELECT position, hash FROM {chain} ORDER BY position DESC LIMIT 1")
    return Link(position=int(rows[0][0]), hash=rows[0][1]) if rows else None


def stored_links(store: ViewStore, after: int, upto: int) -> str:
    """The live chain's hashes in (after, upto], concatenated in position order: one row
    per batch instead of one per event."""
    if store.kind == "sqlite":
        joined = "group_concat(hash, '')"  # in the subquery's order (SQLite < 3.44 has no
    else:  # ORDER BY inside an aggregate); a wrong order could only raise a false alarm
        joined = "string_agg(hash, '' ORDER BY position)"
    sql = (
        f"SELECT {joined} FROM (SELECT position, hash FROM {{chain}}"
        " WHERE position > ? AND position <= ? ORDER BY position) c"
    )
    rows = _live(store, sql, (after, upto))
    return (rows[0][0] or "") if rows else ""


def chain_rows(store: ViewStore, after: int, upto: int) -> list[tuple[int, str]]:
    """The live chain's (position, hash) rows in (after, upto], in order."""
    sql = (
        "SELECT position, hash FROM {chain} WHERE position > ? AND position <= ? ORDER BY position"
    )
    return _live(store, sql, (after, upto))


# -- verification -------------------------------------------------------------------------

STATE_CHANGED = "state changed"
EVENT_MISSING = "event missing"
OUT_OF_ORDER = "event out of order"
EXTRA_EVENT = "unexpected extra event"
LINK_MISMATCH = "link mismatch"
ANCHOR_MISMATCH = "anchor mismatch"


class Break(msgspec.Struct, frozen=True):
    """Where the chain first fails to hold, and why."""

    position: int
    reason: str
    detail: str


class Verdict(msgspec.Struct, frozen=True):
    """The outcome of recomputing the chain from the ledger."""

    ok: bool
    checked: int  # events whose recomputed link matched the chain
    head: Link | None  # the last link that holds
    broken: Break | None = None
    anchor: Link | None = None  # the anchor checked too, if any


def verify(
    ledger: Ledger,
    store: ViewStore,
    *,
    anchor: Link | None = None,
    batch: int = 5000,
    wait: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> Verdict:
    """Recompute the chain over the whole ledger (as of the call) and compare it with the
    chain the projector kept; optionally check the link at an anchor's position too.

    Reads the log in batches, so memory stays flat. Events the projector has not chained
    yet fail the check (a forged row appended to the log looks just like them); `wait`
    gives a running projector that many seconds to chain them first.
    """
    stop = ledger.head_position()
    batches = walk(ledger, store, anchor=anchor, batch=batch, wait=wait, stop=stop)
    while True:
        try:
            rows, _ = next(batches)
        except StopIteration as done:
            return done.value
        if progress is not None:
            progress(rows[-1][0], stop)


def walk(
    ledger: Ledger,
    store: ViewStore,
    *,
    anchor: Link | None = None,
    batch: int = 5000,
    wait: float = 0.0,
    stop: int | None = None,
) -> Generator[tuple[Sequence[Row], list[bytes]], None, Verdict]:
    """Yield each batch of events whose links hold, with those links; return the verdict."""
    stop = ledger.head_position() if stop is None else stop
    deadline = time.monotonic() + wait
    previous, after, checked = GENESIS, 0, 0
    last: Link | None = None

    def verdict(broken: Break | None = None, held: int = 0) -> Verdict:
        """The outcome, with the first `held` events of the current batch holding too."""
        top = last
        if held:  # recomputed: `computed` is empty when an id in the batch is no UUID
            top = Link(rows[held - 1][0], links(previous, rows[:held])[-1].hex())
        return Verdict(
            ok=broken is None, checked=checked + held, head=top, broken=broken, anchor=anchor
        )

    for rows in _batches(ledger, batch, stop):
        upto = rows[-1][0]
        try:
            computed = links(previous, rows)
        except ValueError:  # an id that is no UUID: the diagnosis names it
            computed = []
        expected = b"".join(computed).hex()
        stored = stored_links(store, after, upto)
        while stored != expected and _may_wait(store, upto, deadline):
            time.sleep(0.05)
            stored = stored_links(store, after, upto)
        if stored != expected:
            chained = chain_rows(store, after, upto)
            found = _diagnose(ledger, store, previous, rows, chained, anchor)
            if found is not None:
                return verdict(*found)
        if anchor is not None and after < anchor.position <= upto:
            index = {row[0]: i for i, row in enumerate(rows)}.get(anchor.position)
            broken = _anchor_break(anchor, None if index is None else computed[index])
            if broken is not None:
                return verdict(broken, index or 0)
        yield rows, computed
        previous, after, checked = computed[-1], upto, checked + len(rows)
        last = Link(upto, previous.hex())
    beyond = _live(store, "SELECT min(position) FROM {chain} WHERE position > ?", (after,))
    if beyond and beyond[0][0] is not None and not _has_event(ledger, beyond[0][0]):
        detail = "the chain holds a link for it but the ledger has no event there"
        return verdict(Break(beyond[0][0], EVENT_MISSING, detail))
    if anchor is not None and anchor.position > after:
        detail = f"the anchor is at position {anchor.position}, beyond the ledger's last event"
        return verdict(Break(anchor.position, ANCHOR_MISMATCH, f"{detail} ({after})"))
    return verdict()


def _batches(ledger: Ledger, batch: int, stop: int) -> Iterator[list[Row]]:
    """The log up to position `stop`, in batches."""
    after = 0
    while after < stop:
        rows = log_rows(ledger, after, batch)
        if rows and rows[-1][0] > stop:
            rows = [row for row in rows if row[0] <= stop]
        if not rows:
            return
        after = rows[-1][0]
        yield rows


def _may_wait(store: ViewStore, upto: int, deadline: float) -> bool:
    newest = head(store)
    return time.monotonic() < deadline and (newest is None or newest.position < upto)


def _anchor_break(anchor: Link, link: bytes | None) -> Break | None:
    if link is None:
        return Break(anchor.position, ANCHOR_MISMATCH, "the ledger has no event at this position")
    if link.hex() != anchor.hash:
        detail = (
            "the recomputed link differs from the anchor's: the ledger up to here was rewritten"
        )
        return Break(anchor.position, ANCHOR_MISMATCH, detail)
    return None


def _diagnose(
    ledger: Ledger,
    store: ViewStore,
    previous: bytes,
    rows: Sequence[Row],
    chained: list[tuple[int, str]],
    anchor: Link | None,
) -> tuple[Break, int] | None:
    """The first break in a batch that does not hold, and how many events held before it."""
    # Both lists are in position order and every event before `held` matched its link, so
    # chained[held] is the link to compare with rows[held].
    for held, row in enumerate(rows):
        position, aggregate_id, version, topic, _ = row
        if held < len(chained) and chained[held][0] < position:
            detail = "the chain holds a link for it but the ledger has no event there"
            return Break(chained[held][0], EVENT_MISSING, detail), held
        try:
            links(previous, [row])
        except ValueError as error:
            return Break(position, STATE_CHANGED, f"the stored event's {error}"), held
        aggregate_id = str(UUID(aggregate_id))  # SQLite rows carry 32 hex digits
        what = f"{aggregate_id} v{version} ({topic})"
        if held == len(chained) or chained[held][0] > position:
            newest = head(store)
            chain_head = 0 if newest is None else newest.position
            if position > chain_head:
                detail = (
                    f"{what} is beyond the chain head {chain_head}: nothing chained it "
                    "(or the projector is only behind)"
                )
            else:
                detail = f"{what} sits where the chain never saw an event"
            return Break(position, EXTRA_EVENT, detail), held
        link = links(previous, [row])[0]
        if link.hex() != chained[held][1]:
            return _mismatch(ledger, store, row, link), held
        if anchor is not None and anchor.position == position:
            broken = _anchor_break(anchor, link)
            if broken is not None:
                return broken, held
        previous = link
    return None  # every link matched after all


def _mismatch(ledger: Ledger, store: ViewStore, row: Row, link: bytes) -> Break:
    """Why the recomputed link of an event differs from the chained one."""
    position, aggregate_id, version, topic, _ = row
    aggregate_id = str(UUID(aggregate_id))
    what = f"{aggregate_id} v{version} ({topic})"
    timeline = "SELECT aggregate_id, version, topic FROM {events} WHERE position = ?"
    placed = next(iter(_live(store, timeline, (position,))), None)
    if placed is not None and placed[:2] != (aggregate_id, version):
        where = "SELECT position FROM {events} WHERE aggregate_id = ? AND version = ?"
        elsewhere = _live(store, where, (aggregate_id, version))
        if elsewhere:
            detail = f"the ledger holds {what} here, which the chain placed at {elsewhere[0][0]}"
            return Break(position, OUT_OF_ORDER, detail)
        detail = f"{what} replaces {placed[0]} v{placed[1]}, which the chain saw here"
        return Break(position, EXTRA_EVENT, detail)
    following = log_rows(ledger, position, 1)
    if not following:
        detail = f"{what} or its link was altered (the newest event: nothing after it tells which)"
        return Break(position, LINK_MISMATCH, detail)
    after = chain_rows(store, position, following[0][0])
    if (
        after
        and after[-1][0] == following[0][0]
        and links(link, following)[0].hex() == after[-1][1]
    ):
        detail = "the chain's link here was altered; the event itself is what was chained"
        return Break(position, LINK_MISMATCH, detail)
    detail = f"the stored bytes of {what} differ from those chained"
    if placed is not None and placed[2] != topic:
        detail += f" (its topic was {placed[2]})"
    return Break(position, STATE_CHANGED, detail)


def _has_event(ledger: Ledger, position: int) -> bool:
    found = log_rows(ledger, position - 1, 1)
    return bool(found) and found[0][0] == position
