"""Group commit on SQLite: commands queued during a commit share the next transaction.

Each command must stay atomic on its own (a stale one is refused and leaves nothing,
the rest of its group commits), every caller learns its own positions, and the hooks
that keep the ledger's cache in step run in commit order.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError
from test_concurrency import key_results

from goalledger.core.errors import Conflict
from goalledger.core.event_writers import Row, SQLiteWriter
from goalledger.core.ledger import Ledger
from goalledger.core.objectives import KeyResult
from goalledger.core.settings import Settings

TABLE = "stored_events"


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[SQLiteWriter]:
    path = str(tmp_path / "events.db")
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(
            f"CREATE TABLE {TABLE} (originator_id TEXT, originator_version INTEGER,"
            " topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))"
        )
    writer = SQLiteWriter(path, TABLE, "full")
    statements: list[str] = []
    writer._connection.set_trace_callback(statements.append)
    writer.statements = statements  # type: ignore[attr-defined]
    yield writer
    writer.close()


@pytest.fixture
def rivals(tmp_path: Path, monkeypatch) -> Iterator[tuple[Ledger, Ledger, UUID]]:
    """Two ledgers on one file (two processes) and a key result checked in once through
    the first (cached there, the log just asked), whose queued check-ins trust that
    cache for a minute."""
    monkeypatch.setattr("goalledger.core.ledger_goals.QUEUED_STALENESS", 60.0)
    url = f"sqlite:///{tmp_path / 'l.db'}"
    ledger, other = Ledger(Settings(database_url=url)), Ledger(Settings(database_url=url))
    try:
        (kr,) = key_results(ledger, 1)
        ledger.check_in(kr, actor="here", value=Decimal(1))
        yield ledger, other, kr
    finally:
        ledger.close()
        other.close()


@contextmanager
def one_group(writer: SQLiteWriter) -> Iterator[tuple[str, Future]]:
    """Hold commits while a blocker's is under way: what is submitted in the block
    forms the next group. Yields the blocker's aggregate id and future."""
    with writer._lock:
        blocker_id = uuid4().hex
        blocker = writer.submit(rows(blocker_id, range(1, 2)))
        wait_until(lambda: not writer._queue)  # the committer took it and waits
        yield blocker_id, blocker


def transactions(statements: list[str]) -> int:
    """Transactions in a trace: BEGIN..COMMIT, or a write statement on its own."""
    count, open_ = 0, False
    for sql in statements:
        if sql.startswith("BEGIN"):
            open_ = True
        elif sql in ("COMMIT", "ROLLBACK"):
            open_, count = False, count + 1
        elif sql.startswith("INSERT") and not open_:
            count += 1
    return count


def rows(aggregate: str, versions: range) -> list[Row]:
    return [(aggregate, v, "topic", b"state") for v in versions]


def queued_behind_a_commit(writer: SQLiteWriter, commands: list[list[Row]]) -> list[Future]:
    """Start one command and hold its transaction until every other one is queued."""
    order: list[tuple[int, int]] = []
    pool = ThreadPoolExecutor(len(commands) + 1)
    writer._lock.acquire()  # the first command's transaction waits on this
    try:
        first = pool.submit(
            writer.insert, rows(uuid4().hex, range(1, 2)), lambda f, last: order.append((f, last))
        )
        while not writer._leading:
            time.sleep(0.001)
        futures = [
            pool.submit(writer.insert, command, lambda f, last: order.append((f, last)))
            for command in commands
        ]
        while len(writer._queue) < len(commands):
            time.sleep(0.001)
    finally:
        writer._lock.release()
    first.result(timeout=10)
    for future in futures:
        future.exception(timeout=10)
    pool.shutdown()
    writer.order = order  # type: ignore[attr-defined]
    return futures


