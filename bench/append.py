"""Append throughput of the goalledger ledger against its baselines, measured in one run.

What it measures (events per second, median of --repeat runs):

  goalledger (ours)
    * `Ledger.check_in(...)`: one single-event command per save (each loads the key
      result and its cycle, then saves one event);
    * the same on a "hot" key result that already holds --hot-history check-ins;
    * `Ledger.record(reading)`: one pre-built new aggregate per save (no loads);
    * `Ledger.record_readings([... --batch-size ReadingInput ...])`;
    * `Ledger.record(*aggregates)` of --batch-size pre-built `Reading` aggregates.
  eventsourcing default path (es-default)
    * a plain `eventsourcing.application.Application` with its default JSON mapper and
      `@event` aggregates of the same fields (Decimal as str, datetimes as ISO), doing
      the same work: the check-in command (get key result, get cycle, trigger, save),
      one new aggregate per save, --batch-size aggregates built and saved, and
      --batch-size pre-built aggregates saved. It runs on the same store settings as
      ours (SQLite synchronous mode; PostgreSQL `POSTGRES_ENABLE_DB_FUNCTIONS=y`).
  raw drivers (rows as big as our stored events: random bytes of the average stored
  state length, measured first)
    * sqlite3 into a table shaped like eventsourcing's `stored_events` (rowid table,
      PRIMARY KEY (originator_id, originator_version)), WAL: one transaction per row
      and one `executemany` per batch, under synchronous FULL and NORMAL;
    * psycopg into a table shaped like eventsourcing's `{app}_events` (uuid, bigint,
      text, bytea, bigserial notification_id, primary key and unique notification
      index): one transaction per row, `executemany` per batch and binary COPY per batch.

Every run of every path starts from a fresh store (a new SQLite file; a truncated
PostgreSQL table in a database created for this run and dropped at the end). Repeats
are interleaved (repeat 1 of every path, then repeat 2, ...) so background load on a
shared machine hits every path alike.

    .venv/bin/python bench/append.py                      # both stores, defaults
    .venv/bin/python bench/append.py --store sqlite --repeat 5
    .venv/bin/python bench/append.py --store postgres \\
        --postgres postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4, uuid5

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from goalledger.core.kpis import Kpi, Reading, thresholds_for
from goalledger.core.ledger import Ledger, ReadingInput
from goalledger.core.objectives import KeyResult, Objective
from goalledger.core.settings import Settings

BENCH_DIR = Path(__file__).resolve().parent
CHECK_IN_TOPIC = "goalledger/key-result/checked-in"
READING_TOPIC = "goalledger/reading/recorded"
ACTOR = "bench@example.com"
NOTE = "weekly check-in: on track, two blockers cleared"
ES_NAMESPACE = UUID("0b6f5f0e-7f6c-4a39-8d1e-3a1c2b9d4e55")
T0 = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)


# -- the eventsourcing default path ------------------------------------------------------


class EsCycle(Aggregate):
    """A cycle on the default path (the default transcoder has no `date`: datetimes)."""

    @event("Defined")
    def __init__(self, name: str, starts_at: datetime, ends_at: datetime, actor: str) -> None:
        self.name = name
        self.starts_at = starts_at
        self.ends_at = ends_at
        self.status = "open"


class EsKeyResult(Aggregate):
    """A key result on the default path with the same check-in fields as ours."""

    @event("Defined")
    def __init__(
        self, cycle_id: UUID, title: str, kind: str, start: Decimal, target: Decimal, actor: str
    ) -> None:
        self.cycle_id = cycle_id
        self.title = title
        self.kind = kind
        self.start = start
        self.target = target
        self.check_ins = 0

    @event("CheckedIn")
    def check_in(
        self,
        value: Decimal | None,
        done: bool | None,
        steps_done: int | None,
        confidence: Decimal | None,
        note: str,
        effective_at: datetime,
        actor: str,
    ) -> None:
        self.check_ins += 1


class EsKpi(Aggregate):
    """A KPI on the default path (only what the readings path needs)."""

    @event("Defined")
    def __init__(self, name: str, actor: str) -> None:
        self.name = name


class EsReading(Aggregate):
    """A reading on the default path: same fields and deterministic id as ours."""

    @staticmethod
    def create_id(kpi_id: UUID, reading_id: str, **_: Any) -> UUID:
        return uuid5(ES_NAMESPACE, f"{kpi_id}/{reading_id}")

    @event("Recorded")
    def __init__(
        self,
        kpi_id: UUID,
        reading_id: str,
        value: Decimal,
        observed_at: datetime,
        source: str,
        actor: str,
    ) -> None:
        self.kpi_id = kpi_id
        self.reading_id = reading_id
        self.value = value
        self.observed_at = observed_at
        self.source = source


class EsDefaultApp(Application[UUID]):
    """A plain eventsourcing application: default mapper, JSON transcoder."""

    name = "esdefault"


def _apply_sqlite_synchronous(app: Application[Any], mode: str) -> None:
    """Give every pooled SQLite connection of `app` the PRAGMA synchronous `mode`."""
    pool = app.factory.datastore.pool  # type: ignore[attr-defined]
    pragma = f"PRAGMA synchronous={mode.upper()};"
    create = pool._create_connection

    def create_with_pragma() -> Any:
        connection = create()
        connection._sqlite_conn.execute(pragma)
        return connection

    pool._create_connection = create_with_pragma
    for connection in list(pool._pool):
        connection._sqlite_conn.execute(pragma)


def _sqlite_synchronous_of(app: Application[Any]) -> int:
    with app.factory.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
        cursor.execute("PRAGMA synchronous")
        return int(cursor.fetchone()[0])


# -- inputs --------------------------------------------------------------------------------


def check_in_fields(i: int) -> dict[str, Any]:
    """The i-th check-in's fields (same for ours and es-default)."""
    return {
        "value": Decimal(i % 100) + Decimal("0.25"),
        "confidence": Decimal("0.7"),
        "note": NOTE,
    }


