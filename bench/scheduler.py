"""Scheduler overhead: 1,000 KPIs bound to `http-json`, each polled once a minute, on SQLite.

One run, three phases, each for whole minutes, with the local source in a process of its
own (so the figures below are this process's CPU, not the server's):
  plain     baseline: the same 1,000 HTTP GETs a minute in a plain loop (`http.client`,
            a new connection each, JSON decoded), nothing recorded
  source    baseline: the `http-json` source's own `fetch` for each KPI a minute (egress
            policy, pinned connection, JSON pointer), nothing recorded
  scheduler the real `Scheduler` and `SourceRunner` (`goalledger.plugins`) ticking every
            `--tick` seconds as `goalledger worker` does: learn bindings from the ledger,
            pick the due KPIs, fetch each through the plugin isolation thread, record the
            new reading in the ledger (SQLite, synchronous FULL)

The smallest KPI frequency is hourly, so the scheduler runs on a clock that goes 60×
faster than the wall clock (one simulated hour per real minute, the hours starting on
real minute boundaries): every KPI falls due once a real minute, as the issue asks. The
local source stamps each answer with the current real minute (`observed_at_pointer`),
so each poll records one new reading, as a source with fresh data would.

Usage: python bench/scheduler.py [--kpis 1000] [--minutes 3] [--baseline-minutes 1]
       [--tick 30] [--output FILE]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from uuid import UUID

HERE = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SPEED = 60  # simulated seconds per real second: an hourly KPI falls due every minute


class Source(BaseHTTPRequestHandler):
    """`GET /kpi/N` → `{"value": …, "at": <this minute>}`."""

    protocol_version = "HTTP/1.1"

    period = 60  # seconds: "at" is the start of the current period

    def do_GET(self) -> None:
        number = int(self.path.rsplit("/", 1)[-1] or 0)
        seconds = int(time.time()) // self.period * self.period
        now = datetime.fromtimestamp(seconds, UTC)
        body = json.dumps({"value": number + now.minute, "at": now.isoformat()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_source(period: int) -> None:
    """The local source, in a process of its own: prints its port."""
    Source.period = period
    ThreadingHTTPServer.request_queue_size = 256
    server = ThreadingHTTPServer(("127.0.0.1", 0), Source)
    server.daemon_threads = True
    print(server.server_port, flush=True)
    server.serve_forever()


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        models = [line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line]
    cpu = models[0] if models else platform.processor()
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


class Window:
    """CPU of this process and of the source server over a stretch of wall time."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.wall, self.times, self.server = time.monotonic(), os.times(), cpu_of(server_pid)

    def close(self) -> dict[str, float]:
        wall, times, server = time.monotonic(), os.times(), cpu_of(self.server_pid)
        return {
            "wall": wall - self.wall,
            "user": times.user - self.times.user,
            "system": times.system - self.times.system,
            "server": server - self.server,
        }


def next_minute() -> float:
    """Seconds until the next real minute boundary."""
    return 60 - time.time() % 60


def to_minute() -> None:
    """Wait for a minute boundary, unless one has only just passed."""
    left = next_minute()
    if left < 59.5:
        time.sleep(left)


def per_minute(minutes: int, burst) -> list[float]:
    """From a minute boundary, run `burst()` at the start of each of `minutes` real
    minutes; returns each burst's duration. Ends on a minute boundary."""
    durations = []
    for _ in range(minutes):
        began = time.monotonic()
        burst()
        durations.append(time.monotonic() - began)
        time.sleep(next_minute())
    return durations


def plain_loop(port: int, kpis: int, minutes: int, server_pid: int) -> dict:
    latencies: list[float] = []

    def burst() -> None:
        for number in range(kpis):
            began = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", f"/kpi/{number}", headers={"Accept": "application/json"})
            json.loads(connection.getresponse().read())["value"]
            connection.close()
            latencies.append(time.perf_counter() - began)

    to_minute()  # measure whole minutes only
    window = Window(server_pid)
    per_minute_bursts = per_minute(minutes, burst)
    return {**window.close(), "latencies": latencies, "bursts": per_minute_bursts}


