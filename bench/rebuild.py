"""Rebuild throughput, memory and as-of query latency on a large SQLite ledger.

One run measures, on the same ledger rows:
  raw      raw sqlite3 SELECT of every stored event row (the floor of any rebuild)
  default  the eventsourcing default path: JSON mapper decode + executemany upsert into
           one read-model table, over a ledger of comparable events written by a plain
           eventsourcing Application
  ours     goalledger's `rebuild` of every read model (run in a child process, so its
           peak RSS is its own), sampling RSS as it goes to show memory stays flat; its
           CPU is the rebuilding process's threads plus its log reader (read_ahead)
  live     the live projector (the apply path `goalledger serve` runs) catching up on
           the first 200,000 events into fresh views with every index in place
  query    latency of an as-of scoreboard query on the rebuilt views

Usage: python bench/rebuild.py [--events 1000000] [--dir /tmp/goalledger-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import uuid4

HERE = Path(__file__).resolve().parent


def machine() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        models = [line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line]
    cpu = models[0] if models else platform.processor()
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_ledger(url: str, events: int) -> dict:
    """A ledger of `events` events: a small organisation, then mostly readings and check-ins."""
    from goalledger.core.kpis import thresholds_for
    from goalledger.core.ledger import Ledger, ReadingInput
    from goalledger.core.settings import Settings

    ledger = Ledger(Settings(database_url=url, sqlite_synchronous="normal"))
    now = datetime.now(UTC)
    cycle = ledger.define_cycle(
        name="2026-Q4", starts_on=date(2026, 10, 1), ends_on=date(2026, 12, 31), actor="bench"
    )
    team = ledger.form_team(name="Bench", actor="bench")
    krs, kpis = [], []
    for o in range(10):
        objective = ledger.define_objective(
            title=f"Objective {o}", cycle_id=cycle.id, team_id=team.id, owner="bench",
            kind="committed", actor="bench", effective_at=now - timedelta(days=60),
        )  # fmt: skip
        for k in range(4):
            krs.append(
                ledger.define_key_result(
                    objective.id, title=f"KR {o}.{k}", kind="increase_to", start=Decimal(0),
                    target=Decimal(100), actor="bench", effective_at=now - timedelta(days=60),
                ).id
            )  # fmt: skip
    for k in range(20):
        kpis.append(
            ledger.define_kpi(
                name=f"KPI {k}", direction="higher_is_better", frequency="hourly", actor="bench",
                thresholds=thresholds_for("higher_is_better", 90, 80),
            ).id
        )  # fmt: skip
    rng = random.Random(1)
    started = time.perf_counter()
    written = ledger.head_position()
    n = 0
    while written < events:
        batch = [
            ReadingInput(
                kpis[i % len(kpis)], f"r{n + i}", Decimal(rng.randint(7000, 9999)) / 100,
                now - timedelta(minutes=n + i),
            )
            for i in range(min(5000, events - written))
        ]  # fmt: skip
        n += len(batch)
        written = ledger.record_readings(batch, source="bench", actor="bench").position or written
        if written < events and rng.random() < 0.3:
            for kr in rng.sample(krs, 10):
                written = ledger.check_in(
                    kr, value=Decimal(rng.randint(0, 100)), confidence=Decimal("0.7"),
                    actor="bench", effective_at=now - timedelta(minutes=rng.randint(0, 80000)),
                ).position  # fmt: skip
        print(f"\r  ledger: {written:,} events", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    seconds = time.perf_counter() - started
    ledger.close()
    return {"events": written, "seconds": seconds}


def raw_select(path: str) -> dict:
    connection = sqlite3.connect(path)
    started = time.perf_counter()
    rows = 0
    for _ in connection.execute("SELECT rowid, * FROM stored_events ORDER BY rowid"):
        rows += 1
    seconds = time.perf_counter() - started
    connection.close()
    return {"rows": rows, "per_s": rows / seconds}


def default_path(directory: Path, events: int) -> dict:
    """eventsourcing's default JSON mapper: read, decode and upsert into one table."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Measurement(Aggregate):
        @event("Recorded")
        def __init__(self, kpi: str, reading_id: str, value: str, observed_at: str) -> None:
            self.value = value

    path = directory / "default.db"
    path.unlink(missing_ok=True)
    app = Application(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
    )
    now = datetime.now(UTC)
    for start in range(0, events, 5000):
        app.save(
            *(
                Measurement(str(uuid4()), f"r{i}", str(Decimal(i % 3000) / 100),
                            (now - timedelta(minutes=i)).isoformat())
                for i in range(start, min(events, start + 5000))
            )
        )  # fmt: skip
    views = sqlite3.connect(directory / "default-views.db", isolation_level=None)
    views.execute("PRAGMA journal_mode=WAL")
    views.execute("PRAGMA synchronous=NORMAL")
    views.execute("DROP TABLE IF EXISTS readings")
    views.execute("CREATE TABLE readings (id TEXT PRIMARY KEY, value TEXT, position INTEGER)")
    started = time.perf_counter()
    position, count = 0, 0
    while True:
        page = app.recorder.select_notifications(position, 1000, inclusive_of_start=False)
        if not page:
            break
        rows = []
        for notification in page:
            domain_event = app.mapper.to_domain_event(notification)
            rows.append((str(domain_event.originator_id), domain_event.value, notification.id))
        views.execute("BEGIN")
        views.executemany(
            "INSERT INTO readings VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE"
            " SET value = excluded.value, position = excluded.position",
            rows,
        )
        views.execute("COMMIT")
        position = page[-1].id
        count += len(page)
    seconds = time.perf_counter() - started
    app.close()
    return {"events": count, "per_s": count / seconds}


