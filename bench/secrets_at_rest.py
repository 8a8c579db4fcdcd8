"""What sealing plugin-config secrets costs: the start-up key check on a large ledger,
and opening a config for each fetch or delivery.

One run measures, on the same SQLite ledger (median of --repeat runs):
  raw       sqlite3 SELECT of the rows whose topic sets a binding (the floor of any
            check that must find every binding in use), scanning each for `enc:v1:`
  check     `rekey.check_keys`: the same rows through eventsourcing, decoded, with each
            binding's current secrets classified by key (what serve and worker run)
  config    `Catalogue.config_of` on a binding with a plain-text token (as before
            sealing) vs the same binding sealed: the per-fetch cost of opening it

Usage: python bench/secrets_at_rest.py [--events 200000] [--bindings 200] [--dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from rebuild import build_ledger, machine  # noqa: E402

from goalledger.api.bootstrap import bootstrap  # noqa: E402
from goalledger.core.kpis import SourceBinding, thresholds_for  # noqa: E402
from goalledger.core.secrets import new_key  # noqa: E402
from goalledger.core.settings import Settings  # noqa: E402
from goalledger.core.subscriptions import Channel  # noqa: E402
from goalledger.plugins.rekey import TOPICS, check_keys  # noqa: E402


def add_bindings(settings: Settings, count: int) -> None:
    """`count` KPIs with a sealed source token and `count` sealed webhook subscriptions."""
    with bootstrap(settings) as system:
        plugins, ledger = system.plugins, system.ledger
        for n in range(count):
            config = {"url": f"https://metrics.example.com/{n}", "token": f"token-{n:06d}"}
            ledger.define_kpi(
                name=f"Bound {n}", unit="", direction="higher_is_better",
                thresholds=thresholds_for("higher_is_better", 10, 5), frequency="daily",
                source=plugins.validate_source("http-json", config), actor="bench",
            )  # fmt: skip
            hook = {"url": f"https://hooks.example.com/{n}", "secret": f"whsec-{n:016d}"}
            channel = plugins.validate_channel("webhook", hook)
            ledger.subscribe(
                alert_kinds=["cycle_ending"], team_ids=[],
                channel=Channel(channel.plugin, channel.config), actor="bench",
            )  # fmt: skip


def raw(path: str) -> float:
    started = time.perf_counter()
    with sqlite3.connect(path) as db:
        marks = ",".join("?" * len(TOPICS))
        rows = db.execute(
            f"SELECT rowid, state FROM stored_events WHERE topic IN ({marks})", TOPICS
        )
        sealed = sum(b"enc:v1:" in state for _, state in rows)
    assert sealed
    return time.perf_counter() - started


def check(settings: Settings) -> tuple[float, int]:
    with bootstrap(settings) as system:
        started = time.perf_counter()
        found = check_keys(system.ledger, system.plugins)
        return time.perf_counter() - started, len(found.held)


def config_costs(settings: Settings, rounds: int = 20_000) -> tuple[float, float]:
    """Microseconds per `config_of`: plain-text token vs sealed token."""
    with bootstrap(settings) as system:
        config = {"url": "https://metrics.example.com/x", "token": "token-000000"}
        sealed = system.plugins.validate_source("http-json", config)
        plain = SourceBinding("http-json", {**sealed.config, "token": "token-000000"})
        costs = []
        for binding in (plain, sealed):
            started = time.perf_counter()
            for _ in range(rounds):
                system.plugins.config_of(binding)
            costs.append((time.perf_counter() - started) / rounds * 1e6)
        return costs[0], costs[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--bindings", type=int, default=200)
    parser.add_argument("--dir", default="/tmp/goalledger-bench-secrets")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", default=str(HERE / "results" / "secrets-sqlite.md"))
    args = parser.parse_args()
    directory = Path(args.dir)
    path = directory / "ledger.db"
    settings = Settings(database_url=f"sqlite:///{path}", secret_key=new_key())
    shutil.rmtree(directory, ignore_errors=True)
    build_ledger(settings.database_url, args.events)
    add_bindings(settings, args.bindings)
    with sqlite3.connect(path) as db:
        events = db.execute("SELECT count(*) FROM stored_events").fetchone()[0]
    raws = [raw(str(path)) for _ in range(args.repeat)]
    checks = [check(settings) for _ in range(args.repeat)]
    plain_us, sealed_us = config_costs(settings)
    raw_s, check_s = statistics.median(raws), statistics.median(c[0] for c in checks)
    held = checks[0][1]
    lines = [
        "# Secrets at rest: start-up check and per-fetch cost (SQLite)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {machine()} · shared with other work",
        f"Ledger: {events:,} events; {held} bindings in use hold sealed secrets.",
        f"Command: `flock /tmp/goalledger-bench.lock .venv/bin/python bench/secrets_at_rest.py "
        f"--events {args.events} --bindings {args.bindings}`",
        "",
        "| what | median | vs baseline |",
        "|---|---|---|",
        f"| raw sqlite3: binding rows by topic, scanned for `enc:v1:` (baseline) "
        f"| {raw_s * 1000:.1f} ms | 1.0× |",
        f"| `check_keys` at serve/worker start | {check_s * 1000:.1f} ms "
        f"| {check_s / raw_s:.1f}× |",
        f"| `config_of`, plain-text token (baseline) | {plain_us:.1f} µs | 1.0× |",
        f"| `config_of`, sealed token (AES-GCM open) | {sealed_us:.1f} µs "
        f"| {sealed_us / plain_us:.1f}× |",
        "",
        f"All runs: raw {[round(r * 1000, 1) for r in raws]} ms, check "
        f"{[round(c[0] * 1000, 1) for c in checks]} ms.",
    ]
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
