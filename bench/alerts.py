"""Alerts dispatched per second through the `webhook` channel to a local receiver.

One run, on one ledger (SQLite by default, or PostgreSQL with --postgres):
  detect    projecting N readings whose KPI health flips each time: N alerts raised and
            queued in the projection's transaction (events/s, with and without alerts)
  dispatch  the dispatcher draining the outbox through the built-in `webhook` channel
            (HMAC-signed JSON POST) to an HTTP receiver on 127.0.0.1 (a process of its
            own), for several dispatcher sizes (alerts/s), beside baselines: the webhook
            channel's own `send` in a loop (no outbox), and bare `http.client` POSTs
            (no outbox, no signing, no records)

Usage: python bench/alerts.py [--alerts 3000] [--postgres] [--output FILE]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import psycopg

HERE = Path(__file__).resolve().parent
SECRET = "bench-secret-0123456789"


class Receiver(BaseHTTPRequestHandler):
    """Answers 204 to every POST and counts distinct notification ids; GET says how many."""

    seen: ClassVar[set[str]] = set()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Receiver.seen.add(self.headers.get("X-Goalledger-Notification-Id") or "")
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        if self.path == "/reset":
            Receiver.seen = set()
        body = str(len(Receiver.seen)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_receiver() -> None:
    """The receiver, in a process of its own (as a real one would be): prints its port."""
    ThreadingHTTPServer.request_queue_size = 256
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.daemon_threads = True
    print(server.server_port, flush=True)
    server.serve_forever()


def received(port: int, path: str = "/count") -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)
    count = int(connection.getresponse().read())
    connection.close()
    return count


def machine() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        models = [line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line]
    cpu = models[0] if models else platform.processor()
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def seed(url: str, hook: str, alerts: int) -> None:
    from goalledger.core.kpis import thresholds_for
    from goalledger.core.ledger import Ledger, ReadingInput
    from goalledger.core.settings import Settings
    from goalledger.core.subscriptions import Channel

    ledger = Ledger(Settings(database_url=url))
    ledger.subscribe(
        alert_kinds=["kpi_health_changed"], team_ids=[],
        channel=Channel("webhook", {"url": hook, "secret": SECRET, "timeout": 10.0}),
        actor="bench",
    )  # fmt: skip
    kpi = ledger.define_kpi(
        name="Uptime", direction="higher_is_better", frequency="hourly", actor="bench",
        thresholds=thresholds_for("higher_is_better", "99.9", "99"),
    ).id  # fmt: skip
    start = datetime.now(UTC) - timedelta(hours=alerts + 1)
    ledger.record_readings(
        [
            ReadingInput(
                kpi, f"r{i}", Decimal("50" if i % 2 else "99.95"), start + timedelta(hours=i)
            )
            for i in range(alerts + 1)
        ],
        source="bench",
        actor="bench",
    )
    ledger.close()


def detect(url: str) -> dict:
    from goalledger.api.bootstrap import bootstrap
    from goalledger.core.settings import Settings
    from goalledger.projections.projector import rebuild

    with bootstrap(Settings(database_url=url)) as system:
        started = time.perf_counter()
        events = system.catch_up()
        live = time.perf_counter() - started
        started = time.perf_counter()
        rebuild(system.ledger, system.store)  # the same events; nothing new is queued
        again = time.perf_counter() - started
        with system.store.read() as tx:
            queued = tx.scalar("SELECT count(*) FROM gl_outbox")
    return {"events": events, "live_per_s": events / live, "rebuild_per_s": events / again,
            "queued": queued}  # fmt: skip


def dispatch(url: str, port: int, alerts: int, workers: int, batch: int) -> float:
    from goalledger.api.bootstrap import bootstrap
    from goalledger.api.cli_worker import dispatcher_for
    from goalledger.core.settings import Settings

    with bootstrap(Settings(database_url=url)) as system:
        with system.store.transaction() as tx:  # start every run from a full outbox
            tx.execute("UPDATE gl_outbox SET status = 'pending', attempts = 0, next_attempt_at = 0")
            tx.execute("DELETE FROM gl_delivery_attempts")
        received(port, "/reset")
        dispatcher = dispatcher_for(system)
        dispatcher.workers, dispatcher.batch = workers, batch
        started = time.perf_counter()
        sent = dispatcher.drain(timeout=600)
        seconds = time.perf_counter() - started
        if not (sent == alerts and received(port) == alerts):
            with system.store.read() as tx:
                print(tx.all("SELECT status, count(*) FROM gl_outbox GROUP BY status"))
                print(
                    tx.all(
                        "SELECT ok, error, count(*) FROM gl_delivery_attempts GROUP BY ok, error"
                    )
                )
            raise SystemExit((sent, received(port)))
    return alerts / seconds


def channel_loop(port: int, alerts: int) -> float:
    """The webhook channel's own `send` in a loop: no outbox, no isolation thread."""
    from goalledger.plugins.channels import WebhookChannel, WebhookConfig
    from goalledger.plugins.testkit import make_notification

    channel = WebhookChannel()
    config = WebhookConfig(url=f"http://127.0.0.1:{port}/hook", secret=SECRET)
    started = time.perf_counter()
    for index in range(alerts):
        channel.send(config, make_notification(id=str(index)))
    return alerts / (time.perf_counter() - started)


