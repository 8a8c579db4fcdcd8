"""What alert detection must know at each ledger position, kept between events.

Each KPI's thresholds and latest reading (with its health), each key result's targets
and latest check-in, cycles, teams and live subscriptions. The state is held in memory
by one projector while it applies consecutive batches; when a batch starts anywhere
else (a restart, another process applied batches, a failed batch) it is dropped and
reloaded piecemeal from the read models, which then hold exactly the state at the
batch's start. Both ways give the same answers: the state at a position is a function
of the events up to it.
"""

from __future__ import annotations

import bisect
import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

import msgspec

from goalledger.core.kpis import Thresholds
from goalledger.core.scoring import LINEAR_V1, KeyResultFacts, KeyResultScore
from goalledger.projections.queries import latest
from goalledger.projections.schema import from_dec, from_ts, ts
from goalledger.projections.store import Tx

SUBSCRIPTIONS_TABLE = "gl_alert_subscriptions"
# Off-pace is judged under the default rule: detection must not depend on which
# plugins a process loaded, or two processes would raise different alerts.
RULE = LINEAR_V1


class Reading(msgspec.Struct):
    """A KPI's latest reading (by observed time) and its health then."""

    observed: int
    position: int
    value: Decimal
    health: str
    reading_key: str


class KpiState(msgspec.Struct):
    name: str
    unit: str
    team_id: str | None
    thresholds: list[tuple[int, int, Thresholds]]  # (effective_from, position, bounds)
    latest: Reading | None = None

    def health(self, observed: int, value: Decimal) -> str:
        """The health of `value` under the thresholds in force at `observed`."""
        starts = [start for start, _, _ in self.thresholds]
        index = max(bisect.bisect_right(starts, observed) - 1, 0)
        return self.thresholds[index][2].health(value)

    def add_thresholds(self, start: int, position: int, bounds: Thresholds) -> None:
        """New thresholds; the latest reading is judged again under them."""
        self.thresholds.append((start, position, bounds))
        self.thresholds.sort(key=lambda item: (item[0], item[1]))
        if self.latest is not None:
            self.latest.health = self.health(self.latest.observed, self.latest.value)


class CheckIn(msgspec.Struct, frozen=True):
    effective: int
    position: int
    value: Decimal | None
    done: bool | None
    steps_done: int | None
    confidence: Decimal | None


class KrState(msgspec.Struct):
    title: str
    kind: str
    objective_id: str
    cycle_id: str
    team_id: str
    kpi_id: str | None
    start: Decimal | None
    steps_total: int
    defined_position: int
    # (effective_at, position, target, band_low, band_high, weight)
    targets: list[tuple[int, int, Decimal | None, Decimal | None, Decimal | None, Decimal]]
    check_in: CheckIn | None = None


class Subscribed(msgspec.Struct, frozen=True):
    alert_kinds: tuple[str, ...]
    team_ids: frozenset[str]