def ours(url: str) -> dict:
    """Rebuild every read model in this process (called in a child process)."""
    from goalledger.core.ledger import Ledger
    from goalledger.core.settings import Settings
    from goalledger.projections.projector import rebuild
    from goalledger.projections.store import open_view_store

    settings = Settings(database_url=url)
    ledger = Ledger(settings)
    store = open_view_store(settings)
    samples: list[tuple[int, float]] = []
    last = [0]

    def progress(done: int, total: int) -> None:
        if done - last[0] >= total // 20 or done == total:
            samples.append((done, rss_mb()))
            last[0] = done

    head = ledger.head_position()
    started, cpu, reader = time.perf_counter(), time.process_time(), _children_cpu()
    rebuild(ledger, store, progress)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    reader = _children_cpu() - reader  # the log reader, waited for by the rebuild
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"events": head, "per_s": head / seconds, "seconds": seconds, "cpu_seconds": cpu,
            "reader_cpu_seconds": reader, "peak_rss_mb": peak,
            "rss_samples": samples}  # fmt: skip


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def live(url: str, views: str, events: int = 200_000) -> dict:
    """The live projector's apply path: batches into fresh views with every index (called
    in a child process)."""
    from goalledger.core.ledger import Ledger
    from goalledger.core.settings import Settings
    from goalledger.projections.projector import Projector
    from goalledger.projections.store import SQLiteViewStore

    ledger = Ledger(Settings(database_url=url))
    store = SQLiteViewStore(views)
    projector = Projector(ledger, store)
    started, cpu = time.perf_counter(), time.process_time()
    while projector.position() < events and projector.run_batch():
        pass
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    done = projector.position()
    store.close()
    return {"events": done, "per_s": done / seconds, "cpu_us": cpu / done * 1e6,
            "batch": projector.batch_size}  # fmt: skip


