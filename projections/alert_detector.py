"""Event-driven alerts, detected while a batch is projected and stored in its transaction.

- `kpi_health_changed`: a reading (or a correction) changes a KPI's current health —
  the health of its latest reading by observed time — from the previous one's
  (`recovered` when it turns green). A back-dated reading changes nothing current.
- `key_result_off_pace`: a check-in moves a key result to `off_track`, judged under the
  default rule at the moment of the check-in (stale or not, it was not off track
  before, and is now).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from goalledger.core.cycles import Cycle
from goalledger.core.kpis import Kpi, Reading
from goalledger.core.objectives import KeyResult
from goalledger.core.subscriptions import Subscription
from goalledger.core.teams import Team
from goalledger.projections import alert_state, alerts, schema
from goalledger.projections.alert_state import (
    SUBSCRIPTIONS_TABLE,
    AlertState,
    CheckIn,
    KpiState,
    KrState,
    Subscribed,
    kr_score,
)
from goalledger.projections.alerts import Alert, Raised, alert_id
from goalledger.projections.log_pages import READING_RECORDED, ReadingFacts, as_facts
from goalledger.projections.schema import BEGINNING, from_dec, ts
from goalledger.projections.store import Tx
from goalledger.projections.views import current_reading

log = logging.getLogger(__name__)


class AlertDetector:
    """Follows one projector's batches; `finish` stores what the batch raised."""

    def __init__(self) -> None:
        self.state = AlertState()
        self.raised: list[Raised] = []

    def setup(self, tx: Tx) -> None:
        alerts.ensure_tables(tx)

    def begin(self, tx: Tx, tables: dict[str, str], start: int, flush: Callable[[], None]) -> None:
        """Start a batch of events after `start` on `tables` (`flush` sends queued view rows)."""
        self.tx, self.flush, self.raised = tx, flush, []
        self.state.begin(tx, tables, start)

    def apply(self, position: int, aggregate_id: str, topic: str, e: Any) -> None:
        """Look at one event before its view rows are written."""
        if topic == READING_RECORDED:
            self.reading(position, aggregate_id, as_facts(e))
            return
        handler = HANDLERS.get(topic)
        if handler is not None:
            handler(self, position, aggregate_id, e)

    def reading(self, position: int, aggregate_id: str, e: ReadingFacts) -> None:
        """`apply` for a recorded reading (most events). A back-dated reading is let go
        before its value is parsed: most are."""
        kpi = self.state.kpis.get(e.kpi_id)
        if kpi is None:
            kpi = self.load().kpi(e.kpi_id)
            if kpi is None:
                return
        observed, previous = e.observed, kpi.latest
        if previous is not None and (observed, position) < (previous.observed, previous.position):
            return  # back-dated: the current health stays what it was
        _new_reading(self, e.kpi_id, kpi, position, observed, Decimal(e.value), aggregate_id, e)

    def finish(self) -> None:
        """Store the batch's alerts; queue for sending only those past the live read models
        (a rebuild re-raises history, and history has been sent already)."""
        if not self.raised:
            return
        horizon = alerts.live_position(self.tx)
        news = [r for r in self.raised if r.alert.position > horizon]
        history = [r for r in self.raised if r.alert.position <= horizon]
        alerts.record(self.tx, news, alerts.now())
        alerts.record(self.tx, history, alerts.now(), send=False)

    def committed(self, position: int) -> None:
        self.state.committed(position)

    def raise_alert(self, alert: Alert) -> None:
        self.raised.append(Raised(alert, alerts.subscribers(self.state, alert.kind, alert.team_id)))

    def load(self) -> AlertState:
        """The state, with queued view rows sent first (a lookup may read them)."""
        if not self.state.complete:
            self.flush()
        return self.state


# -- handlers ---------------------------------------------------------------------------


def _team(d: AlertDetector, position: int, aid: str, e: Any) -> None:
    d.load().team_table()[aid] = (_text(e.parent_id), e.check_in_interval_days)


def _cycle(d: AlertDetector, position: int, aid: str, e: Any) -> None:
    d.state.cycles[aid] = (e.starts_on, e.ends_on)


def _kpi_defined(d: AlertDetector, position: int, aid: str, e: Any) -> None:
    d.state.kpis[aid] = KpiState(
        name=e.name, unit=e.unit, team_id=_text(e.team_id),
        thresholds=[(BEGINNING, position, e.thresholds)],
    )  # fmt: skip


def _kpi_changed(d: AlertDetector, position: int, aid: str, e: Any) -> None:
    kpi = d.load().kpi(aid)
    if kpi is not None:
        kpi.name, kpi.unit = e.name, e.unit


def _kpi_thresholds(d: AlertDetector, position: int, aid: str, e: Any) -> None:
    kpi = d.load().kpi(aid)
    if kpi is not None:
        kpi.add_thresholds(ts(e.effective_from), position, e.thresholds)


def _reading_corrected(d: AlertDetector, position: int, aid: str, e: Any) -> None:
    d.flush()
    row = current_reading(d.tx, d.state.t, aid, position, "kpi_id, observed_at")
    kpi = None if row is None else d.load().kpi(row[0])
    if row is not None and kpi is not None:
        _new_reading(d, row[0], kpi, position, row[1], Decimal(e.value), aid, e)


