"""The projector on a real store: exactly-once batches, failures, lag and read-your-writes."""

from __future__ import annotations

import sqlite3
import threading
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from projection_fixtures import (
    days_ago,
    increase_kr,
    notification_ids,
    plan,
    system_fixture,  # noqa: F401 (the `system` fixture)
    table_rows,
    uptime_kpi,
)

from goalledger.api.bootstrap import System
from goalledger.core.ledger import Ledger, ReadingInput
from goalledger.core.objectives import KeyResult
from goalledger.core.settings import Settings
from goalledger.projections import views
from goalledger.projections.history import audit_events, kpi_history
from goalledger.projections.projector import ProjectionFailed, Projector

CHECKED_IN = "goalledger/key-result/checked-in"


def fill(ledger: Ledger, readings: int = 5) -> None:
    """A little of everything: plan, KR, check-in, KPI, readings, a correction, a token."""
    p = plan(ledger)
    kr = increase_kr(ledger, p.objective)
    ledger.check_in(kr.id, value=Decimal(20), confidence=Decimal("0.8"), actor="bob")
    kpi = uptime_kpi(ledger)
    ledger.record_readings(
        [ReadingInput(kpi.id, f"r{i}", Decimal("99.5"), days_ago(i + 1)) for i in range(readings)],
        source="manual",
        actor="bot",
    )
    ledger.correct_reading(kpi.id, "r0", value=Decimal("99.95"), reason="late data", actor="carol")
    ledger.issue_token(name="dashboard", role="viewer", actor="admin")


def audit_positions(system: System) -> list[int]:
    return [event.position for event in audit_events(system.queries, limit=1_000_000)]


def test_every_event_is_applied_exactly_once(system: System) -> None:
    fill(system.ledger)
    applied = system.catch_up()
    ids = notification_ids(system.ledger)
    assert applied == len(ids)
    assert audit_positions(system) == ids
    assert system.projector.position() == system.ledger.head_position() == ids[-1]
    assert system.catch_up() == 0  # nothing is applied twice
    assert audit_positions(system) == ids


