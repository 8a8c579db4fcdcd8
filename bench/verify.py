"""Hash-chain verification, export and import throughput on a large SQLite ledger.

One run measures, on the same ledger rows (each path in its own child process, so its
peak RSS is its own; the median of --repeat runs is reported):
  raw     sqlite3 SELECT of every stored event row + a chained hashlib.sha256 over each
          row's fields (the floor of any chain verification)
  verify  goalledger's `chain.verify`: the same, through `Ledger.notification_rows`, plus
          reading the projector's chain table and comparing every link
  export  `ledger_io.export_lines` to an NDJSON file (verifies as it goes)
  import  `ledger_io.import_ledger` of that file into an empty SQLite ledger (checks the
          whole file, then inserts it in one transaction, checking again)

Usage: python bench/verify.py [--events 1000000] [--dir /tmp/goalledger-bench-verify]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from rebuild import build_ledger, machine, rss_mb  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def raw(path: str) -> dict:
    """sqlite3 SELECT + chained sha256 over position, id, version, topic and state."""
    connection = sqlite3.connect(path)
    started = time.perf_counter()
    link, rows = bytes(32), 0
    sha256 = hashlib.sha256
    cursor = connection.execute(
        "SELECT rowid, originator_id, originator_version, topic, state"
        " FROM stored_events ORDER BY rowid"
    )
    for position, aggregate_id, version, topic, state in cursor:
        fields = (position.to_bytes(8), bytes.fromhex(aggregate_id), version.to_bytes(8))
        link = sha256(b"".join((link, *fields, topic.encode(), state))).digest()
        rows += 1
    seconds = time.perf_counter() - started
    connection.close()
    return {"events": rows, "per_s": rows / seconds, "peak_rss_mb": peak_mb(), "head": link.hex()}


def verify(url: str) -> dict:
    """`chain.verify` over the whole ledger, sampling RSS as it goes."""
    from goalledger.core.ledger import Ledger
    from goalledger.core.settings import Settings
    from goalledger.projections import chain
    from goalledger.projections.store import open_view_store

    settings = Settings(database_url=url)
    ledger, store = Ledger(settings), open_view_store(settings)
    samples: list[tuple[int, float]] = []

    def progress(done: int, total: int) -> None:
        if not samples or done - samples[-1][0] >= total // 10 or done == total:
            samples.append((done, rss_mb()))

    started = time.perf_counter()
    verdict = chain.verify(ledger, store, progress=progress)
    seconds = time.perf_counter() - started
    assert verdict.ok, verdict
    return {"events": verdict.checked, "per_s": verdict.checked / seconds,
            "peak_rss_mb": peak_mb(), "rss_samples": samples}  # fmt: skip


def export(url: str, output: str) -> dict:
    from goalledger.core.ledger import Ledger
    from goalledger.core.settings import Settings
    from goalledger.projections.ledger_io import export_lines
    from goalledger.projections.store import open_view_store

    settings = Settings(database_url=url)
    ledger, store = Ledger(settings), open_view_store(settings)
    head = ledger.head_position()
    started = time.perf_counter()
    with open(output, "wb") as file:
        file.writelines(export_lines(ledger, store))
    seconds = time.perf_counter() - started
    return {"events": head, "per_s": head / seconds, "peak_rss_mb": peak_mb(),
            "mb": Path(output).stat().st_size / 2**20}  # fmt: skip


def import_(url: str, source: str) -> dict:
    from goalledger.core.ledger import Ledger
    from goalledger.core.settings import Settings
    from goalledger.projections.ledger_io import check_export, import_ledger

    started = time.perf_counter()
    checked = check_export(Path(source))
    check_seconds = time.perf_counter() - started
    ledger = Ledger(Settings(database_url=url, sqlite_synchronous="normal"))
    started = time.perf_counter()
    imported = import_ledger(ledger, Path(source))
    seconds = time.perf_counter() - started
    assert imported == checked and ledger.head_position() == imported.head.position
    return {"events": imported.events, "per_s": imported.events / seconds,
            "check_per_s": checked.events / check_seconds, "peak_rss_mb": peak_mb()}  # fmt: skip


def child(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict]) -> dict:
    best = sorted(runs, key=lambda run: run["per_s"])[len(runs) // 2]
    return {**best, "all_per_s": [run["per_s"] for run in runs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--dir", default="/tmp/goalledger-bench-verify")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="keep an existing ledger")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        work = {"raw": raw, "verify": verify, "export": export, "import": import_}[kind]
        print(json.dumps(work(*rest)))
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
        project(url)
    raws, ours = [], []
    for _ in range(args.repeat):  # interleaved, so both see the same machine weather
        raws.append(child("raw", str(ledger_path)))
        ours.append(child("verify", url))
        print(f"raw {raws[-1]['per_s']:,.0f}/s, verify {ours[-1]['per_s']:,.0f}/s", file=sys.stderr)
    base, mine = median_of(raws), median_of(ours)
    mine["paired"] = [o["per_s"] / r["per_s"] for r, o in zip(raws, ours, strict=True)]
    exported = child("export", url, str(directory / "ledger.ndjson"))
    target = directory / "imported.db"
    for stale in directory.glob("imported*"):
        stale.unlink()
    imported = child("import", f"sqlite:///{target}", str(directory / "ledger.ndjson"))
    write_report(base, mine, exported, imported)


def project(url: str) -> None:
    """Build the read models (and so the chain) once, as the projector would have."""
    from goalledger.core.ledger import Ledger
    from goalledger.core.settings import Settings
    from goalledger.projections.projector import rebuild
    from goalledger.projections.store import open_view_store

    settings = Settings(database_url=url)
    started = time.perf_counter()
    rebuild(Ledger(settings), open_view_store(settings))
    print(f"projected (and chained) in {time.perf_counter() - started:.1f}s", file=sys.stderr)


def write_report(base: dict, mine: dict, exported: dict, imported: dict) -> None:
    ratio = mine["per_s"] / base["per_s"]
    export_ratio = exported["per_s"] / base["per_s"]
    import_ratio = imported["per_s"] / base["per_s"]
    runs = ", ".join(f"{r:,.0f}" for r in mine["all_per_s"])
    raw_runs = ", ".join(f"{r:,.0f}" for r in base["all_per_s"])
    paired = ", ".join(f"{r:.0%}" for r in mine["paired"])
    samples = ", ".join(f"{done // 1000}k: {mb:.0f} MB" for done, mb in mine["rss_samples"])
    report = f"""# Hash-chain verification, export and import — {base["events"]:,} events on SQLite