def _new_reading(
    d: AlertDetector, kpi_id: str, kpi: KpiState, position: int, observed: int,
    value: Decimal, key: str, e: Any,
) -> None:  # fmt: skip
    previous = kpi.latest
    if previous is not None and (observed, position) < (previous.observed, previous.position):
        return  # back-dated: the current health stays what it was
    health = kpi.health(observed, value)
    kpi.latest = alert_state.Reading(observed, position, value, health, key)
    if previous is None or previous.health == health:
        return
    change = "recovered to green" if health == "green" else f"turned {health}"
    unit = f" {kpi.unit}" if kpi.unit else ""
    d.raise_alert(
        Alert(
            id=alert_id("kpi_health_changed", kpi_id, position), kind="kpi_health_changed",
            subject_id=kpi_id, team_id=kpi.team_id, position=position, raised_at=e.timestamp,
            title=f"{kpi.name} {change}",
            body=f"{kpi.name} read {value}{unit} at {schema.from_ts(observed).isoformat()}:"
            f" {previous.health} → {health}.",
            data={"kpi_id": kpi_id, "value": str(value), "health": health,
                  "previous_health": previous.health,
                  "observed_at": schema.from_ts(observed).isoformat(),
                  "recovered": health == "green"},
        )
    )  # fmt: skip


def _kr_defined(d: AlertDetector, position: int, aid: str, e: Any) -> None:
    d.state.krs[aid] = KrState(
        title=e.title, kind=e.kind, objective_id=str(e.objective_id), cycle_id=str(e.cycle_id),
        team_id=str(e.team_id), kpi_id=_text(e.kpi_id), start=from_dec(e.start),
        steps_total=len(e.steps), defined_position=position,
        targets=[(ts(e.effective_at), position, from_dec(e.target), from_dec(e.band_low),
                  from_dec(e.band_high), Decimal(e.weight))],
    )  # fmt: skip


def _kr_target(d: AlertDetector, position: int, aid: str, e: Any) -> None:
    kr = d.load().kr(aid)
    if kr is not None:
        kr.targets.append(
            (ts(e.effective_at), position, from_dec(e.target), from_dec(e.band_low),
             from_dec(e.band_high), Decimal(e.weight))
        )  # fmt: skip


def _checked_in(d: AlertDetector, position: int, aid: str, e: Any) -> None:
    state = d.load()
    kr = state.kr(aid)
    if kr is None:
        return
    new = CheckIn(
        ts(e.effective_at), position, from_dec(e.value), e.done, e.steps_done,
        from_dec(e.confidence),
    )  # fmt: skip
    before = kr.check_in
    if before is not None and (new.effective, position) < (before.effective, before.position):
        return  # back-dated behind the latest check-in: nothing current changes
    kr.check_in = new
    cycle = state.cycle(kr.cycle_id)
    team = state.team_table().get(kr.team_id)
    if cycle is None or team is None:
        return
    kpi = state.kpi(kr.kpi_id) if kr.kpi_id is not None else None
    reading = kpi.latest if kpi is not None else None
    at: datetime = max(e.timestamp, e.effective_at)
    # The status before matters only when the check-in leaves the KR off track: judged
    # then alone, it halves the scoring of most check-ins (the projector's largest cost).
    try:
        now = kr_score(kr, new, reading, cycle, team[1], at)
        if now.status != "off_track":
            return
        was = kr_score(kr, before, reading, cycle, team[1], at)
    except (ArithmeticError, ValueError, TypeError) as error:  # never stop the projection
        log.warning("could not judge key result %s for alerts: %s", aid, error)
        return
    if was.status == "off_track":
        return
    progress = None if now.progress is None else str(now.progress.clamped)
    d.raise_alert(
        Alert(
            id=alert_id("key_result_off_pace", aid, position), kind="key_result_off_pace",
            subject_id=aid, team_id=kr.team_id, position=position, raised_at=e.timestamp,
            title=f"{kr.title} fell behind pace",
            body=f"{kr.title} is off track: progress {progress or 'none'} against an expected"
            f" {now.expected} (was {was.status}).",
            data={"key_result_id": aid, "objective_id": kr.objective_id,
                  "progress": progress, "expected": str(now.expected),
                  "confidence": None if new.confidence is None else str(new.confidence),
                  "previous_status": was.status, "status": now.status},
        )
    )  # fmt: skip


def _subscribed(d: AlertDetector, position: int, aid: str, e: Any) -> None:
    kinds, teams = list(e.alert_kinds), sorted(str(t) for t in e.team_ids)
    d.load().live_subscriptions()[aid] = Subscribed(tuple(kinds), frozenset(teams))
    d.tx.execute(
        f"INSERT INTO {SUBSCRIPTIONS_TABLE} VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT DO NOTHING",
        (aid, json.dumps(kinds), json.dumps(teams), e.channel.plugin, position),
    )


def _unsubscribed(d: AlertDetector, position: int, aid: str, e: Any) -> None:
    d.load().live_subscriptions().pop(aid, None)
    d.tx.execute(
        f"UPDATE {SUBSCRIPTIONS_TABLE} SET deleted_position = ?"
        " WHERE id = ? AND deleted_position IS NULL",
        (position, aid),
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


HANDLERS: dict[str, Callable[[AlertDetector, int, str, Any], None]] = {
    Team.Formed.TOPIC: _team,
    Team.Changed.TOPIC: _team,
    Cycle.Defined.TOPIC: _cycle,
    Kpi.Defined.TOPIC: _kpi_defined,
    Kpi.Changed.TOPIC: _kpi_changed,
    Kpi.ThresholdsChanged.TOPIC: _kpi_thresholds,
    Reading.Corrected.TOPIC: _reading_corrected,
    KeyResult.Defined.TOPIC: _kr_defined,
    KeyResult.TargetChanged.TOPIC: _kr_target,
    KeyResult.CheckedIn.TOPIC: _checked_in,
    Subscription.Created.TOPIC: _subscribed,
    Subscription.Deleted.TOPIC: _unsubscribed,
}
