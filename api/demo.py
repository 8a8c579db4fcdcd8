"""Demo data: a small, realistic organisation loaded through the ledger's commands.

Everything is dated relative to `today`, so the demo always looks alive: the quarter
is about 60% through, KPIs have 90 days of daily readings ending today, and check-ins
sit on a weekly grid. Values come from a seeded `random.Random`, so two loads with
the same `today` record the same facts (only ids and recorded timestamps differ).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec

from goalledger.core.errors import DomainError
from goalledger.core.kpis import thresholds_for
from goalledger.core.ledger import Ledger, ReadingInput
from goalledger.core.model import day_start, utc_now

Progress = Callable[[int, int, str], None]

SEED = 20240611
CYCLE_DAYS = 91  # a 13-week quarter
ELAPSED_DAYS = 54  # today is day 54 of 91: about 60% through the quarter
READING_DAYS = 90
READING_BATCH_DAYS = 15  # readings arrive like a fortnightly import, one batch per KPI
CHECK_IN_HOUR = timedelta(hours=16)  # check-ins land late in the afternoon, UTC
COMPANY = ("Acme Analytics", 14)
TEAMS = (("Engineering", 7), ("Sales", 7), ("Customer Success", 14))


class LedgerNotEmpty(DomainError):
    """The demo was asked to load into a ledger that already holds events."""


class DemoSummary(msgspec.Struct, frozen=True):
    """What the demo loaded, by name, and where the log stood afterwards."""

    cycle_id: UUID
    cycle_name: str
    company_id: UUID
    team_ids: dict[str, UUID]  # every team by name, the company included
    objective_ids: dict[str, UUID]  # by title
    key_result_ids: dict[str, UUID]  # by title
    kpi_ids: dict[str, UUID]  # by name
    readings: int
    check_ins: int
    events: int
    position: int


@dataclass(frozen=True, kw_only=True)
class KpiSpec:
    """A demo KPI and the shape of its daily series."""

    key: str
    name: str
    unit: str
    direction: str
    green: Any
    amber: Any
    team: str | None
    source: str
    begin: float  # level 90 days ago
    end: float  # level today
    noise: float  # relative standard deviation
    places: int
    target: Decimal | None = None
    weekend_dip: float = 0.0  # relative drop on Saturdays and Sundays


@dataclass(frozen=True, kw_only=True)
class KrSpec:
    """A demo key result and how its check-ins move."""

    key: str
    title: str
    kind: str
    unit: str = ""
    start: Decimal | None = None
    target: Decimal | None = None
    band: tuple[Decimal, Decimal] | None = None
    weight: Decimal = Decimal(1)
    steps: tuple[str, ...] = ()
    kpi: str | None = None  # the KPI whose readings the KR follows
    reached: float = 0.5  # directional/steps: share of the way done by today
    level: float = 0.0  # stay_*: where the value hovers
    spread: float = 0.0  # directional: share of the range; stay_*: absolute
    places: int = 0
    done_on: int | None = None  # plain milestone: cycle day it gets done
    last_day: int = CYCLE_DAYS  # no check-ins after this cycle day (a stale KR)
    confidence: float = 0.7
    notes: tuple[str, ...] = ("On plan.",)


@dataclass(frozen=True, kw_only=True)
class ObjectiveSpec:
    """A demo objective, its team, its parent and its key results."""

    key: str
    team: str
    title: str
    kind: str
    owner: str
    description: str
    key_results: tuple[KrSpec, ...]
    parent: str | None = None  # "objective:<key>" or "kr:<key>"


D = Decimal

# fmt: off
KPIS = (
    KpiSpec(key="dau", name="Daily active users", unit="users", direction="higher_is_better",
            green=4500, amber=4000, target=D(5000), team="Acme Analytics",
            source="product-analytics", begin=4150, end=4750, noise=0.025, places=0,
            weekend_dip=0.18),
    KpiSpec(key="latency", name="API p95 latency", unit="ms", direction="lower_is_better",
            green=350, amber=450, target=D(250), team="Engineering", source="apm",
            begin=470, end=335, noise=0.04, places=0),
    KpiSpec(key="spend", name="Cloud spend", unit="EUR/day", direction="target_band",
            green=[9000, 11000], amber=[8000, 12500], team="Engineering",
            source="billing-export", begin=10400, end=10100, noise=0.06, places=2,
            weekend_dip=0.08),
    KpiSpec(key="frt", name="Support first response time", unit="h",
            direction="lower_is_better", green=4, amber=8, target=D(2),
            team="Customer Success", source="helpdesk", begin=9.0, end=4.6, noise=0.1,
            places=1),
)

OBJECTIVES = (
    ObjectiveSpec(
        key="growth", team="Acme Analytics", kind="committed", owner="Dana Whitfield",
        title="Become the default analytics platform for mid-market teams",
        description="The company objective every team aligns to this quarter.",
        key_results=(
            KrSpec(key="arr", title="Grow ARR from €2.4M to €3.2M", kind="increase_to",
                   unit="k€", start=D(2400), target=D(3200), weight=D(2), reached=0.55,
                   spread=0.02, confidence=0.75,
                   notes=("Two expansions closed early.", "Renewals on schedule.",
                          "Pipeline coverage 3.1x for the rest of the quarter.")),
            KrSpec(key="nrr", title="Keep net revenue retention above 105%", kind="stay_above",
                   unit="%", start=D(100), target=D(105), level=107.0, spread=1.4, places=1,
                   confidence=0.8,
                   notes=("Expansion revenue steady.", "One large downgrade this month.")),
        ),
    ),
    ObjectiveSpec(
        key="reliable", team="Engineering", kind="committed", owner="Priya Natarajan",
        title="Run a platform customers can rely on", parent="objective:growth",
        description="Fast, available and secure enough that nobody has to ask.",
        key_results=(
            KrSpec(key="latency", title="Cut p95 API latency from 420 ms to 250 ms",
                   kind="decrease_to", unit="ms", start=D(420), target=D(250), kpi="latency",
                   confidence=0.6,
                   notes=("Query cache rolled out to half the fleet.",
                          "Regression from the reporting endpoint, fix in review.",
                          "Connection pooling tuned.")),
            KrSpec(key="uptime", title="Keep monthly uptime above 99.9%", kind="stay_above",
                   unit="%", start=D("99.5"), target=D("99.9"), level=99.95, spread=0.04,
                   places=3, confidence=0.85,
                   notes=("No incidents.", "Short DNS blip, within budget.")),
            KrSpec(key="sso", title="Ship single sign-on", kind="milestone", reached=0.6,
                   steps=("Design review", "SAML support", "OIDC support",
                          "Beta with five customers", "General availability"),
                   confidence=0.7,
                   notes=("Beta customers lined up.", "OIDC provider quirks took a week.")),
        ),
    ),
    ObjectiveSpec(
        key="boring", team="Engineering", kind="aspirational", owner="Tomás Ruiz",
        title="Make shipping boring", parent="objective:growth",
        description="Small, frequent, reversible changes.",
        key_results=(
            KrSpec(key="deploys", title="Increase deploys per week from 12 to 40",
                   kind="increase_to", unit="deploys/wk", start=D(12), target=D(40),
                   reached=0.3, spread=0.08, confidence=0.55,
                   notes=("Merge queue live.", "Flaky tests slowed us down.",
                          "Feature flags for the billing service.")),
            KrSpec(key="pages", title="Keep on-call pages within 0–6 a week",
                   kind="stay_within", unit="pages/wk", band=(D(0), D(6)), level=4.2,
                   spread=2.0, confidence=0.65,
                   notes=("Quiet week.", "Noisy disk alerts, tuned thresholds.")),
            KrSpec(key="cfr", title="Keep change failure rate below 15%", kind="stay_below",
                   unit="%", start=D(25), target=D(15), level=11.5, spread=2.5, places=1,
                   confidence=0.7,
                   notes=("Two rollbacks, both caught by canaries.", "Clean week.")),
        ),
    ),
    ObjectiveSpec(
        key="midmarket", team="Sales", kind="committed", owner="Marcus Osei",
        title="Win the mid-market", parent="kr:arr",
        description="New logos and partners that grow ARR.",
        key_results=(
            KrSpec(key="logos", title="Win new mid-market customers", kind="increase_to",
                   unit="customers", start=D(0), target=D(40), reached=0.5, confidence=0.6,
                   notes=("Strong inbound from the webinar.", "Two deals slipped a week.",
                          "Procurement delays at two prospects.")),
            KrSpec(key="partners", title="Sign two reseller partnerships", kind="milestone",
                   done_on=42, confidence=0.6,
                   notes=("Term sheets with both resellers.", "Legal review in progress.")),
            KrSpec(key="discount", title="Keep average discount within 10–20%",
                   kind="stay_within", unit="%", band=(D(10), D(20)), level=17.0, spread=2.8,
                   places=1, confidence=0.7,
                   notes=("Quarter-end pressure on pricing.", "Held the line on list price.")),
        ),
    ),
    ObjectiveSpec(
        key="references", team="Customer Success", kind="aspirational", owner="Lena Vogel",
        title="Make every customer a reference", parent="objective:growth",
        description="Customers who stay, grow and tell others.",
        key_results=(
            KrSpec(key="csat", title="Raise CSAT from 82% to 92%", kind="increase_to", unit="%",
                   start=D(82), target=D(92), reached=0.65, spread=0.1, places=1,
                   confidence=0.75,
                   notes=("New macros cut back-and-forth.", "Weekend coverage helped.")),
            KrSpec(key="churn", title="Keep monthly logo churn below 2%", kind="stay_below",
                   unit="%", start=D(4), target=D(2), level=1.7, spread=0.35, places=2,
                   confidence=0.7,
                   notes=("Saved two at-risk accounts.", "One churn to a competitor.")),
            # Nobody has checked this one in for weeks: it shows up as stale.
            KrSpec(key="nps", title="Raise NPS from 31 to 50", kind="increase_to", unit="NPS",
                   start=D(31), target=D(50), reached=0.3, spread=0.1, last_day=28,
                   confidence=0.5,
                   notes=("Survey sent to all admins.", "Low response rate so far.")),
        ),
    ),
)
# fmt: on

TARGET_CHANGE = ("logos", 35, D(36), "Two enterprise deals moved to next quarter; re-planned")
THRESHOLD_CHANGE = ("latency", 30, 300, 400, "Tightened after the query cache landed")
CORRECTED = ("dau", 20, "the tracking pipeline replayed a day of events twice")
LATE = ("spend", 12, "billing-export")  # the billing export for that day arrived late


@dataclass(order=True)
class _Step:
    """One command of the demo, ordered by the effective day it belongs to."""

    day: int  # days since the first reading day
    order: int
    label: str = field(compare=False)
    events: int = field(compare=False)
    run: Callable[[], object] = field(compare=False)


class _Demo:
    """Builds the demo's steps (all randomness happens here), then records them."""

    def __init__(self, ledger: Ledger, today: date, actor: str) -> None:
        self.ledger, self.actor, self.today = ledger, actor, today
        self.first_day = today - timedelta(days=READING_DAYS - 1)
        self.starts_on = today - timedelta(days=ELAPSED_DAYS)
        self.ends_on = self.starts_on + timedelta(days=CYCLE_DAYS - 1)
        self.rng = random.Random(SEED)
        self.ids: dict[str, UUID] = {}
        self.steps: list[_Step] = []
        self.series: dict[str, list[Decimal]] = {}
        self.readings = self.check_ins = 0
        self.cycle_name = ""

    # -- planning ----------------------------------------------------------------------

    def plan(self) -> list[_Step]:
        self._plan_organisation()
        for spec in KPIS:
            self._plan_kpi(spec)
        for objective in OBJECTIVES:
            for kr in objective.key_results:
                self._plan_check_ins(objective, kr)
        self._plan_target_change()
        self._plan_threshold_change()
        self._plan_correction()
        self.steps.sort()
        return self.steps

    def _add(self, day: int, label: str, run: Callable[[], object], events: int = 1) -> None:
        self.steps.append(_Step(day, len(self.steps), label, events, run))

    def _cycle_day(self, offset: int) -> int:
        return (self.starts_on - self.first_day).days + offset

    def _plan_organisation(self) -> None:
        company, interval = COMPANY
        self._add(-1, f"team {company}", lambda: self._form_team(company, None, interval))
        for name, days in TEAMS:
            self._add(-1, f"team {name}", lambda n=name, d=days: self._form_team(n, company, d))
        self._add(self._cycle_day(0), "cycle", self._define_cycle)
        for objective in OBJECTIVES:
            self._add(
                self._cycle_day(0),
                f"objective {objective.title}",
                lambda o=objective: self._define_objective(o),
            )
            for kr in objective.key_results:
                self._add(
                    self._cycle_day(0),
                    f"key result {kr.title}",
                    lambda o=objective, k=kr: self._define_key_result(o, k),
                )

    def _plan_kpi(self, spec: KpiSpec) -> None:
        self._add(-1, f"KPI {spec.name}", lambda: self._define_kpi(spec))
        days = [self.first_day + timedelta(days=i) for i in range(READING_DAYS)]
        values = []
        for i, day in enumerate(days):
            level = spec.begin + (spec.end - spec.begin) * i / (READING_DAYS - 1)
            if day.weekday() >= 5:
                level *= 1 - spec.weekend_dip
            values.append(_decimal(level * (1 + self.rng.gauss(0, spec.noise)), spec.places))
        self.series[spec.key] = values
        recorded = list(values)
        late = None
        if spec.key == CORRECTED[0]:  # a bad value now, corrected a few days later
            index = READING_DAYS - 1 - CORRECTED[1]
            recorded[index] = values[index] * 2
        if spec.key == LATE[0]:
            late = READING_DAYS - 1 - LATE[1]
        for begin in range(0, READING_DAYS, READING_BATCH_DAYS):
            window = range(begin, min(begin + READING_BATCH_DAYS, READING_DAYS))
            batch = [(days[i], recorded[i]) for i in window if i != late]
            self._add(
                window[-1],
                f"readings {spec.name}",
                lambda b=batch: self._record(spec, b, spec.source),
                len(batch),
            )
        if late is not None:
            self._add(
                READING_DAYS - 1,
                f"late reading {spec.name}",
                lambda: self._record(spec, [(days[late], values[late])], LATE[2]),
            )

    def _plan_check_ins(self, objective: ObjectiveSpec, kr: KrSpec) -> None:
        interval = dict((COMPANY, *TEAMS))[objective.team]
        confidence = kr.confidence
        for offset in range(interval, min(ELAPSED_DAYS, kr.last_day + 1), interval):
            share = offset / ELAPSED_DAYS
            confidence = min(max(confidence + self.rng.gauss(0, 0.06), 0.1), 1.0)
            fields: dict[str, Any] = {
                "confidence": _decimal(round(confidence * 20) / 20, 2),
                "note": self.rng.choice(kr.notes),
                "effective_at": day_start(self.starts_on + timedelta(days=offset)) + CHECK_IN_HOUR,
            }
            fields.update(self._check_in_value(kr, offset, share))
            self._add(
                self._cycle_day(offset),
                f"check-in {kr.title}",
                lambda k=kr.key, f=fields: self._check_in(k, f),
            )

    def _check_in_value(self, kr: KrSpec, offset: int, share: float) -> dict[str, Any]:
        """The value (or done flag, or steps done) reported `offset` days into the cycle."""
        if kr.kpi is not None:
            return {"value": self.series[kr.kpi][self._cycle_day(offset)]}
        if kr.kind == "milestone" and kr.steps:
            done = min(len(kr.steps), int(kr.reached * len(kr.steps) * share + 0.5))
            return {"steps_done": done, "done": done == len(kr.steps)}
        if kr.kind == "milestone":
            return {"done": kr.done_on is not None and offset >= kr.done_on}
        if kr.kind.startswith("stay_"):  # none of the demo's levels can go below zero
            value = max(kr.level + self.rng.gauss(0, kr.spread), 0.0)
            return {"value": _decimal(value, kr.places)}
        assert kr.start is not None and kr.target is not None
        span = float(kr.target - kr.start)
        noise = self.rng.gauss(0, kr.spread) * abs(span)
        return {"value": _decimal(float(kr.start) + span * kr.reached * share + noise, kr.places)}

    def _plan_target_change(self) -> None:
        key, offset, target, reason = TARGET_CHANGE
        self._add(
            self._cycle_day(offset),
            "target change",
            lambda: self.ledger.change_key_result_target(
                self.ids[f"kr:{key}"],
                target=target,
                reason=reason,
                actor=self.actor,
                effective_at=day_start(self.starts_on + timedelta(days=offset)),
            ),
        )

    def _plan_threshold_change(self) -> None:
        key, days_ago, green, amber, reason = THRESHOLD_CHANGE
        spec = next(s for s in KPIS if s.key == key)
        self._add(
            READING_DAYS - 1 - days_ago,
            "threshold change",
            lambda: self.ledger.change_kpi_thresholds(
                self.ids[f"kpi:{key}"],
                thresholds=thresholds_for(spec.direction, green, amber),
                effective_from=day_start(self.today - timedelta(days=days_ago)),
                actor=self.actor,
                reason=reason,
            ),
        )

    def _plan_correction(self) -> None:
        key, days_ago, why = CORRECTED
        day = self.today - timedelta(days=days_ago)
        index = READING_DAYS - 1 - days_ago
        value = self.series[key][index]
        # Noticed a few days later, and never before the bad reading's batch was recorded.
        batch_end = min(
            index // READING_BATCH_DAYS * READING_BATCH_DAYS + READING_BATCH_DAYS - 1,
            READING_DAYS - 1,
        )
        self._add(
            max(index + 3, batch_end),
            "correction",
            lambda: self.ledger.correct_reading(
                self.ids[f"kpi:{key}"],
                _reading_id(key, day),
                value=value,
                reason=f"Double-counted: {why} on {day.isoformat()}",
                actor=self.actor,
            ),
        )

    # -- recording ---------------------------------------------------------------------

    def _form_team(self, name: str, parent: str | None, interval: int) -> None:
        parent_id = None if parent is None else self.ids[f"team:{parent}"]
        written = self.ledger.form_team(
            name=name, parent_id=parent_id, check_in_interval_days=interval, actor=self.actor
        )
        self.ids[f"team:{name}"] = written.id

    def _define_cycle(self) -> None:
        middle = self.starts_on + timedelta(days=CYCLE_DAYS // 2)
        self.cycle_name = f"{middle.year}-Q{(middle.month - 1) // 3 + 1}"
        written = self.ledger.define_cycle(
            name=self.cycle_name, starts_on=self.starts_on, ends_on=self.ends_on, actor=self.actor
        )
        self.ids["cycle"] = written.id

    def _define_kpi(self, spec: KpiSpec) -> None:
        written = self.ledger.define_kpi(
            name=spec.name,
            unit=spec.unit,
            direction=spec.direction,
            target=spec.target,
            thresholds=thresholds_for(spec.direction, spec.green, spec.amber),
            frequency="daily",
            team_id=None if spec.team is None else self.ids[f"team:{spec.team}"],
            effective_at=day_start(self.first_day - timedelta(days=1)),
            actor=self.actor,
        )
        self.ids[f"kpi:{spec.key}"] = written.id

    def _define_objective(self, spec: ObjectiveSpec) -> None:
        kind, _, key = (spec.parent or "::").partition(":")
        written = self.ledger.define_objective(
            title=spec.title,
            description=spec.description,
            cycle_id=self.ids["cycle"],
            team_id=self.ids[f"team:{spec.team}"],
            owner=spec.owner,
            kind=spec.kind,
            parent_objective_id=self.ids[f"objective:{key}"] if kind == "objective" else None,
            parent_key_result_id=self.ids[f"kr:{key}"] if kind == "kr" else None,
            effective_at=day_start(self.starts_on),
            actor=self.actor,
        )
        self.ids[f"objective:{spec.key}"] = written.id

    def _define_key_result(self, objective: ObjectiveSpec, spec: KrSpec) -> None:
        written = self.ledger.define_key_result(
            self.ids[f"objective:{objective.key}"],
            title=spec.title,
            kind=spec.kind,
            start=spec.start,
            target=spec.target,
            band_low=spec.band[0] if spec.band else None,
            band_high=spec.band[1] if spec.band else None,
            unit=spec.unit,
            weight=spec.weight,
            kpi_id=None if spec.kpi is None else self.ids[f"kpi:{spec.kpi}"],
            steps=list(spec.steps),
            effective_at=day_start(self.starts_on),
            actor=self.actor,
        )
        self.ids[f"kr:{spec.key}"] = written.id

    def _record(self, spec: KpiSpec, batch: list[tuple[date, Decimal]], source: str) -> None:
        kpi_id = self.ids[f"kpi:{spec.key}"]
        readings = [
            ReadingInput(kpi_id, _reading_id(spec.key, day), value, day_start(day))
            for day, value in batch
        ]
        self.readings += len(
            self.ledger.record_readings(readings, source=source, actor=self.actor).recorded
        )

    def _check_in(self, key: str, fields: dict[str, Any]) -> None:
        self.ledger.check_in(self.ids[f"kr:{key}"], actor=self.actor, **fields)
        self.check_ins += 1

    def summary(self, events: int) -> DemoSummary:
        def named(prefix: str, specs: Any, label: str) -> dict[str, UUID]:
            return {getattr(s, label): self.ids[f"{prefix}:{s.key}"] for s in specs}

        team_names = [COMPANY[0], *(name for name, _ in TEAMS)]
        return DemoSummary(
            cycle_id=self.ids["cycle"],
            cycle_name=self.cycle_name,
            company_id=self.ids[f"team:{COMPANY[0]}"],
            team_ids={name: self.ids[f"team:{name}"] for name in team_names},
            objective_ids=named("objective", OBJECTIVES, "title"),
            key_result_ids=named("kr", [k for o in OBJECTIVES for k in o.key_results], "title"),
            kpi_ids=named("kpi", KPIS, "name"),
            readings=self.readings,
            check_ins=self.check_ins,
            events=events,
            position=self.ledger.head_position(),
        )


def load_demo(
    ledger: Ledger,
    *,
    today: date,
    actor: str = "demo",
    progress: Progress | None = None,
    force: bool = False,
) -> DemoSummary:
    """Load the demo organisation into an empty ledger (or any ledger, with `force`)."""
    if day_start(today) > utc_now():
        raise DomainError("today", "must not lie in the future")
    head = ledger.head_position()
    if head and not force:
        raise LedgerNotEmpty(
            "ledger",
            f"already holds events (head position {head}); the demo loads only into "
            "an empty ledger unless forced",
        )
    demo = _Demo(ledger, today, actor)
    steps = demo.plan()
    total = sum(step.events for step in steps)
    done = 0
    if progress is not None:
        progress(done, total, "starting")
    for step in steps:
        step.run()
        done += step.events
        if progress is not None:
            progress(done, total, step.label)
    return demo.summary(done)


def _reading_id(kpi_key: str, day: date) -> str:
    return f"{kpi_key}-{day.isoformat()}"


def _decimal(number: float, places: int) -> Decimal:
    """A float rounded to `places` as an exact Decimal (format rounding is deterministic)."""
    return Decimal(f"{number:.{places}f}")
