"""A rebuild's log pages, read and chained ahead by a second process.

A rebuild is bound by one core, and a third of its time went into reading the
ledger's rows and hashing their chain links. A child process now does both for the
next page while this one applies the page before: `python -m` this module reads the
SQLite ledger with the same query as `chain.log_rows`, hashes the links with
`chain.links`, hyphenates the ids as `log_pages.read_rows` would, and decodes
recorded readings (most events) into the few values the views store; other events
are decoded here (few, and their structs cost as much to send as to decode).

Each page crosses a pipe as one MessagePack frame; a thread here takes frames off the
pipe into a one-frame queue, so the child runs at most about two pages ahead and
memory stays flat. Only for a SQLite ledger in a file (another process cannot open an
in-memory one); anything else is read in this process, page by page, as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

import msgspec
from eventsourcing.sqlite import SQLiteApplicationRecorder

from goalledger.core.ledger import Ledger
from goalledger.projections import chain, log_pages

log = logging.getLogger(__name__)
# Below this many events a child process costs more than it saves.
MIN_EVENTS = 50_000
PIPE_BYTES = 1 << 20
FIRST_PAGE = 1000
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_FRAME = msgspec.msgpack.Decoder(
    tuple[
        str,
        list[tuple[int, str, int, str, bytes]],
        list[tuple[int, str]],
        list[log_pages.ReadingFacts | None],
    ]
)


class ReaderFailed(Exception):
    """The read-ahead child could not be started or stopped before the end."""


def pages(ledger: Ledger, after: int, head: int, batch_size: int) -> Iterator[log_pages.Page]:
    """The log's pages after position `after` up to about `head` (as a rebuild reads
    them: `batch_size` events, fewer for the last), read ahead when that pays.

    Read ahead, the first page is shorter (the rebuild waits for it), and the rows of
    recorded readings come with their `ReadingFacts` and links but no stored state.
    Should the reader fail, the pages go on from this process.
    """
    database = _database(ledger)
    if database is not None and head - after >= MIN_EVENTS:
        try:
            with contextlib.closing(
                _read_ahead(ledger, database, after, head, batch_size)
            ) as ahead:
                for page in ahead:
                    yield page
                    after = page.rows[-1][0]
        except ReaderFailed as failure:
            log.warning("log reader: %s; reading on in this process after %d", failure, after)
    while after < head:  # (after the reader: nothing left, unless it stopped short)
        page = log_pages.page(ledger, after, min(batch_size, head - after))
        if not page.rows:
            return
        yield page
        after = page.rows[-1][0]


def command(
    database: str, table: str, after: int, head: int, batch_size: int, decodes: bool
) -> list[str]:
    """The read-ahead child's command line."""
    numbers = (after, head, batch_size, int(decodes))
    return [sys.executable, "-m", __name__, database, table, *(str(n) for n in numbers)]


def _read_ahead(
    ledger: Ledger, database: str, after: int, head: int, batch_size: int
) -> Iterator[log_pages.Page]:
    recorder: Any = ledger.recorder
    mapper: Any = ledger.mapper
    # Sealed or compressed states only this process can open: it decodes them all.
    decodes = not (mapper.cipher or mapper.compressor)
    arguments = command(database, recorder.events_table_name, after, head, batch_size, decodes)
    try:
        child = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as error:
        raise ReaderFailed(f"cannot start {arguments[0]}: {error}") from error
    assert child.stdout is not None
    _widen(child.stdout)
    frames: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=1)
    stop = threading.Event()
    receiver = threading.Thread(
        target=_receive, args=(child.stdout, frames, stop), name="goalledger-read-ahead"
    )
    receiver.start()
    try:
        while (frame := frames.get()) is not None:
            if isinstance(frame, BaseException):
                raise ReaderFailed(f"{type(frame).__name__}: {frame}") from frame
            try:
                previous, rows, links, readings = _FRAME.decode(frame)
            except msgspec.DecodeError as error:
                raise ReaderFailed(f"a page did not decode: {error}") from error
            fields = log_pages.decode(ledger, rows, readings)
            yield log_pages.Page(rows, fields, (previous, links))
        if child.wait() != 0:
            stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
            raise ReaderFailed(f"it exited with {child.returncode}: {stderr.strip()[-2000:]}")
    finally:
        if child.poll() is None:  # the rebuild stopped early: so does its reader
            child.kill()
        child.wait()
        stop.set()
        receiver.join()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


