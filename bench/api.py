"""HTTP API throughput and latency on loopback, against a trivial route, in one run.

What it measures, with wrk as the load generator (one wrk thread, closed loop; the
median of --repeat runs of --duration seconds each, repeats interleaved):

  reads at 1 connection (latency without queueing) and at --connections (32), SQLite
  ledgers of --small-events (10k) and --large-events (200k; `--large-events 1000000`
  for the issue's 1M) events:
    * GET /v1/scoreboard (the demo's current cycle) and GET /v1/kpis/{id}/history (a
      demo KPI with 90 readings), both the same data in both ledgers: the extra events
      are readings of filler KPIs that nothing reads. Repeating one request, these are
      answered from the read cache (api/read_cache.py) after the first;
    * the same two reads at 1 connection with a different `as_of` (scoreboard) or `to`
      (history) on every request, so that every answer is computed: what a miss costs,
      and whether *that* depends on the ledger's length;
    * the baseline: bench/trivial_app.py served by uvicorn the way `goalledger serve`
      serves the API (`GET /` from the event loop, `GET /sync` from the thread pool).
  writes, on the small ledger after the reads:
    * POST /v1/key-results/{id}/check-ins, one check-in a request, round-robin over the
      demo's numeric key results, at 1 connection and at --connections;
    * POST /v1/readings with --batch-size (1,000) readings a request across the filler
      KPIs, at --batch-connections (4) connections: readings/s.

Every server is a real `goalledger serve` process (uvicorn; the projector, alert clock
and dispatcher in the worker child it starts; SQLite with `synchronous` =
--synchronous, default the project's default FULL). Ledgers are
built first with the core API (demo organisation, then filler readings) and the server
is started on them once its projector has caught up.

    .venv/bin/python bench/api.py                       # ~4 min → bench/results/api-sqlite.md
    .venv/bin/python bench/api.py --large-events 1000000 --repeat 3
    .venv/bin/python bench/api.py --duration 3 --repeat 1 --output /tmp/api.md
    .venv/bin/python bench/api.py --only writes --output /tmp/w.md   # check-ins, batches
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from goalledger.api.demo import load_demo
from goalledger.core.kpis import thresholds_for
from goalledger.core.ledger import Ledger, ReadingInput
from goalledger.core.settings import Settings

BENCH_DIR = Path(__file__).resolve().parent
ACTOR = "bench@example.com"
FILLER_KPIS = 10
PRELOAD_CHUNK = 1000
T0 = datetime(2024, 1, 1, tzinfo=UTC)
STARTUP_SECONDS = 600  # a 1M-event ledger is projected before the server is ready

# The issue's targets on this machine.
READ_SHARE_TARGET = 0.5  # of the trivial route's throughput
P99_TARGET_MS = 20.0
CHECK_IN_TARGET = 2500.0  # per second
BATCH_TARGET = 40_000.0  # readings per second
LENGTH_TOLERANCE = 1.25  # large-ledger p50 within 25% of the small one's: "independent"

# Prints one machine-readable line at the end of a wrk run (latencies in µs).
REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "p50_us": %.0f, "p99_us": %.0f, '
    .. '"errors": %d, "non_2xx": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""
CHECK_IN_LUA = """
local paths = {%(paths)s}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i + 1
  local body = string.format('{"value": %%d, "confidence": 0.7, "note": "bench"}', i %% 100)
  return wrk.format(nil, paths[(i %% #paths) + 1], nil, body)
end
"""
# Every request a different moment, so no answer is reused: what computing one costs.
DISTINCT_MOMENT_LUA = """
local i = 0
request = function()
  i = i + 1
  local at = os.date("!%%Y-%%m-%%dT%%H:%%M:%%SZ", %(now)d - i)
  return wrk.format(nil, "%(path)s?%(param)s=" .. at)
end
"""
BATCH_LUA = """
local kpis = {%(kpis)s}
local run = "__RUN__"  -- a fresh id per wrk run (run_wrk): every reading sent is new
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  local parts = {}
  for j = 1, %(size)d do
    local at = os.date("!%%Y-%%m-%%dT%%H:%%M:%%SZ", 1700000000 + n * %(size)d + j)
    parts[j] = string.format(
      '{"kpi_id":"%%s","reading_id":"%%s-%%d-%%d","value":%%d,"observed_at":"%%s"}',
      kpis[(j %% #kpis) + 1], run, n, j, j %% 100, at)
  end
  return wrk.format(nil, "/v1/readings", nil, "[" .. table.concat(parts, ",") .. "]")
end
"""


# -- servers -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A server process on 127.0.0.1 and what it serves."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    token: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def wait_until_up(self, path: str) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not come up in {STARTUP_SECONDS} s")

    def wait_until_projected(self) -> dict[str, Any]:
        """Wait until the embedded projector has caught up with the ledger's head."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            ready = httpx.get(self.url + "/ready", timeout=5).json()
            if ready.get("positions_behind") == 0:
                return ready
            time.sleep(0.5)
        raise RuntimeError(f"{self.name}: the projector did not catch up")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


@contextmanager
def serving(name: str, command: list[str], log: Path, env: dict[str, str]) -> Iterator[Server]:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=BENCH_DIR,
        )  # fmt: skip
        server = Server(name, f"http://127.0.0.1:{port}", process)
        try:
            yield server
        finally:
            server.stop()


def serve_trivial(stack: ExitStack, workdir: Path) -> Server:
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH_DIR), "trivial_app:app",
               "--no-server-header", "--lifespan", "on"]  # fmt: skip
    server = stack.enter_context(serving("trivial", command, workdir / "trivial.log", {}))
    server.wait_until_up("/")
    return server


def serve_ledger(
    stack: ExitStack, name: str, database: Path, token: str, synchronous: str, workdir: Path
) -> Server:
    command = [sys.executable, "-m", "goalledger.api.cli", "--database-url",
               f"sqlite:///{database}", "serve"]  # fmt: skip
    env = {"GOALLEDGER_SQLITE_SYNCHRONOUS": synchronous, "PYTHONUNBUFFERED": "1"}
    server = stack.enter_context(serving(name, command, workdir / f"{name}.log", env))
    server.token = token
    server.wait_until_up("/health")
    ready = server.wait_until_projected()
    server.facts = {"events": ready["head"], **demo_targets(server)}
    return server


def demo_targets(server: Server) -> dict[str, Any]:
    """Ids the load scripts use: a demo KPI, numeric key results, the filler KPIs."""
    with httpx.Client(base_url=server.url, headers=server.auth, timeout=30) as client:
        kpis = client.get("/v1/kpis", params={"limit": 100}).json()["items"]
        demo_kpi = next(k["id"] for k in kpis if not k["name"].startswith("bench filler"))
        fillers = [k["id"] for k in kpis if k["name"].startswith("bench filler")]
        key_results = [
            kr["id"]
            for objective in client.get("/v1/scoreboard").json()["objectives"]
            for kr in objective["key_results"]
            if kr["kind"] != "milestone"
        ]
    return {"demo_kpi": demo_kpi, "fillers": fillers, "key_results": key_results}


# -- ledgers -----------------------------------------------------------------------------


def build_ledger(database: Path, events: int) -> str:
    """The demo organisation plus filler readings up to `events`; returns an admin token."""
    ledger = Ledger(Settings(database_url=f"sqlite:///{database}", sqlite_synchronous="normal"))
    try:
        load_demo(ledger, today=datetime.now(UTC).date(), actor=ACTOR)
        thresholds = thresholds_for("higher_is_better", Decimal(90), Decimal(80))
        fillers = [
            ledger.define_kpi(
                name=f"bench filler {i}", direction="higher_is_better", thresholds=thresholds,
                frequency="hourly", actor=ACTOR,
            ).id
            for i in range(FILLER_KPIS)
        ]  # fmt: skip
        _, token = ledger.issue_token(name="bench admin", role="admin", actor=ACTOR)
        serial = 0
        while (missing := events - ledger.head_position()) > 0:
            chunk = [
                ReadingInput(
                    fillers[n % FILLER_KPIS], f"fill-{n}", Decimal(n % 100),
                    T0 + timedelta(minutes=n),
                )
                for n in range(serial, serial + min(missing, PRELOAD_CHUNK))
            ]  # fmt: skip
            ledger.record_readings(chunk, source="bench", actor=ACTOR)
            serial += len(chunk)
        return token
    finally:
        ledger.close()


# -- load --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One load: what to send where, over how many connections."""

    key: str
    label: str
    server: Server
    path: str
    connections: int
    script: str = ""  # Lua that builds the requests (default: GET `path`)
    items: int = 1  # things recorded per request (readings per batch)


@dataclass(frozen=True)
class Measured:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int  # socket errors, timeouts and non-2xx answers
    recorded: int = 0  # events the ledger grew by during the run (batch ingestion)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(scenario: Scenario, seconds: int, workdir: Path) -> Measured:
    script = workdir / f"{scenario.key}.lua"
    script.write_text(scenario.script.replace("__RUN__", uuid.uuid4().hex[:8]) + REPORT_LUA)
    head = scenario.server.wait_until_projected()["head"] if scenario.items > 1 else 0
    headers = [arg for k, v in scenario.server.auth.items() for arg in ("-H", f"{k}: {v}")]
    command = ["wrk", "-t1", f"-c{scenario.connections}", f"-d{seconds}s", "--timeout", "10s",
               *headers, "-s", str(script), scenario.server.url + scenario.path]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(x for x in output.splitlines() if x.startswith("WRK_RESULT "))
    found = json.loads(line.removeprefix("WRK_RESULT "))
    recorded = 0
    if scenario.items > 1:  # what the ledger grew by, not what wrk thinks it sent
        recorded = scenario.server.wait_until_projected()["head"] - head
    return Measured(
        requests=found["requests"], seconds=found["duration_us"] / 1e6,
        p50_ms=found["p50_us"] / 1000, p99_ms=found["p99_us"] / 1000,
        failures=found["errors"] + found["non_2xx"], recorded=recorded,
    )  # fmt: skip


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    runs: list[Measured]

    @property
    def rate(self) -> float:
        return statistics.median(m.rate for m in self.runs)

    @property
    def items_rate(self) -> float:
        """Items recorded per second: the ledger's growth, so a duplicate counts for nothing."""
        return statistics.median(m.recorded / m.seconds for m in self.runs if m.seconds)

    @property
    def p50_ms(self) -> float:
        return statistics.median(m.p50_ms for m in self.runs)

    @property
    def p99_ms(self) -> float:
        return statistics.median(m.p99_ms for m in self.runs)

    @property
    def failures(self) -> int:
        return sum(m.failures for m in self.runs)


def measure(
    scenarios: list[Scenario], args: argparse.Namespace, workdir: Path
) -> dict[str, Result]:
    """Warm each scenario up, then run all of them --repeat times, interleaved.

    Each run starts once the server's projector has caught up, so no run pays for the
    projection backlog the one before it left (a batch ingestion leaves thousands).
    """
    for scenario in scenarios:
        run_wrk(scenario, 1, workdir)
    runs: dict[str, list[Measured]] = {s.key: [] for s in scenarios}
    for repeat in range(args.repeat):
        for scenario in scenarios:
            if scenario.server.facts:
                scenario.server.wait_until_projected()
            measured = run_wrk(scenario, args.duration, workdir)
            runs[scenario.key].append(measured)
            print(f"  [{repeat + 1}/{args.repeat}] {scenario.label}: {measured.rate:,.0f}/s, "
                  f"p50 {measured.p50_ms:.1f} ms, p99 {measured.p99_ms:.1f} ms, "
                  f"{measured.failures} failed", flush=True)  # fmt: skip
    return {s.key: Result(s, runs[s.key]) for s in scenarios}


def read_scenarios(trivial: Server, ledgers: list[Server], connections: int) -> list[Scenario]:
    scenarios = [
        Scenario("trivial", "trivial `GET /` (event loop)", trivial, "/", connections),
        Scenario("trivial-sync", "trivial `GET /sync` (thread pool)", trivial, "/sync",
                 connections),
    ]  # fmt: skip
    now = int(time.time())
    for server in ledgers:
        history = f"/v1/kpis/{server.facts['demo_kpi']}/history"
        # One connection: latency without queueing; at 32, p50 ≈ 32 / throughput.
        for n, suffix in ((1, "-1"), (connections, "")):
            scenarios += [
                Scenario(f"{server.name}-scoreboard{suffix}", "`GET /v1/scoreboard`", server,
                         "/v1/scoreboard", n),
                Scenario(f"{server.name}-history{suffix}", "`GET /v1/kpis/{id}/history`",
                         server, history, n),
            ]  # fmt: skip
        # The same reads, each for another moment: every answer computed, none reused.
        computed = (("scoreboard", "/v1/scoreboard", "/v1/scoreboard", "as_of"),
                    ("history", history, "/v1/kpis/{id}/history", "to"))  # fmt: skip
        for kind, path, shown, param in computed:
            script = DISTINCT_MOMENT_LUA % {"now": now, "path": path, "param": param}
            label = f"`GET {shown}?{param}=…` (computed)"
            key = f"{server.name}-{kind}-computed-1"
            scenarios.append(Scenario(key, label, server, "/", 1, script))
    return scenarios


def write_scenarios(server: Server, args: argparse.Namespace) -> list[Scenario]:
    paths = ", ".join(f'"/v1/key-results/{kr}/check-ins"' for kr in server.facts["key_results"])
    check_in = CHECK_IN_LUA % {"paths": paths}
    batch = BATCH_LUA % {
        "kpis": ", ".join(f'"{k}"' for k in server.facts["fillers"]),
        "size": args.batch_size,
    }
    return [
        Scenario("check-in-1", "`POST …/check-ins`", server, "/", 1, check_in),
        Scenario("check-in", "`POST …/check-ins`", server, "/", args.connections, check_in),
        Scenario("batch", f"`POST /v1/readings` ({args.batch_size:,} readings)", server, "/",
                 args.batch_connections, batch, items=args.batch_size),
    ]  # fmt: skip


# -- report ------------------------------------------------------------------------------


def machine_info(args: argparse.Namespace) -> list[tuple[str, str]]:
    cpu = next(
        (line.split(":", 1)[1].strip()
         for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "unknown",
    )  # fmt: skip
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    commit = subprocess.run(
        ["git", "-C", str(BENCH_DIR.parent), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("litestar", "uvicorn", "uvloop", "msgspec", "eventsourcing")
    )
    return [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("nproc", str(os.cpu_count())),
        ("CPU", cpu),
        ("kernel", platform.release()),
        ("python", platform.python_version()),
        ("SQLite", f"{sqlite3.sqlite_version}, synchronous={args.synchronous.upper()}, WAL"),
        ("packages", versions),
        ("load generator", (wrk.split("[")[0].strip() or "wrk") + ", 1 thread, closed loop"),
        ("goalledger HEAD at run time", commit or "?"),
    ]


def verdict(met: bool) -> str:
    return "**yes**" if met else "**no**"


def report(
    results: dict[str, Result],
    small: Server,
    large: Server | None,
    info: list[tuple[str, str]],
    args: argparse.Namespace,
    load: tuple[str, str],
) -> str:
    trivial = results.get("trivial")
    lines = ["# HTTP API on SQLite: reads, check-ins and batch ingestion vs a trivial route", ""]
    lines += [f"- {k}: {v}" for k, v in info]
    lines += [
        f"- load average (1/5/15 min) at start: {load[0]}; at end: {load[1]}",
        f"- command: `{' '.join(['python bench/api.py', *sys.argv[1:]])}`",
        f"- each figure: median of {args.repeat} runs of {args.duration:g} s (repeats "
        "interleaved, after a 1 s warm-up); p50/p99 are wrk's latency percentiles",
        "",
        "| what | ledger (events) | connections | req/s | items/s | p50 ms | p99 ms | "
        "vs trivial `GET /` | failed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results.values():
        s = result.scenario
        ledger = f"{s.server.facts['events']:,}" if s.server.facts else "—"
        items = f"{result.items_rate:,.0f}" if s.items > 1 else ""
        comparable = s.server.facts and not s.script and s.connections == args.connections
        share = f"{result.rate / trivial.rate:.2f}" if comparable and trivial else ""
        lines.append(
            f"| {s.label} | {ledger} | {s.connections} | {result.rate:,.0f} | {items} | "
            f"{result.p50_ms:.1f} | {result.p99_ms:.1f} | {share} | {result.failures} |"
        )
    lines += ["", "## Against the issue's targets", "", "| target | measured | met? |",
              "|---|---|---|"]  # fmt: skip
    for kind in ("scoreboard", "history") if trivial else ():
        r = results[f"small-{kind}"]
        share = r.rate / trivial.rate
        lines.append(
            f"| {kind} ≥ {READ_SHARE_TARGET:.0%} of trivial throughput, p99 < "
            f"{P99_TARGET_MS:g} ms at {args.connections} connections | {share:.0%} "
            f"({r.rate:,.0f} vs {trivial.rate:,.0f} req/s), p99 {r.p99_ms:.1f} ms | "
            f"{verdict(share >= READ_SHARE_TARGET and r.p99_ms < P99_TARGET_MS)} |"
        )
    check_in = results["check-in"]
    lines.append(
        f"| single check-ins ≥ {CHECK_IN_TARGET:,.0f}/s, p99 < {P99_TARGET_MS:g} ms "
        f"({args.connections} connections) | {check_in.rate:,.0f}/s, p99 "
        f"{check_in.p99_ms:.1f} ms | "
        f"{verdict(check_in.rate >= CHECK_IN_TARGET and check_in.p99_ms < P99_TARGET_MS)} |"
    )
    batch = results["batch"]
    lines.append(
        f"| batch ingestion ≥ {BATCH_TARGET:,.0f} readings/s | {batch.items_rate:,.0f}/s | "
        f"{verdict(batch.items_rate >= BATCH_TARGET)} |"
    )
    for kind in ("scoreboard", "history", "scoreboard-computed", "history-computed"):
        if large is None:
            break
        a, b = results[f"small-{kind}-1"], results[f"large-{kind}-1"]
        ratio = b.p50_ms / a.p50_ms if a.p50_ms else float("nan")
        lines.append(
            f"| {kind} latency independent of ledger length ({small.facts['events']:,} vs "
            f"{large.facts['events']:,} events, 1 connection; p50 within "
            f"{LENGTH_TOLERANCE - 1:.0%}) | p50 {a.p50_ms:.1f} vs {b.p50_ms:.1f} ms "
            f"(×{ratio:.2f}), p99 {a.p99_ms:.1f} vs {b.p99_ms:.1f} ms | "
            f"{verdict(ratio <= LENGTH_TOLERANCE)} |"
        )
    lines += ["", "Where the time goes, and what would close the gaps: bench/README.md (`api.py`)."]
    return "\n".join(lines) + "\n"


# -- main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small-events", type=int, default=10_000)
    parser.add_argument(
        "--large-events",
        type=int,
        default=200_000,
        help="events in the large ledger (the issue's figure: 1000000)",
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--batch-connections", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=5, help="seconds per run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--synchronous", choices=("full", "normal"), default="full")
    parser.add_argument(
        "--only",
        choices=("all", "writes"),
        default="all",
        help="writes: only the small ledger's check-ins and batches (about a minute)",
    )
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.output is None:
        name = "api-sqlite.md" if args.only == "all" else "api-sqlite-writes.md"
        args.output = BENCH_DIR / "results" / name
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench/api.py needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 2
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="goalledger-bench-api-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        tokens = {}
        ledgers = [("small", args.small_events)]
        if args.only == "all":
            ledgers.append(("large", args.large_events))
        for name, events in ledgers:
            print(f"building the {name} ledger ({events:,} events)…", flush=True)
            tokens[name] = build_ledger(workdir / f"{name}.db", events)
        print("starting servers (the large ledger is projected first)…", flush=True)
        servers = {
            name: serve_ledger(stack, name, workdir / f"{name}.db", token, args.synchronous,
                               workdir)
            for name, token in tokens.items()
        }  # fmt: skip
        small, large = servers["small"], servers.get("large")
        results: dict[str, Result] = {}
        if large is not None:
            trivial = serve_trivial(stack, workdir)
            print("reads:", flush=True)
            results = measure(
                read_scenarios(trivial, [small, large], args.connections), args, workdir
            )
            large.stop()
            trivial.stop()
        print("writes (small ledger):", flush=True)
        results |= measure(write_scenarios(small, args), args, workdir)
        load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
        text = report(results, small, large, machine_info(args), args, (load_start, load_end))
    text += f"\nTotal run time: {time.monotonic() - started:.0f} s.\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print()
    print(text)
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
