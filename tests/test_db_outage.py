"""PostgreSQL unreachable under a running `goalledger serve`: requests answer 503 with
`Retry-After` in bounded time, /ready turns false, and once the database is back the
server recovers by itself (same process) with every acknowledged write kept.

The outage is a TCP proxy between the server and PostgreSQL that the test severs
(every connection closed, new ones refused) and restores; the shared PostgreSQL
server itself keeps running.
"""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from loadgen import World, prepare
from tcp_proxy import SeverableProxy
from test_api_serve import Server, serving
from test_crash_writes import (
    api_check_in_notes,
    assert_projections_equal_rebuild,
    ledger_contents,
    readings_batch,
    wait_projected,
)

# The first failed connection makes the breaker (core/breaker.py) probe the database and
# open within ~1 s (connect timeout); from then on every call fails at once, rather than
# after eventsourcing's 10 tries of up to 1 s each. The rest is slack for a loaded machine.
OUTAGE_ANSWER_SECONDS = 8
RECOVERY_SECONDS = 60


class Writer:
    """Check-ins and batches of readings, with what was acknowledged and what was not."""

    def __init__(self, server: Server, world: World) -> None:
        self.world = world
        self.client = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {world.secret}"},
            timeout=OUTAGE_ANSWER_SECONDS + 30,
        )  # fmt: skip
        self.check_ins: list[str] = []  # acknowledged notes
        self.refused_check_ins: list[str] = []  # answered 503
        self.readings: set[tuple[str, str]] = set()
        self.position = 0

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()

    def check_in(self, note: str) -> httpx.Response:
        krs = self.world.key_result_ids
        kr = krs[(len(self.check_ins) + len(self.refused_check_ins)) % len(krs)]
        answer = self.client.post(
            f"/v1/key-results/{kr}/check-ins", json={"value": 1, "note": note}
        )
        if answer.status_code == 201:
            self.check_ins.append(note)
            self.position = max(self.position, int(answer.headers["X-Ledger-Position"]))
        elif answer.status_code == 503:
            self.refused_check_ins.append(note)
        return answer

    def record(self, prefix: str) -> httpx.Response:
        batch = readings_batch(self.world, prefix)
        answer = self.client.post("/v1/readings", json=batch)
        if answer.status_code == 201:
            self.readings |= {(r["kpi_id"], r["reading_id"]) for r in batch}
            self.position = max(self.position, int(answer.headers["X-Ledger-Position"]))
        return answer

    def read(self, path: str) -> httpx.Response:
        return self.client.get(path)


def proxied(database_url: str, proxy: SeverableProxy) -> str:
    port = urlsplit(database_url).port or 5432
    return database_url.replace(f":{port}/", f":{proxy.port}/", 1)


def timed(call):
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.postgres
def test_outage_answers_503_then_recovers_without_restart_or_loss(postgres_url):
    world = prepare(postgres_url, key_results=2, kpis=2)
    proxy = SeverableProxy(urlsplit(postgres_url).port or 5432)
    try:
        with serving(proxied(postgres_url, proxy)) as server, Writer(server, world) as writer:
            server.wait_healthy()
            for step in range(5):
                assert writer.check_in(f"before {step}").status_code == 201
                assert writer.record(f"before-{step}").status_code == 201
            wait_projected(server)
            assert httpx.get(f"{server.url}/ready", timeout=10).status_code == 200

            proxy.sever()
            during = [
                lambda: writer.check_in("during 0"),
                lambda: writer.check_in("during 1"),
                lambda: writer.record("during-0"),
                lambda: writer.read(f"/v1/scoreboard?cycle_id={world.cycle_id}"),
                lambda: writer.read(f"/v1/objectives/{world.objective_id}"),
                lambda: writer.read(f"/v1/key-results/{world.key_result_ids[0]}/check-ins"),
            ]
            with ThreadPoolExecutor(len(during)) as pool:  # at once: none may hang
                answers = list(pool.map(timed, during))
            for answer, seconds in answers:
                assert answer.status_code == 503, answer.text
                assert seconds < OUTAGE_ANSWER_SECONDS
                assert int(answer.headers["Retry-After"]) > 0
                assert answer.headers["Content-Type"].startswith("application/problem+json")
                assert answer.json()["type"].endswith("/database-unavailable")
            ready, seconds = timed(lambda: httpx.get(f"{server.url}/ready", timeout=60))
            assert ready.status_code == 503 and ready.json()["database"] == "unreachable"
            assert seconds < OUTAGE_ANSWER_SECONDS

            proxy.restore()
            recovered = wait_for_write(writer)
            for step in range(5):
                assert writer.check_in(f"after {step}").status_code == 201
                assert writer.record(f"after-{step}").status_code == 201
            head = wait_projected(server)  # the embedded projector caught up by itself
            assert head >= writer.position
            assert httpx.get(f"{server.url}/ready", timeout=10).status_code == 200
            auth = {"Authorization": f"Bearer {world.secret}"}
            projected = [
                note for kr in world.key_result_ids for note in api_check_in_notes(server, auth, kr)
            ]
            assert server.process.poll() is None, "the server restarted"
            assert server.stop() == 0
    finally:
        proxy.close()

    print(
        f"outage: {len(answers)} concurrent requests answered 503 in"
        f" {', '.join(f'{seconds:.1f}' for _, seconds in answers)} s;"
        f" recovered {recovered:.1f} s after the database came back;"
        f" {len(writer.check_ins)} check-ins and {len(writer.readings)} readings acknowledged"
    )
    notes_by_kr, readings = ledger_contents(postgres_url)
    notes = [note for kr_notes in notes_by_kr.values() for note in kr_notes]
    assert sorted(notes) == sorted(writer.check_ins)  # each once; the refused ones absent
    assert sorted(projected) == sorted(writer.check_ins)
    assert set(readings) == writer.readings and all(n == 1 for n in readings.values())
    assert_projections_equal_rebuild(postgres_url)


def wait_for_write(writer: Writer) -> float:
    """Retry a check-in until the restored database takes it; seconds it took."""
    started = time.monotonic()
    for attempt in range(1_000):
        answer = writer.check_in(f"recovery {attempt}")
        if answer.status_code == 201:
            return time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert time.monotonic() - started < RECOVERY_SECONDS, "the server did not recover"
        time.sleep(min(0.5, int(answer.headers["Retry-After"])))
    raise AssertionError("the server did not recover")


def test_which_errors_mean_the_database_is_unavailable():
    from eventsourcing.persistence import IntegrityError, OperationalError

    from goalledger.core.errors import DomainError
    from goalledger.core.unavailable import database_unavailable

    def wrapped(cause: BaseException, outer: type[Exception]) -> Exception:
        try:
            raise outer(str(cause)) from cause
        except outer as error:
            return error

    refused = psycopg.OperationalError("connection refused")
    assert database_unavailable(refused)
    assert database_unavailable(wrapped(refused, OperationalError))  # as eventsourcing raises
    assert database_unavailable(sqlite3.OperationalError("database is locked"))
    assert not database_unavailable(sqlite3.OperationalError("no such table: g1_events"))
    assert not database_unavailable(wrapped(psycopg.IntegrityError("dup"), IntegrityError))
    assert not database_unavailable(DomainError("name", "must not be blank"))
