"""The whole ledger as NDJSON: export with chain links, import into an empty ledger.

One line per event: position, aggregate_id, version, topic, state (base64 of the stored
bytes) and link (hex), in position order. Export checks every link against the chain
the projector kept as it goes. Import checks the whole file first (order, chain, known
topics, states that decode), then inserts every event at its own position in one
transaction, re-checking as it goes: a file that fails anywhere changes nothing. Both
ledgers keep positions exactly, gaps included (SQLite takes an explicit rowid,
PostgreSQL an explicit notification_id, after which its sequence is moved past the last
one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import resolve_topic
from psycopg.sql import SQL, Identifier

from goalledger.core.errors import DomainError
from goalledger.core.ledger import Ledger
from goalledger.core.mapper import MsgspecMapper
from goalledger.projections.chain import GENESIS, Break, Link, links, walk
from goalledger.projections.store import ViewStore

BATCH = 5000
# (done, total or None while unknown, and during an import: "checking" or "writing")
Progress = Callable[..., None]


# Positions and versions are 64-bit signed integers in both stores and in the chain.
Int64 = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class ExportedEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One line of an export: a stored event and its link in the chain."""

    position: Int64
    aggregate_id: UUID
    version: Int64
    topic: str
    state: bytes  # base64 in JSON
    link: str


class ChainBroken(Exception):
    """The ledger's chain does not hold, so it is not exported."""

    def __init__(self, broken: Break) -> None:
        super().__init__(f"chain broken at position {broken.position}: {broken.reason}")
        self.broken = broken


class Imported(msgspec.Struct, frozen=True):
    """A checked export: how many events, the chain head they end on, the file's SHA-256."""

    events: int
    head: Link | None
    sha256: str


class _Line(msgspec.Struct, frozen=True):
    """An export line as written (the id already in its text form)."""

    position: int
    aggregate_id: str
    version: int
    topic: str
    state: bytes
    link: str


_encode_lines = msgspec.json.Encoder().encode_lines
_decode = msgspec.json.Decoder(ExportedEvent).decode
_MAPPER = MsgspecMapper()


# -- export --------------------------------------------------------------------------------


def export_lines(
    ledger: Ledger, store: ViewStore, *, progress: Progress | None = None
) -> Iterator[bytes]:
    """NDJSON lines (newline included) of every event up to the head at the call.

    Raises `ChainBroken` at the first event whose link does not hold, before writing the
    batch that holds it.
    """
    stop = ledger.head_position()
    batches = walk(ledger, store, stop=stop)
    while True:
        try:
            rows, computed = next(batches)
        except StopIteration as done:
            if not done.value.ok:
                raise ChainBroken(done.value.broken) from None
            return
        yield _encode_lines(
            [
                _Line(position, _hyphenated(aggregate_id), version, topic, state, link.hex())
                for (position, aggregate_id, version, topic, state), link in zip(
                    rows, computed, strict=True
                )
            ]
        )
        if progress is not None:
            progress(rows[-1][0], stop)


def _hyphenated(aggregate_id: str) -> str:
    """An id in its usual text form (SQLite keeps 32 bare hex digits)."""
    if len(aggregate_id) != 32:
        return aggregate_id
    h = aggregate_id
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# -- import --------------------------------------------------------------------------------


def check_export(path: Path, progress: Progress | None = None) -> Imported:
    """Check a whole export file without writing anything; refusals are `DomainError`s
    naming the line: its shape, position order, known topics and every link."""
    digest = hashlib.sha256()
    previous, after, count, head = GENESIS, 0, 0, None
    for batch in _batches(path, digest):
        for number, event in batch:
            if event.position <= after:
                raise DomainError(
                    f"line {number}",
                    f"position {event.position} is out of order (it follows {after})",
                )
            if not _known_topic(event.topic):
                raise DomainError(f"line {number}", f"unknown event topic {event.topic!r}")
            _check_decodes(number, event)
            after = event.position
        rows = [(e.position, e.aggregate_id.hex, e.version, e.topic, e.state) for _, e in batch]
        computed = links(previous, rows)
        if b"".join(computed).hex() != "".join(e.link for _, e in batch):
            number, event = next(
                line
                for line, link in zip(batch, computed, strict=True)
                if link.hex() != line[1].link
            )
            raise DomainError(
                f"line {number}",
                f"chain broken at position {event.position}: its link does not follow from "
                "the events before it",
            )
        previous, count = computed[-1], count + len(batch)
        head = Link(batch[-1][1].position, batch[-1][1].link)
        if progress is not None:
            progress(count, None, "checking")
    return Imported(events=count, head=head, sha256=digest.hexdigest())


