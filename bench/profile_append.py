"""Where does append time go? A stage-by-stage breakdown of goalledger's write paths.

`bench/append.py` says how fast; this says why. It times, against the real core code:

  1. one `Ledger.check_in` split into its stages as the ledger runs it now (load the
     key result and the cycle from the cache, trigger the event, encode, the writer's
     insert + commit, the cache update);
  2. one `repository.get` (what a cache miss costs) split into select, decode and
     replay (with eventsourcing's per-event `isinstance(…, CanMutateProtocol)` assert
     and without it);
  3. a batch of readings per event through eventsourcing's objects (id, aggregate
     construction, the Protocol checks in `Application.save`, mapper encode, recorder
     insert), against the ledger's `record(*aggs)` and `record_readings` measured;
  4. the runtime-checkable Protocol `isinstance` checks on their own;
  5. with --what-if: the prototype subclasses of `Ledger` (defined here, NOT core code)
     that first tried the fixes the ledger has since taken in (kept for the record:
     they now override the faster core paths with slower ones);
  6. with --cprofile: the top functions by own time for check-ins and readings.

    .venv/bin/python bench/profile_append.py                      # SQLite, synchronous=normal
    .venv/bin/python bench/profile_append.py --sync full --what-if --cprofile
    .venv/bin/python bench/profile_append.py --store postgres --what-if
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import timeit
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4, uuid5

from eventsourcing.application import ProcessingEvent, project_aggregate
from eventsourcing.domain import (  # noqa: F401 (CanMutateProtocol: used in timeit)
    CanMutateProtocol,
    CollectEventsProtocol,
    DomainEventProtocol,
)
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

sys.path.insert(0, str(Path(__file__).resolve().parent))
import append as bench

from goalledger.core.cycles import Cycle
from goalledger.core.errors import Conflict
from goalledger.core.kpis import Reading
from goalledger.core.ledger import Ledger
from goalledger.core.mapper import _encoder as msgpack_encoder
from goalledger.core.model import utc_now
from goalledger.core.objectives import KeyResult
from goalledger.core.settings import Settings

# Readings' ids until the reading-name table: a hash of their names (uuid5). These
# prototypes were measured with them; the ledger now gives readings time-ordered ids.
READING_NAMESPACE = UUID("6f1d3c2e-5b0a-4f7e-9a51-0c2d8e4b7a10")


def reading_key(kpi_id: UUID, reading_id: str) -> UUID:
    return uuid5(READING_NAMESPACE, f"{kpi_id}/{reading_id}")


pc = time.perf_counter


# -- what-if prototypes (not core code) -------------------------------------------------


def _project_without_assert(aggregate: Any, events: Iterable[Any]) -> Any:
    for domain_event in events:
        aggregate = domain_event.mutate(aggregate)
    return aggregate


class FastSave(Ledger):
    """`record` without Protocol checks or an eager `head_position()`; `load` without the
    per-event assert. Same events, same rows, same conflicts."""

    def record(self, *aggregates: Any) -> int:
        processing = ProcessingEvent[UUID]()
        for aggregate in aggregates:
            processing.events.extend(aggregate.collect_events())
            processing.aggregates[aggregate.id] = aggregate
        try:
            recordings = self._record(processing)
        except IntegrityError as error:
            raise Conflict("changed since it was read") from error
        self._take_snapshots(processing)
        self._notify(recordings)
        return recordings[-1].notification.id if recordings else self.head_position()

    def load(self, aggregate_id: UUID, kind: type, field: str = "id") -> Any:
        aggregate = self.repository.get(aggregate_id, projector_func=_project_without_assert)
        assert isinstance(aggregate, kind)
        return aggregate


class FastSaveCached(FastSave):
    """FastSave plus eventsourcing's aggregate cache, single-writer settings."""

    cache_env = {  # noqa: RUF012
        "AGGREGATE_CACHE_MAXSIZE": "10000",
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
    }

    def construct_env(self, name: str, env: Any = None) -> Any:
        return super().construct_env(name, {**dict(env or {}), **self.cache_env})

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        assert self.repository.cache is not None, "aggregate cache not configured"


