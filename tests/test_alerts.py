"""Event-driven alerts: raised as the projector applies events, with deterministic ids,
queued for the subscriptions that take them, and never queued again by a rebuild.

Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from goalledger.api.bootstrap import System, bootstrap
from goalledger.core.errors import DomainError
from goalledger.core.kpis import thresholds_for
from goalledger.core.ledger import ReadingInput
from goalledger.core.settings import Settings
from goalledger.core.subscriptions import Channel, Subscription, covers
from goalledger.projections.alerts import alert_id
from goalledger.projections.projector import Projector, rebuild

NOW = datetime.now(UTC)
LOG = Channel("log", {})


@pytest.fixture
def system(settings: Settings) -> Iterator[System]:
    built = bootstrap(settings)
    try:
        yield built
    finally:
        built.close()


def rows(system: System, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with system.store.read() as tx:
        return tx.all(sql, params)


def alerts(system: System) -> list[tuple[Any, ...]]:
    """(kind, subject, position, title) of every alert, in ledger order."""
    return rows(system, "SELECT kind, subject_id, position, title FROM gl_alerts ORDER BY position")


def outbox(system: System) -> set[tuple[str, str, str]]:
    return set(rows(system, "SELECT alert_id, subscription_id, status FROM gl_outbox"))


def read(system: System, kpi: UUID, reading_id: str, value: str, hours_ago: float) -> int:
    written = system.ledger.record_readings(
        [ReadingInput(kpi, reading_id, Decimal(value), NOW - timedelta(hours=hours_ago))],
        source="test",
        actor="test",
    )
    assert written.position is not None
    return written.position


def uptime(system: System, team: UUID | None = None) -> UUID:
    thresholds = thresholds_for("higher_is_better", "99.9", "99")
    return system.ledger.define_kpi(
        name="Uptime", unit="%", direction="higher_is_better", thresholds=thresholds,
        frequency="daily", team_id=team, actor="test",
    ).id  # fmt: skip


# -- the subscription aggregate ------------------------------------------------------------


def test_a_subscription_names_known_kinds_once_and_covers_team_subtrees() -> None:
    with pytest.raises(DomainError) as refused:
        Subscription.create(alert_kinds=["kpi_health_changed", "x"], team_ids=[], channel=LOG,
                            actor="a")  # fmt: skip
    assert refused.value.field == "alert_kinds[1]"
    with pytest.raises(DomainError, match="at least one"):
        Subscription.create(alert_kinds=[], team_ids=[], channel=LOG, actor="a")
    team, parent = UUID(int=1), UUID(int=2)
    sub = Subscription.create(
        alert_kinds=["cycle_ending", "cycle_ending"], team_ids=[parent, parent], channel=LOG,
        actor="a",
    )  # fmt: skip
    assert (sub.alert_kinds, sub.team_ids) == (["cycle_ending"], [parent])
    assert sub.covers("cycle_ending", {team, parent}) and sub.covers("cycle_ending", None)
    assert not sub.covers("cycle_ending", {team}) and not sub.covers("kpi_health_changed", None)
    assert covers(["cycle_ending"], [], "cycle_ending", {team})
    sub.delete(actor="a")
    assert not sub.covers("cycle_ending", None)
    with pytest.raises(DomainError, match="already deleted"):
        sub.delete(actor="a")


def test_subscribing_refuses_unknown_teams(system: System) -> None:
    with pytest.raises(DomainError) as refused:
        system.ledger.subscribe(
            alert_kinds=["cycle_ending"], team_ids=[UUID(int=7)], channel=LOG, actor="a"
        )
    assert refused.value.field == "team_ids[0]"


# -- kpi_health_changed ----------------------------------------------------------------------


def test_each_change_of_current_health_raises_one_alert(system: System) -> None:
    sub = system.ledger.subscribe(
        alert_kinds=["kpi_health_changed"], team_ids=[], channel=LOG, actor="a"
    ).id
    kpi = uptime(system)
    read(system, kpi, "r1", "99.95", 10)  # the first reading: nothing to compare with
    read(system, kpi, "r2", "99.99", 9)
    amber = read(system, kpi, "r3", "99.5", 8)
    red = read(system, kpi, "r4", "90", 7)
    read(system, kpi, "r5", "80", 6)
    green = read(system, kpi, "r6", "99.95", 5)
    system.catch_up()
    assert alerts(system) == [
        ("kpi_health_changed", str(kpi), amber, "Uptime turned amber"),
        ("kpi_health_changed", str(kpi), red, "Uptime turned red"),
        ("kpi_health_changed", str(kpi), green, "Uptime recovered to green"),
    ]
    ids = {alert_id("kpi_health_changed", str(kpi), p) for p in (amber, red, green)}
    assert outbox(system) == {(i, str(sub), "pending") for i in ids}


def test_back_dated_readings_change_nothing_current_but_corrections_do(system: System) -> None:
    kpi = uptime(system)
    read(system, kpi, "now", "90", 1)
    read(system, kpi, "last-week", "99.99", 24 * 7)  # older than the latest: still red now
    system.catch_up()
    assert alerts(system) == []
    corrected = system.ledger.correct_reading(
        kpi, "now", value=Decimal("99.95"), reason="a probe was down", actor="sre"
    ).position
    system.ledger.correct_reading(kpi, "last-week", value=Decimal(1), reason="typo", actor="sre")
    system.catch_up()
    assert alerts(system) == [
        ("kpi_health_changed", str(kpi), corrected, "Uptime recovered to green")
    ]


def test_new_thresholds_judge_the_next_reading_against_the_latest_one_rejudged(
    system: System,
) -> None:
    kpi = uptime(system)
    read(system, kpi, "a", "99.5", 3)  # amber
    system.ledger.change_kpi_thresholds(
        kpi, thresholds=thresholds_for("higher_is_better", "99.4", "99"),
        effective_from=NOW - timedelta(days=1), actor="sre",
    )  # fmt: skip
    read(system, kpi, "b", "99.6", 2)  # green, and so was "a" under the new thresholds
    system.catch_up()
    assert alerts(system) == []


# -- key_result_off_pace ------------------------------------------------------------------


def test_a_check_in_that_moves_a_key_result_off_track_raises_once(system: System) -> None:
    ledger = system.ledger
    team = ledger.form_team(name="Platform", actor="a").id
    today = NOW.date()
    cycle = ledger.define_cycle(
        name="Q", starts_on=today - timedelta(days=60), ends_on=today + timedelta(days=29),
        actor="a",
    ).id  # fmt: skip
    objective = ledger.define_objective(
        title="Grow", cycle_id=cycle, team_id=team, owner="o", kind="committed", actor="a"
    ).id
    kr = ledger.define_key_result(
        objective, title="Adoption", kind="increase_to", start=Decimal(0), target=Decimal(100),
        actor="a",
    ).id  # fmt: skip
    ledger.check_in(kr, value=Decimal(70), actor="a")  # about on pace (2/3 of the cycle)
    off = ledger.check_in(kr, value=Decimal(10), actor="a").position
    ledger.check_in(kr, value=Decimal(12), actor="a")  # still off track: no new alert
    ledger.check_in(kr, value=Decimal(80), confidence=Decimal("0.9"), actor="a")
    again = ledger.check_in(kr, value=Decimal(70), confidence=Decimal("0.1"), actor="a").position
    system.catch_up()
    assert [(a[0], a[1], a[2]) for a in alerts(system)] == [
        ("key_result_off_pace", str(kr), off),
        ("key_result_off_pace", str(kr), again),  # lost confidence
    ]
    assert alerts(system)[0][3] == "Adoption fell behind pace"


# -- routing -----------------------------------------------------------------------------------


def test_alerts_go_to_subscriptions_of_their_kind_and_team_subtree(system: System) -> None:
    ledger = system.ledger
    company = ledger.form_team(name="Acme", actor="a").id
    platform = ledger.form_team(name="Platform", parent_id=company, actor="a").id
    sales = ledger.form_team(name="Sales", parent_id=company, actor="a").id

    def subscribe(kinds: list[str], teams: list[UUID]) -> str:
        return str(ledger.subscribe(alert_kinds=kinds, team_ids=teams, channel=LOG, actor="a").id)

    everyone = subscribe(["kpi_health_changed"], [])
    acme = subscribe(["kpi_health_changed"], [company])
    subscribe(["kpi_health_changed"], [sales])
    subscribe(["key_result_off_pace"], [])
    gone = subscribe(["kpi_health_changed"], [platform])
    kpi, org_wide = uptime(system, platform), uptime(system)
    read(system, kpi, "1", "99.95", 5)
    read(system, org_wide, "1", "99.95", 5)
    ledger.delete_subscription(UUID(gone), actor="a")
    team_alert = alert_id("kpi_health_changed", str(kpi), read(system, kpi, "2", "50", 4))
    org_alert = alert_id("kpi_health_changed", str(org_wide), read(system, org_wide, "2", "5", 4))
    system.catch_up()
    queued = {(a, s) for a, s, _ in outbox(system)}
    assert queued == {(team_alert, everyone), (team_alert, acme)} | {
        (org_alert, s) for s in rows_of_live_health_subscriptions(system)
    }


def rows_of_live_health_subscriptions(system: System) -> set[str]:
    found = rows(
        system,
        "SELECT id FROM gl_alert_subscriptions WHERE deleted_position IS NULL"
        " AND alert_kinds LIKE ?",
        ("%kpi_health_changed%",),
    )
    assert len(found) == 3  # org-wide alerts reach every subscription of their kind
    return {row[0] for row in found}


# -- determinism and rebuilds ----------------------------------------------------------------


def history(system: System) -> UUID:
    """A few health changes and a subscription; returns the KPI."""
    system.ledger.subscribe(alert_kinds=["kpi_health_changed"], team_ids=[], channel=LOG,
                            actor="a")  # fmt: skip
    kpi = uptime(system)
    for index, value in enumerate(["99.95", "99.5", "90", "99.95", "99.2", "99.97"]):
        read(system, kpi, f"r{index}", value, 20 - index)
    system.ledger.correct_reading(kpi, "r5", value=Decimal(50), reason="r", actor="a")
    return kpi


def test_projecting_in_any_batches_raises_the_same_alerts(system: System) -> None:
    history(system)
    system.catch_up()
    expected = {row[0] for row in rows(system, "SELECT id FROM gl_alerts")}
    assert len(expected) == 6
    # One event per batch, each batch by a fresh projector: every lookup comes from the
    # read models rather than from memory, and must agree with them.
    raised: set[str] = set()
    while True:
        projector = Projector(system.ledger, system.store, batch_size=1, generation=90)
        if projector.run_batch() == 0:
            break
        raised |= {r.alert.id for r in projector.alerts.raised}
    assert raised == expected


def test_a_rebuild_recomputes_the_alerts_and_never_queues_them_again(system: System) -> None:
    history(system)
    system.catch_up()
    before_alerts, before_outbox = alerts(system), outbox(system)
    with system.store.transaction() as tx:
        tx.execute("UPDATE gl_outbox SET status = 'delivered'")
    rebuild(system.ledger, system.store)
    assert alerts(system) == before_alerts
    assert outbox(system) == {(a, s, "delivered") for a, s, _ in before_outbox}
    # Alerts lost (or never raised: a new kind of alert) come back, but history is not sent.
    with system.store.transaction() as tx:
        tx.execute("DELETE FROM gl_alerts")
        tx.execute("DELETE FROM gl_outbox")
    rebuild(system.ledger, system.store)
    assert alerts(system) == before_alerts
    assert outbox(system) == set()


def test_a_rebuild_ahead_of_the_live_projector_queues_new_alerts_exactly_once(
    system: System,
) -> None:
    kpi = history(system)
    system.catch_up()
    queued = outbox(system)
    late = read(system, kpi, "late", "10", 0.5)  # red after r5's correction to 50: no change
    later = read(system, kpi, "later", "99.99", 0.1)  # green: an alert the live side lags on
    rebuild(system.ledger, system.store)
    system.catch_up()  # the live projector, now on the rebuilt generation
    new = outbox(system) - queued
    assert late < later and {a for a, _, _ in new} == {
        alert_id("kpi_health_changed", str(kpi), later)
    }


def test_off_pace_is_judged_against_the_target_in_force() -> None:
    """`kr_score` takes the latest target effective by the moment judged, or the defined
    one when none is yet; a single target is taken without searching."""
    from datetime import date

    from goalledger.core.scoring import LINEAR_V1, KeyResultFacts
    from goalledger.projections.alert_state import CheckIn, KrState, kr_score
    from goalledger.projections.schema import ts

    at = datetime(2026, 1, 6, tzinfo=UTC)
    cycle = (date(2026, 1, 1), date(2026, 1, 10))
    later = ts(at + timedelta(days=1))
    defined = (later, 1, Decimal(100), None, None, Decimal(1))  # effective only later
    kr = KrState(
        title="KR", kind="increase_to", objective_id="o", cycle_id="c", team_id="t",
        kpi_id=None, start=Decimal(0), steps_total=0, defined_position=1, targets=[defined],
    )  # fmt: skip
    check_in = CheckIn(ts(at), 5, Decimal(40), None, None, Decimal("0.9"))

    def expected(target: int) -> Any:
        facts = KeyResultFacts(
            kind="increase_to", start=Decimal(0), target=Decimal(target), value=Decimal(40),
            confidence=Decimal("0.9"), last_check_in_at=at,
        )  # fmt: skip
        return LINEAR_V1.score_key_result(
            facts, starts_on=cycle[0], ends_on=cycle[1], at=at,
            check_in_interval=timedelta(days=7),
        )  # fmt: skip

    assert kr_score(kr, check_in, None, cycle, 7, at) == expected(100)
    kr.targets = [
        (ts(at - timedelta(days=30)), 1, Decimal(100), None, None, Decimal(1)),
        (ts(at - timedelta(days=1)), 3, Decimal(50), None, None, Decimal(1)),
        (later, 4, Decimal(400), None, None, Decimal(1)),  # not yet in force
    ]
    assert kr_score(kr, check_in, None, cycle, 7, at) == expected(50)
    assert kr_score(kr, check_in, None, cycle, 7, at).status == "on_track"
    kr.targets = [(later, 2, Decimal(100), None, None, Decimal(1))]  # neither due nor defined
    with pytest.raises(ValueError):
        kr_score(kr, check_in, None, cycle, 7, at)