def test_commands_queued_during_a_commit_share_one_transaction(writer: SQLiteWriter) -> None:
    commands = [rows(uuid4().hex, range(1, 2)) for _ in range(8)] + [rows(uuid4().hex, range(1, 4))]
    futures = queued_behind_a_commit(writer, commands)
    assert transactions(writer.statements) == 2  # the first command's, then all nine
    spans = sorted(future.result() for future in futures)
    assert spans[0][0] == 2 and spans[-1][1] == 12  # positions 2..12, none skipped
    for (_, last), (first, _) in itertools.pairwise(spans):
        assert first == last + 1
    assert [span for span in spans if span[1] - span[0] == 2]  # the three-row command


def test_a_stale_command_is_refused_alone_and_leaves_nothing(writer: SQLiteWriter) -> None:
    held = uuid4().hex
    writer.insert(rows(held, range(1, 3)))
    stale_single = rows(held, range(2, 3))  # version 2 is taken
    stale_multi = rows(held, range(3, 4)) + rows(held, range(1, 2))  # new 3, then taken 1
    fresh = [rows(uuid4().hex, range(1, 3)) for _ in range(3)]
    futures = queued_behind_a_commit(
        writer, [fresh[0], stale_single, fresh[1], stale_multi, fresh[2]]
    )
    assert isinstance(futures[1].exception(), IntegrityError)
    assert isinstance(futures[3].exception(), IntegrityError)
    committed = [futures[i].result() for i in (0, 2, 4)]
    with closing(sqlite3.connect(writer_path(writer))) as connection:
        versions = connection.execute(
            f"SELECT originator_version FROM {TABLE} WHERE originator_id = ? ORDER BY 1", (held,)
        ).fetchall()
        assert versions == [(1,), (2,)]  # the stale command's new version 3 was undone
        for (first, last), command in zip(committed, fresh, strict=True):
            found = connection.execute(
                f"SELECT originator_id, originator_version FROM {TABLE}"
                " WHERE rowid BETWEEN ? AND ? ORDER BY rowid",
                (first, last),
            ).fetchall()
            assert found == [(a, v) for a, v, _, _ in command]


def test_commit_hooks_run_in_commit_order(writer: SQLiteWriter) -> None:
    commands = [rows(uuid4().hex, range(1, 1 + n % 3 + 1)) for n in range(12)]
    queued_behind_a_commit(writer, commands)
    order = writer.order  # type: ignore[attr-defined]
    assert order == sorted(order) and len(order) == 13


def test_a_command_the_database_refuses_fails_alone(writer: SQLiteWriter) -> None:
    def refuse() -> None:
        raise RuntimeError("no")

    writer._connection.create_function("refuse", 0, refuse)
    writer._connection.execute(
        f"CREATE TEMP TRIGGER refuse BEFORE INSERT ON {TABLE} WHEN NEW.topic = 'poison'"
        " BEGIN SELECT refuse(); END"
    )
    poison = [*rows(uuid4().hex, range(1, 2)), (uuid4().hex, 1, "poison", b"")]
    fine = rows(uuid4().hex, range(1, 3))
    futures = queued_behind_a_commit(writer, [poison, fine, [(uuid4().hex, 1, "poison", b"")]])
    assert isinstance(futures[0].exception(), sqlite3.OperationalError)
    assert isinstance(futures[2].exception(), sqlite3.OperationalError)
    assert futures[1].result() == (2, 3)  # the first command took position 1
    with closing(sqlite3.connect(writer_path(writer))) as connection:
        assert connection.execute(f"SELECT count(*) FROM {TABLE}").fetchone() == (3,)