def reading_inputs(kpi_ids: list[UUID], batch: int, size: int, run: str) -> list[ReadingInput]:
    """One batch of readings spread over the KPIs, with fresh reading ids."""
    return [
        ReadingInput(
            kpi_id=kpi_ids[i % len(kpi_ids)],
            reading_id=f"{run}-b{batch}-r{i}",
            value=Decimal(1000 + i) / Decimal(100),
            observed_at=T0 + timedelta(seconds=batch * size + i),
        )
        for i in range(size)
    ]


# -- stores --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One store configuration: SQLite with a synchronous mode, or PostgreSQL."""

    store: str  # "sqlite" or "postgres"
    durability: str  # "FULL" / "NORMAL" for SQLite, "fsync" for PostgreSQL

    @property
    def label(self) -> str:
        if self.store == "sqlite":
            return f"SQLite WAL, synchronous={self.durability}"
        return "PostgreSQL (fsync=on, synchronous_commit=on)"


class Stores:
    """Fresh stores for each run: SQLite files in a temp dir, PostgreSQL tables in one db."""

    def __init__(self, postgres_admin_url: str | None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="goalledger-bench-"))
        self.counter = 0
        self.admin_url = postgres_admin_url
        self.dbname: str | None = None
        self.pg_url: str | None = None
        self.pg_version = ""
        self.pg_settings: dict[str, str] = {}

    def create_postgres(self) -> None:
        import psycopg

        assert self.admin_url
        self.dbname = f"goalledger_bench_{uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.dbname}"')
            self.pg_version = admin.execute("SHOW server_version").fetchone()[0]
            for name in ("fsync", "synchronous_commit", "wal_sync_method", "shared_buffers"):
                self.pg_settings[name] = admin.execute(f"SHOW {name}").fetchone()[0]
        self.pg_url = self.admin_url.rsplit("/", 1)[0] + f"/{self.dbname}"

    def drop_postgres(self) -> None:
        if self.dbname is None:
            return
        import psycopg

        assert self.admin_url
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        self.dbname = None

    def sqlite_path(self) -> Path:
        self.counter += 1
        return self.tmp / f"run{self.counter}" / "ledger.db"

    def remove_sqlite(self, path: Path) -> None:
        shutil.rmtree(path.parent, ignore_errors=True)

    def truncate(self, table: str) -> None:
        import psycopg

        assert self.pg_url
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]
            if exists:
                conn.execute(f'TRUNCATE "{table}" RESTART IDENTITY')

    def close(self) -> None:
        try:
            self.drop_postgres()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- applications on a fresh store ---------------------------------------------------

    @contextmanager
    def ledger(self, config: Config) -> Iterator[Ledger]:
        if config.store == "sqlite":
            path = self.sqlite_path()
            settings = Settings(
                database_url=f"sqlite:///{path}", sqlite_synchronous=config.durability.lower()
            )
            ledger = Ledger(settings)
            expected = {"FULL": 2, "NORMAL": 1}[config.durability]
            actual = _sqlite_synchronous_of(ledger)
            if actual != expected:
                raise SystemExit(f"ledger runs with synchronous={actual}, expected {expected}")
            try:
                yield ledger
            finally:
                ledger.close()
                self.remove_sqlite(path)
        else:
            self.truncate("goalledger_events")
            ledger = Ledger(Settings(database_url=self.pg_url or ""))
            try:
                yield ledger
            finally:
                ledger.close()

    @contextmanager
    def es_app(self, config: Config) -> Iterator[EsDefaultApp]:
        if config.store == "sqlite":
            path = self.sqlite_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            app = EsDefaultApp(
                env={
                    "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                    "SQLITE_DBNAME": str(path),
                    "SQLITE_LOCK_TIMEOUT": "30",
                }
            )
            _apply_sqlite_synchronous(app, config.durability)
            try:
                yield app
            finally:
                app.close()
                self.remove_sqlite(path)
        else:
            import psycopg.conninfo

            self.truncate("esdefault_events")
            info = psycopg.conninfo.conninfo_to_dict(self.pg_url or "")
            app = EsDefaultApp(
                env={
                    "PERSISTENCE_MODULE": "eventsourcing.postgres",
                    "POSTGRES_DBNAME": str(info["dbname"]),
                    "POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
                    "POSTGRES_PORT": str(info.get("port", "5432")),
                    "POSTGRES_USER": str(info.get("user", "postgres")),
                    "POSTGRES_PASSWORD": str(info.get("password", "")),
                    "POSTGRES_ENABLE_DB_FUNCTIONS": "y",
                }
            )
            try:
                yield app
            finally:
                app.close()


