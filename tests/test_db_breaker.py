"""The PostgreSQL circuit breaker (core/breaker.py) against a real outage: a TCP proxy
between the system and PostgreSQL that the test severs and restores. Calls fail fast
once the breaker opens (the first one too, within seconds), a drained pool with the
database reachable does not open it, and it closes by itself when the database is back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import TEST_SECRET_KEY
from tcp_proxy import SeverableProxy
from test_db_outage import OUTAGE_ANSWER_SECONDS, proxied

from goalledger.api.bootstrap import System
from goalledger.core.settings import Settings
from goalledger.core.unavailable import DatabaseDown, database_unavailable

OPEN_BREAKER_SECONDS = 1.0  # a refused call with the breaker open: no waiting, no retries
CLOSE_SECONDS = 15


def failure_seconds(call: Callable[[], Any]) -> tuple[BaseException, float]:
    """Seconds until `call` fails, and its error (which must say: database unavailable)."""
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        call()
    assert database_unavailable(caught.value), repr(caught.value)
    return caught.value, time.monotonic() - started


def read_one(system: System) -> Any:
    with system.store.read() as tx:
        return tx.scalar("SELECT 1")


@pytest.fixture
def proxy(postgres_url):
    severable = SeverableProxy(urlsplit(postgres_url).port or 5432)
    yield severable
    severable.close()


@pytest.mark.postgres
def test_an_outage_fails_calls_fast_and_the_breaker_closes_when_it_ends(postgres_url, proxy):
    settings = Settings(database_url=proxied(postgres_url, proxy), secret_key=TEST_SECRET_KEY)
    with System(settings) as system:
        ledger_head = system.ledger.recorder.max_notification_id  # eventsourcing retries it
        ledger_head()
        assert read_one(system) == 1
        assert system.breaker is not None and not system.breaker.is_open

        proxy.sever()
        _, first = failure_seconds(ledger_head)
        assert first < OUTAGE_ANSWER_SECONDS
        assert system.breaker.is_open
        later = [failure_seconds(call) for call in (ledger_head, lambda: read_one(system))]
        for error, seconds in later:
            assert isinstance(error, DatabaseDown)
            assert seconds < OPEN_BREAKER_SECONDS

        proxy.restore()
        started = time.monotonic()
        while system.breaker.is_open:
            assert time.monotonic() - started < CLOSE_SECONDS, "the breaker stayed open"
            time.sleep(0.05)
        closed = time.monotonic() - started
        assert read_one(system) == 1
        ledger_head()  # the pool reconnects (eventsourcing retries while it does)
    print(
        f"breaker: first call failed in {first:.2f} s, later ones in"
        f" {', '.join(f'{s * 1000:.1f}' for _, s in later)} ms;"
        f" closed {closed:.2f} s after the database came back"
    )


@pytest.mark.postgres
def test_a_drained_pool_with_the_database_up_does_not_open_the_breaker(postgres_url, proxy):
    settings = Settings(database_url=proxied(postgres_url, proxy), secret_key=TEST_SECRET_KEY)
    with System(settings) as system:
        assert system.breaker is not None
        datastore = system.ledger.factory.datastore  # type: ignore[attr-defined]
        held = [datastore.pool.getconn() for _ in range(datastore.pool.max_size)]
        try:
            failure_seconds(lambda: datastore.get_connection().__enter__())  # pool timeout
            started = time.monotonic()
            while system.breaker.probing:  # the probe that the timeout started
                assert time.monotonic() - started < CLOSE_SECONDS, "the probe did not end"
                time.sleep(0.05)
            assert not system.breaker.is_open
        finally:
            for connection in held:
                datastore.pool.putconn(connection)
        assert read_one(system) == 1
        system.ledger.recorder.max_notification_id()