def wait_until(condition, seconds: float = 10) -> None:
    """Poll `condition` until it holds; fail after `seconds` rather than hang."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.001)


def writer_path(writer: SQLiteWriter) -> str:
    return writer._connection.execute("PRAGMA database_list").fetchone()[2]


def test_concurrent_check_ins_all_land_with_their_own_positions(tmp_path: Path) -> None:
    """Many threads check in to few key results (FULL durability): every check-in is
    recorded once, versions count up without gaps, and each caller's position holds
    its own event; the cache answers with the latest version throughout."""
    ledger = Ledger(Settings(database_url=f"sqlite:///{tmp_path / 'l.db'}"))
    try:
        krs = key_results(ledger, 4)
        barrier = threading.Barrier(16)

        def check_ins(n: int) -> list[tuple[int, int]]:
            barrier.wait()
            kr = krs[n % len(krs)]
            return [
                (w.version, w.position)
                for w in (ledger.check_in(kr, actor="t", value=i) for i in range(25))
            ]

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(check_ins, range(16)))
        positions = [p for result in results for _, p in result]
        assert len(set(positions)) == 16 * 25
        for kr in krs:
            assert ledger.load(kr, KeyResult).check_ins == 4 * 25
        by_position = {row[0]: row for row in ledger.notification_rows(min(positions) - 1, 10_000)}
        for n, result in enumerate(results):
            for version, position in result:
                _, aggregate_id, stored_version, _, _ = by_position[position]
                assert (aggregate_id, stored_version) == (str(krs[n % len(krs)]), version)
    finally:
        ledger.close()


def test_check_ins_queued_from_an_event_loop_group_without_blocking_it(tmp_path: Path) -> None:
    """The API's path: check-ins decided on the event loop, committed by the writer's
    committer thread. All land once, in groups, and the loop keeps running meanwhile."""
    ledger = Ledger(Settings(database_url=f"sqlite:///{tmp_path / 'l.db'}"))
    try:
        krs = key_results(ledger, 3)
        for kr in krs:
            ledger.load(kr, KeyResult)  # cached: decided without replaying the log
            assert ledger.cached(kr)
        statements: list[str] = []
        ledger._writer._connection.set_trace_callback(statements.append)

        async def main() -> tuple[list, int]:
            lanes = {kr: asyncio.Lock() for kr in krs}
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0)

            async def one(n: int):
                kr = krs[n % len(krs)]
                async with lanes[kr]:
                    queued = ledger.queue_check_in(kr, actor="t", value=Decimal(n % 100))
                    return kr, await asyncio.wrap_future(queued)

            running = asyncio.create_task(ticker())
            written = await asyncio.gather(*(one(n) for n in range(300)))
            running.cancel()
            return written, ticks

        written, ticks = asyncio.run(main())
        assert ticks > 0
        assert len({w.position for _, w in written}) == 300
        for kr in krs:
            versions = sorted(w.version for k, w in written if k == kr)
            assert versions == list(range(2, 102))  # defined at 1, then 100 check-ins
            assert ledger.load(kr, KeyResult).check_ins == 100
        assert transactions(statements) < 300  # grouped
    finally:
        ledger.close()


def test_a_queued_write_that_lost_a_race_is_a_conflict(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    ledger, other = Ledger(Settings(database_url=url)), Ledger(Settings(database_url=url))
    try:
        (kr,) = key_results(ledger, 1)
        stale = ledger.load(kr, KeyResult)
        other.check_in(kr, actor="elsewhere", value=Decimal(1))  # another process wins
        stale.check_in(actor="here", value=Decimal(2))
        with pytest.raises(Conflict):
            ledger.record_queued(stale).result(timeout=10)
        with pytest.raises(Conflict):  # a stale If-Match is refused before queueing
            ledger.queue_check_in(kr, actor="here", expected_version=1, value=Decimal(3))
        assert ledger.load(kr, KeyResult).check_ins == 1
    finally:
        ledger.close()
        other.close()


def test_a_queued_check_in_on_a_briefly_trusted_cache_is_refused_then_lands(rivals) -> None:
    """Without If-Match a queued check-in trusts a cache that asked the log moments ago;
    another process's write in that window makes it a `Conflict` (nothing written),
    and the retry asks the log and lands on the new version. With If-Match the log is
    always asked, so the version compared is current."""
    ledger, other, kr = rivals
    other.check_in(kr, actor="elsewhere", value=Decimal(2))  # version 3, unseen here
    with pytest.raises(Conflict):
        ledger.queue_check_in(kr, actor="here", value=Decimal(3)).result(timeout=10)
    assert other.load(kr, KeyResult).check_ins == 2  # the stale one wrote nothing
    written = ledger.queue_check_in(kr, actor="here", value=Decimal(4)).result(timeout=10)
    assert (written.version, ledger.load(kr, KeyResult).check_ins) == (4, 3)
    other.check_in(kr, actor="elsewhere", value=Decimal(5))  # version 5, unseen here
    done = ledger.queue_check_in(kr, actor="here", expected_version=5, value=Decimal(6))
    assert done.result(timeout=10).version == 6  # If-Match: compared with the log


def test_a_caller_that_stops_waiting_does_not_stop_the_write(tmp_path: Path, caplog) -> None:
    """A client that disconnects cancels the route's await: the check-in still commits
    (it may have been decided already), nothing is logged as broken, later ones land."""
    ledger = Ledger(Settings(database_url=f"sqlite:///{tmp_path / 'l.db'}"))
    try:
        (kr,) = key_results(ledger, 1)
        ledger.load(kr, KeyResult)

        async def main() -> None:
            ledger._writer._lock.acquire()  # hold the commit until the caller gave up
            try:
                queued = ledger.queue_check_in(kr, actor="t", value=Decimal(1))
                waiting = asyncio.ensure_future(asyncio.wrap_future(queued))
                await asyncio.sleep(0.01)
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
                await asyncio.sleep(0.01)  # the cancel reaches the write's future meanwhile
                assert not queued.cancelled()  # and finds it running: the write goes on
            finally:
                ledger._writer._lock.release()
            assert queued.result(timeout=10).version == 2  # committed all the same
            later = ledger.queue_check_in(kr, actor="t", value=Decimal(2))
            assert (await asyncio.wrap_future(later)).version == 3

        asyncio.run(main())
        assert ledger.load(kr, KeyResult).check_ins == 2
        assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    finally:
        ledger.close()


def test_a_command_after_a_refused_one_is_refused_and_writes_nothing(
    writer: SQLiteWriter,
) -> None:
    """`submit(after=...)`: rows decided on a queued command commit after it, or are
    refused with it: in the same group or a later one, while others commit."""
    held, chained, other = uuid4().hex, uuid4().hex, uuid4().hex
    writer.insert(rows(held, range(1, 2)))
    with one_group(writer) as (blocker_id, blocker):
        stale = writer.submit(rows(held, range(1, 2)))  # version 1 is taken
        same_group = writer.submit(rows(held, range(2, 3)), after=stale)
        fresh = writer.submit(rows(other, range(1, 2)))
        chained_ok = writer.submit(rows(other, range(2, 3)), after=fresh)
    blocker.result(timeout=10)
    assert isinstance(stale.exception(timeout=10), IntegrityError)
    assert isinstance(same_group.exception(timeout=10), IntegrityError)
    assert fresh.result(timeout=10)[1] + 1 == chained_ok.result(timeout=10)[0]
    later_group = writer.submit(rows(chained, range(1, 2)), after=same_group)
    assert isinstance(later_group.exception(timeout=10), IntegrityError)
    with closing(sqlite3.connect(writer_path(writer))) as connection:
        stored = connection.execute(
            f"SELECT originator_id, originator_version FROM {TABLE} ORDER BY rowid"
        ).fetchall()
    assert stored == [(held, 1), (blocker_id, 1), (other, 1), (other, 2)]


def test_queued_check_ins_to_one_key_result_share_a_commit(tmp_path: Path) -> None:
    """The next check-in is decided on the queued, uncommitted state of the ones before
    it: five queued while a commit is held land as versions 2..6 in one transaction;
    If-Match is compared with that state; nothing stays queued once they commit."""
    ledger = Ledger(Settings(database_url=f"sqlite:///{tmp_path / 'l.db'}"))
    try:
        (kr,) = key_results(ledger, 1)
        ledger.load(kr, KeyResult)
        statements: list[str] = []
        ledger._writer._connection.set_trace_callback(statements.append)
        with ledger._writer._lock:  # commits wait
            first = ledger.queue_check_in(kr, actor="t", value=Decimal(0))
            wait_until(lambda: not ledger._writer._queue)  # the committer took it, waits
            queued = [ledger.queue_check_in(kr, actor="t", value=Decimal(n)) for n in (1, 2, 3)]
            assert ledger.queued_state(kr)[0].version == 5
            with pytest.raises(Conflict):  # If-Match: compared with the queued version
                ledger.queue_check_in(kr, actor="t", expected_version=2, value=Decimal(9))
            queued.append(
                ledger.queue_check_in(kr, actor="t", expected_version=5, value=Decimal(4))
            )
        assert first.result(timeout=10).version == 2
        assert [q.result(timeout=10).version for q in queued] == [3, 4, 5, 6]
        assert transactions(statements) == 2  # the first, then the four decided on it
        assert ledger.queued_commit(kr) is None and ledger.queued_state(kr) is None
        kr_state = ledger.load(kr, KeyResult)
        assert (kr_state.version, kr_state.check_ins) == (6, 5)
    finally:
        ledger.close()


def test_check_ins_queued_on_one_another_process_overtook_are_all_refused(rivals) -> None:
    """Another process writes the version the first queued check-in takes: that one is
    a `Conflict`, and so is every check-in decided on it; none writes anything, and
    the next check-in, decided afresh from the log, lands."""
    ledger, other, kr = rivals
    with ledger._writer._lock:  # commits wait
        queued = [ledger.queue_check_in(kr, actor="here", value=Decimal(n)) for n in (2, 3, 4)]
        other.check_in(kr, actor="elsewhere", value=Decimal(9))  # takes version 3
    for future in queued:
        with pytest.raises(Conflict):
            future.result(timeout=10)
    assert ledger.queued_state(kr) is None
    overtaken = other.load(kr, KeyResult)
    assert (overtaken.version, overtaken.check_ins) == (3, 2)  # none of ours
    written = ledger.queue_check_in(kr, actor="here", value=Decimal(5)).result(timeout=10)
    assert written.version == 4
    assert ledger.load(kr, KeyResult).check_ins == 3


def test_a_check_in_decided_on_a_commit_that_is_refused_meanwhile_is_refused(rivals) -> None:
    """The queued state and its commit are handed out together: a check-in decided on
    them is refused even if that commit was refused (and left the queued map) before
    this check-in was passed on."""
    ledger, other, kr = rivals
    with ledger._writer._lock:  # commits wait
        first = ledger.queue_check_in(kr, actor="here", value=Decimal(2))
        state, after = ledger.queued_state(kr)
        other.check_in(kr, actor="elsewhere", value=Decimal(9))  # takes version 3
    with pytest.raises(Conflict):
        first.result(timeout=10)
    assert ledger.queued_state(kr) is None  # the refused commit left the map
    state.check_in(actor="here", value=Decimal(3))
    with pytest.raises(Conflict):
        ledger.record_queued(state, after).result(timeout=10)
    assert other.load(kr, KeyResult).check_ins == 2  # none of ours


def test_a_hook_that_raises_past_exception_leaves_no_command_unfinished(
    writer: SQLiteWriter,
) -> None:
    """Every command of a group learns its outcome, even when one's commit hook raises
    something other than an Exception (the committer logs it and goes on)."""

    def stop(first: int, last: int) -> None:
        raise SystemExit("hook stopped")

    with one_group(writer) as (_, blocker):
        first = writer.submit(rows(uuid4().hex, range(1, 2)), stop)
        second = writer.submit(rows(uuid4().hex, range(1, 2)))
    blocker.result(timeout=10)
    assert first.result(timeout=10) == (2, 2)  # committed: its hook's failure is not its
    assert second.result(timeout=10) == (3, 3)
    later = writer.submit(rows(uuid4().hex, range(1, 2)))  # and later commands commit
    assert later.result(timeout=10) == (4, 4)