def baseline(port: int, alerts: int, workers: int) -> float:
    """Plain POSTs of a similar body, `workers` threads, a new connection each (as ours)."""
    body = json.dumps({"id": str(uuid.uuid4()), "kind": "kpi_health_changed", "title": "x" * 40,
                       "body": "y" * 80, "data": {}}).encode()  # fmt: skip

    def post(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request(
            "POST",
            "/hook",
            body,
            {"Content-Type": "application/json", "X-Goalledger-Notification-Id": str(index)},
        )
        connection.getresponse().read()
        connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(post, range(alerts)))
    return alerts / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=3000)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL on 127.0.0.1:5432")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        serve_receiver()
        return
    child = subprocess.Popen(
        [sys.executable, __file__, "--receiver"], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    port = int(child.stdout.readline())
    hook = f"http://127.0.0.1:{port}/hook"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    dbname = f"goalledger_bench_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory() as tmp:
        if args.postgres:
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute(f'CREATE DATABASE "{dbname}"')
            url = admin.rsplit("/", 1)[0] + f"/{dbname}"
        else:
            url = f"sqlite:///{tmp}/bench.db"
        try:
            seed(url, hook, args.alerts)
            detected = detect(url)
            runs = [(workers, batch, dispatch(url, port, args.alerts, workers, batch))
                    for workers, batch in ((1, 64), (8, 64), (16, 128))]  # fmt: skip
            loop = channel_loop(port, args.alerts)
            raw = [(workers, baseline(port, args.alerts, workers)) for workers in (1, 8)]
        finally:
            child.terminate()
            child.wait(10)
            if args.postgres:
                with psycopg.connect(admin, autocommit=True) as connection:
                    connection.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    store = "PostgreSQL" if args.postgres else "SQLite"
    lines = [
        f"# Alerts dispatched through the webhook channel — {args.alerts:,} alerts on {store}",
        "",
        f"Machine: {machine()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| path | alerts/s |",
        "|---|---:|",
        *(
            f"| **dispatcher**, {w} sending threads, claims of {b} | **{rate:,.0f}** |"
            for w, b, rate in runs
        ),
        f"| baseline: the webhook channel's `send` in a loop (no outbox), 1 thread | {loop:,.0f} |",
        *(f"| baseline: bare http.client POSTs, {w} threads | {rate:,.0f} |" for w, rate in raw),
        "",
        f"Detection: projecting {detected['events']:,} events that raise {args.alerts:,} alerts"
        f" (queued: {detected['queued']:,}) ran at {detected['live_per_s']:,.0f} events/s live;"
        f" the rebuild of the same events (alerts known, nothing queued) at"
        f" {detected['rebuild_per_s']:,.0f} events/s.",
        "",
        "Each dispatcher run starts from a full outbox: claim (lease) a batch, send each"
        " alert (signed JSON POST, a new connection each, through the plugin isolation"
        " thread), record every attempt and status in one transaction per batch.",
    ]
    text = "\n".join(lines) + "\n"
    output = (
        args.output or HERE / "results" / f"alerts-{'postgres' if args.postgres else 'sqlite'}.md"
    )
    output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