class FastReadings(FastSave):
    """FastSave plus readings saved as bare `Reading.Recorded` events (no aggregate objects)."""

    def record_readings(self, readings: Iterable[Any], *, source: str, actor: str) -> Any:
        known: set[UUID] = set()
        processing = ProcessingEvent[UUID]()
        topic, now, recorded = get_topic(Reading), utc_now(), Reading.Recorded
        for r in readings:
            if r.kpi_id not in known:
                self.repository.get(r.kpi_id, projector_func=_project_without_assert)
                known.add(r.kpi_id)
            processing.events.append(
                recorded(
                    originator_id=reading_key(r.kpi_id, r.reading_id),
                    originator_version=1,
                    timestamp=now,
                    originator_topic=topic,
                    kpi_id=r.kpi_id,
                    reading_id=r.reading_id,
                    value=r.value,
                    observed_at=r.observed_at,
                    source=source,
                    actor=actor,
                )
            )
        return self._record(processing)[-1].notification.id


class BulkReadings(FastSave):
    """SQLite only: readings straight to rows, no event objects: uuid5 from a per-KPI
    prefix, the mapper's msgpack map, one `executemany`. Same ids and decodable rows;
    skips the duplicate handling, so only for fresh readings in this prototype."""

    def record_readings(self, readings: Iterable[Any], *, source: str, actor: str) -> Any:
        prefixes: dict[UUID, bytes] = {}
        topic, aggregate_topic = get_topic(Reading.Recorded), get_topic(Reading)
        now, encode, rows = utc_now(), msgpack_encoder.encode, []
        for r in readings:
            prefix = prefixes.get(r.kpi_id)
            if prefix is None:
                self.repository.get(r.kpi_id, projector_func=_project_without_assert)
                prefix = prefixes[r.kpi_id] = READING_NAMESPACE.bytes + f"{r.kpi_id}/".encode()
            digest = hashlib.sha1(prefix + r.reading_id.encode()).digest()
            state = {
                "timestamp": now,
                "originator_topic": aggregate_topic,
                "actor": actor,
                "kpi_id": r.kpi_id,
                "reading_id": r.reading_id,
                "value": r.value,
                "observed_at": r.observed_at,
                "source": source,
            }
            rows.append((UUID(bytes=digest[:16], version=5).hex, 1, topic, encode(state)))
        recorder = self.recorder
        with recorder.datastore.transaction(commit=True) as cursor:  # type: ignore[attr-defined]
            cursor.executemany(recorder.insert_events_statement, rows)  # type: ignore[attr-defined]
        return len(rows)


# -- helpers -----------------------------------------------------------------------------


class Store:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="goalledger-profile-"))
        self.stores: bench.Stores | None = None
        if args.store == "postgres":
            self.stores = bench.Stores(args.postgres)
            self.stores.create_postgres()
        self.n = 0

    @contextmanager
    def ledger(self, cls: type[Ledger] = Ledger, **settings: Any) -> Iterator[Ledger]:
        if self.stores is None:
            self.n += 1
            url = f"sqlite:///{self.tmp}/l{self.n}.db"
            ledger = cls(Settings(database_url=url, sqlite_synchronous=self.args.sync, **settings))
        else:
            self.stores.truncate("goalledger_events")
            ledger = cls(Settings(database_url=self.stores.pg_url or "", **settings))
        try:
            yield ledger
        finally:
            ledger.close()

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.stores:
            self.stores.close()


def rows(title: str, items: list[tuple[str, float]], unit: str, total: float | None = None) -> None:
    print(f"\n{title}")
    for label, value in items:
        share = f"  {value / total:6.1%}" if total else ""
        print(f"  {label:<58} {value:9.1f} {unit}{share}")


# -- sections ----------------------------------------------------------------------------


