"""`goalledger worker` as real processes: killed with SIGKILL in the middle of deliveries
to a real HTTP receiver on 127.0.0.1 and restarted, the receiver (deduplicating by
alert id) sees every alert exactly once; on PostgreSQL a standby worker takes over
within seconds when the active one dies."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from goalledger.core.kpis import thresholds_for
from goalledger.core.ledger import Ledger, ReadingInput
from goalledger.core.settings import Settings
from goalledger.core.subscriptions import Channel
from goalledger.plugins.channels import ID_HEADER
from goalledger.plugins.testkit import Exchange, LocalServer, local_http_server
from goalledger.projections.store import open_view_store

SECRET = "whsec-0123456789abcdef"
DEADLINE = 60  # seconds any wait may take before the test fails
RECEIVER_DELAY = 0.05  # seconds per request: slow enough to kill the worker mid-way


class Worker:
    """A `goalledger worker` subprocess and the lines it printed."""

    def __init__(self, database_url: str) -> None:
        command = [
            sys.executable, "-m", "goalledger.api.cli", "--database-url", database_url,
            "worker", "--poll-interval", "0.05", "--standby-poll", "0.2",
            "--delivery-timeout", "5", "--clock-interval", "3600", "--log-level", "warning",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = DEADLINE) -> float:
        """Wait for a line containing `text`; returns when it came (monotonic)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                assert self.process.poll() is None, f"worker exited: {self.output}"
                continue
            if text in line:
                return time.monotonic()
        raise AssertionError(f"no {text!r} in {self.output}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=20)
        self.pump.join(timeout=20)
        assert self.process.stdout is not None
        self.process.stdout.close()


@contextmanager
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    try:
        yield started
    finally:
        for worker in started:
            worker.close()


@contextmanager
def receiver() -> Iterator[tuple[LocalServer, Counter[str]]]:
    """A webhook receiver that deduplicates by alert id (it counts each id's arrivals)."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def respond(exchange: Exchange) -> tuple[int, dict[str, str], bytes]:
        time.sleep(RECEIVER_DELAY)
        with lock:
            seen[exchange.headers[ID_HEADER]] += 1
        return 200, {}, b""

    with local_http_server(respond) as server:
        yield server, seen


def raise_alerts(database_url: str, hook: str, count: int) -> None:
    """Subscribe the receiver and record readings whose health changes `count` times."""
    ledger = Ledger(Settings(database_url=database_url))
    try:
        ledger.subscribe(
            alert_kinds=["kpi_health_changed"], team_ids=[],
            channel=Channel("webhook", {"url": hook, "secret": SECRET}), actor="test",
        )  # fmt: skip
        kpi = ledger.define_kpi(
            name="Uptime", direction="higher_is_better", frequency="hourly", actor="test",
            thresholds=thresholds_for("higher_is_better", "99.9", "99"),
        ).id  # fmt: skip
        start = datetime.now(UTC) - timedelta(hours=count + 1)
        ledger.record_readings(
            [
                ReadingInput(
                    kpi, f"r{i}", Decimal("50" if i % 2 else "99.95"), start + timedelta(hours=i)
                )
                for i in range(count + 1)
            ],
            source="test",
            actor="test",
        )
    finally:
        ledger.close()


def outbox(database_url: str) -> tuple[set[str], Counter[str]]:
    """Every alert id, and how many outbox rows are in each status."""
    store = open_view_store(Settings(database_url=database_url))
    try:
        with store.read() as tx:
            ids = {row[0] for row in tx.all("SELECT id FROM gl_alerts")}
            statuses = Counter(
                dict(tx.all("SELECT status, count(*) FROM gl_outbox GROUP BY status"))
            )
    finally:
        store.close()
    return ids, statuses


def wait_until(condition, timeout: float = DEADLINE) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def all_delivered(database_url: str, count: int) -> bool:
    try:
        ids, statuses = outbox(database_url)
    except Exception:  # the worker has not created the tables yet
        return False
    return len(ids) == count and statuses == Counter({"delivered": count})


@pytest.mark.slow
def test_a_killed_worker_restarts_and_every_alert_arrives_exactly_once(database_url: str) -> None:
    count = 150
    with receiver() as (server, seen), workers() as running:
        raise_alerts(database_url, f"{server.url}/hook", count)
        first = Worker(database_url)
        running.append(first)
        first.wait_for("worker active")
        wait_until(lambda: len(seen) >= 20)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=20)
        assert len(seen) < count, "the worker finished before it was killed"
        second = Worker(database_url)
        running.append(second)
        second.wait_for("worker active")
        wait_until(lambda: all_delivered(database_url, count))
        second.process.send_signal(signal.SIGTERM)
        assert second.process.wait(timeout=20) == 0, second.output
        ids, _ = outbox(database_url)
    assert set(seen) == ids and len(ids) == count  # every alert, once after deduplication
    assert all(arrivals >= 1 for arrivals in seen.values())


@pytest.mark.slow
@pytest.mark.postgres
def test_a_standby_worker_takes_over_within_seconds_of_the_active_one_dying(
    postgres_url: str,
) -> None:
    count = 150
    with ExitStack() as stack:
        server, seen = stack.enter_context(receiver())
        running = stack.enter_context(workers())
        active = Worker(postgres_url)
        running.append(active)
        active.wait_for("worker active")
        standby = Worker(postgres_url)
        running.append(standby)
        standby.wait_for("worker standby")
        raise_alerts(postgres_url, f"{server.url}/hook", count)
        wait_until(lambda: len(seen) >= 20)
        active.process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        took_over = standby.wait_for("worker active", timeout=10)
        assert took_over - killed < 5
        wait_until(lambda: all_delivered(postgres_url, count))
        ids, _ = outbox(postgres_url)
    assert set(seen) == ids and len(ids) == count


@pytest.mark.slow
def test_serve_runs_the_dispatcher_too(sqlite_url: str) -> None:
    import httpx
    from test_api_serve import admin_secret, serving

    auth = {"Authorization": f"Bearer {admin_secret(sqlite_url)}"}
    with receiver() as (hook, seen), serving(sqlite_url) as server:
        server.wait_healthy()
        channel = {"plugin": "webhook", "config": {"url": f"{hook.url}/in", "secret": SECRET}}
        body = {"alert_kinds": ["kpi_health_changed"], "channel": channel}
        assert (
            httpx.post(f"{server.url}/v1/subscriptions", json=body, headers=auth).status_code == 201
        )
        kpi = httpx.post(f"{server.url}/v1/kpis", headers=auth, json={
            "name": "Uptime", "direction": "higher_is_better", "frequency": "daily",
            "thresholds": {"green": 99.9, "amber": 99},
        }).json()["id"]  # fmt: skip
        now = datetime.now(UTC)
        readings = [
            {"reading_id": str(i), "value": v, "observed_at": f"{now - timedelta(hours=3 - i)}"}
            for i, v in enumerate(["99.95", "10", "99.95"])
        ]
        response = httpx.post(f"{server.url}/v1/kpis/{kpi}/readings", json=readings, headers=auth)
        assert response.status_code == 201, response.text
        wait_until(lambda: len(seen) == 2)
        assert server.stop() == 0
