"""Soak: the suite's load test (tests/test_load.py) run for longer, reporting the
server's RSS over time and the requests it served.

A real `goalledger serve` (uvicorn, projector embedded, SQLite) on a fresh ledger, and
tests/loadgen.py's closed-loop mix at --connections: scoreboard, KPI history, check-in
history and objective reads; check-ins (each connection on its own key result), batches
of 20 readings, and a contended objective edit with If-Match (its 412s are real and
counted). RSS comes from /proc every --sample seconds.

    flock /tmp/goalledger-bench.lock .venv/bin/python bench/soak.py --duration 600
    flock /tmp/goalledger-bench.lock .venv/bin/python bench/soak.py --duration 60 --output /tmp/s.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the load generator the suite uses

import loadgen  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of load")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--sample", type=float, default=5, help="seconds between RSS samples")
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/soak-sqlite.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="goalledger-soak-") as directory:
        url = f"sqlite:///{directory}/data/goalledger.db"
        world = loadgen.prepare(url, key_results=args.connections)
        server = loadgen.ServerProcess(url, Path(directory) / "server.log")
        load_before = os.getloadavg()
        started = datetime.now(UTC)
        try:
            server.wait_healthy()

            def progress(stats: loadgen.Stats) -> None:
                seconds, kib = stats.rss[-1]
                print(f"{seconds:7.0f} s  RSS {kib / 1024:7.1f} MiB  {stats.requests:9,} requests",
                      flush=True)  # fmt: skip

            stats = asyncio.run(
                loadgen.run_load(
                    server.port, world, connections=args.connections, seconds=args.duration,
                    pid=server.process.pid, sample_every=args.sample, on_sample=progress,
                )
            )  # fmt: skip
            files = {p.name: p.stat().st_size for p in Path(directory, "data").iterdir()}
        finally:
            exit_status = server.stop()
        loadgen.check_ledger(url, world, stats)
    report = render(args, stats, started, load_before, os.getloadavg(), files, exit_status)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(report)


def render(
    args: argparse.Namespace,
    stats: loadgen.Stats,
    started: datetime,
    load_before: tuple[float, ...],
    load_after: tuple[float, ...],
    files: dict[str, int],
    exit_status: int,
) -> str:
    middle, end, rise = loadgen.growth_in_second_half(stats.rss)
    start = stats.rss[0][1]
    lines = [
        "# Soak on SQLite: mixed reads and writes against `goalledger serve`",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- nproc: {os.cpu_count()}; CPU: {_cpu()}; python {platform.python_version()}",
        f"- goalledger HEAD at run time: {_head()}",
        f"- load average at start: {_load(load_before)}; at end: {_load(load_after)}",
        f"- command: `python bench/soak.py --duration {args.duration:g}"
        f" --connections {args.connections}`",
        f"- load generator: tests/loadgen.py, {args.connections} keep-alive connections,"
        " closed loop, mix " + ", ".join(f"{op} {weight}%" for op, weight in loadgen.MIX.items()),
        f"- server exit status after SIGTERM: {exit_status}",
        "",
        "## Requests served",
        "",
        f"- {stats.requests:,} requests in {args.duration:g} s"
        f" ({stats.requests / args.duration:,.0f} req/s)",
        f"- 5xx: {stats.server_errors}; unexpected answers: {len(stats.unexpected)};"
        f" transport errors: {len(stats.transport_errors)}",
        f"- check-ins {sum(stats.check_ins.values()):,}, readings {stats.readings:,},"
        f" objective edits {stats.edits:,}, real 412s on the contended edit"
        f" {stats.edit_conflicts:,}",
        "- ledger check after the run: the objective's version grew by exactly the edits"
        " that succeeded, each key result holds exactly its acknowledged check-ins",
        "",
        "| op | status | count |",
        "|---|---:|---:|",
        *(f"| {op} | {status} | {n:,} |" for (op, status), n in sorted(stats.by_op.items())),
        "",
        "## Server RSS",
        "",
        f"- start {start / 1024:.1f} MiB, middle {middle / 1024:.1f} MiB,"
        f" end {end / 1024:.1f} MiB; largest rise over the second half {rise / 1024:.1f} MiB",
        "- files at the end: " + ", ".join(f"{n} {s / 2**20:.1f} MiB" for n, s in files.items()),
        "",
        "| seconds | RSS MiB |",
        "|---:|---:|",
        *(f"| {seconds:.0f} | {kib / 1024:.1f} |" for seconds, kib in stats.rss),
        "",
    ]
    return "\n".join(lines)


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _head() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def _load(values: tuple[float, ...]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"took {time.monotonic() - started:.0f} s", file=sys.stderr)