def check_in_stages(store: Store, n: int, krs: int) -> None:
    with store.ledger() as ledger:
        _, kr_ids = bench._okr_setup(ledger, krs)
        spent: dict[str, float] = defaultdict(float)
        for i in range(n):
            t0 = pc()
            kr = ledger.load(kr_ids[i % krs], KeyResult)
            t1 = pc()
            ledger.load(kr.cycle_id, Cycle)
            t2 = pc()
            kr.check_in(actor=bench.ACTOR, **bench.check_in_fields(i))
            t3 = pc()
            events = kr.collect_events()
            encoded = [ledger.mapper.to_row(event) for event in events]  # type: ignore[attr-defined]
            t4 = pc()
            first, last = ledger._writer.insert(encoded)
            t5 = pc()
            ledger._appended(first, last, (kr,))
            t6 = pc()
            for label, a, b in (
                ("load key result (cache: log tail check + copy)", t0, t1),
                ("load cycle (cache: log tail check + copy)", t1, t2),
                ("KeyResult.check_in (validate + trigger event)", t2, t3),
                ("collect events + encode rows", t3, t4),
                ("writer: insert + commit", t4, t5),
                ("cache update", t5, t6),
            ):
                spent[label] += b - a
        total = sum(spent.values())
        rows(
            f"1. Ledger.check_in, {n} over {krs} key results: {total / n * 1e6:.0f} µs each "
            f"({n / total:,.0f}/s)",
            [(k, v / n * 1e6) for k, v in spent.items()],
            "µs",
            total / n * 1e6,
        )


def load_stages(store: Store, history: int, n: int) -> None:
    with store.ledger() as ledger:
        _, kr_ids = bench._okr_setup(ledger, 1)
        kr = ledger.load(kr_ids[0], KeyResult)
        for i in range(history):
            kr.check_in(actor=bench.ACTOR, **bench.check_in_fields(i))
        ledger.record(kr)
        kr_id = kr_ids[0]
        events = history + 1
        t = pc()
        stored = [ledger.recorder.select_events(kr_id) for _ in range(n)][-1]
        select = (pc() - t) / n
        t = pc()
        for _ in range(n):
            decoded = [ledger.mapper.to_domain_event(s) for s in stored]
        decode = (pc() - t) / n
        t = pc()
        for _ in range(n):
            project_aggregate(None, decoded)
        replay_assert = (pc() - t) / n
        t = pc()
        for _ in range(n):
            _project_without_assert(None, decoded)
        replay = (pc() - t) / n
        t = pc()
        for _ in range(n):
            ledger.repository.get(kr_id)
        get = (pc() - t) / n
        t = pc()
        for _ in range(n):
            ledger.repository.get(kr_id, projector_func=_project_without_assert)
        get_fast = (pc() - t) / n
        rows(
            f"2. repository.get of a key result with {events} events (per event)",
            [
                ("select_events (pool + BEGIN/SELECT/ROLLBACK + rows)", select / events * 1e6),
                ("decode (MsgspecMapper.to_domain_event)", decode / events * 1e6),
                (
                    "replay: project_aggregate (assert isinstance per event)",
                    replay_assert / events * 1e6,
                ),
                ("replay without the assert", replay / events * 1e6),
                ("repository.get, as Ledger.load calls it", get / events * 1e6),
                ("repository.get(projector_func=<no assert>)", get_fast / events * 1e6),
            ],
            "µs/event",
        )


