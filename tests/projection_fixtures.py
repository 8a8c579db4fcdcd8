"""Fixtures and builders for projection tests: a whole system on each store, and small plans.

A test module imports `system_fixture` to get the `system` fixture.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

import pytest

from goalledger.api.bootstrap import System, bootstrap
from goalledger.core.kpis import thresholds_for
from goalledger.core.ledger import Ledger, Written
from goalledger.core.settings import Settings
from goalledger.projections import schema

NOW = datetime.now(UTC)
TODAY = NOW.date()
# A cycle that began 60 days ago and ends in 30: every back-dated fact below falls inside.
CYCLE_STARTS = TODAY - timedelta(days=60)
CYCLE_ENDS = TODAY + timedelta(days=30)
# Recorded-time gaps between writes must be wider than the clock's resolution.
GAP = 0.02


@pytest.fixture(name="system")
def system_fixture(settings: Settings) -> Iterator[System]:
    """A whole goalledger (ledger, read models, projector, queries) on each store."""
    built = bootstrap(settings)
    try:
        yield built
    finally:
        built.close()


def days_ago(days: float) -> datetime:
    """A moment `days` before now (UTC)."""
    return datetime.now(UTC) - timedelta(days=days)


def mark() -> datetime:
    """A recorded-time mark strictly between the writes before and after it."""
    time.sleep(GAP)
    moment = datetime.now(UTC)
    time.sleep(GAP)
    return moment


class Plan(NamedTuple):
    """A cycle, a team and one objective in it."""

    cycle: Written
    team: Written
    objective: Written


def plan(ledger: Ledger, *, starts_on: date = CYCLE_STARTS, ends_on: date = CYCLE_ENDS) -> Plan:
    """A cycle around today, a team, and an objective defined at the cycle's start."""
    cycle = ledger.define_cycle(name="2026-Q4", starts_on=starts_on, ends_on=ends_on, actor="alice")
    team = ledger.form_team(name="Platform", actor="alice")
    objective = ledger.define_objective(
        title="Run a reliable platform", cycle_id=cycle.id, team_id=team.id, owner="bob",
        kind="committed", actor="alice", effective_at=at_start(starts_on),
    )  # fmt: skip
    return Plan(cycle, team, objective)


def at_start(day: date = CYCLE_STARTS) -> datetime:
    """Midnight UTC at the start of `day`."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def uptime_kpi(ledger: Ledger, *, green: str = "99.9", amber: str = "99") -> Written:
    """A higher-is-better KPI defined at the cycle's start."""
    return ledger.define_kpi(
        name="Uptime", unit="%", direction="higher_is_better",
        thresholds=thresholds_for("higher_is_better", green, amber), frequency="daily",
        actor="alice", effective_at=at_start(),
    )  # fmt: skip


def increase_kr(ledger: Ledger, objective: Written, *, title: str = "Adoption") -> Written:
    """An increase_to KR from 0 to 100, defined at the cycle's start."""
    return ledger.define_key_result(
        objective.id, title=title, kind="increase_to", start=Decimal(0),
        target=Decimal(100), actor="alice", effective_at=at_start(),
    )  # fmt: skip


def table_rows(system: System, name: str) -> list[tuple]:
    """Every row of one live read-model table."""
    with system.store.read() as tx:
        generation = schema.live_generation(tx)
        return tx.all(f"SELECT * FROM {schema.table(generation, name)}")


def notification_ids(ledger: Ledger) -> list[int]:
    """The positions of every event the ledger holds, in order."""
    return [n.id for n in ledger.notifications()]
