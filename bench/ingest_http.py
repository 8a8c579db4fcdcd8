"""Batch reading ingestion over HTTP, and where each reading's time goes in process.

Two parts, one run:

1. HTTP: a real `goalledger serve` (uvicorn, projector embedded, SQLite at
   --synchronous, default the project's FULL) on a fresh ledger (the demo plus
   --events filler readings, bench/api.py's `build_ledger`), loaded by wrk with
   bench/api.py's BATCH_LUA: `POST /v1/readings` with --batch-size (1,000) new readings
   a request over --connections (4) connections. Readings/s is the median of --repeat
   (3) runs of --duration (5) s, each started once the projector has caught up.
   `--profile` also records the server under load with py-spy (`--gil`, raw folded
   stacks) and prints the share of GIL-holding samples per stage.
2. In process: the same 1,000-reading body through each stage the route runs, in
   µs per reading (median of --stage-repeat runs): Litestar's generic decode (JSON to
   builtins, then `msgspec.convert` of the handler's signature) vs one typed decode,
   ReadingInput construction, `reading_rows` (check, key, encode), the insert, the whole
   `Ledger.record_readings` (on its own SQLite file at the same synchronous) and the
   response encode.

    flock /tmp/goalledger-bench.lock .venv/bin/python bench/ingest_http.py
    flock /tmp/goalledger-bench.lock .venv/bin/python bench/ingest_http.py --profile
    .venv/bin/python bench/ingest_http.py --stages-only
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec

from goalledger.api.http_conventions import AwareDatetime
from goalledger.api.http_json import Body
from goalledger.core.kpis import thresholds_for
from goalledger.core.ledger import Ledger, ReadingInput
from goalledger.core.settings import Settings

BENCH_DIR = Path(__file__).resolve().parent
PY_SPY = Path("/tmp/spy/bin/py-spy")


def _bench_api() -> Any:
    """bench/api.py (servers, ledgers, wrk), loaded by path: `api` names our package too."""
    spec = importlib.util.spec_from_file_location("bench_api", BENCH_DIR / "api.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_api"] = module
    spec.loader.exec_module(module)
    return module


bench_api = _bench_api()


# -- HTTP ----------------------------------------------------------------------------------


def serve(
    stack: ExitStack,
    name: str,
    args: argparse.Namespace,
    workdir: Path,
    code: Path | None,
    whatif: str = "",
) -> Any:
    """`goalledger serve` on a fresh ledger; `code`: run that copy of the package instead;
    `whatif`: with bench/ingest_whatif.py's prototypes (comma-separated) patched in."""
    database = workdir / f"{name}.db"
    token = bench_api.build_ledger(database, args.events)
    cli = [str(BENCH_DIR / "ingest_whatif.py")] if whatif else ["-m", "goalledger.api.cli"]
    command = [sys.executable, *cli, "--database-url", f"sqlite:///{database}", "serve"]
    env = {"GOALLEDGER_SQLITE_SYNCHRONOUS": args.synchronous, "PYTHONUNBUFFERED": "1",
           "GOALLEDGER_WHATIF": whatif}  # fmt: skip
    if code is not None:  # found before the editable install's finder (it comes last)
        env["PYTHONPATH"] = str(code)
    server = stack.enter_context(bench_api.serving(name, command, workdir / f"{name}.log", env))
    server.token = token
    server.wait_until_up("/health")
    server.wait_until_projected()
    server.facts = bench_api.demo_targets(server)
    return server


def batch_scenario(server: Any, args: argparse.Namespace) -> Any:
    """BATCH_LUA with reading ids no run has sent: wrk restarts its counter each run, so
    one run id for all runs would re-send the earlier runs' readings (duplicates, which
    record nothing and cost less)."""
    script = bench_api.BATCH_LUA % {
        "kpis": ", ".join(f'"{k}"' for k in server.facts["fillers"]),
        "run": uuid.uuid4().hex[:8],
        "size": args.batch_size,
    }
    return bench_api.Scenario(
        server.name, server.name, server, "/", args.connections, script, items=args.batch_size
    )