def batch_stages(store: Store, size: int, reps: int) -> None:
    def per_event(f: Any) -> float:
        return min(_timed(f, i) for i in range(reps)) / size * 1e6

    with store.ledger() as ledger:
        kpi_ids = bench._kpi_setup(ledger, 10)
        inputs = [bench.reading_inputs(kpi_ids, b, size, "p") for b in range(reps * 4)]
        key = per_event(lambda i: [reading_key(r.kpi_id, r.reading_id) for r in inputs[i]])
        build = per_event(
            lambda i: [
                Reading.record(
                    kpi_id=r.kpi_id,
                    reading_id=r.reading_id,
                    value=r.value,
                    observed_at=r.observed_at,
                    source="bench",
                    actor=bench.ACTOR,
                )
                for r in inputs[i]
            ]
        )
        aggregates = bench._readings(kpi_ids, 99, size, "q")
        # After the first call the aggregates hold no pending events: what is left to
        # time is the two Protocol checks per aggregate (and an empty collect).
        collect = per_event(lambda i: ProcessingEvent[UUID]().collect_events(*aggregates))
        events = [e for a in bench._readings(kpi_ids, 98, size, "e") for e in a.collect_events()]
        encode = per_event(lambda i: [ledger.mapper.to_stored_event(e) for e in events])

        def insert(i: int) -> None:
            fresh = bench._readings(kpi_ids, 1000 + i, size, "ins")
            stored = [ledger.mapper.to_stored_event(e) for a in fresh for e in a.collect_events()]
            started = pc()
            ledger.recorder.insert_events(stored)
            insert.spent = pc() - started  # type: ignore[attr-defined]

        best = float("inf")
        for i in range(reps):
            insert(i)
            best = min(best, insert.spent)  # type: ignore[attr-defined]
        insert_us = best / size * 1e6

        def save_only(i: int) -> float:
            fresh = bench._readings(kpi_ids, 3000 + i, size, "so")
            started = pc()
            ledger.record(*fresh)
            return pc() - started

        record_us = min(save_only(i) for i in range(reps)) / size * 1e6
        rr_us = per_event(
            lambda i: ledger.record_readings(
                inputs[reps * 2 + i], source="bench", actor=bench.ACTOR
            )
        )
        rows(
            f"3. readings, batches of {size} (per event; best of {reps})",
            [
                ("reading_key: uuid5(f'{kpi_id}/{reading_id}')", key),
                ("Reading.record: aggregate construction (incl. reading_key)", build),
                ("Application.save: collect_events (Protocol isinstance x2)", collect),
                ("MsgspecMapper.to_stored_event", encode),
                ("recorder.insert_events (execute per row + commit)", insert_us),
                ("= Ledger.record(*pre-built aggregates), measured", record_us),
                ("= Ledger.record_readings(inputs), measured", rr_us),
            ],
            "µs/event",
        )
        print(
            f"  → record(*aggs) ≈ {1e6 / record_us:,.0f}/s, record_readings ≈ "
            f"{1e6 / rr_us:,.0f}/s; 80k/s leaves 12.5 µs per event in all."
        )


def _timed(f: Any, i: int) -> float:
    started = pc()
    f(i)
    return pc() - started


def protocol_checks() -> None:
    aggregate = bench._readings([uuid4()], 0, 1, "proto")[0]
    event = aggregate.collect_events()[0]
    n = 20000
    g = {"a": aggregate, "e": event, **globals()}
    rows(
        "4. runtime-checkable Protocol isinstance (Python " + sys.version.split()[0] + ")",
        [
            (
                f"isinstance(aggregate, {p.__name__})",
                timeit.timeit(stmt, globals=g, number=n) / n * 1e6,
            )
            for p, stmt in (
                (DomainEventProtocol, "isinstance(a, DomainEventProtocol)"),
                (CollectEventsProtocol, "isinstance(a, CollectEventsProtocol)"),
            )
        ]
        + [
            (
                "isinstance(event, CanMutateProtocol) (assert in project_aggregate)",
                timeit.timeit("isinstance(e, CanMutateProtocol)", globals=g, number=n) / n * 1e6,
            ),
            (
                "plain isinstance(aggregate, Reading), for scale",
                timeit.timeit("isinstance(a, Reading)", globals=g, number=n) / n * 1e6,
            ),
        ],
        "µs",
    )