# -- measured paths ------------------------------------------------------------------------

Run = Callable[[], tuple[int, float]]  # returns (events, seconds)


@dataclass
class Params:
    events: int
    batches: int
    batch_size: int
    krs: int
    kpis: int
    hot_history: int
    hot_events: int
    check_in_state: int = 0
    reading_state: int = 0


def _okr_setup(ledger: Ledger, krs: int) -> tuple[UUID, list[UUID]]:
    cycle = ledger.define_cycle(
        name="2026-Q1", starts_on=date(2026, 1, 1), ends_on=date(2026, 3, 31), actor=ACTOR
    )
    team = ledger.form_team(name="Platform", actor=ACTOR)
    written = ledger.define_objective(
        title="Make appends fast",
        cycle_id=cycle.id,
        team_id=team.id,
        owner="owner@example.com",
        kind="committed",
        actor=ACTOR,
    )
    objective = ledger.load(written.id, Objective)
    key_results = [
        KeyResult.define(
            objective=objective,
            title=f"KR {i}",
            kind="increase_to",
            start=Decimal(0),
            target=Decimal(100),
            actor=ACTOR,
        )
        for i in range(krs)
    ]
    for start in range(0, len(key_results), 500):
        ledger.record(*key_results[start : start + 500])
    return cycle.id, [kr.id for kr in key_results]


def _kpi_setup(ledger: Ledger, kpis: int) -> list[UUID]:
    thresholds = thresholds_for("higher_is_better", Decimal(10), Decimal(5))
    defined = [
        Kpi.define(
            name=f"KPI {i}",
            unit="ms",
            direction="higher_is_better",
            target=Decimal(12),
            thresholds=thresholds,
            frequency="hourly",
            actor=ACTOR,
        )
        for i in range(kpis)
    ]
    ledger.record(*defined)
    return [k.id for k in defined]


def ours_check_in(stores: Stores, config: Config, p: Params) -> Run:
    def run() -> tuple[int, float]:
        with stores.ledger(config) as ledger:
            _, kr_ids = _okr_setup(ledger, p.krs)
            inputs = [check_in_fields(i) for i in range(p.events)]
            n_krs = len(kr_ids)
            started = time.perf_counter()
            for i, fields in enumerate(inputs):
                ledger.check_in(kr_ids[i % n_krs], actor=ACTOR, **fields)
            return p.events, time.perf_counter() - started

    return run


def ours_hot_check_in(stores: Stores, config: Config, p: Params) -> Run:
    def run() -> tuple[int, float]:
        with stores.ledger(config) as ledger:
            _, kr_ids = _okr_setup(ledger, 1)
            kr = ledger.load(kr_ids[0], KeyResult)
            for i in range(p.hot_history):
                kr.check_in(actor=ACTOR, **check_in_fields(i))
                if (i + 1) % 500 == 0:
                    ledger.record(kr)
            ledger.record(kr)
            inputs = [check_in_fields(i) for i in range(p.hot_events)]
            started = time.perf_counter()
            for fields in inputs:
                ledger.check_in(kr_ids[0], actor=ACTOR, **fields)
            return p.hot_events, time.perf_counter() - started

    return run


def _readings(kpi_ids: list[UUID], batch: int, size: int, run: str) -> list[Reading]:
    return [
        Reading.record(
            kpi_id=r.kpi_id,
            reading_id=r.reading_id,
            value=r.value,
            observed_at=r.observed_at,
            source="bench",
            actor=ACTOR,
        )
        for r in reading_inputs(kpi_ids, batch, size, run)
    ]


def ours_record_one(stores: Stores, config: Config, p: Params) -> Run:
    def run() -> tuple[int, float]:
        with stores.ledger(config) as ledger:
            kpi_ids = _kpi_setup(ledger, p.kpis)
            aggregates = _readings(kpi_ids, 0, p.events, "one")
            started = time.perf_counter()
            for aggregate in aggregates:
                ledger.record(aggregate)
            return p.events, time.perf_counter() - started

    return run


