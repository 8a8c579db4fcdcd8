"""A rebuild's log pages, read and chained ahead by a second process.

A rebuild is bound by one core, and a third of its time went into reading the
ledger's rows and hashing their chain links. A child process now does both for the
next page while this one applies the page before: `python -m` this module reads the
SQLite ledger with the same query as `log_pages.read_rows` and hashes the links with
`chain.links`; each page crosses a pipe as one MessagePack frame. The pipe holds at
most the frame being written, so the child is one page ahead at most and memory
stays flat. Decoding stays here: decoded structs cost as much to send as to decode.

Only for a SQLite ledger in a file (another process cannot open an in-memory one);
anything else is read in this process, page by page, as before.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

import msgspec
from eventsourcing.sqlite import SQLiteApplicationRecorder

from goalledger.core.ledger import Ledger
from goalledger.projections import chain, log_pages

# Below this many events a child process costs more than it saves.
MIN_EVENTS = 50_000
_FRAME = msgspec.msgpack.Decoder(
    tuple[str, list[tuple[int, str, int, str, bytes]], list[tuple[int, str]]]
)


def pages(ledger: Ledger, after: int, head: int, batch_size: int) -> Iterator[log_pages.Page]:
    """The log's pages after position `after` up to about `head` (as a rebuild reads
    them: `batch_size` events, fewer for the last), read ahead when that pays."""
    database = _database(ledger)
    if database is None or head - after < MIN_EVENTS:
        while after < head:
            page = log_pages.page(ledger, after, min(batch_size, head - after))
            if not page.rows:
                return
            yield page
            after = page.rows[-1][0]
        return
    recorder: Any = ledger.recorder
    child = subprocess.Popen(
        [sys.executable, "-m", __name__, database, recorder.events_table_name,
         str(after), str(head), str(batch_size)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    try:
        while (frame := _read_frame(child.stdout)) is not None:
            previous, rows, links = _FRAME.decode(frame)
            yield log_pages.Page(rows, log_pages.decode(ledger, rows), (previous, links))
        if child.wait() != 0:
            stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
            raise RuntimeError(f"the log reader failed ({child.returncode}): {stderr.strip()}")
    finally:
        if child.poll() is None:  # the rebuild stopped early: so does its reader
            child.kill()
        child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def _database(ledger: Ledger) -> str | None:
    """The SQLite ledger's file (as its recorder names it), or None to read in-process."""
    recorder: Any = ledger.recorder
    if not isinstance(recorder, SQLiteApplicationRecorder):
        return None
    pool = recorder.datastore.pool
    if pool.is_sqlite_memory_mode:
        return None
    return str(pool.db_name)


def _read_frame(stream: BinaryIO) -> bytes | None:
    size = stream.read(8)
    if not size:
        return None
    frame = stream.read(int.from_bytes(size, "big"))
    if len(frame) != int.from_bytes(size, "big"):
        raise RuntimeError("the log reader stopped mid-page")
    return frame


def main(database: str, table: str, after: int, head: int, batch_size: int) -> None:
    """The child: write each page (previous link, rows, chain rows) to stdout, in order."""
    import sqlite3

    connection = sqlite3.connect(database, uri=True)
    out = sys.stdout.buffer
    encode = msgspec.msgpack.Encoder().encode
    previous = chain.GENESIS
    while after < head:
        rows = log_pages.select_rows(
            connection.cursor(), table, after, min(batch_size, head - after)
        )
        if not rows:
            break
        links = chain.links(previous, rows)
        frame = encode(
            (
                previous.hex(),
                rows,
                [(row[0], link.hex()) for row, link in zip(rows, links, strict=True)],
            )
        )
        out.write(len(frame).to_bytes(8, "big"))
        out.write(frame)
        out.flush()
        previous, after = links[-1], rows[-1][0]
    connection.close()


if __name__ == "__main__":
    database, table, *numbers = sys.argv[1:]
    main(database, table, *(int(number) for number in numbers))