def what_if(store: Store, n: int, krs: int, batches: int, size: int, repeat: int) -> None:
    def check_ins(cls: type[Ledger], **settings: Any) -> float:
        with store.ledger(cls, **settings) as ledger:
            _, kr_ids = bench._okr_setup(ledger, krs)
            started = pc()
            for i in range(n):
                ledger.check_in(kr_ids[i % krs], actor=bench.ACTOR, **bench.check_in_fields(i))
            return n / (pc() - started)

    def batch(cls: type[Ledger], prebuilt: bool, **settings: Any) -> float:
        with store.ledger(cls, **settings) as ledger:
            kpi_ids = bench._kpi_setup(ledger, 10)
            if prebuilt:
                work = [bench._readings(kpi_ids, b, size, "w") for b in range(batches)]
                started = pc()
                for aggregates in work:
                    ledger.record(*aggregates)
            else:
                items = [bench.reading_inputs(kpi_ids, b, size, "w") for b in range(batches)]
                started = pc()
                for batch_items in items:
                    ledger.record_readings(batch_items, source="bench", actor=bench.ACTOR)
            return batches * size / (pc() - started)

    cases: list[tuple[str, Any]] = [
        ("check_in: Ledger (as is)", lambda: check_ins(Ledger)),
        ("check_in: FastSave (no Protocol checks/assert, lazy head)", lambda: check_ins(FastSave)),
        ("check_in: FastSave + aggregate cache (single writer)", lambda: check_ins(FastSaveCached)),
    ]
    if store.stores is not None:
        cases += [
            (
                "check_in: Ledger, postgres_pool_size=1",
                lambda: check_ins(Ledger, postgres_pool_size=1),
            ),
            (
                "check_in: FastSave + cache, postgres_pool_size=1",
                lambda: check_ins(FastSaveCached, postgres_pool_size=1),
            ),
        ]
    cases += [
        ("record(*aggs): Ledger (as is)", lambda: batch(Ledger, True)),
        ("record(*aggs): FastSave", lambda: batch(FastSave, True)),
        ("record_readings: Ledger (as is)", lambda: batch(Ledger, False)),
        ("record_readings: FastSave", lambda: batch(FastSave, False)),
        (
            "record_readings: FastReadings (bare events, no aggregates)",
            lambda: batch(FastReadings, False),
        ),
    ]
    if store.stores is None:
        cases.append(
            (
                "record_readings: BulkReadings (rows + one executemany)",
                lambda: batch(BulkReadings, False),
            )
        )
    results: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeat):  # interleaved, as in append.py
        for label, run in cases:
            results[label].append(run())
    print(f"\n5. what-if prototypes (defined in this file, not core; median of {repeat})")
    for label, _ in cases:
        print(f"  {label:<58} {statistics.median(results[label]):9,.0f} events/s")


def cprofile_top(store: Store, n: int, krs: int, size: int, top: int) -> None:
    with store.ledger() as ledger:
        _, kr_ids = bench._okr_setup(ledger, krs)
        kpi_ids = bench._kpi_setup(ledger, 10)
        items = [bench.reading_inputs(kpi_ids, b, size, "cp") for b in range(5)]
        for label, work in (
            (
                f"check_in x{n}",
                lambda: [
                    ledger.check_in(kr_ids[i % krs], actor=bench.ACTOR, **bench.check_in_fields(i))
                    for i in range(n)
                ],
            ),
            (
                f"record_readings 5 x {size}",
                lambda: [
                    ledger.record_readings(b, source="bench", actor=bench.ACTOR) for b in items
                ],
            ),
        ):
            profile = cProfile.Profile()
            profile.runcall(work)
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(top)
            print(f"\n6. cProfile, {label}, top {top} by own time")
            print("\n".join(out.getvalue().splitlines()[4:]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--sync", choices=("full", "normal"), default="normal")
    parser.add_argument("--events", type=int, default=1000, help="check-ins timed in 1 and 5")
    parser.add_argument("--krs", type=int, default=200)
    parser.add_argument("--history", type=int, default=10, help="check-ins on the KR in 2")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=10, help="batches per what-if run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--what-if", action="store_true", help="run the prototype fixes")
    parser.add_argument("--cprofile", action="store_true", help="print cProfile tops")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    where = f"SQLite synchronous={args.sync}" if args.store == "sqlite" else "PostgreSQL"
    print(f"profile of goalledger appends on {where}, Python {sys.version.split()[0]}")
    store = Store(args)
    try:
        check_in_stages(store, args.events, args.krs)
        load_stages(store, args.history, 200)
        batch_stages(store, args.batch_size, args.repeat)
        protocol_checks()
        if args.what_if:
            what_if(store, args.events, args.krs, args.batches, args.batch_size, args.repeat)
        if args.cprofile:
            cprofile_top(store, min(args.events, 500), args.krs, args.batch_size, args.top)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