def ours_record_readings(stores: Stores, config: Config, p: Params) -> Run:
    def run() -> tuple[int, float]:
        with stores.ledger(config) as ledger:
            kpi_ids = _kpi_setup(ledger, p.kpis)
            batches = [reading_inputs(kpi_ids, b, p.batch_size, "rr") for b in range(p.batches)]
            started = time.perf_counter()
            for items in batches:
                written = ledger.record_readings(items, source="bench", actor=ACTOR)
                assert len(written.recorded) == len(items), written.duplicates[:3]
            return p.batches * p.batch_size, time.perf_counter() - started

    return run


def ours_record_batch(stores: Stores, config: Config, p: Params) -> Run:
    def run() -> tuple[int, float]:
        with stores.ledger(config) as ledger:
            kpi_ids = _kpi_setup(ledger, p.kpis)
            batches = [_readings(kpi_ids, b, p.batch_size, "agg") for b in range(p.batches)]
            started = time.perf_counter()
            for aggregates in batches:
                ledger.record(*aggregates)
            return p.batches * p.batch_size, time.perf_counter() - started

    return run


def es_check_in(stores: Stores, config: Config, p: Params) -> Run:
    def run() -> tuple[int, float]:
        with stores.es_app(config) as app:
            cycle = EsCycle(name="2026-Q1", starts_at=T0, ends_at=T0 + timedelta(90), actor=ACTOR)
            krs = [
                EsKeyResult(
                    cycle_id=cycle.id,
                    title=f"KR {i}",
                    kind="increase_to",
                    start=Decimal(0),
                    target=Decimal(100),
                    actor=ACTOR,
                )
                for i in range(p.krs)
            ]
            app.save(cycle, *krs)
            kr_ids = [kr.id for kr in krs]
            inputs = [check_in_fields(i) for i in range(p.events)]
            started = time.perf_counter()
            for i, fields in enumerate(inputs):
                kr = app.repository.get(kr_ids[i % len(kr_ids)])
                if app.repository.get(kr.cycle_id).status != "open":
                    raise RuntimeError("cycle closed")
                kr.check_in(
                    value=fields["value"],
                    done=None,
                    steps_done=None,
                    confidence=fields["confidence"],
                    note=fields["note"],
                    effective_at=datetime.now(UTC),
                    actor=ACTOR,
                )
                app.save(kr)
            return p.events, time.perf_counter() - started

    return run


def _es_readings(kpi_ids: list[UUID], batch: int, size: int, run: str) -> list[EsReading]:
    return [
        EsReading(
            kpi_id=r.kpi_id,
            reading_id=r.reading_id,
            value=r.value,
            observed_at=r.observed_at,
            source="bench",
            actor=ACTOR,
        )
        for r in reading_inputs(kpi_ids, batch, size, run)
    ]


def _es_kpis(app: EsDefaultApp, kpis: int) -> list[UUID]:
    defined = [EsKpi(name=f"KPI {i}", actor=ACTOR) for i in range(kpis)]
    app.save(*defined)
    return [k.id for k in defined]


def es_save_one(stores: Stores, config: Config, p: Params) -> Run:
    def run() -> tuple[int, float]:
        with stores.es_app(config) as app:
            aggregates = _es_readings(_es_kpis(app, p.kpis), 0, p.events, "one")
            started = time.perf_counter()
            for aggregate in aggregates:
                app.save(aggregate)
            return p.events, time.perf_counter() - started

    return run


def es_build_and_save_batch(stores: Stores, config: Config, p: Params) -> Run:
    def run() -> tuple[int, float]:
        with stores.es_app(config) as app:
            kpi_ids = _es_kpis(app, p.kpis)
            batches = [reading_inputs(kpi_ids, b, p.batch_size, "rr") for b in range(p.batches)]
            started = time.perf_counter()
            for items in batches:
                for kpi_id in {item.kpi_id for item in items}:
                    app.repository.get(kpi_id)  # as record_readings checks each KPI
                app.save(
                    *[
                        EsReading(
                            kpi_id=r.kpi_id,
                            reading_id=r.reading_id,
                            value=r.value,
                            observed_at=r.observed_at,
                            source="bench",
                            actor=ACTOR,
                        )
                        for r in items
                    ]
                )
            return p.batches * p.batch_size, time.perf_counter() - started

    return run


def es_save_batch(stores: Stores, config: Config, p: Params) -> Run:
    def run() -> tuple[int, float]:
        with stores.es_app(config) as app:
            kpi_ids = _es_kpis(app, p.kpis)
            batches = [_es_readings(kpi_ids, b, p.batch_size, "agg") for b in range(p.batches)]
            started = time.perf_counter()
            for aggregates in batches:
                app.save(*aggregates)
            return p.batches * p.batch_size, time.perf_counter() - started

    return run


