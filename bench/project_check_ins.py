"""What projecting a check-in costs: the live projector's apply path over a run of check-ins.

A SQLite ledger holds the demo organisation and then `--check-ins` check-ins spread over
its numeric key results (values and confidence as bench/api.py's wrk script sends them).
Each measurement projects the demo part into fresh views untimed, then times the
check-ins through `Projector.run_batch` (what `goalledger serve`'s projector child runs)
in this process, with batches of `--batch` events (a rebuild's size) and of
`--small-batch` (what `serve` gathers under the check-in load: a few ms of arrivals).

One run measures, on the same ledger and interleaved (`--repeat` rounds, medians):
  read     the log read and decoded page by page (`log_pages.page`): the floor
  views    the projector with alert detection switched off for check-ins
  ours     the projector as it is
  base     the projector of another tree (`--baseline DIR`, e.g. `git archive HEAD`),
           in a child process that imports goalledger from there
Every projector run digests its views and alerts; all digests must agree.

Usage: python bench/project_check_ins.py [--check-ins 50000] [--baseline /tmp/gl-base]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ACTOR = "bench"


def machine() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        models = [line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line]
    cpu = models[0] if models else platform.processor()
    return f"{os.cpu_count()} vCPU, {cpu}, Python {platform.python_version()}"


def build_ledger(path: Path, check_ins: int) -> dict[str, Any]:
    """The demo organisation, then `check_ins` check-ins round-robin over its numeric KRs."""
    from goalledger.api.demo import load_demo
    from goalledger.core.ledger import Ledger
    from goalledger.core.objectives import KeyResult
    from goalledger.core.settings import Settings

    ledger = Ledger(Settings(database_url=f"sqlite:///{path}", sqlite_synchronous="normal"))
    try:
        summary = load_demo(ledger, today=datetime.now(UTC).date(), actor=ACTOR)
        krs = [
            kr_id
            for kr_id in summary.key_result_ids.values()
            if ledger.repository.get(kr_id).kind != "milestone"
        ]
        assert all(isinstance(ledger.repository.get(k), KeyResult) for k in krs)
        demo_head = ledger.head_position()
        started = time.perf_counter()
        for i in range(1, check_ins + 1):
            ledger.check_in(
                krs[i % len(krs)], value=Decimal(i % 100), confidence=Decimal("0.7"),
                note="bench", actor=ACTOR,
            )  # fmt: skip
            if i % 5000 == 0:
                print(f"\r  ledger: {i:,} check-ins", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        return {
            "demo_head": demo_head, "head": ledger.head_position(), "key_results": len(krs),
            "seconds": time.perf_counter() - started,
        }  # fmt: skip
    finally:
        ledger.close()


def read_only(url: str, start: int, head: int, batch: int) -> dict[str, float]:
    """Read and decode the check-ins page by page, as `run_batch` does, applying nothing."""
    from goalledger.core.ledger import Ledger
    from goalledger.core.settings import Settings
    from goalledger.projections import log_pages

    ledger = Ledger(Settings(database_url=url))
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        position = start
        while position < head:
            page = log_pages.page(ledger, position, batch)
            position = page.rows[-1][0]
        return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
    finally:
        ledger.close()


def project(url: str, views: Path, start: int, head: int, batch: int, alerts: bool) -> dict:
    """Project up to `start` untimed, then time `run_batch` up to `head` in `batch`es."""
    from goalledger.core.ledger import Ledger
    from goalledger.core.objectives import KeyResult
    from goalledger.core.settings import Settings
    from goalledger.projections import alert_detector
    from goalledger.projections.projector import Projector
    from goalledger.projections.store import SQLiteViewStore

    for stale in views.parent.glob(views.name + "*"):
        stale.unlink()
    ledger = Ledger(Settings(database_url=url))
    store = SQLiteViewStore(str(views))
    projector = Projector(ledger, store, batch_size=2000)
    while (missing := start - projector.position()) > 0:
        projector.batch_size = min(2000, missing)
        projector.run_batch()
    assert projector.position() == start, "the demo ends where the check-ins begin"
    if not alerts:  # the projector without alert detection for check-ins
        alert_detector.HANDLERS.pop(KeyResult.CheckedIn.TOPIC)
    projector.batch_size = batch
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        while projector.position() < head and projector.run_batch():
            pass
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        alert_detector.HANDLERS[KeyResult.CheckedIn.TOPIC] = alert_detector._checked_in
    done = projector.position() - start
    result = {"wall": wall, "cpu": cpu, "events": done, "digest": digest(store)}
    store.close()
    ledger.close()
    return result


def digest(store: Any) -> str:
    """A hash of every read-model row and every alert (outbox times excluded)."""
    from goalledger.projections.alerts import ALERTS_TABLE
    from goalledger.projections.projector import view_state

    state = view_state(store)
    with store.read() as tx:
        state["alerts"] = tx.all(f"SELECT * FROM {ALERTS_TABLE} ORDER BY id")
    return hashlib.sha256(repr(sorted(state.items())).encode()).hexdigest()[:16]


def child(args: argparse.Namespace, alerts: bool, batch: int, tree: str | None) -> dict:
    """One measurement in a fresh process (imports from `tree` when given)."""
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = tree
    command = [
        sys.executable, __file__, "--child", args.url, str(args.views), str(args.start),
        str(args.head), str(batch), "1" if alerts else "0",
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def baseline_tree(source: Path) -> str:
    """A directory to put on PYTHONPATH so `goalledger.*` imports from `source` (a copy
    of the repository laid out as in git, mapped as pyproject's package-dir does)."""
    target = source.parent / (source.name + "-importable")
    package = target / "goalledger"
    package.mkdir(parents=True, exist_ok=True)
    for name in ("__init__.py",):
        link = package / name
        if not link.exists():
            link.symlink_to(source / "goalledger" / name)
    for sub in ("core", "projections", "plugins", "api"):
        link = package / sub
        if not link.exists():
            link.symlink_to(source / sub)
    return str(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-ins", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--small-batch", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default="/tmp/goalledger-bench-check-ins")
    parser.add_argument("--reuse", action="store_true", help="keep an existing ledger")
    parser.add_argument("--baseline", help="a copy of another tree to compare with")
    parser.add_argument("--output", default=str(HERE / "results" / "project-check-ins.md"))
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, views, start, head, batch, alerts = args.child
        import goalledger.projections

        result = project(url, Path(views), int(start), int(head), int(batch), alerts == "1")
        result["tree"] = str(Path(goalledger.projections.__file__).resolve().parent.parent)
        print(json.dumps(result))
        return
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    ledger_path = directory / "ledger.db"
    facts_path = directory / "ledger.json"
    args.url = f"sqlite:///{ledger_path}"
    args.views = directory / "views.db"
    if not (args.reuse and ledger_path.exists() and facts_path.exists()):
        for stale in directory.glob("ledger*"):
            stale.unlink()
        facts = build_ledger(ledger_path, args.check_ins)
        facts_path.write_text(json.dumps(facts))
        print(f"built {facts['head']:,} events in {facts['seconds']:.1f}s", file=sys.stderr)
    facts = json.loads(facts_path.read_text())
    args.start, args.head = facts["demo_head"], facts["head"]
    events = args.head - args.start
    tree = baseline_tree(Path(args.baseline).resolve()) if args.baseline else None

    paths = [("views", True, False), ("ours", False, False)]
    if tree:
        paths.append(("base", False, True))
    runs: dict[tuple[str, int], list[dict]] = {}
    reads: dict[int, list[dict]] = {}
    for round_ in range(args.repeat):
        for batch in (args.batch, args.small_batch):
            reads.setdefault(batch, []).append(read_only(args.url, args.start, args.head, batch))
            for key, no_alerts, baseline in paths:
                result = child(args, not no_alerts, batch, tree if baseline else None)
                runs.setdefault((key, batch), []).append(result)
                print(
                    f"round {round_ + 1} batch {batch} {key}: "
                    f"{result['cpu'] / result['events'] * 1e6:.1f} us CPU/check-in "
                    f"({result['tree']})",
                    file=sys.stderr,
                )

    def med(values: list[dict], field: str) -> float:
        return statistics.median(v[field] for v in values)

    digests = {(key, batch): {r["digest"] for r in rs} for (key, batch), rs in runs.items()}
    full = {d for (key, _), ds in digests.items() if key != "views" for d in ds}
    lines = [
        f"# Projecting check-ins — {events:,} check-ins over {facts['key_results']} key "
        "results on SQLite",
        "",
        f"Machine: {machine()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
        f"Medians of {args.repeat} interleaved rounds; each projector run in a fresh process "
        "on fresh views, the demo organisation projected first (untimed). CPU is the "
        "process's (the projector is single-threaded here).",
        "",
        "| path | batch | events/s (wall) | µs CPU per check-in | over the read |",
        "|---|---:|---:|---:|---:|",
    ]
    labels = {
        "views": "projector, alert detection off for check-ins",
        "ours": "**projector (this tree)**",
        "base": f"projector (baseline tree `{args.baseline}`)",
    }
    for batch in (args.batch, args.small_batch):
        read_cpu = med(reads[batch], "cpu") / events * 1e6
        lines.append(
            f"| log read + decode only | {batch:,} | {events / med(reads[batch], 'wall'):,.0f} "
            f"| {read_cpu:.1f} | — |"
        )
        for key, _, _ in paths:
            rs = runs[(key, batch)]
            cpu = med(rs, "cpu") / events * 1e6
            lines.append(
                f"| {labels[key]} | {batch:,} | {events / med(rs, 'wall'):,.0f} | {cpu:.1f} "
                f"| {cpu - read_cpu:.1f} |"
            )
    same = "agree" if len(full) == 1 else f"**differ**: {sorted(full)}"
    lines += [
        "",
        f"Digests of every view row and alert after the full runs {same} "
        f"({', '.join(sorted(full))}).",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(report)


if __name__ == "__main__":
    main()
