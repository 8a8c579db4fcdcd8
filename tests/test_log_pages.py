"""The log in decoded pages: the same rows as the ledger's, read ahead in order, bounded."""

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


def test_read_ahead_yields_every_page_in_order_and_stops_at_its_end(system: System) -> None:
    ledger = system.ledger
    fill(ledger)
    head = ledger.head_position()
    pages = log_pages.ReadAhead(ledger, after=2, upto=head - 1, size=3, depth=1)
    try:
        read = list(pages)
    finally:
        pages.close()
    assert all(0 < len(page.rows) <= 3 for page in read)
    rows = [row for page in read for row in page.rows]
    assert rows == [row for row in ledger.notification_rows(2, head) if row[0] <= head - 1]
    assert [len(page.fields) for page in read] == [len(page.rows) for page in read]


def test_closing_a_read_ahead_early_stops_its_thread(system: System) -> None:
    ledger = system.ledger
    fill(ledger)
    pages = log_pages.ReadAhead(ledger, after=0, upto=ledger.head_position(), size=1, depth=1)
    first = next(iter(pages))
    pages.close()
    assert first.rows == ledger.notification_rows(0, 1)
    assert not pages._thread.is_alive()


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