# -- raw drivers ---------------------------------------------------------------------------

SQLITE_TABLE = (
    "CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, "
    "topic TEXT, state BLOB, PRIMARY KEY (originator_id, originator_version))"
)
SQLITE_INSERT = "INSERT INTO stored_events VALUES (?,?,?,?)"
PG_TABLE = (
    "CREATE TABLE IF NOT EXISTS raw_events (originator_id uuid NOT NULL, "
    "originator_version bigint NOT NULL, topic text, state bytea, "
    "notification_id bigserial, PRIMARY KEY (originator_id, originator_version))"
)
PG_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS raw_events_nid ON raw_events (notification_id)"
PG_INSERT = (
    "INSERT INTO raw_events (originator_id, originator_version, topic, state) "
    "VALUES (%s, %s, %s, %s)"
)
PG_COPY = (
    "COPY raw_events (originator_id, originator_version, topic, state) FROM STDIN (FORMAT BINARY)"
)


def single_rows(p: Params) -> list[tuple[UUID, int, str, bytes]]:
    """Rows like our check-ins: spread over --krs aggregates, versions counting up."""
    ids = [uuid4() for _ in range(p.krs)]
    return [
        (ids[i % p.krs], 2 + i // p.krs, CHECK_IN_TOPIC, os.urandom(p.check_in_state))
        for i in range(p.events)
    ]


def batch_rows(p: Params) -> list[list[tuple[UUID, int, str, bytes]]]:
    """Rows like our readings: new aggregates (random ids), version 1."""
    return [
        [(uuid4(), 1, READING_TOPIC, os.urandom(p.reading_state)) for _ in range(p.batch_size)]
        for _ in range(p.batches)
    ]


@contextmanager
def raw_sqlite(stores: Stores, config: Config) -> Iterator[sqlite3.Connection]:
    path = stores.sqlite_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={config.durability}")
    conn.execute(SQLITE_TABLE)
    try:
        yield conn
    finally:
        conn.close()
        stores.remove_sqlite(path)


def _sqlite_row(row: tuple[UUID, int, str, bytes]) -> tuple[str, int, str, bytes]:
    return row[0].hex, row[1], row[2], row[3]


def raw_sqlite_single(stores: Stores, config: Config, p: Params) -> Run:
    def run() -> tuple[int, float]:
        rows = [_sqlite_row(r) for r in single_rows(p)]
        with raw_sqlite(stores, config) as conn:
            execute = conn.execute
            started = time.perf_counter()
            for row in rows:
                execute("BEGIN")
                execute(SQLITE_INSERT, row)
                execute("COMMIT")
            return len(rows), time.perf_counter() - started

    return run


def raw_sqlite_per_row(stores: Stores, config: Config, p: Params) -> Run:
    """eventsourcing's SQLite application recorder: `execute` + `lastrowid` per row."""

    def run() -> tuple[int, float]:
        batches = [[_sqlite_row(r) for r in rows] for rows in batch_rows(p)]
        with raw_sqlite(stores, config) as conn:
            started = time.perf_counter()
            for rows in batches:
                cursor = conn.cursor()
                cursor.execute("BEGIN")
                ids = []
                for row in rows:
                    cursor.execute(SQLITE_INSERT, row)
                    ids.append(cursor.lastrowid)
                cursor.execute("COMMIT")
            return p.batches * p.batch_size, time.perf_counter() - started

    return run


def raw_sqlite_batch(stores: Stores, config: Config, p: Params) -> Run:
    def run() -> tuple[int, float]:
        batches = [[_sqlite_row(r) for r in rows] for rows in batch_rows(p)]
        with raw_sqlite(stores, config) as conn:
            started = time.perf_counter()
            for rows in batches:
                conn.execute("BEGIN")
                conn.executemany(SQLITE_INSERT, rows)
                conn.execute("COMMIT")
            return p.batches * p.batch_size, time.perf_counter() - started

    return run


@contextmanager
def raw_postgres(stores: Stores) -> Iterator[Any]:
    import psycopg

    with psycopg.connect(stores.pg_url or "", autocommit=True) as setup:
        setup.execute(PG_TABLE)
        setup.execute(PG_INDEX)
        setup.execute("TRUNCATE raw_events RESTART IDENTITY")
    with psycopg.connect(stores.pg_url or "") as conn:
        yield conn


def raw_pg_single(stores: Stores, config: Config, p: Params) -> Run:
    def run() -> tuple[int, float]:
        rows = single_rows(p)
        with raw_postgres(stores) as conn:
            cursor = conn.cursor()
            started = time.perf_counter()
            for row in rows:
                cursor.execute(PG_INSERT, row)
                conn.commit()
            return len(rows), time.perf_counter() - started

    return run


def raw_pg_executemany(stores: Stores, config: Config, p: Params) -> Run:
    def run() -> tuple[int, float]:
        batches = batch_rows(p)
        with raw_postgres(stores) as conn:
            cursor = conn.cursor()
            started = time.perf_counter()
            for rows in batches:
                cursor.executemany(PG_INSERT, rows)
                conn.commit()
            return p.batches * p.batch_size, time.perf_counter() - started

    return run


def raw_pg_copy(stores: Stores, config: Config, p: Params) -> Run:
    def run() -> tuple[int, float]:
        batches = batch_rows(p)
        with raw_postgres(stores) as conn:
            cursor = conn.cursor()
            started = time.perf_counter()
            for rows in batches:
                with cursor.copy(PG_COPY) as copy:
                    copy.set_types(["uuid", "int8", "text", "bytea"])
                    for row in rows:
                        copy.write_row(row)
                conn.commit()
            return p.batches * p.batch_size, time.perf_counter() - started

    return run


# -- the plan ------------------------------------------------------------------------------


@dataclass
class Path_:
    """One measured path in one store configuration."""

    config: Config
    batching: str  # "single" or "batch"
    kind: str  # "ours", "es", "raw"
    name: str
    make: Callable[[Stores, Config, Params], Run]
    pair: str | None = None  # the es-default path this one compares with
    key: str = ""
    rates: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rates) if self.rates else float("nan")


