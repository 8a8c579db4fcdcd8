"""Time-based alerts, raised by a clock tick rather than by an event.

- `check_in_overdue`: a key result of an active objective in a current cycle has gone
  longer than its team's check-in interval without a check-in (the scoreboard calls it
  `stale`). Its id comes from the date it fell due, so it is raised once per missed
  check-in, however often the clock ticks and however many workers run.
- `cycle_ending`: an open cycle ends within `ending_within` (default 7 days); its id
  comes from the cycle's end date.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from goalledger.core.model import day_start
from goalledger.projections import alerts
from goalledger.projections.alert_state import AlertState
from goalledger.projections.alerts import Alert, Raised, alert_id
from goalledger.projections.queries import Views, latest
from goalledger.projections.store import ViewStore

EVERYTHING = 2**62  # a position bound past any ledger


class AlertClock:
    """Raises the time-based alerts that are due, each once."""

    def __init__(
        self,
        store: ViewStore,
        views: Views,
        *,
        ending_within: timedelta = timedelta(days=7),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.views = store, views
        self.ending_within, self.clock = ending_within, clock

    def due(self, now: datetime) -> list[Alert]:
        """The time-based alerts that hold at `now` (raised before or not)."""
        today = now.date()
        with self.store.read() as tx:
            t = self.views.tables(tx)
            cycles = tx.all(
                f"SELECT id, name, starts_on, ends_on, defined_position FROM {t['cycles']}"
                " WHERE status = 'open' AND starts_on <= ? AND ends_on >= ? ORDER BY id",
                (today.isoformat(), today.isoformat()),
            )
            sql = f"SELECT * FROM {latest(t['teams'], 'id, check_in_interval_days')} x"
            intervals = dict(tx.all(sql, (EVERYTHING,)))
        found: list[Alert] = []
        for cycle_id, name, starts_on, ends_on, position in cycles:
            ends = date.fromisoformat(ends_on)
            if ends - today <= self.ending_within:
                found.append(_cycle_ending(cycle_id, name, ends, today, position, now))
            board = self.views.scoreboard(cycle_id=cycle_id, as_of=now)
            for objective in board.objectives:
                if objective.status != "active":
                    continue
                team = str(objective.team_id)
                interval = timedelta(days=intervals.get(team, 7))
                for kr in objective.key_results:
                    if kr.status != "stale":
                        continue
                    since = kr.last_check_in_at or day_start(date.fromisoformat(starts_on))
                    due = since + interval
                    found.append(
                        Alert(
                            id=alert_id("check_in_overdue", str(kr.id), due.isoformat()),
                            kind="check_in_overdue", subject_id=str(kr.id), team_id=team,
                            position=board.position, raised_at=now,
                            title=f"Check-in overdue: {kr.title}",
                            body=f"{kr.title} ({objective.title}) was due a check-in by"
                            f" {due.isoformat()}.",
                            data={"key_result_id": str(kr.id), "objective_id": str(objective.id),
                                  "due_at": due.isoformat(), "cycle_id": cycle_id,
                                  "last_check_in_at": kr.last_check_in_at and
                                  kr.last_check_in_at.isoformat()},
                        )
                    )  # fmt: skip
        return found

    def tick(self) -> list[Alert]:
        """Store the due alerts not raised yet and queue them for their subscribers;
        returns the new ones."""
        now = self.clock()
        found = self.due(now)
        if not found:
            return []
        with self.store.transaction() as tx:
            state = AlertState()
            state.reset(complete=False)
            state.begin(tx, self.views.tables(tx), EVERYTHING)
            raised = [Raised(a, alerts.subscribers(state, a.kind, a.team_id)) for a in found]
            return alerts.record(tx, raised, now)


def _cycle_ending(
    cycle_id: str, name: str, ends: date, today: date, position: int, now: datetime
) -> Alert:
    days = (ends - today).days
    left = "ends today" if days == 0 else f"ends in {days} day{'s' if days != 1 else ''}"
    return Alert(
        id=alert_id("cycle_ending", cycle_id, ends.isoformat()), kind="cycle_ending",
        subject_id=cycle_id, team_id=None, position=position, raised_at=now,
        title=f"Cycle {name} {left}",
        body=f"Cycle {name} ends on {ends.isoformat()}: time for final check-ins.",
        data={"cycle_id": cycle_id, "ends_on": ends.isoformat(), "days_left": days},
    )  # fmt: skip