def _receive(
    stream: BinaryIO, frames: queue.Queue[bytes | BaseException | None], stop: threading.Event
) -> None:
    """Move the child's frames from the pipe to `frames` (then None, or the error), until
    `stop`. A thread: it waits on the pipe without the GIL, so the child can hand over the
    next page while this process applies one, and takes the GIL once per MiB."""
    item: bytes | BaseException | None
    while True:
        try:
            item = _read_frame(stream)
        except BaseException as error:  # handed to the consumer, which raises it
            item = error
        while True:
            try:
                frames.put(item, timeout=0.05)
                break
            except queue.Full:
                if stop.is_set():
                    return
        if not isinstance(item, bytes):
            return


def _database(ledger: Ledger) -> str | None:
    """The SQLite ledger's file (as its recorder names it), or None to read in-process."""
    recorder: Any = ledger.recorder
    if not isinstance(recorder, SQLiteApplicationRecorder):
        return None
    pool = recorder.datastore.pool
    if pool.is_sqlite_memory_mode:
        return None
    return str(pool.db_name)


def _widen(pipe: BinaryIO) -> None:
    """Let the child write up to 1 MiB ahead (Linux; 64 KiB otherwise): a page then
    crosses in a few hand-overs instead of one per 64 KiB."""
    with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size, or not Linux
        fcntl.fcntl(pipe.fileno(), F_SETPIPE_SZ, PIPE_BYTES)


def _read_frame(stream: BinaryIO) -> bytes | None:
    size = stream.read(8)
    if not size:
        return None
    frame = stream.read(int.from_bytes(size, "big"))
    if len(size) != 8 or len(frame) != int.from_bytes(size, "big"):
        raise ReaderFailed("it stopped mid-page")
    return frame


def main(database: str, table: str, after: int, head: int, batch_size: int, decodes: int) -> None:
    """The child: write each page to stdout, in order: the link before it, its rows, their
    chain links and, if `decodes`, the facts of its recorded readings (else None)."""
    import sqlite3

    connection = sqlite3.connect(database, uri=True)
    out = sys.stdout.buffer
    encode = msgspec.msgpack.Encoder().encode
    recorded, facts = log_pages.READING_RECORDED, log_pages.recorded_reading
    hyphenated = log_pages.hyphenated
    previous, limit = chain.GENESIS, min(FIRST_PAGE, batch_size)  # a short first page
    while after < head:
        limit = min(limit, head - after)
        # Ids as stored, which the chain hashes (as `chain.verify` does); hyphenated here.
        rows = log_pages.select_stored_rows(connection.cursor(), table, after, limit)
        if not rows:
            break
        links = chain.links(previous, rows)
        sent, chained, readings = [], [], []
        for (position, stored_id, version, topic, state), link in zip(rows, links, strict=True):
            reading = facts(state) if decodes and topic == recorded else None
            # A reading sent as facts goes without its stored state (its link came too).
            state = state if reading is None else b""
            sent.append((position, hyphenated(stored_id), version, topic, state))
            chained.append((position, link.hex()))
            readings.append(reading)
        frame = encode((previous.hex(), sent, chained, readings))
        out.write(len(frame).to_bytes(8, "big"))
        out.write(frame)
        out.flush()
        previous, after, limit = links[-1], rows[-1][0], batch_size
    connection.close()


if __name__ == "__main__":
    database, table, *numbers = sys.argv[1:]
    main(database, table, *(int(number) for number in numbers))
