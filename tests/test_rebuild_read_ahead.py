"""A rebuild that reads and chains the log in a second process builds the same views.

`read_ahead` only starts its reader for large ledgers; these tests lower the threshold so
small SQLite ledgers take that path too.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from decimal import Decimal

import pytest
from projection_fixtures import days_ago, uptime_kpi
from test_alerts import history
from test_replay import SeededChooser, run_and_compare

from goalledger.api.bootstrap import bootstrap
from goalledger.core.kpis import Kpi
from goalledger.core.ledger import Ledger, ReadingInput
from goalledger.core.settings import Settings
from goalledger.projections import chain, log_pages, read_ahead, schema
from goalledger.projections.projector import ProjectionFailed, Projector, rebuild


@pytest.fixture
def readers(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen]:
    """Every rebuild reads ahead; the reader processes started are listed here."""
    monkeypatch.setattr(read_ahead, "MIN_EVENTS", 0)
    started: list[subprocess.Popen] = []
    popen = subprocess.Popen

    def recording_popen(*args, **kwargs):  # the real reader, remembered
        started.append(popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    return started


def kpi_with_readings(ledger: Ledger, count: int) -> Kpi:
    """The uptime KPI with `count` daily readings of 99."""
    kpi = uptime_kpi(ledger)
    readings = [ReadingInput(kpi.id, f"r{i}", Decimal(99), days_ago(i)) for i in range(count)]
    ledger.record_readings(readings, source="manual", actor="bot")
    return kpi


@pytest.mark.parametrize("batch", [1, 4, 5000])
def test_read_ahead_rebuild_equals_live_projection(
    sqlite_url: str, readers: list[subprocess.Popen], batch: int
) -> None:
    with bootstrap(Settings(database_url=sqlite_url)) as system:
        run_and_compare(system, SeededChooser(20261205 + batch), steps=60, rebuild_batch=batch)
        assert len(readers) == 1 and readers[0].returncode == 0
        verdict = chain.verify(system.ledger, system.store)
        assert verdict.ok, verdict.broken
        assert verdict.checked == system.ledger.head_position()


def test_read_ahead_rebuild_catches_up_with_events_written_meanwhile(
    sqlite_url: str, readers: list[subprocess.Popen]
) -> None:
    with bootstrap(Settings(database_url=sqlite_url)) as system:
        kpi = kpi_with_readings(system.ledger, 30)
        calls = []

        def write_meanwhile(done: int, total: int) -> None:
            if not calls:  # after the first page: the reader has read up to the old head
                system.ledger.record_readings(
                    [ReadingInput(kpi.id, "late", Decimal(50), days_ago(0))],
                    source="manual",
                    actor="bot",
                )
            calls.append(done)

        rebuild(system.ledger, system.store, write_meanwhile, batch_size=7)
        assert system.projector.position() == system.ledger.head_position()
        assert len(readers) == 1 and readers[0].returncode == 0
        assert chain.verify(system.ledger, system.store).ok


def test_a_failed_rebuild_leaves_no_reader_behind(
    sqlite_url: str, readers: list[subprocess.Popen]
) -> None:
    with bootstrap(Settings(database_url=sqlite_url)) as system:
        # More pages than the pipe holds: the reader is still writing when the rebuild stops.
        kpi_with_readings(system.ledger, 800)
        with pytest.raises(ProjectionFailed):
            rebuild(system.ledger, system.store, _fail_after_first_page, batch_size=5)
        assert len(readers) == 1
        assert readers[0].returncode == -signal.SIGKILL  # stopped and reaped
        pid = readers[0].pid
        assert not os.path.exists(f"/proc/{pid}") or _zombie_free(pid)


def _fail_after_first_page(done: int, total: int) -> None:
    raise ProjectionFailed(done, "test", "stopped on purpose")


def _zombie_free(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:  # a pid reused by another process since
        return stat.read().split()[2] != "Z"


def test_read_ahead_rebuild_raises_the_same_alerts(
    sqlite_url: str, readers: list[subprocess.Popen]
) -> None:
    with bootstrap(Settings(database_url=sqlite_url)) as system:
        history(system)  # health changes, back-dated readings and a correction
        system.catch_up()
        every_column = "SELECT * FROM gl_alerts ORDER BY position"
        with system.store.read() as tx:
            before = tx.all(every_column)
        with system.store.transaction() as tx:
            tx.execute("DELETE FROM gl_alerts")
            tx.execute("DELETE FROM gl_outbox")
        rebuild(system.ledger, system.store)
        with system.store.read() as tx:
            assert tx.all(every_column) == before
        assert len(before) == 6 and len(readers) == 1


def test_links_hashed_ahead_from_another_head_are_hashed_again_from_the_ledger(
    sqlite_url: str, readers: list[subprocess.Popen]
) -> None:
    with bootstrap(Settings(database_url=sqlite_url)) as system:
        kpi_with_readings(system.ledger, 30)
        system.catch_up()
        head = system.ledger.head_position()
        # A generation chained up to 10 in-process; the reader, started at 10, hashes
        # from the genesis link instead, and its readings come without their states.
        builder = Projector(system.ledger, system.store, generation=77)
        assert builder.apply_page(0, log_pages.page(system.ledger, 0, 10)) == 10
        start = 10
        for page in read_ahead.pages(system.ledger, start, head, 7):
            assert page.links is not None and any(row[4] == b"" for row in page.rows)
            assert builder.apply_page(start, page) == len(page.rows)
            start = page.rows[-1][0]
        with system.store.read() as tx:
            live = schema.live_generation(tx)
            chained = tx.all("SELECT position, hash FROM g77_chain ORDER BY position")
            expected = tx.all(f"SELECT position, hash FROM g{live}_chain ORDER BY position")
        assert chained == expected and len(chained) == head and len(readers) == 1


def test_ids_are_hyphenated_as_sqlite_hyphenated_them() -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    stored = [ids[0].hex, ids[1].hex.upper(), "not a uuid, thirty-two characters"[:32]]
    connection = sqlite3.connect(":memory:")
    # How the projector had SQLite hyphenate ids of 32 characters until then.
    sql = (
        "SELECT substr(?1, 1, 8) || '-' || substr(?1, 9, 4) || '-' || substr(?1, 13, 4)"
        " || '-' || substr(?1, 17, 4) || '-' || substr(?1, 21)"
    )
    assert [log_pages.hyphenated(s) for s in stored] == [
        connection.execute(sql, (s,)).fetchone()[0] for s in stored
    ]
    # Other text goes through UUID, as before.
    assert log_pages.hyphenated(f"{{{ids[2]}}}") == str(ids[2])
    assert log_pages.hyphenated(str(ids[2]).upper()) == str(ids[2])


@pytest.mark.parametrize(
    "broken",
    [
        ["/nonexistent/python"],  # cannot start
        [sys.executable, "-c", "import sys; sys.exit(3)"],  # exits before a page
        [sys.executable, "-c", "import sys; sys.stdout.buffer.write(bytes(5))"],  # half a page
    ],
)
def test_a_failing_reader_leaves_the_rebuild_to_read_in_process(
    sqlite_url: str, readers: list[subprocess.Popen], monkeypatch: pytest.MonkeyPatch,
    broken: list[str],
) -> None:  # fmt: skip
    monkeypatch.setattr(read_ahead, "command", lambda *args: broken)
    with bootstrap(Settings(database_url=sqlite_url)) as system:
        run_and_compare(system, SeededChooser(20261206), steps=40, rebuild_batch=6)
        assert chain.verify(system.ledger, system.store).ok


@pytest.mark.parametrize("status", [0, 1])
def test_a_reader_stopping_mid_way_leaves_the_rest_to_this_process(
    sqlite_url: str, readers: list[subprocess.Popen], monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    real = read_ahead.command

    def two_pages_then_exit(database, table, after, head, batch_size, decodes):
        args = real(database, table, after, after + 2 * batch_size, batch_size, decodes)
        run = (
            f"import runpy, sys; sys.argv = {['read_ahead', *args[3:]]!r};"
            f" runpy.run_module({read_ahead.__name__!r}, run_name='__main__'); sys.exit({status})"
        )
        return [sys.executable, "-c", run]

    monkeypatch.setattr(read_ahead, "command", two_pages_then_exit)
    with bootstrap(Settings(database_url=sqlite_url)) as system:
        run_and_compare(system, SeededChooser(20261207), steps=40, rebuild_batch=5)
        assert chain.verify(system.ledger, system.store).ok
        assert len(readers) == 1 and readers[0].returncode == status