def query_latency(url: str, runs: int = 50) -> dict:
    from goalledger.api.bootstrap import bootstrap
    from goalledger.core.settings import Settings

    with bootstrap(Settings(database_url=url)) as system:
        now = datetime.now(UTC)
        timings = []
        for i in range(runs):
            as_of = now - timedelta(hours=i * 7)
            started = time.perf_counter()
            system.queries.scoreboard(as_of=as_of)
            timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {
        "median_ms": statistics.median(timings),
        "p99_ms": timings[int(len(timings) * 0.99) - 1],
    }


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--dir", default="/tmp/goalledger-bench")
    parser.add_argument("--reuse", action="store_true", help="keep an existing ledger")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--live-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(ours(args.child)))
        return
    if args.live_child:
        print(json.dumps(live(*args.live_child)))
        return
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    ledger_path = directory / "ledger.db"
    url = f"sqlite:///{ledger_path}"
    if not (args.reuse and ledger_path.exists()):
        for stale in directory.glob("ledger*"):
            stale.unlink()
        built = build_ledger(url, args.events)
        print(f"built {built['events']:,} events in {built['seconds']:.1f}s", file=sys.stderr)
    raw = raw_select(str(ledger_path))
    print(f"raw select: {raw['per_s']:,.0f} rows/s", file=sys.stderr)
    default = default_path(directory, min(args.events, 200_000))
    print(f"default path: {default['per_s']:,.0f} events/s", file=sys.stderr)
    load_before = os.getloadavg()[0]
    child = subprocess.run(
        [sys.executable, __file__, "--child", url], capture_output=True, text=True, check=True
    )
    rebuilt = json.loads(child.stdout.strip().splitlines()[-1])
    load_after = os.getloadavg()[0]
    views = directory / "live-views.db"
    for stale in directory.glob("live-views.db*"):
        stale.unlink()
    child = subprocess.run(
        [sys.executable, __file__, "--live-child", url, str(views)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    following = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"live projector: {following['per_s']:,.0f} events/s", file=sys.stderr)
    latency = query_latency(url)
    ours_raw = rebuilt["per_s"] / raw["per_s"]
    cpu = rebuilt["cpu_seconds"] + rebuilt["reader_cpu_seconds"]
    ours_default = rebuilt["per_s"] / default["per_s"]
    samples = ", ".join(f"{done // 1000}k: {mb:.0f} MB" for done, mb in rebuilt["rss_samples"])
    # Flat: from half-way on, RSS stays within 10% of its half-way value.
    later = [mb for done, mb in rebuilt["rss_samples"] if done >= rebuilt["events"] // 2]
    flat = f"{min(later):.0f}–{max(later):.0f} MB" if later else "no samples"
    flat_ok = bool(later) and max(later) <= 1.1 * later[0]
    report = f"""# Rebuild of every read model — {raw["rows"]:,} events on SQLite

Machine: {machine()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.

| path | events/s | ratio of ours to it |
|---|---:|---:|
| raw sqlite3 SELECT of the stored rows | {raw["per_s"]:,.0f} | {ours_raw:.2f} |
| eventsourcing default mapper + upsert ({default["events"]:,} events) \
| {default["per_s"]:,.0f} | {ours_default:.2f} |
| **goalledger rebuild, all read models** | **{rebuilt["per_s"]:,.0f}** | — |

Rebuild took {rebuilt["seconds"]:.1f} s: {rebuilt["cpu_seconds"]:.1f} s of CPU over its threads \
and {rebuilt["reader_cpu_seconds"]:.1f} s in its log reader process \
({rebuilt["events"] / cpu:,.0f} events per CPU-second in all); 1-minute load average \
{load_before:.1f} before and {load_after:.1f} after it. Peak RSS of the rebuilding process \
{rebuilt["peak_rss_mb"]:.0f} MB (the reader's is apart). RSS while rebuilding (events done: \
RSS): {samples}.

Live projector (the apply path `goalledger serve` runs, batches of {following["batch"]:,}, \
every index in place) catching up on the first {following["events"]:,} events: \
{following["per_s"]:,.0f} events/s, {following["cpu_us"]:.1f} µs of CPU per event.

As-of scoreboard query on the rebuilt views (50 different `as_of` times):
median {latency["median_ms"]:.1f} ms, p99 {latency["p99_ms"]:.1f} ms.

| target (issue 3) | measured | met? |
|---|---|---|
| rebuild ≥ 100,000 events/s into all read models | {rebuilt["per_s"]:,.0f} events/s \
| {_met(rebuilt["per_s"] >= 100_000)} |
| memory flat as the ledger grows | RSS from half-way to the end: {flat} | {_met(flat_ok)} |
| `as_of` scoreboard query < 50 ms | p99 {latency["p99_ms"]:.1f} ms | \
{_met(latency["p99_ms"] < 50)} |
"""
    print(report)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "rebuild-sqlite.md").write_text(report)


if __name__ == "__main__":
    main()