def source_loop(port: int, kpis: int, minutes: int, server_pid: int) -> dict:
    from goalledger.plugins.contracts import KpiRef
    from goalledger.plugins.sources_http import HttpJsonConfig, HttpJsonSource

    source = HttpJsonSource()
    kpi = KpiRef(UUID(int=1), "bench", "", "higher_is_better", "hourly", None)
    configs = [config_for(port, number) for number in range(kpis)]
    typed = [HttpJsonConfig(**config) for config in configs]
    latencies: list[float] = []

    def burst() -> None:
        for config in typed:
            began = time.perf_counter()
            source.fetch(config, kpi, None)
            latencies.append(time.perf_counter() - began)

    to_minute()
    window = Window(server_pid)
    bursts = per_minute(minutes, burst)
    return {**window.close(), "latencies": latencies, "bursts": bursts}


def config_for(port: int, number: int) -> dict:
    return {
        "url": f"http://127.0.0.1:{port}/kpi/{number}",
        "pointer": "/value",
        "observed_at_pointer": "/at",
    }


def build_ledger(url: str, port: int, kpis: int) -> None:
    from goalledger.core.kpis import thresholds_for
    from goalledger.core.ledger import Ledger
    from goalledger.core.settings import Settings
    from goalledger.plugins.manager import load_plugins

    registry = load_plugins()
    ledger = Ledger(Settings(database_url=url))
    try:
        for number in range(kpis):
            ledger.define_kpi(
                name=f"KPI {number}",
                unit="",
                direction="higher_is_better",
                thresholds=thresholds_for("higher_is_better", 100, 50),
                frequency="hourly",
                source=registry.validate_source("http-json", config_for(port, number)),
                actor="bench",
            )
    finally:
        ledger.close()


def scheduler_run(url: str, minutes: int, tick: float, server_pid: int) -> dict:
    from goalledger.core.ledger import Ledger
    from goalledger.core.settings import Settings
    from goalledger.plugins.fetch import FetchResult, SourceRunner
    from goalledger.plugins.manager import load_plugins
    from goalledger.plugins.scheduler import Polled, Scheduler

    latencies: list[float] = []
    ticks: list[tuple[float, float, list[Polled]]] = []
    lock = threading.Lock()

    class TimedRunner(SourceRunner):
        def fetch(self, kpi_id: UUID, *, actor: str | None = None) -> FetchResult:
            began = time.perf_counter()
            try:
                return super().fetch(kpi_id, actor=actor)
            finally:
                with lock:
                    latencies.append(time.perf_counter() - began)

    class TimedScheduler(Scheduler):
        def tick(self) -> list[Polled]:
            began = time.monotonic()
            outcomes = super().tick()
            ticks.append((began, time.monotonic() - began, outcomes))
            return outcomes

    # One simulated hour per real minute, hours starting on real minute boundaries.
    origin = time.time() // 60 * 60
    simulated_origin = datetime(2026, 1, 5, tzinfo=UTC)

    def clock() -> datetime:
        return simulated_origin + timedelta(seconds=(time.time() - origin) * SPEED)

    ledger = Ledger(Settings(database_url=url))
    runner = TimedRunner(ledger, load_plugins(), clock=clock)
    scheduler = TimedScheduler(ledger, runner, clock=clock)
    try:
        to_minute()
        time.sleep(1)  # start just after a minute boundary
        window = Window(server_pid)
        scheduler.start(interval=tick)
        time.sleep(minutes * 60 - 1)
        measured = window.close()
        scheduler.stop(60)
    finally:
        ledger.close()
    return {**measured, "latencies": latencies, "ticks": ticks}


