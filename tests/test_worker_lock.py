"""The worker's active/standby lock and its service loop, in process: one holder at a
time, services stopped when the lock is lost, standing by until it can be had again."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from goalledger.core.settings import Settings
from goalledger.plugins.worker import FileLock, PostgresLock, Ticker, Worker, lock_for


def test_a_file_lock_has_one_holder_at_a_time(tmp_path: Path) -> None:
    first, second = FileLock(tmp_path / "w.lock"), FileLock(tmp_path / "w.lock")
    assert first.acquire() and first.holds()
    assert not second.acquire() and not second.holds()
    first.release()
    assert second.acquire()
    second.release()


@pytest.mark.postgres
def test_a_postgres_advisory_lock_has_one_holder_and_dies_with_its_session(
    postgres_url: str,
) -> None:
    first = lock_for(Settings(database_url=postgres_url))
    second = lock_for(Settings(database_url=postgres_url))
    assert isinstance(first, PostgresLock)
    assert first.acquire() and first.holds()
    assert not second.acquire()
    first._close()  # the session ends as a killed process's would
    assert not first.holds()
    try:
        # The server ends the session (and frees its locks) a moment after the socket closes.
        deadline = time.monotonic() + 10
        while not second.acquire():
            assert time.monotonic() < deadline, "the lock outlived its session"
            time.sleep(0.05)
    finally:
        second.release()


class Flaky:
    """A lock that can be taken away."""

    def __init__(self) -> None:
        self.free, self.held, self.acquired = True, False, 0

    def acquire(self) -> bool:
        self.held = self.free
        self.acquired += self.held
        return self.held

    def holds(self) -> bool:
        return self.held and self.free

    def release(self) -> None:
        self.held = False


class Service:
    def __init__(self) -> None:
        self.running = False

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False


def eventually(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_worker_runs_its_services_only_while_it_holds_the_lock() -> None:
    lock, service, states = Flaky(), Service(), []
    lock.free = False
    worker = Worker([service], lock, standby_poll=0.01, on_state=states.append)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        eventually(lambda: worker.state.startswith("standby"))
        assert not service.running
        lock.free = True
        eventually(lambda: service.running)
        lock.free = False  # lost (say the database connection broke)
        eventually(lambda: not service.running and worker.state.startswith("standby"))
        lock.free = True
        eventually(lambda: service.running and lock.acquired == 2)
    finally:
        stop.set()
        thread.join(5)
    assert not service.running and worker.state == "stopped"
    assert [s.split(" ")[0] for s in states] == [
        "standby",
        "active",
        "standby",
        "active",
        "stopped",
    ]


def test_a_ticker_keeps_ticking_after_a_failure() -> None:
    calls: list[int] = []

    def tick() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")

    ticker = Ticker("test-ticker", tick, 0.01)
    ticker.start()
    try:
        eventually(lambda: len(calls) >= 3)
    finally:
        ticker.stop()
