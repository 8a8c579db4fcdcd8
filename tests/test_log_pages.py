"""The log in decoded pages: the same rows as the ledger's, in order, each event decoded."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from projection_fixtures import (
    days_ago,
    increase_kr,
    plan,
    system_fixture,  # noqa: F401 (the `system` fixture)
    uptime_kpi,
)

from goalledger.api.bootstrap import System, bootstrap
from goalledger.core.ledger import Ledger, ReadingInput
from goalledger.core.settings import Settings
from goalledger.projections import log_pages
from goalledger.projections.projector import ProjectionFailed, rebuild, view_state


def fill(ledger: Ledger) -> None:
    """A plan, a key result with a check-in, a KPI with readings and a correction."""
    p = plan(ledger)
    kr = increase_kr(ledger, p.objective)
    ledger.check_in(kr.id, value=Decimal(20), confidence=Decimal("0.8"), actor="bob")
    kpi = uptime_kpi(ledger)
    ledger.record_readings(
        [ReadingInput(kpi.id, f"r{i}", Decimal("99.5"), days_ago(i + 1)) for i in range(8)],
        source="manual",
        actor="bot",
    )
    ledger.correct_reading(kpi.id, "r0", value=Decimal("99.95"), reason="late data", actor="carol")


def test_pages_hold_the_ledgers_rows_and_their_decoded_fields(system: System) -> None:
    ledger = system.ledger
    fill(ledger)
    head = ledger.head_position()
    for after, limit in [(0, head), (0, 3), (4, 5), (head - 1, 10), (head, 10)]:
        page = log_pages.page(ledger, after, limit)
        assert page.rows == ledger.notification_rows(after, limit)
        decode = ledger.mapper.decode_fields
        assert page.fields == [decode(topic, state) for _, _, _, topic, state in page.rows]


def test_consecutive_pages_cover_the_log_once_in_order(system: System) -> None:
    ledger = system.ledger
    fill(ledger)
    rows, after = [], 0
    while page := log_pages.page(ledger, after, 3).rows:
        assert len(page) <= 3
        rows += page
        after = page[-1][0]
    assert rows == ledger.notification_rows(0, ledger.head_position())


def test_an_undecodable_event_stops_a_rebuild_naming_it_and_the_live_views_stay(
    tmp_path: Path,
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/ledger.db")
    with bootstrap(settings) as system:
        fill(system.ledger)
        system.catch_up()
        live = view_state(system.store)
        position, _, _, topic, _ = system.ledger.notification_rows(4, 1)[0]
        with sqlite3.connect(tmp_path / "ledger.db") as raw:  # damage one stored event
            raw.execute("UPDATE stored_events SET state = x'c1' WHERE rowid = ?", (position,))
        with pytest.raises(ProjectionFailed) as caught:
            rebuild(system.ledger, system.store, batch_size=3)
        assert (caught.value.position, caught.value.topic) == (position, topic)
        assert view_state(system.store) == live