def plan(configs: list[Config], p: Params) -> list[Path_]:
    paths: list[Path_] = []
    batch = f"{p.batch_size:,}"
    for c in configs:
        paths += [
            Path_(
                c,
                "single",
                "ours",
                "goalledger `Ledger.check_in` (load KR + cycle, save)",
                ours_check_in,
                pair="es-check-in",
                key="check-in",
            ),
            Path_(
                c,
                "single",
                "ours",
                f"goalledger `Ledger.check_in` on a KR with {p.hot_history:,} check-ins",
                ours_hot_check_in,
                key="hot-check-in",
            ),
            Path_(
                c,
                "single",
                "ours",
                "goalledger `Ledger.record(reading)` (pre-built, no loads)",
                ours_record_one,
                pair="es-save-one",
                key="record-one",
            ),
            Path_(
                c,
                "single",
                "es",
                "es-default: get KR + get cycle, trigger, `save`",
                es_check_in,
                key="es-check-in",
            ),
            Path_(
                c,
                "single",
                "es",
                "es-default: `save(aggregate)` (pre-built, no loads)",
                es_save_one,
                key="es-save-one",
            ),
        ]
        if c.store == "sqlite":
            paths.append(
                Path_(
                    c,
                    "single",
                    "raw",
                    "raw sqlite3: one transaction per row",
                    raw_sqlite_single,
                    key="raw-single",
                )
            )
        else:
            paths.append(
                Path_(
                    c,
                    "single",
                    "raw",
                    "raw psycopg: one transaction per row",
                    raw_pg_single,
                    key="raw-single",
                )
            )
        paths += [
            Path_(
                c,
                "batch",
                "ours",
                f"goalledger `Ledger.record_readings` ({batch} inputs)",
                ours_record_readings,
                pair="es-build-save",
                key="record-readings",
            ),
            Path_(
                c,
                "batch",
                "ours",
                f"goalledger `Ledger.record(*{batch} Reading aggregates)`",
                ours_record_batch,
                pair="es-save-batch",
                key="record-batch",
            ),
            Path_(
                c,
                "batch",
                "es",
                f"es-default: build {batch} aggregates + `save(*aggs)`",
                es_build_and_save_batch,
                key="es-build-save",
            ),
            Path_(
                c,
                "batch",
                "es",
                f"es-default: `save(*{batch} pre-built aggregates)`",
                es_save_batch,
                key="es-save-batch",
            ),
        ]
        if c.store == "sqlite":
            paths += [
                Path_(
                    c,
                    "batch",
                    "raw",
                    f"raw sqlite3: `executemany` per {batch} rows",
                    raw_sqlite_batch,
                    key="raw-executemany",
                ),
                Path_(
                    c,
                    "batch",
                    "raw",
                    f"raw sqlite3: `execute` + `lastrowid` per row, {batch} per transaction "
                    "(eventsourcing's insert loop)",
                    raw_sqlite_per_row,
                    key="raw-per-row",
                ),
            ]
        else:
            paths += [
                Path_(
                    c,
                    "batch",
                    "raw",
                    f"raw psycopg: `executemany` per {batch} rows",
                    raw_pg_executemany,
                    key="raw-executemany",
                ),
                Path_(
                    c,
                    "batch",
                    "raw",
                    f"raw psycopg: binary COPY per {batch} rows",
                    raw_pg_copy,
                    key="raw-copy",
                ),
            ]
    return paths