def readings_in(path: str) -> int:
    with sqlite3.connect(path) as connection:
        (count,) = connection.execute(
            "SELECT count(*) FROM stored_events WHERE topic = 'goalledger/reading/recorded'"
        ).fetchone()
    return count


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def row(name: str, result: dict, fetches: int) -> str:
    cpu = result["user"] + result["system"]
    share = cpu / result["wall"] * 100
    ms = cpu / fetches * 1000 if fetches else 0.0
    server = result["server"] / result["wall"] * 100
    lat = result["latencies"]
    return (
        f"| {name} | {result['wall'] / 60:.1f} | {fetches:,} | **{share:.2f}%** |"
        f" {result['user']:.1f} / {result['system']:.1f} | {ms:.2f} | {server:.2f}% |"
        f" {pct(lat, 0.5):.1f} / {pct(lat, 0.95):.1f} / {pct(lat, 1.0) if lat else 0:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kpis", type=int, default=1000)
    parser.add_argument("--minutes", type=int, default=3, help="scheduler phase, real minutes")
    parser.add_argument("--baseline-minutes", type=int, default=1, help="each baseline phase")
    parser.add_argument("--tick", type=float, default=30.0, help="scheduler interval, seconds")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "scheduler-sqlite.md")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--period", type=int, default=60, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_source(args.period)
        return
    # The source runs on loopback: allow it explicitly, whatever the default policy.
    os.environ["GOALLEDGER_EGRESS_LOOPBACK"] = "allow"
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    port = int(child.stdout.readline())
    started = datetime.now(UTC)
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/bench.db"
        url = f"sqlite:///{path}"
        try:
            build_ledger(url, port, args.kpis)
            plain = plain_loop(port, args.kpis, args.baseline_minutes, child.pid)
            load.append(os.getloadavg()[0])
            source = source_loop(port, args.kpis, args.baseline_minutes, child.pid)
            load.append(os.getloadavg()[0])
            scheduled = scheduler_run(url, args.minutes, args.tick, child.pid)
            load.append(os.getloadavg()[0])
            stored = readings_in(path)
        finally:
            child.terminate()
            child.wait(10)
    outcomes = [polled for _, _, polls in scheduled["ticks"] for polled in polls]
    recorded = sum(polled.recorded for polled in outcomes)
    errors = [polled.error for polled in outcomes if polled.error]
    busy = [(duration, len(polls)) for _, duration, polls in scheduled["ticks"] if polls]
    idle = [duration for _, duration, polls in scheduled["ticks"] if not polls]
    fetches = len(scheduled["latencies"])
    plain_share = (plain["user"] + plain["system"]) / plain["wall"]
    sched_share = (scheduled["user"] + scheduled["system"]) / scheduled["wall"]
    lines = [
        f"# Scheduler overhead — {args.kpis:,} KPIs polled every minute through `http-json`,"
        " SQLite",
        "",
        f"Machine: {machine()}; {started:%Y-%m-%d %H:%M} UTC; load average (1 min) during"
        f" the run {min(load):.1f}–{max(load):.1f} (a machine shared with other work).",
        f"Command: `python bench/scheduler.py --kpis {args.kpis} --minutes {args.minutes}"
        f" --baseline-minutes {args.baseline_minutes} --tick {args.tick:g}`.",
        "",
        "CPU is this process's (user + system, all threads) over whole minutes; the local"
        " source is a separate process whose CPU is shown apart. Latency is per fetch"
        " (scheduler: `SourceRunner.fetch`, i.e. load KPI, GET, record).",
        "",
        "| path | minutes | fetches | CPU % of one core | user / sys s | CPU ms per fetch"
        " | source server CPU % | latency p50 / p95 / max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        row("baseline: plain `http.client` GET loop", plain, len(plain["latencies"])),
        row(
            "baseline: `http-json` source `fetch` loop (no ledger)",
            source,
            len(source["latencies"]),
        ),
        row(f"**scheduler** (tick {args.tick:g} s) + runner + ledger", scheduled, fetches),
        "",
        f"Scheduler overhead: **{sched_share * 100:.2f}% of one core**, "
        f"{sched_share / plain_share:.1f}× the plain GET loop's {plain_share * 100:.2f}%.",
        "",
        f"Scheduler phase: {len(scheduled['ticks'])} ticks, {len(busy)} with due KPIs "
        f"(each took {min(d for d, _ in busy):.1f}–{max(d for d, _ in busy):.1f} s for "
        f"{min(n for _, n in busy):,}–{max(n for _, n in busy):,} KPIs), idle ticks "
        f"{statistics.mean(idle) * 1000 if idle else 0:.1f} ms on average; "
        f"{recorded:,} readings recorded ({stored:,} in the ledger), {len(errors)} failed"
        f" polls{': ' + errors[0] if errors else ''}.",
        f"Plain-loop bursts took {statistics.mean(plain['bursts']):.1f} s per {args.kpis:,} GETs;"
        f" source-loop bursts {statistics.mean(source['bursts']):.1f} s.",
    ]
    text = "\n".join(lines) + "\n"
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