def http_runs(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, list[float]], str]:
    """Readings/s of each run per server (baseline runs interleaved), and the profile."""
    with ExitStack() as stack:
        servers = {"current": serve(stack, "current", args, workdir, None)}
        if args.baseline:
            servers["baseline"] = serve(stack, "baseline", args, workdir, args.baseline)
        if args.what_if:
            for whatif in args.what_if.split(";"):
                name = f"what-if {whatif}"
                servers[name] = serve(stack, name.replace(" ", "-"), args, workdir, None, whatif)
        for server in servers.values():
            bench_api.run_wrk(batch_scenario(server, args), 1, workdir)  # warm-up
        rates: dict[str, list[float]] = {name: [] for name in servers}
        for repeat in range(args.repeat):
            for name, server in servers.items():
                head = server.wait_until_projected()["head"]
                measured = bench_api.run_wrk(batch_scenario(server, args), args.duration, workdir)
                rate = measured.rate * args.batch_size
                # What the ledger gained: new readings only (a duplicate records nothing).
                gained = httpx.get(server.url + "/ready", timeout=30).json()["head"] - head
                rates[name].append(rate)
                print(f"  [{repeat + 1}/{args.repeat}] {name}: {rate:,.0f} readings/s "
                      f"({gained / measured.seconds:,.0f}/s new in the ledger; p50 "
                      f"{measured.p50_ms:.0f} ms, p99 {measured.p99_ms:.0f} ms, "
                      f"{measured.failures} failed)", flush=True)  # fmt: skip
        profile = ""
        if args.profile:
            servers["current"].wait_until_projected()
            profile = spy(servers["current"], batch_scenario(servers["current"], args), args,
                          workdir)  # fmt: skip
    return rates, profile