def test_a_failed_batch_commits_nothing_and_a_restart_catches_up(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = system.ledger
    p = plan(ledger)
    kr = increase_kr(ledger, p.objective)
    kpi = uptime_kpi(ledger)
    system.catch_up()
    committed = system.projector.position()

    # The next batch: a reading, a check-in (which will fail), another reading.
    ledger.record_readings(
        [ReadingInput(kpi.id, "before", Decimal("99.1"), days_ago(2))], source="m", actor="bot"
    )
    check_in = ledger.check_in(kr.id, value=Decimal(40), actor="bob")
    ledger.record_readings(
        [ReadingInput(kpi.id, "after", Decimal("99.2"), days_ago(1))], source="m", actor="bot"
    )

    def fault(*_: object) -> None:
        raise RuntimeError("simulated fault")

    # HANDLERS is keyed by event class or by topic, depending on the projector's version.
    (check_in_key,) = [k for k in views.HANDLERS if k in (KeyResult.CheckedIn, CHECKED_IN)]
    monkeypatch.setitem(views.HANDLERS, check_in_key, fault)
    with pytest.raises(ProjectionFailed) as caught:
        system.projector.run_batch()
    failure = caught.value
    assert failure.position == check_in.position
    assert failure.topic == CHECKED_IN
    assert failure.reason == "RuntimeError: simulated fault"
    assert str(check_in.position) in str(failure)

    # Tracking stayed at the previous batch and none of the failed batch's rows exist,
    # not even the reading that was applied before the fault inside the same batch.
    assert system.projector.position() == committed
    assert audit_positions(system)[-1] == committed
    assert table_rows(system, "readings") == []
    assert table_rows(system, "check_ins") == []
    assert kpi_history(system.queries, kpi.id).items == []

    lag = system.projector.lag()
    assert lag.position == committed
    assert lag.positions_behind == ledger.head_position() - committed
    assert lag.failed is not None
    assert f"position {check_in.position}" in lag.failed
    assert CHECKED_IN in lag.failed
    assert "simulated fault" in lag.failed

    # The fault is fixed: a restarted projector retries the batch and catches up.
    monkeypatch.undo()
    restarted = Projector(ledger, system.store)
    restarted.start()
    try:
        assert restarted.wait_for(ledger.head_position(), 5)
    finally:
        restarted.stop()
    assert audit_positions(system) == notification_ids(ledger)
    assert [row[0] for row in table_rows(system, "check_ins")] == [check_in.position]
    items = kpi_history(system.queries, kpi.id).items
    assert [item.reading_id for item in items] == ["before", "after"]
    assert restarted.lag().failed is None
    assert restarted.lag().positions_behind == 0


def test_events_no_view_cares_about_still_advance_tracking(system: System) -> None:
    ledger = system.ledger
    token, _ = ledger.issue_token(name="ci", role="contributor", actor="admin")
    revoked = ledger.revoke_token(token.id, actor="admin", reason="rotated")
    system.projector.start()
    assert system.projector.wait_for(ledger.head_position(), 5)
    assert system.projector.position() == revoked.position
    topics = [event.topic for event in audit_events(system.queries)]
    assert topics == ["goalledger/token/issued", "goalledger/token/revoked"]
    assert system.projector.lag().positions_behind == 0


def test_wait_for_a_position_that_never_comes_times_out(system: System) -> None:
    fill(system.ledger, readings=1)
    system.catch_up()
    began = time.monotonic()
    assert not system.projector.wait_for(system.ledger.head_position() + 10, 0.3)
    waited = time.monotonic() - began
    assert 0.3 <= waited < 2


def test_lag_shows_positions_behind_until_caught_up(system: System) -> None:
    fill(system.ledger)
    head = system.ledger.head_position()
    before = system.projector.lag()
    assert (before.head, before.position, before.positions_behind) == (head, 0, head)
    assert before.positions_behind > 0
    assert before.seconds_behind >= 0
    assert before.failed is None
    system.catch_up()
    after = system.projector.lag()
    assert (after.head, after.position, after.positions_behind) == (head, head, 0)
    assert after.seconds_behind == 0
    assert after.failed is None


def test_background_projector_gives_read_your_writes(system: System) -> None:
    ledger = system.ledger
    p = plan(ledger)
    kr = increase_kr(ledger, p.objective)
    kpi = uptime_kpi(ledger)
    system.projector.start()
    for value in (10, 35, 60):
        written = ledger.check_in(kr.id, value=Decimal(value), actor="bob")
        assert system.projector.wait_for(written.position, 5)
        board = system.queries.scoreboard(cycle_id=p.cycle.id)
        assert board.position >= written.position
        assert board.objectives[0].key_results[0].value == Decimal(value)
    recorded = ledger.record_readings(
        [ReadingInput(kpi.id, "now", Decimal("99.99"), days_ago(0))], source="m", actor="bot"
    )
    assert recorded.position is not None
    assert system.projector.wait_for(recorded.position, 5)
    assert [i.value for i in kpi_history(system.queries, kpi.id).items] == [Decimal("99.99")]


def test_two_projectors_never_apply_a_batch_twice(system: System) -> None:
    fill(system.ledger, readings=40)
    ids = notification_ids(system.ledger)
    head = ids[-1]
    projectors = [Projector(system.ledger, system.store, batch_size=3) for _ in range(2)]
    applied = [0, 0]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def drain(index: int) -> None:
        try:
            start.wait()
            while projectors[index].position() < head:
                applied[index] += projectors[index].run_batch()
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sum(applied) == len(ids)  # every event applied by exactly one of them
    positions = audit_positions(system)
    assert positions == ids
    assert len(set(positions)) == len(positions)
    assert system.projector.position() == head


def test_read_models_live_beside_the_ledger(system: System, settings: Settings) -> None:
    fill(system.ledger, readings=1)
    system.catch_up()
    storage = settings.storage()
    if storage.kind == "sqlite":
        ledger_file = Path(storage.path)
        views_file = ledger_file.with_name(f"{ledger_file.stem}.projections.db")
        assert views_file.exists()
        assert views_file.parent == ledger_file.parent
        assert _sqlite_tables(views_file) >= {"gl_views", "g1_events", "g1_readings"}
        assert "gl_views" not in _sqlite_tables(ledger_file)
        assert "stored_events" in _sqlite_tables(ledger_file)
    else:
        conninfo = psycopg.conninfo.make_conninfo(
            host=storage.host, port=storage.port, user=storage.user, dbname=storage.dbname
        )
        with psycopg.connect(conninfo) as connection:
            names = {
                row[0]
                for row in connection.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            }
        assert names >= {"goalledger_events", "gl_views", "g1_events", "g1_readings"}


def _sqlite_tables(path: Path) -> set[str]:
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in rows}
    finally:
        connection.close()


@pytest.mark.postgres
def test_processes_starting_at_once_on_a_new_postgres_database_set_up_one_generation(
    postgres_url: str,
) -> None:
    """Two API servers and a projector starting together each set up the views: on
    PostgreSQL that raced in CREATE TABLE IF NOT EXISTS (a unique violation in pg_type)
    until setup took an advisory lock. Six at once: none fails, one live generation."""
    from goalledger.projections import schema
    from goalledger.projections.store import open_view_store

    settings = Settings(database_url=postgres_url)
    ledger = Ledger(settings)
    barrier, errors = threading.Barrier(6), []

    def start() -> None:
        store = open_view_store(settings)
        try:
            barrier.wait(timeout=30)
            Projector(ledger, store)
        except Exception as error:
            errors.append(error)
        finally:
            store.close()

    try:
        starters = [threading.Thread(target=start) for _ in range(6)]
        for starter in starters:
            starter.start()
        for starter in starters:
            starter.join(timeout=60)
        assert errors == []
        with psycopg.connect(postgres_url) as connection:
            meta = dict(connection.execute(f"SELECT key, value FROM {schema.META_TABLE}"))
        assert meta == {"highest": 1, "live": 1}
    finally:
        ledger.close()
