"""Background loops during a database outage: one warning, quiet retries, one recovery line.

The errors are real: a PostgreSQL connection refused by a closed port on 127.0.0.1.
"""

from __future__ import annotations

import logging
import socket
import time

import psycopg
import pytest

from goalledger.core.unavailable import LoopFailures
from goalledger.plugins.worker import Ticker

log = logging.getLogger("goalledger.test.loops")


def refused_connection() -> psycopg.OperationalError:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/x", connect_timeout=2)
    except psycopg.OperationalError as error:
        return error
    raise AssertionError("a closed port accepted a connection")


def test_an_outage_is_one_warning_with_growing_waits_then_one_recovery_line(caplog) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    failures = LoopFailures(log, "dispatch round", first=0.25, longest=1.0)
    outage = refused_connection()
    waits = [failures.failed(outage) for _ in range(5)]
    assert waits == [0.25, 0.5, 1.0, 1.0, 1.0]
    failures.succeeded()
    failures.succeeded()
    lines = [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0][0] == "WARNING" and "dispatch round: the database is unavailable" in lines[0][1]
    assert "OperationalError" in lines[0][1] and lines[0][2] is None  # no traceback
    assert lines[1][:2] == ("WARNING", "dispatch round: the database answers again")
    assert failures.failed(outage) == 0.25  # a new outage starts over


def test_any_other_error_is_logged_with_its_traceback_every_time(caplog) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    failures = LoopFailures(log, "scheduler tick", longest=2.0)
    for _ in range(3):
        try:
            {}["missing"]
        except KeyError as error:
            assert failures.failed(error) == 2.0
    assert [r.levelname for r in caplog.records] == ["ERROR"] * 3
    assert all(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records)


@pytest.mark.timeout(20)
def test_a_ticker_during_an_outage_logs_one_line_and_recovers(caplog) -> None:
    caplog.set_level(logging.INFO, logger="goalledger.worker")
    outage = refused_connection()
    state = {"down": True, "calls": 0}

    def poll() -> None:
        state["calls"] += 1
        if state["down"]:
            raise outage

    ticker = Ticker("alert clock", poll, interval=0.02)
    ticker.start()
    try:
        deadline = time.monotonic() + 10
        while state["calls"] < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        state["down"] = False
        calls = state["calls"]
        while state["calls"] < calls + 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        ticker.stop()
    messages = [r.getMessage() for r in caplog.records if r.name == "goalledger.worker"]
    assert state["calls"] >= 23
    assert len(messages) == 2, messages
    assert messages[0].startswith("alert clock: the database is unavailable")
    assert messages[1] == "alert clock: the database answers again"