def calibrate(stores: Stores, p: Params) -> dict[str, float]:
    """Average stored state length (bytes) of our check-in and reading events."""
    config = Config("sqlite", "NORMAL")
    sizes: dict[str, list[int]] = defaultdict(list)
    with stores.ledger(config) as ledger:
        _, kr_ids = _okr_setup(ledger, 10)
        for i in range(200):
            ledger.check_in(kr_ids[i % 10], actor=ACTOR, **check_in_fields(i))
        kpi_ids = _kpi_setup(ledger, p.kpis)
        ledger.record_readings(
            reading_inputs(kpi_ids, 0, p.batch_size, "cal"), source="bench", actor=ACTOR
        )
        for notification in ledger.notifications():
            sizes[notification.topic].append(len(notification.state))
    with stores.es_app(config) as app:
        app.save(*_es_readings(_es_kpis(app, 1), 0, 200, "cal"))
        for n in app.recorder.select_notifications(1, 1000):
            sizes["es-default:" + n.topic.rsplit(".", 1)[-1]].append(len(n.state))
    return {topic: sum(v) / len(v) for topic, v in sizes.items()}


# -- report --------------------------------------------------------------------------------


def fmt_rate(rate: float) -> str:
    if rate != rate:  # NaN
        return "—"
    if rate >= 100_000:
        return f"{rate / 1000:,.0f}k"
    if rate >= 1000:
        return f"{rate / 1000:,.1f}k"
    return f"{rate:,.0f}"


def fmt_ratio(ours: float, other: float) -> str:
    if not other or ours != ours or other != other:
        return "—"
    return f"{ours / other:.2f}"