def import_ledger(ledger: Ledger, path: Path, progress: Progress | None = None) -> Imported:
    """Check an export, then write its events into this empty ledger in one transaction.

    The writing pass re-reads the file and commits only if its bytes are the ones checked.
    """
    _require_empty(ledger)
    expected = check_export(path, progress)

    def batches() -> Iterator[list[ExportedEvent]]:
        digest, written = hashlib.sha256(), 0
        for batch in _batches(path, digest):
            yield [event for _, event in batch]
            written += len(batch)
            if progress is not None:
                progress(written, expected.events, "writing")
        if digest.hexdigest() != expected.sha256:
            raise DomainError("file", "changed while it was imported; nothing was written")

    if isinstance(ledger.recorder, SQLiteApplicationRecorder):
        _insert_sqlite(ledger, batches())
    else:
        _insert_postgres(ledger, batches())
    return expected


def _batches(path: Path, digest: Any) -> Iterator[list[tuple[int, ExportedEvent]]]:
    """(line number, event) pairs in batches, feeding every byte read to `digest`."""
    batch: list[tuple[int, ExportedEvent]] = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            digest.update(line)
            if not line.strip():
                continue
            try:
                batch.append((number, _decode(line)))
            except (msgspec.DecodeError, UnicodeDecodeError) as error:
                raise DomainError(f"line {number}", f"not an exported event: {error}") from None
            if len(batch) == BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def _check_decodes(number: int, event: ExportedEvent) -> None:
    """Refuse a state that is not its topic's event: the chain alone does not prove that
    (anyone can compute links), and such an event would stop replay after the import."""
    stored = StoredEvent(event.aggregate_id, event.version, event.topic, event.state)
    try:
        _MAPPER.to_domain_event(stored)
    except MapperDeserialisationError:
        raise DomainError(
            f"line {number}",
            f"the state at position {event.position} is not a {event.topic!r} event",
        ) from None


@cache
def _known_topic(topic: str) -> bool:
    try:
        resolve_topic(topic)
    except Exception:
        return False
    return True


def _require_empty(ledger: Ledger, head: int | None = None) -> None:
    head = ledger.head_position() if head is None else head
    if head:
        raise DomainError(
            "ledger",
            f"already holds events (up to position {head}); import only into an empty ledger",
        )


def _insert_sqlite(ledger: Ledger, batches: Iterator[list[ExportedEvent]]) -> None:
    recorder: Any = ledger.recorder
    table = recorder.events_table_name
    with recorder.datastore.transaction(commit=True) as cursor:
        # The id index takes random inserts: a page cache big enough to hold it keeps a
        # large import from re-reading its pages (SQLite's default is 2 MB).
        cursor.execute("PRAGMA cache_size")
        cache = cursor.fetchone()[0]
        cursor.execute("PRAGMA cache_size = -262144")
        try:
            cursor.execute(f"SELECT max(rowid) FROM {table}")
            _require_empty(ledger, cursor.fetchone()[0] or 0)
            for batch in batches:
                cursor.executemany(
                    f"INSERT INTO {table} (rowid, originator_id, originator_version, topic,"
                    " state) VALUES (?, ?, ?, ?, ?)",
                    [(e.position, e.aggregate_id.hex, e.version, e.topic, e.state) for e in batch],
                )
            ledger.name_imported_readings(cursor)
        finally:
            cursor.execute(f"PRAGMA cache_size = {int(cache)}")


def _insert_postgres(ledger: Ledger, batches: Iterator[list[ExportedEvent]]) -> None:
    recorder: Any = ledger.recorder
    table = SQL("{}.{}").format(
        Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name)
    )
    with recorder.datastore.transaction(commit=True) as cursor:
        # The lock every append takes: nothing else is written while we write.
        cursor.execute(SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(table))
        cursor.execute(SQL("SELECT max(notification_id) AS head FROM {}").format(table))
        _require_empty(ledger, cursor.fetchone()["head"] or 0)
        copy = SQL(
            "COPY {} (notification_id, originator_id, originator_version, topic, state) FROM STDIN"
        ).format(table)
        last = 0
        with cursor.copy(copy) as rows:
            for batch in batches:
                for e in batch:
                    rows.write_row((e.position, e.aggregate_id, e.version, e.topic, e.state))
                last = batch[-1].position
        if last:
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'notification_id'), %s)",
                (f"{recorder.datastore.schema}.{recorder.events_table_name}", last),
            )
        ledger.name_imported_readings(cursor)