Machine: {machine()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. Produced by `bench/verify.py`.

| path | events/s | peak RSS | vs raw |
|---|---:|---:|---:|
| raw sqlite3 SELECT + chained hashlib.sha256 (runs: {raw_runs}) \
| {base["per_s"]:,.0f} | {base["peak_rss_mb"]:.0f} MB | 1.00 |
| **`goalledger audit verify`** (`chain.verify`; runs: {runs}) \
| **{mine["per_s"]:,.0f}** | {mine["peak_rss_mb"]:.0f} MB | **{ratio:.2f}** |
| export to NDJSON, verifying as it goes ({exported["mb"]:.0f} MB file) \
| {exported["per_s"]:,.0f} | {exported["peak_rss_mb"]:.0f} MB | {export_ratio:.2f} |
| import into an empty SQLite ledger (check pass + insert pass) \
| {imported["per_s"]:,.0f} | {imported["peak_rss_mb"]:.0f} MB | {import_ratio:.2f} |
| (of which the check pass alone) | {imported["check_per_s"]:,.0f} | | |

Target: verification at ≥ 70% of the raw rate — {"met" if ratio >= 0.7 else "NOT met"} \
({ratio:.0%}, ratio of medians; run by run: {paired}).
Verification RSS while running (events: RSS): {samples}.
The raw path's RSS is a bare interpreter's; goalledger's starts at ~44 MB (its imports)
and stays flat. Import keeps up to 256 MB of SQLite page cache while it writes (the id
index takes random inserts), hence its RSS. Import excludes rebuilding the read models
afterwards (`goalledger audit import` does that too; see `rebuild-sqlite.md`).
"""
    print(report)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "verify-sqlite.md").write_text(report)


if __name__ == "__main__":
    main()