def machine_info(stores: Stores) -> list[tuple[str, str]]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        nproc = str(os.cpu_count())

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    try:
        commit = subprocess.run(
            ["git", "-C", str(BENCH_DIR.parent), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        commit = "?"
    info = [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("nproc", nproc),
        ("CPU", cpu),
        ("memory", _mem_total()),
        ("kernel", platform.release()),
        ("python", platform.python_version() + (" (-O)" if not __debug__ else "")),
        ("SQLite", sqlite3.sqlite_version),
        (
            "packages",
            f"eventsourcing {version('eventsourcing')}, msgspec {version('msgspec')}, "
            f"psycopg {version('psycopg')}",
        ),
        ("goalledger HEAD at run time", commit or "?"),
    ]
    if stores.pg_version:
        pg = ", ".join(f"{k}={v}" for k, v in stores.pg_settings.items())
        info.append(("PostgreSQL", f"{stores.pg_version} on 127.0.0.1 ({pg})"))
    return info


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "?"


def report(
    paths: list[Path_],
    p: Params,
    args: argparse.Namespace,
    info: list[tuple[str, str]],
    sizes: dict[str, float],
    elapsed: float,
    loads: tuple[str, str],
) -> str:
    out: list[str] = []
    out.append(f"# goalledger append throughput ({args.store})\n")
    out.append("| machine | |\n|---|---|")
    out += [f"| {k} | {v} |" for k, v in info]
    out.append(f"| load average (start → end) | {loads[0]} → {loads[1]} |")
    out.append("")
    out.append(
        f"Command: `{' '.join(['python', 'bench/append.py', *sys.argv[1:]])}`; "
        f"{p.events:,} single saves and {p.batches} batches of {p.batch_size:,} per run, "
        f"check-ins spread over {p.krs} key results, readings over {p.kpis} KPIs; "
        f"median of {args.repeat} interleaved runs (spread = min–max); whole bench "
        f"took {elapsed:.0f} s."
    )
    out.append(
        f"Raw rows carry random bytes of our average stored state length: "
        f"{p.check_in_state} B for single rows (a check-in), {p.reading_state} B for "
        f"batched rows (a reading). Stored state lengths measured: "
        + ", ".join(f"`{t}` {s:.0f} B" for t, s in sorted(sizes.items()))
        + "."
    )
    out.append("")
    out.append(
        "| store | batching | path | events/s (median) | spread | ours / raw | ours / es-default |"
    )
    out.append("|---|---|---|---:|---:|---:|---:|")
    by_key = {(x.config, x.key): x for x in paths}
    for x in paths:
        raw_cells = "", ""
        if x.kind == "ours":
            raws = [
                r
                for r in paths
                if r.config == x.config and r.batching == x.batching and r.kind == "raw"
            ]
            raw_text = "; ".join(
                fmt_ratio(x.median, r.median)
                + (f" ({r.key.removeprefix('raw-')})" if len(raws) > 1 else "")
                for r in raws
            )
            es = by_key.get((x.config, x.pair)) if x.pair else None
            raw_cells = raw_text, fmt_ratio(x.median, es.median) if es else "—"
        spread = f"{fmt_rate(min(x.rates))}–{fmt_rate(max(x.rates))}" if x.rates else "—"
        batching = "single" if x.batching == "single" else f"{p.batch_size:,}/save"
        name = f"**{x.name}**" if x.kind == "ours" else x.name
        out.append(
            f"| {x.config.label} | {batching} | {name} | {fmt_rate(x.median)} | {spread} | "
            f"{raw_cells[0]} | {raw_cells[1]} |"
        )
    out.append("")
    targets = target_lines(paths)
    if targets:
        out.append("## Targets (issue “The ledger” → Measure)\n")
        out.append("| target | configuration | measured | met? |")
        out.append("|---|---|---:|---|")
        out += targets
        out.append("")
    return "\n".join(out)


def target_lines(paths: list[Path_]) -> list[str]:
    lines = []
    find = {(x.config, x.key): x for x in paths}
    for config in dict.fromkeys(x.config for x in paths):
        check_in = find.get((config, "check-in"))
        if check_in and check_in.rates:
            ok = check_in.median >= 3500
            lines.append(
                f"| single-event commands ≥ 3.5k/s | {config.label} | "
                f"{fmt_rate(check_in.median)}/s | {'yes' if ok else '**no**'} |"
            )
        if config.store != "sqlite":
            continue
        raw = find.get((config, "raw-executemany"))
        for key in ("record-readings", "record-batch"):
            ours = find.get((config, key))
            if not ours or not ours.rates:
                continue
            what = "record_readings" if key == "record-readings" else "record(*aggregates)"
            ok = ours.median >= 80_000
            lines.append(
                f"| batched appends ≥ 80k/s (`{what}`) | {config.label} | "
                f"{fmt_rate(ours.median)}/s | {'yes' if ok else '**no**'} |"
            )
            if raw and raw.rates:
                share = ours.median / raw.median
                lines.append(
                    f"| batched ≥ 50% of raw `executemany` (`{what}`) | {config.label} | "
                    f"{share:.0%} of {fmt_rate(raw.median)}/s | "
                    f"{'yes' if share >= 0.5 else '**no**'} |"
                )
    return lines


# -- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000, help="single saves per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per path (median)")
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--output", help="markdown file (default bench/results/append-STORE.md)")
    parser.add_argument("--batches", type=int, default=10, help="batches per run")
    parser.add_argument("--batch-size", type=int, default=1000, help="events per batch")
    parser.add_argument("--krs", type=int, default=200, help="key results the check-ins hit")
    parser.add_argument("--kpis", type=int, default=10, help="KPIs the readings belong to")
    parser.add_argument(
        "--hot-history", type=int, default=1000, help="check-ins already on the 'hot' key result"
    )
    parser.add_argument(
        "--hot-events", type=int, default=20, help="check-ins measured on the 'hot' key result"
    )
    parser.add_argument(
        "--only", help="comma-separated path keys to run (e.g. check-in,raw-single)"
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "GOALLEDGER_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="admin URL of the PostgreSQL server (a database is created and dropped)",
    )
    args = parser.parse_args(argv)

    configs: list[Config] = []
    if args.store in ("sqlite", "both"):
        configs += [Config("sqlite", "FULL"), Config("sqlite", "NORMAL")]
    if args.store in ("postgres", "both"):
        configs.append(Config("postgres", "fsync"))
    p = Params(
        events=args.events,
        batches=args.batches,
        batch_size=args.batch_size,
        krs=args.krs,
        kpis=args.kpis,
        hot_history=args.hot_history,
        hot_events=args.hot_events,
    )
    output = Path(args.output) if args.output else BENCH_DIR / "results" / f"append-{args.store}.md"

    started = time.perf_counter()
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    stores = Stores(args.postgres if any(c.store == "postgres" for c in configs) else None)
    try:
        if stores.admin_url:
            stores.create_postgres()
        sizes = calibrate(stores, p)
        p.check_in_state = round(sizes[CHECK_IN_TOPIC])
        p.reading_state = round(sizes[READING_TOPIC])
        print(
            f"stored state: check-in {p.check_in_state} B, reading {p.reading_state} B",
            file=sys.stderr,
        )
        paths = plan(configs, p)
        if args.only:
            wanted = set(args.only.split(","))
            paths = [x for x in paths if x.key in wanted]
        for repeat in range(args.repeat):
            for x in paths:
                n, seconds = x.make(stores, x.config, p)()
                x.rates.append(n / seconds)
                print(
                    f"[{repeat + 1}/{args.repeat}] {x.config.label:<46} {x.name:<62} "
                    f"{fmt_rate(n / seconds):>7}/s",
                    file=sys.stderr,
                    flush=True,
                )
        info = machine_info(stores)
    finally:
        stores.close()
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = report(
        paths, p, args, info, sizes, time.perf_counter() - started, (load_start, load_end)
    )
    print(text)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + "\n")
    print(f"written to {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