def spy(server: Any, scenario: Any, args: argparse.Namespace, workdir: Path) -> str:
    """py-spy (GIL-holding samples only) on the server during one more wrk run."""
    raw = workdir / "spy.txt"
    recorder = subprocess.Popen(
        [str(PY_SPY), "record", *(["--idle"] if args.wall else ["--gil"]), "-f", "raw",
         "-r", "200", "-d", str(args.duration),
         "-o", str(raw), "-p", str(server.process.pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    bench_api.run_wrk(scenario, args.duration, workdir)
    recorder.wait(timeout=60)
    if args.keep_profile:
        args.keep_profile.write_text(raw.read_text())
    return summarize(raw.read_text())


# Stages by the first frame (leaf-most wins) that names them; order is priority.
STAGES: list[tuple[str, re.Pattern[str]]] = [
    ("projector", re.compile(r"goalledger/projections/")),
    ("insert (executemany + commit)", re.compile(r"event_writers\.py")),
    ("reading_rows", re.compile(r"reading_rows")),
    ("litestar signature convert", re.compile(r"parse_values_from_connection_kwargs")),
    ("body decode", re.compile(r"decode_json|json\.py:.*decode|read_batch|decode_batch")),
    ("response encode", re.compile(r"render|encode_json|to_asgi_response")),
    ("ledger other", re.compile(r"goalledger/core/")),
    ("uvicorn/h11 protocol", re.compile(r"uvicorn/|h11|httptools")),
    ("litestar other", re.compile(r"litestar/")),
    ("goalledger api other", re.compile(r"goalledger/api/")),
]


def summarize(folded: str) -> str:
    """Share of GIL-holding samples per stage, from py-spy's raw (folded) output."""
    counts: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        samples = int(n)
        total += samples
        frames = stack.split(";")
        stage = "other"
        for name, pattern in STAGES:
            if any(pattern.search(f) for f in frames):
                stage = name
                break
        counts[stage] += samples
        leaves[frames[-1]] += samples
    lines = [f"GIL-holding samples: {total}", "", "| stage | share |", "|---|---:|"]
    lines += [f"| {k} | {v / total:.1%} |" for k, v in counts.most_common()]
    lines += ["", "Top leaf frames:", ""]
    lines += [f"- {v / total:.1%} {k}" for k, v in leaves.most_common(25)]
    return "\n".join(lines)


# -- in process ----------------------------------------------------------------------------


def batch_body(kpis: list[str], size: int, serial: int) -> bytes:
    """A body like BATCH_LUA's (new reading ids every `serial`)."""
    parts = []
    for j in range(1, size + 1):
        at = datetime.fromtimestamp(1_700_000_000 + serial * size + j, UTC)
        parts.append(
            f'{{"kpi_id":"{kpis[j % len(kpis)]}","reading_id":"s{serial}-{j}",'
            f'"value":{j % 100},"observed_at":"{at.strftime("%Y-%m-%dT%H:%M:%SZ")}"}}'
        )
    return ("[" + ",".join(parts) + "]").encode()


def _module_at(path: Path) -> Any:
    """A module loaded from a file (its imports resolve to the installed package)."""
    spec = importlib.util.spec_from_file_location(f"baseline_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(repeat: int, size: int, run: Callable[[int], Any]) -> float:
    """Median µs per reading of `run(serial)` over `repeat` calls."""
    times = []
    for serial in range(repeat):
        started = time.perf_counter()
        run(serial)
        times.append(time.perf_counter() - started)
    return statistics.median(times) / size * 1e6


def stages(args: argparse.Namespace, workdir: Path) -> list[tuple[str, float]]:
    """µs per reading of each stage between the socket and `record_readings` returning."""
    from litestar.serialization import decode_json

    from goalledger.api import routes_kpis
    from goalledger.api.http_json import encode_json
    from goalledger.api.reading_bodies import decode_batch
    from goalledger.core.model import utc_now
    from goalledger.core.reading_rows import RECORDED_TOPIC, reading_rows

    settings = Settings(
        database_url=f"sqlite:///{workdir / 'stages.db'}", sqlite_synchronous=args.synchronous
    )
    ledger = Ledger(settings)
    size, repeat = args.batch_size, args.stage_repeat
    try:
        thresholds = thresholds_for("higher_is_better", Decimal(90), Decimal(80))
        kpi_ids = [
            ledger.define_kpi(
                name=f"k{i}", direction="higher_is_better", thresholds=thresholds,
                frequency="hourly", actor="bench",
            ).id
            for i in range(10)
        ]  # fmt: skip
        kpis = [str(k) for k in kpi_ids]
        bodies = [batch_body(kpis, size, serial) for serial in range(repeat * 4)]

        def generic(serial: int) -> Any:
            # What Litestar does for `data: JSONBody[list[Body]]`: builtins, then convert.
            raw = decode_json(bodies[serial])
            return msgspec.convert({"data": raw}, _LegacySignature, strict=False, str_keys=True)

        decoded = decode_batch(bodies[0])
        inputs = list(decoded)
        result: list[tuple[str, float]] = [
            ("decode: Litestar's two passes into `Body` Structs (before)",
             timed(repeat, size, generic)),
            ("decode: `decode_batch`, one typed pass (reading_bodies.py)",
             timed(repeat, size, lambda s: decode_batch(bodies[s]))),
        ]  # fmt: skip
        now = utc_now()
        result.append(
            ("reading_rows (check, key, encode)",
             timed(repeat, size, lambda s: reading_rows(
                 inputs, source="api", actor="bench", now=now, seal=None,
                 kpi_seen=lambda k, i: None))),
        )  # fmt: skip
        if args.baseline:  # the baseline tree's reading_rows, on the same inputs
            old = _module_at(args.baseline / "goalledger" / "core" / "reading_rows.py")
            result.append(
                ("reading_rows, baseline tree",
                 timed(repeat, size, lambda s: old.reading_rows(
                     inputs, source="api", actor="bench", now=now, seal=None,
                     kpi_seen=lambda k, i: None))),
            )  # fmt: skip
        writer = ledger._writer

        def insert(serial: int) -> None:
            fresh = [
                ReadingInput(r.kpi_id, f"i{serial}-{r.reading_id}", r.value, r.observed_at)
                for r in inputs
            ]
            rows = reading_rows(fresh, source="api", actor="bench", now=now, seal=None,
                                kpi_seen=lambda k, i: None)  # fmt: skip
            started = time.perf_counter()
            writer.insert_new(RECORDED_TOPIC, rows.keys, rows.states)
            insert_times.append(time.perf_counter() - started)

        insert_times: list[float] = []
        for serial in range(repeat):
            insert(serial)
        result.append(("insert_new (executemany + commit)",
                       statistics.median(insert_times) / size * 1e6))  # fmt: skip
        fresh_batches = [
            [ReadingInput(r.kpi_id, f"r{serial}-{r.reading_id}", r.value, r.observed_at)
             for r in inputs]
            for serial in range(repeat)
        ]  # fmt: skip
        result.append(
            ("Ledger.record_readings (all of the above after decode)",
             timed(repeat, size, lambda s: ledger.record_readings(
                 fresh_batches[s], source="api", actor="bench"))),
        )  # fmt: skip
        written = ledger.record_readings(inputs, source="api", actor="bench")
        out = routes_kpis.ReadingsOut(written.recorded, written.duplicates, written.position)
        result.append(("response encode", timed(repeat, size, lambda s: encode_json(out))))
        return result
    finally:
        ledger.close()


class _LegacyReadingIn(Body):
    """The batch item as it was before reading_bodies.py: a `Body`, read in two passes."""

    kpi_id: uuid.UUID
    reading_id: str
    value: Decimal
    observed_at: AwareDatetime


_LegacySignature = msgspec.defstruct("_LegacySignature", [("data", list[_LegacyReadingIn])])


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stage-repeat", type=int, default=30)
    parser.add_argument("--synchronous", choices=("full", "normal"), default="full")
    parser.add_argument("--profile", action="store_true", help="py-spy the server under load")
    parser.add_argument("--keep-profile", type=Path, help="write py-spy's raw output here")
    parser.add_argument(
        "--wall", action="store_true",
        help="profile wall time of every thread (py-spy --idle) rather than GIL holders",
    )  # fmt: skip
    parser.add_argument("--stages-only", action="store_true")
    parser.add_argument(
        "--what-if", default="",
        help="also serve with bench/ingest_whatif.py's prototypes, runs interleaved: e.g. "
             "'multirow;group;multirow,group' (one server each)",
    )  # fmt: skip
    parser.add_argument(
        "--baseline", type=Path,
        help="a directory holding another `goalledger` package tree: served too, runs interleaved",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, help="append the report to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = bench_api.machine_info(args)
    lines = [f"## ingest_http.py, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", ""]
    lines += [f"- {k}: {v}" for k, v in info]
    lines.append(f"- load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="goalledger-ingest-") as tmp:
        workdir = Path(tmp)
        print("stages (in process):", flush=True)
        lines += ["", "| stage | µs per reading |", "|---|---:|"]
        for name, micros in stages(args, workdir):
            print(f"  {name}: {micros:.2f} µs", flush=True)
            lines.append(f"| {name} | {micros:.2f} |")
        if not args.stages_only:
            print("HTTP:", flush=True)
            rates, profile = http_runs(args, workdir)
            lines += [
                "",
                f"`POST /v1/readings`, {args.batch_size:,} readings a request, "
                f"{args.connections} connections, {args.repeat} × {args.duration} s:",
                "",
            ]
            for name, runs in rates.items():
                lines.append(f"- {name}: median **{statistics.median(runs):,.0f} readings/s** "
                             f"(runs: {', '.join(f'{r:,.0f}' for r in runs)})")  # fmt: skip
            if profile:
                lines += ["", profile]
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("a") as out:
            out.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
