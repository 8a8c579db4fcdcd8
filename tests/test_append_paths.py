"""The ledger's fast write paths, on SQLite and on PostgreSQL.

Readings go straight to stored rows (no event objects), aggregates stay cached between
commands (kept current from the log), and single events take the ledger's own write
connection on SQLite. Each must store exactly what the plain eventsourcing path would,
stay idempotent and atomic, and see what other writers did.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from datetime import date, timedelta
from decimal import Decimal as D
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, OperationalError

from goalledger.core.cycles import Cycle
from goalledger.core.errors import Conflict, DomainError, NotFound
from goalledger.core.kpis import Kpi, Reading, thresholds_for
from goalledger.core.ledger import Ledger, ReadingInput
from goalledger.core.mapper import encode_state, encode_struct, state_struct
from goalledger.core.model import LedgerAggregate, utc_now
from goalledger.core.objectives import KeyResult
from goalledger.core.settings import Settings

MINUTE = timedelta(minutes=1)
START = utc_now() - timedelta(days=30)


def kpi(ledger: Ledger, name: str = "Latency") -> UUID:
    return ledger.define_kpi(
        name=name, direction="lower_is_better", frequency="hourly", actor="a",
        thresholds=thresholds_for("lower_is_better", 200, 400),
    ).id  # fmt: skip


def readings(kpi_id: UUID, ids: range, value: str = "150.25") -> list[ReadingInput]:
    return [ReadingInput(kpi_id, f"r{i}", D(value) + i, START + i * MINUTE) for i in ids]


def stored_rows(ledger: Ledger, after: int = 0) -> list[tuple[int, str, int, str, bytes]]:
    rows = ledger.notification_rows(after, 100_000)
    return [(p, str(UUID(a)), v, t, s) for p, a, v, t, s in rows]


def test_readings_are_stored_exactly_as_the_event_path_stores_them(ledger: Ledger) -> None:
    latency, errors = kpi(ledger), kpi(ledger, "Errors")
    head = ledger.head_position()
    batch = readings(latency, range(3)) + readings(errors, range(2), "-0.000001")
    batch.append(ReadingInput(latency, "  padded  ", D("1E+3"), START))  # stripped, as `record`
    written = ledger.record_readings(batch, source="prometheus", actor="ingest")
    assert written.recorded == ["r0", "r1", "r2", "r0", "r1", "padded"]
    rows = stored_rows(ledger, head)
    assert [p for p, *_ in rows] == list(range(head + 1, head + 7)) and written.position == head + 6
    ids = [UUID(row[1]) for row in rows]
    assert ids == sorted(ids) and {i.version for i in ids} == {7}  # new, time-ordered ids
    for item, (_, aggregate_id, version, topic, state) in zip(batch, rows, strict=True):
        event = ledger.mapper.to_domain_event(ledger.recorder.select_events(UUID(aggregate_id))[0])
        # The same event built the slow way, stored by the mapper, is byte for byte the row.
        expected = ledger.mapper.to_stored_event(
            Reading.observed(
                kpi_id=item.kpi_id, reading_id=item.reading_id, value=item.value,
                observed_at=item.observed_at, source="prometheus", actor="ingest",
                now=event.timestamp, originator_id=UUID(aggregate_id),
            )
        )  # fmt: skip
        assert (aggregate_id, version, topic, state) == (
            str(expected.originator_id),
            expected.originator_version,
            expected.topic,
            expected.state,
        )
        assert ledger.reading(item.kpi_id, item.reading_id).id == UUID(aggregate_id)
    reading = ledger.reading(errors, "r1")
    assert (reading.value, reading.source, reading.version) == (D("0.999999"), "prometheus", 1)


def test_held_and_repeated_readings_record_nothing_and_the_rest_lands_together(
    ledger: Ledger,
) -> None:
    latency = kpi(ledger)
    first = ledger.record_readings(readings(latency, range(0, 10, 2)), source="s", actor="a")
    assert first.recorded == ["r0", "r2", "r4", "r6", "r8"] and first.duplicates == []
    head = ledger.head_position()
    again = readings(latency, range(10), "999") + readings(latency, range(3, 4), "1")
    mixed = ledger.record_readings(again, source="s", actor="a")
    assert mixed.recorded == ["r1", "r3", "r5", "r7", "r9"]
    assert mixed.duplicates == ["r0", "r2", "r4", "r6", "r8", "r3"]  # held, then repeated
    rows = stored_rows(ledger, head)
    assert (
        [p for p, *_ in rows]
        == list(range(head + 1, head + 6))
        == list(range(mixed.position - 4, mixed.position + 1))
    )
    held = ledger.reading(latency, "r4")
    assert (held.value, held.version) == (D("154.25"), 1)  # the first value stays
    nothing = ledger.record_readings(again, source="s", actor="a")
    assert (nothing.recorded, nothing.position) == ([], None)
    assert len(nothing.duplicates) == 11 and ledger.head_position() == mixed.position


def test_a_batch_longer_than_one_statement_skips_held_readings_in_every_part(
    ledger: Ledger,
) -> None:
    """Batches go to SQLite 500 rows per INSERT: held readings anywhere in a 1,300-reading
    batch are skipped and the new ones still take consecutive positions, in order."""
    latency = kpi(ledger)
    ledger.record_readings(readings(latency, range(0, 1300, 3)), source="s", actor="a")
    head = ledger.head_position()
    written = ledger.record_readings(readings(latency, range(1300)), source="s", actor="a")
    fresh = [f"r{i}" for i in range(1300) if i % 3]
    assert written.recorded == fresh and len(written.duplicates) == 434
    rows = stored_rows(ledger, head)
    assert [p for p, *_ in rows] == list(range(head + 1, written.position + 1))
    assert [r[1] for r in rows] == [str(ledger.reading(latency, r).id) for r in fresh]


def test_ledgers_racing_with_the_same_readings_record_each_once(
    ledger: Ledger, settings: Settings
) -> None:
    """Four ledgers (their own connections, as four processes) send overlapping batches
    at once: the reading-name table lets exactly one write of each reading land."""
    latency = kpi(ledger)
    others = [Ledger(settings) for _ in range(4)]
    barrier = threading.Barrier(len(others))

    def send(n: int) -> list[str]:
        batch = readings(latency, range(n * 150, n * 150 + 400))  # overlaps the next two
        barrier.wait(timeout=30)
        return others[n].record_readings(batch, source="s", actor=f"a{n}").recorded

    try:
        with ThreadPoolExecutor(max_workers=len(others)) as pool:
            recorded = [r for batch in pool.map(send, range(len(others))) for r in batch]
    finally:
        for other in others:
            other.close()
    expected = [f"r{i}" for i in range(3 * 150 + 400)]
    assert sorted(recorded) == sorted(expected)  # each reading recorded by one writer
    stored = [r for r in stored_rows(ledger) if r[3] == "goalledger/reading/recorded"]
    assert len(stored) == len(expected)
    assert {ledger.reading(latency, r).reading_id for r in expected} == set(expected)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"reading_id": "   "}, "reading_id"),
        ({"reading_id": "x" * 201}, "reading_id"),
        ({"value": D("NaN")}, "value"),
        ({"value": "twelve"}, "value"),
        ({"observed_at": START.replace(tzinfo=None)}, "observed_at"),
        ({"observed_at": utc_now() + timedelta(days=1)}, "observed_at"),
    ],
)
def test_one_bad_reading_refuses_the_whole_batch_naming_it(
    ledger: Ledger, bad: dict, field: str
) -> None:
    latency = kpi(ledger)
    batch = readings(latency, range(5))
    fields = {f: getattr(batch[3], f) for f in ("kpi_id", "reading_id", "value", "observed_at")}
    batch[3] = ReadingInput(**(fields | bad))
    head = ledger.head_position()
    with pytest.raises(DomainError) as raised:
        ledger.record_readings(batch, source="s", actor="a")
    assert raised.value.field == f"readings[3].{field}"
    assert ledger.head_position() == head


def test_a_batch_the_database_refuses_midway_records_nothing(
    ledger: Ledger, database_url: str
) -> None:
    """A real trigger refuses the 700th row (in the second INSERT): the 699 before it, and
    every name the batch claimed, must not stay either."""
    latency = kpi(ledger)
    batch = readings(latency, range(1000))
    head = ledger.head_position()
    with (
        _refusing_trigger(ledger, database_url, head + 700),
        pytest.raises(Exception, match="doomed"),
    ):
        ledger.record_readings(batch, source="s", actor="a")
    assert ledger.head_position() == head
    with pytest.raises(NotFound):
        ledger.reading(latency, "r0")
    written = ledger.record_readings(batch, source="s", actor="a")  # the retry lands whole
    assert len(written.recorded) == 1000 and written.position == ledger.head_position()


@contextmanager
def _refusing_trigger(ledger: Ledger, database_url: str, doomed: int) -> Iterator[None]:
    """A trigger in the real database that refuses the row at position `doomed`."""
    if database_url.startswith("sqlite"):
        path = Settings(database_url=database_url).storage().path
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute(  # AFTER: a BEFORE trigger sees no rowid yet
                "CREATE TRIGGER doomed AFTER INSERT ON stored_events"
                f" WHEN NEW.rowid = {doomed}"
                " BEGIN SELECT RAISE(ABORT, 'doomed row'); END"
            )
            try:
                yield
            finally:
                conn.execute("DROP TRIGGER doomed")
        return
    table = ledger.recorder.events_table_name  # type: ignore[attr-defined]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION doomed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.notification_id = {doomed} THEN RAISE EXCEPTION 'doomed row';"
            " END IF; RETURN NEW; END $$"
        )
        conn.execute(
            f'CREATE TRIGGER doomed BEFORE INSERT ON "{table}"'
            " FOR EACH ROW EXECUTE FUNCTION doomed()"
        )
        try:
            yield
        finally:
            conn.execute(f'DROP TRIGGER doomed ON "{table}"')
            conn.execute("DROP FUNCTION doomed()")


def _key_result(ledger: Ledger) -> tuple[UUID, UUID]:
    cycle = ledger.define_cycle(
        name="2026-Q1", starts_on=date(2026, 1, 1), ends_on=date(2026, 3, 31), actor="a"
    )
    team = ledger.form_team(name="Platform", actor="a")
    objective = ledger.define_objective(
        title="Fast", cycle_id=cycle.id, team_id=team.id, owner="o", kind="committed", actor="a"
    )
    kr = ledger.define_key_result(
        objective.id, title="KR", kind="increase_to", start=D(0), target=D(100), actor="a"
    )
    return cycle.id, kr.id


def test_a_cached_aggregate_sees_what_another_ledger_process_wrote(
    ledger: Ledger, settings: Settings
) -> None:
    cycle_id, kr_id = _key_result(ledger)
    ledger.check_in(kr_id, value=D(10), actor="a")
    assert ledger.load(kr_id, KeyResult).version == 2  # now cached here
    other = Ledger(settings)  # another process's ledger: its own connections and cache
    try:
        other.check_in(kr_id, value=D(20), actor="b")
        other.change_key_result_target(kr_id, target=D(90), reason="scope", actor="b")
        kr = ledger.load(kr_id, KeyResult)
        assert (kr.version, kr.check_ins, kr.target) == (4, 2, D(90))
        written = ledger.check_in(kr_id, value=D(30), actor="a", expected_version=4)
        assert written.version == 5  # no false conflict after the other's writes
        assert other.load(kr_id, KeyResult).check_ins == 3
        latency = kpi(ledger)
        ledger.record_readings(readings(latency, range(3)), source="s", actor="a")
        assert ledger.reading(latency, "r1").value == D("151.25")
        other.correct_reading(latency, "r1", value=D(7), reason="typo", actor="b")
        assert ledger.reading(latency, "r1").value == D(7)
        ledger.load(cycle_id, Cycle)
        other.close_cycle(cycle_id, rule="linear-v1", actor="b")
        with pytest.raises(DomainError) as raised:
            ledger.check_in(kr_id, value=D(40), actor="a")  # the cycle closed elsewhere
        assert raised.value.field == "key_result_id"
    finally:
        other.close()


def test_a_stale_command_from_another_process_conflicts_and_changes_nothing(
    ledger: Ledger, settings: Settings
) -> None:
    _, kr_id = _key_result(ledger)
    mine = ledger.load(kr_id, KeyResult)
    other = Ledger(settings)
    try:
        other.check_in(kr_id, value=D(20), actor="b")
    finally:
        other.close()
    mine.check_in(value=D(99), actor="a")
    head = ledger.head_position()
    with pytest.raises(Conflict):
        ledger.record(mine)
    assert ledger.head_position() == head
    kr = ledger.load(kr_id, KeyResult)
    assert (kr.version, kr.check_ins) == (2, 1)


def test_a_long_gap_in_the_log_drops_the_cache_rather_than_reading_it_all(
    ledger: Ledger, settings: Settings
) -> None:
    _, kr_id = _key_result(ledger)
    ledger.load(kr_id, KeyResult)
    other = Ledger(settings)
    try:
        other.check_in(kr_id, value=D(5), actor="b")
        latency = kpi(other)
        other.record_readings(readings(latency, range(6000)), source="s", actor="b")
    finally:
        other.close()
    kr = ledger.load(kr_id, KeyResult)
    assert (kr.version, kr.check_ins) == (2, 1)


def test_the_sqlite_write_connection_keeps_the_configured_durability(sqlite_url: str) -> None:
    for mode, pragma in (("full", 2), ("normal", 1)):
        ledger = Ledger(
            Settings(database_url=f"{sqlite_url[:-3]}-{mode}.db", sqlite_synchronous=mode)
        )
        try:
            assert ledger._writer is not None and ledger._writer.synchronous() == pragma
        finally:
            ledger.close()


def test_an_unknown_kpi_is_named_by_its_reading_s_index(ledger: Ledger) -> None:
    latency = kpi(ledger)
    nowhere = UUID(int=7)
    batch = [*readings(latency, range(3)), ReadingInput(nowhere, "x", D(1), START)]
    head = ledger.head_position()
    with pytest.raises(DomainError) as raised:
        ledger.record_readings(batch, source="s", actor="a")
    assert raised.value.field == "readings[3].kpi_id" and ledger.head_position() == head
    assert ledger.load(latency, Kpi).name == "Latency"


class Dial(LedgerAggregate):
    """A test-only aggregate whose created event is at class version 2."""

    TOPIC = "goalledger-tests/dial"

    class Event(LedgerAggregate.Event):
        """An event of a Dial."""

    class Installed(Event, Aggregate.Created):
        """Installed, at version 2 of its schema."""

        TOPIC = "goalledger-tests/dial/installed"
        class_version = 2
        label: str
        reading: D

        def apply(self, dial: Dial) -> None:
            dial.label, dial.reading = self.label, self.reading

    Created = Installed


@pytest.mark.parametrize("cls", [Reading.Recorded, Dial.Installed])
def test_state_structs_encode_as_the_mapper_encodes_the_event(cls: type) -> None:
    if cls is Dial.Installed:
        event = Dial._create(cls, id=uuid4(), label="p99", reading=D("1.50"), actor="a")
        event = event.collect_events()[0]
    else:
        event = Reading.observed(
            kpi_id=uuid4(), reading_id="r", value=D("2.5"), observed_at=START, source="s",
            actor="a", now=utc_now(),
        )  # fmt: skip
    row = ("originator_id", "originator_version")
    fields = {k: v for k, v in vars(event).items() if k not in row}
    assert encode_struct(state_struct(cls)(**fields)) == encode_state(event)
    assert (b"class_version" in encode_state(event)) is (cls is Dial.Installed)


@pytest.mark.parametrize("size", [0, 2])
def test_commands_hold_with_no_cache_and_with_a_tiny_one(database_url: str, size: int) -> None:
    ledger = Ledger(Settings(database_url=database_url, aggregate_cache_size=size))
    try:
        _, kr_id = _key_result(ledger)
        for value in range(1, 6):
            ledger.check_in(kr_id, value=D(value), actor="a", expected_version=value)
        kr = ledger.load(kr_id, KeyResult)
        assert (kr.version, kr.check_ins) == (6, 5)
    finally:
        ledger.close()


def test_a_write_whose_answer_is_lost_is_recorded_once_not_twice(postgres_url: str) -> None:
    """The connection drops after the commit, before its answer: the retry finds the
    write's own rows and reports them, rather than a conflict (which the API would
    answer by appending the check-in again). Rows that differ stay a conflict."""
    ledger = Ledger(Settings(database_url=postgres_url))
    try:
        _, kr = _key_result(ledger)
        writer = ledger._writer
        committed = writer._call
        answers: list[dict] = []

        def commit_then_lose_the_answer(statement, params):
            if answers:
                return committed(statement, params)
            answers.append(committed(statement, params))
            raise OperationalError("server closed the connection unexpectedly")

        writer._call = commit_then_lose_the_answer
        written = ledger.check_in(kr, actor="a", value=D(5))
        assert answers and written.position == answers[0]["last"]
        assert ledger.load(kr, KeyResult).check_ins == 1
        assert ledger.head_position() == written.position

        def lose_before_sending(statement, params):
            writer._call = committed
            raise OperationalError("connection refused")

        writer._call = lose_before_sending
        with pytest.raises(IntegrityError):  # version 2 is held, with other bytes
            writer.insert([(kr.hex, 2, "goalledger/key-result/checked-in", b"other")])
        assert ledger.head_position() == written.position
    finally:
        ledger.close()