class AlertState:
    """The detection state, loaded lazily from one generation's tables when partial."""

    def __init__(self) -> None:
        self.valid_at: int | None = None
        self.reset(complete=True)

    def reset(self, *, complete: bool) -> None:
        """Forget everything; `complete` means the ledger is empty up to here."""
        self.complete = complete
        self.kpis: dict[str, KpiState | None] = {}
        self.krs: dict[str, KrState | None] = {}
        self.cycles: dict[str, tuple[date, date] | None] = {}
        self.teams: dict[str, tuple[str | None, int]] | None = {} if complete else None
        self.subscriptions: dict[str, Subscribed] | None = {} if complete else None

    def begin(self, tx: Tx, tables: dict[str, str], start: int) -> None:
        """Start a batch after `start`; keep the state only if it reflects `start`."""
        if self.valid_at != start:
            self.reset(complete=start == 0)
        self.valid_at = None  # until the batch commits
        self.tx, self.t, self.start = tx, tables, start

    def committed(self, position: int) -> None:
        """The batch committed: the state now reflects `position`."""
        self.valid_at = position

    # -- lookups (loading from the read models when the state is partial) -----------------

    def kpi(self, kpi_id: str) -> KpiState | None:
        if kpi_id not in self.kpis:
            self.kpis[kpi_id] = None if self.complete else self._load_kpi(kpi_id)
        return self.kpis[kpi_id]

    def kr(self, kr_id: str) -> KrState | None:
        if kr_id not in self.krs:
            self.krs[kr_id] = None if self.complete else self._load_kr(kr_id)
        return self.krs[kr_id]

    def cycle(self, cycle_id: str) -> tuple[date, date] | None:
        if cycle_id not in self.cycles:
            row = None
            if not self.complete:
                row = self.tx.one(
                    f"SELECT starts_on, ends_on FROM {self.t['cycles']} WHERE id = ?", (cycle_id,)
                )
            self.cycles[cycle_id] = (
                None if row is None else (date.fromisoformat(row[0]), date.fromisoformat(row[1]))
            )
        return self.cycles[cycle_id]

    def team_table(self) -> dict[str, tuple[str | None, int]]:
        if self.teams is None:
            columns = "id, parent_id, check_in_interval_days"
            sql = f"SELECT * FROM {latest(self.t['teams'], columns)} x"
            self.teams = {row[0]: (row[1], row[2]) for row in self.tx.all(sql, (self.start,))}
        return self.teams

    def lineage(self, team_id: str | None) -> set[str] | None:
        """A team and its ancestors (None for an org-wide subject)."""
        if team_id is None:
            return None
        teams, found, current = self.team_table(), set(), team_id
        while current is not None and current not in found:
            found.add(current)
            current = teams.get(current, (None, 0))[0]
        return found

    def live_subscriptions(self) -> dict[str, Subscribed]:
        if self.subscriptions is None:
            rows = self.tx.all(
                f"SELECT id, alert_kinds, team_ids FROM {SUBSCRIPTIONS_TABLE}"
                " WHERE created_position <= ? AND (deleted_position IS NULL"
                " OR deleted_position > ?)",
                (self.start, self.start),
            )
            self.subscriptions = {
                row[0]: Subscribed(tuple(json.loads(row[1])), frozenset(json.loads(row[2])))
                for row in rows
            }
        return self.subscriptions

    def _load_kpi(self, kpi_id: str) -> KpiState | None:
        t, tx = self.t, self.tx
        row = tx.one(f"SELECT team_id FROM {t['kpis']} WHERE id = ?", (kpi_id,))
        text = tx.one(
            f"SELECT name, unit FROM {t['kpi_texts']} WHERE id = ? ORDER BY position DESC LIMIT 1",
            (kpi_id,),
        )
        if row is None or text is None:
            return None
        bounds = tx.all(
            f"SELECT effective_from, position, green_low, green_high, amber_low, amber_high"
            f" FROM {t['kpi_thresholds']} WHERE kpi_id = ? ORDER BY effective_from, position",
            (kpi_id,),
        )
        state = KpiState(
            name=text[0], unit=text[1], team_id=row[0],
            thresholds=[(b[0], b[1], Thresholds(*(from_dec(v) for v in b[2:]))) for b in bounds],
        )  # fmt: skip
        reading = tx.one(
            f"SELECT observed_at, position, value, reading_key FROM {t['readings']}"
            " WHERE kpi_id = ? AND superseded_by IS NULL"
            " ORDER BY observed_at DESC, position DESC LIMIT 1",
            (kpi_id,),
        )
        if reading is not None:
            value = Decimal(reading[2])
            health = state.health(reading[0], value)
            state.latest = Reading(reading[0], reading[1], value, health, reading[3])
        return state

    def _load_kr(self, kr_id: str) -> KrState | None:
        t, tx = self.t, self.tx
        row = tx.one(
            f"SELECT title, kind, objective_id, cycle_id, team_id, kpi_id, start_value,"
            f" steps_total, defined_position FROM {t['key_results']} WHERE id = ?",
            (kr_id,),
        )
        if row is None:
            return None
        targets = [
            (r[0], r[1], from_dec(r[2]), from_dec(r[3]), from_dec(r[4]), Decimal(r[5]))
            for r in tx.all(
                f"SELECT effective_at, position, target, band_low, band_high, weight"
                f" FROM {t['kr_targets']} WHERE kr_id = ?",
                (kr_id,),
            )
        ]
        state = KrState(
            title=row[0], kind=row[1], objective_id=row[2], cycle_id=row[3], team_id=row[4],
            kpi_id=row[5], start=from_dec(row[6]), steps_total=row[7], defined_position=row[8],
            targets=targets,
        )  # fmt: skip
        last = tx.one(
            f"SELECT effective_at, position, value, done, steps_done, confidence"
            f" FROM {t['check_ins']} WHERE kr_id = ?"
            f" ORDER BY effective_at DESC, position DESC LIMIT 1",
            (kr_id,),
        )
        if last is not None:
            state.check_in = CheckIn(
                last[0], last[1], from_dec(last[2]), None if last[3] is None else bool(last[3]),
                last[4], from_dec(last[5]),
            )  # fmt: skip
        return state


def kr_score(
    kr: KrState,
    check_in: CheckIn | None,
    reading: Reading | None,
    cycle: tuple[date, date],
    interval_days: int,
    at: datetime,
) -> KeyResultScore:
    """A key result's progress, pace and status at `at`, as the scoreboard judges it."""
    moment = ts(at)
    targets = kr.targets
    first = targets[0] if len(targets) == 1 else None
    if first is not None and (first[0] <= moment or first[1] == kr.defined_position):
        chosen = first  # most KRs never change target: skip the search
    else:
        eligible = [t for t in targets if t[0] <= moment or t[1] == kr.defined_position]
        chosen = max(eligible, key=_target_order)
    _, _, target, band_low, band_high, weight = chosen
    value: Decimal | None = None
    done: bool | None = None
    steps_done: int | None = None
    confidence: Decimal | None = None
    checked_at: int | None = None
    if check_in is not None and check_in.effective <= moment:
        value, done, steps_done = check_in.value, check_in.done, check_in.steps_done
        confidence, checked_at = check_in.confidence, check_in.effective
    if kr.kpi_id is not None and reading is not None and reading.observed <= moment:
        value = reading.value  # a KPI-linked KR follows the KPI's latest reading
        checked_at = max(checked_at or reading.observed, reading.observed)
    facts = KeyResultFacts(
        kind=kr.kind, start=kr.start, target=target, band_low=band_low, band_high=band_high,
        weight=weight, value=value, done=done, steps_done=steps_done, confidence=confidence,
        steps_total=kr.steps_total, last_check_in_at=from_ts(checked_at),
    )  # fmt: skip
    return RULE.score_key_result(
        facts, starts_on=cycle[0], ends_on=cycle[1], at=at,
        check_in_interval=_days(interval_days),
    )  # fmt: skip


def _target_order(target: tuple[int, int, Any, Any, Any, Any]) -> tuple[int, int]:
    return target[0], target[1]


@lru_cache(maxsize=64)
def _days(days: int) -> timedelta:
    return timedelta(days=days)
