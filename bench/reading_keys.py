"""Why readings have time-ordered ids: raw sqlite3 inserts into the events table's shape.

The events table (eventsourcing's `stored_events`) has the key (originator_id TEXT,
originator_version). Until the reading-name table, a reading's id was a hash of its
name (uuid5): random, so each row of a batch lands on its own page of that index, and
SQLite writes each of those pages to the WAL at commit. This measures, with plain
sqlite3 on one file (WAL, synchronous=FULL, 1,000 rows a transaction, one multi-row
INSERT per 500 rows as the ledger's writer does), after --preload rows:

  * random keys (uuid4 hex, as uuid5 hashes land): the old layout;
  * time-ordered keys (core/ordered_ids.py), rows only;
  * time-ordered keys plus the names claimed in a `reading_names` table (the ledger's
    layout now), names `kpi/reading id` with increasing reading ids per KPI (what a
    metric source sends) and, separately, with random reading ids (the worst case).

    .venv/bin/python bench/reading_keys.py              # ~2 min → bench/results/reading-keys.md
    .venv/bin/python bench/reading_keys.py --preload 100000 --seconds 3 --output /tmp/k.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from goalledger.core.ordered_ids import ordered_hex

BENCH_DIR = Path(__file__).resolve().parent
BATCH = 1000
PER_STATEMENT = 500
KPIS = 10
STATE = os.urandom(192)  # a stored reading's average state length
TOPIC = "goalledger/reading/recorded"

Batch = Callable[[int], tuple[list[str], list[str]]]  # batch number -> (names, keys)


def random_keys(n: int) -> tuple[list[str], list[str]]:
    return [], [uuid.uuid4().hex for _ in range(BATCH)]


def ordered_keys(n: int) -> tuple[list[str], list[str]]:
    return [], ordered_hex(BATCH)


def named_in_order(n: int) -> tuple[list[str], list[str]]:
    kpis = [str(uuid.UUID(int=k + 1)) for k in range(KPIS)]
    names = [f"{kpis[i % KPIS]}/{n * BATCH + i:012d}" for i in range(BATCH)]
    return names, ordered_hex(BATCH)


def named_at_random(n: int) -> tuple[list[str], list[str]]:
    kpis = [str(uuid.UUID(int=k + 1)) for k in range(KPIS)]
    names = [f"{kpis[i % KPIS]}/{uuid.uuid4().hex}" for i in range(BATCH)]
    return names, ordered_hex(BATCH)


LAYOUTS: list[tuple[str, str, Batch]] = [
    ("random", "random keys (uuid4/uuid5-like), no name table: the old layout", random_keys),
    ("ordered", "time-ordered keys, no name table", ordered_keys),
    ("named", "time-ordered keys + names claimed, reading ids increasing per KPI", named_in_order),
    ("named-random", "time-ordered keys + names claimed, random reading ids", named_at_random),
]


def open_database(path: Path) -> sqlite3.Connection:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER,"
        " topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))"
    )
    conn.execute(
        "CREATE TABLE reading_names (name TEXT PRIMARY KEY, originator_id TEXT NOT NULL)"
        " WITHOUT ROWID"
    )
    return conn


def insert(conn: sqlite3.Connection, names: list[str], keys: list[str]) -> None:
    """One transaction: claim the names (if any), then insert the rows whose names were
    free, 500 to a statement, as core/event_writers.py does."""
    conn.execute("BEGIN IMMEDIATE")
    if names:
        claimed: set[str] = set()
        for start in range(0, len(keys), PER_STATEMENT):
            part = range(start, min(start + PER_STATEMENT, len(keys)))
            values = [v for i in part for v in (names[i], keys[i])]
            statement = (
                f"INSERT INTO reading_names VALUES {', '.join(['(?, ?)'] * len(part))}"
                " ON CONFLICT DO NOTHING RETURNING originator_id"
            )
            claimed.update(row[0] for row in conn.execute(statement, values))
        keys = [key for key in keys if key in claimed]
    for start in range(0, len(keys), PER_STATEMENT):
        part = keys[start : start + PER_STATEMENT]
        values = [v for key in part for v in (key, TOPIC, STATE)]
        statement = f"INSERT INTO stored_events VALUES {', '.join(['(?, 1, ?, ?)'] * len(part))}"
        conn.execute(statement, values)
    conn.execute("COMMIT")


def run(layout: Batch, preload: int, seconds: float, workdir: Path) -> float:
    """Rows/s of 1,000-row transactions after `preload` rows of the same layout."""
    conn = open_database(workdir / "keys.db")
    try:
        n = 0
        while n * BATCH < preload:
            insert(conn, *layout(n))
            n += 1
        started, rows = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            insert(conn, *layout(n))
            n, rows = n + 1, rows + BATCH
        return rows / (time.perf_counter() - started)
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preload", type=int, default=400_000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results" / "reading-keys.md")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    rates: dict[str, list[float]] = {key: [] for key, _, _ in LAYOUTS}
    with tempfile.TemporaryDirectory(prefix="reading-keys-") as tmp:
        for repeat in range(args.repeat):
            for key, _, layout in LAYOUTS:
                rate = run(layout, args.preload, args.seconds, Path(tmp))
                rates[key].append(rate)
                print(f"[{repeat + 1}/{args.repeat}] {key}: {rate:,.0f} rows/s", flush=True)
    baseline = statistics.median(rates["random"])
    lines = [
        "# Reading ids: random against time-ordered keys (raw sqlite3)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.processor() or platform.machine()}"
        f" · {os.cpu_count()} CPUs · Python {platform.python_version()} · SQLite"
        f" {sqlite3.sqlite_version} · load {load[0]:.1f} → {os.getloadavg()[0]:.1f}",
        "",
        f"Command: `python bench/reading_keys.py --preload {args.preload} --seconds"
        f" {args.seconds:g} --repeat {args.repeat}`. WAL, synchronous=FULL, {BATCH:,} rows a"
        f" transaction after {args.preload:,} rows of the same layout; median of"
        f" {args.repeat}, runs interleaved.",
        "",
        "| layout | rows/s (median) | runs | vs the old layout |",
        "|---|---:|---|---:|",
    ]
    for key, label, _ in LAYOUTS:
        median = statistics.median(rates[key])
        runs = ", ".join(f"{r / 1000:.0f}k" for r in rates[key])
        lines.append(f"| {label} | {median:,.0f} | {runs} | {median / baseline:.2f}× |")
    args.output.write_text("\n".join(lines) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
