"""Domain invariants, pure and in memory: each refusal names the offending field."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from uuid import uuid4

import pytest

from goalledger.core.cycles import Cycle
from goalledger.core.errors import DomainError
from goalledger.core.kpis import Kpi, Reading, Thresholds, thresholds_for
from goalledger.core.model import utc_now
from goalledger.core.objectives import KeyResult, Objective
from goalledger.core.teams import Team
from goalledger.core.tokens import ROLES, Token

ACTOR = "alice"


@contextmanager
def refused(field: str) -> Iterator[None]:
    """Expect a `DomainError` about `field`."""
    with pytest.raises(DomainError) as raised:
        yield
    assert raised.value.field == field, raised.value


def objective() -> Objective:
    return Objective.define(
        title="Make the platform fast",
        description="",
        cycle_id=uuid4(),
        team_id=uuid4(),
        owner="bob",
        kind="committed",
        actor=ACTOR,
    )


def key_result(kind: str = "increase_to", **fields: object) -> KeyResult:
    figures: dict[str, object] = {
        "increase_to": {"start": D(0), "target": D(100)},
        "decrease_to": {"start": D(100), "target": D(0)},
        "stay_within": {"band_low": D(10), "band_high": D(20)},
        "milestone": {"steps": ["design", "build", "ship"]},
    }.get(kind, {"target": D(50)})
    return KeyResult.define(
        objective=objective(), title="A key result", kind=kind, actor=ACTOR, **figures | fields
    )


def pending_topics(aggregate: KeyResult) -> list[str]:
    return [type(event).TOPIC for event in aggregate.collect_events()]


# -- key results -------------------------------------------------------------------------


@pytest.mark.parametrize("weight", [D(0), D("-0.5")])
def test_key_result_weight_must_be_positive(weight: D) -> None:
    with refused("weight"):
        key_result(weight=weight)
    kr = key_result(weight=D("0.25"))
    with refused("weight"):
        kr.change_target(weight=weight, actor=ACTOR, reason="rebalance")
    assert kr.weight == D("0.25")


@pytest.mark.parametrize("confidence", [D("-0.01"), D("1.01")])
def test_confidence_outside_zero_to_one_is_refused(confidence: D) -> None:
    kr = key_result()
    with refused("confidence"):
        kr.check_in(value=D(10), confidence=confidence, actor=ACTOR)
    assert kr.check_ins == 0
    assert pending_topics(kr) == ["goalledger/key-result/defined"]


def test_confidence_edges_are_accepted() -> None:
    kr = key_result()
    kr.check_in(value=D(10), confidence=D(0), actor=ACTOR)
    kr.check_in(value=D(20), confidence=D(1), actor=ACTOR)
    assert kr.check_ins == 2


def test_stay_within_band_low_must_not_exceed_high() -> None:
    with refused("band_low"):
        key_result("stay_within", band_low=D(21), band_high=D(20))
    assert key_result("stay_within", band_low=D(20), band_high=D(20)).band_low == D(20)
    kr = key_result("stay_within")
    with refused("band_low"):
        kr.change_target(band_low=D(30), actor=ACTOR, reason="tighter")


@pytest.mark.parametrize(
    ("kind", "start", "target"), [("increase_to", D(10), D(9)), ("decrease_to", D(10), D(11))]
)
def test_target_must_point_the_kind_s_way(kind: str, start: D, target: D) -> None:
    with refused("target"):
        key_result(kind, start=start, target=target)
    assert key_result(kind, start=start, target=start).target == start  # start == target is fine


def test_increase_to_needs_start_and_target() -> None:
    with refused("start"):
        key_result("increase_to", start=None)
    with refused("target"):
        key_result("increase_to", target=None)


def test_milestone_check_in_takes_done_or_steps_and_refuses_a_value() -> None:
    kr = key_result("milestone")
    with refused("value"):
        kr.check_in(value=D(1), done=True, actor=ACTOR)
    with refused("done"):
        kr.check_in(actor=ACTOR)
    with refused("steps_done"):
        kr.check_in(steps_done=4, actor=ACTOR)
    kr.check_in(steps_done=2, actor=ACTOR)
    kr.check_in(done=True, actor=ACTOR)
    assert kr.check_ins == 2


def test_other_kinds_need_a_value_and_refuse_done() -> None:
    kr = key_result("stay_below")
    with refused("value"):
        kr.check_in(actor=ACTOR)
    with refused("done"):
        kr.check_in(value=D(3), done=True, actor=ACTOR)
    assert kr.check_ins == 0


def test_future_effective_at_is_refused_back_dating_is_allowed() -> None:
    kr = key_result()
    with refused("effective_at"):
        kr.check_in(value=D(5), effective_at=utc_now() + timedelta(hours=1), actor=ACTOR)
    last_month = utc_now() - timedelta(days=30)
    kr.check_in(value=D(5), effective_at=last_month, actor=ACTOR)
    checked_in = kr.collect_events()[-1]
    assert isinstance(checked_in, KeyResult.CheckedIn)
    assert checked_in.effective_at == last_month


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2026, 1, 15, 12, 0)
    with refused("effective_at"):
        key_result().check_in(value=D(5), effective_at=naive, actor=ACTOR)
    with refused("observed_at"):
        Reading.record(
            kpi_id=uuid4(), reading_id="r1", value=D(1), observed_at=naive, source="x", actor=ACTOR
        )
    with refused("effective_from"):
        kpi().change_thresholds(
            thresholds=thresholds_for("higher_is_better", 90, 80), effective_from=naive, actor=ACTOR
        )
    with refused("expires_at"):
        Token.issue(name="ci", role="viewer", team_id=None, expires_at=naive, actor=ACTOR)


def test_target_change_requires_a_reason() -> None:
    kr = key_result()
    for reason in (None, "", "   "):
        with refused("reason"):
            kr.change_target(target=D(120), actor=ACTOR, reason=reason)
    kr.change_target(target=D(120), actor=ACTOR, reason="board raised the bar")
    assert kr.target == D(120)


# -- cycles and objectives ---------------------------------------------------------------


@pytest.mark.parametrize("ends_on", [date(2026, 1, 1), date(2025, 12, 31)])
def test_cycle_must_end_after_it_starts(ends_on: date) -> None:
    with refused("ends_on"):
        Cycle.define(name="2026-Q1", starts_on=date(2026, 1, 1), ends_on=ends_on, actor=ACTOR)


def test_objective_aligns_to_one_parent_kind_only() -> None:
    with refused("parent_key_result_id"):
        Objective.define(
            title="Both",
            description="",
            cycle_id=uuid4(),
            team_id=uuid4(),
            owner="bob",
            kind="aspirational",
            parent_objective_id=uuid4(),
            parent_key_result_id=uuid4(),
            actor=ACTOR,
        )
    child = objective()
    with refused("parent_key_result_id"):
        child.align(parent_objective_id=uuid4(), parent_key_result_id=uuid4(), actor=ACTOR)
    parent_kr = uuid4()
    child.align(parent_objective_id=None, parent_key_result_id=parent_kr, actor=ACTOR)
    assert (child.parent_objective_id, child.parent_key_result_id) == (None, parent_kr)


def test_team_cannot_be_its_own_parent() -> None:
    team = Team.form(name="Platform", parent_id=None, actor=ACTOR)
    with refused("parent_id"):
        team.change(parent_id=team.id, actor=ACTOR)
    with refused("check_in_interval_days"):
        team.change(check_in_interval_days=0, actor=ACTOR)


# -- KPIs, readings and tokens -----------------------------------------------------------


def kpi() -> Kpi:
    return Kpi.define(
        name="Uptime",
        unit="%",
        direction="higher_is_better",
        target=D("99.9"),
        thresholds=thresholds_for("higher_is_better", "99.9", "99.5"),
        frequency="daily",
        actor=ACTOR,
    )


@pytest.mark.parametrize(
    ("direction", "green", "amber", "field"),
    [
        ("target_band", [60, 40], [30, 70], "thresholds.green"),
        ("target_band", [40, 60], [70, 30], "thresholds.amber"),
        ("target_band", [40, 60], [45, 70], "thresholds.amber"),  # amber must contain green
        ("target_band", 50, [30, 70], "thresholds.green"),
        ("higher_is_better", 80, 90, "thresholds.amber"),
        ("lower_is_better", 300, 200, "thresholds.amber"),
        ("sideways", 1, 2, "direction"),
    ],
)
def test_kpi_thresholds_must_be_ordered(direction: str, green: object, amber: object, field: str):
    with refused(field):
        thresholds_for(direction, green, amber)


def test_correction_requires_a_reason() -> None:
    reading = Reading.record(
        kpi_id=uuid4(),
        reading_id="2026-02-01",
        value=D("99.2"),
        observed_at=datetime(2026, 2, 1, tzinfo=UTC),
        source="manual",
        actor=ACTOR,
    )
    with refused("reason"):
        reading.correct(value=D("99.4"), reason=" ", actor=ACTOR)
    reading.correct(value=D("99.4"), reason="late samples", actor=ACTOR)
    assert reading.value == D("99.4")


def test_tokens_take_exactly_the_design_s_roles() -> None:
    assert set(ROLES) == {"viewer", "contributor", "manager", "auditor", "admin"}
    for role in ROLES:
        token, secret = Token.issue(name=f"{role} token", role=role, team_id=None, actor=ACTOR)
        assert token.role == role
        assert token.accepts(secret, utc_now())
    with refused("role"):
        Token.issue(name="root", role="owner", team_id=None, actor=ACTOR)


@pytest.mark.parametrize(
    ("direction", "green", "amber", "expected"),
    [
        ("higher_is_better", 90, 80, {"95": "green", "90": "green", "89.99": "amber"}),
        ("higher_is_better", 90, 80, {"80": "amber", "79.99": "red"}),
        ("lower_is_better", 200, 300, {"150": "green", "200": "green", "200.01": "amber"}),
        ("lower_is_better", 200, 300, {"300": "amber", "300.01": "red"}),
        ("target_band", [40, 60], [30, 70], {"40": "green", "50": "green", "60": "green"}),
        ("target_band", [40, 60], [30, 70], {"39.9": "amber", "30": "amber", "70": "amber"}),
        ("target_band", [40, 60], [30, 70], {"29.9": "red", "70.1": "red"}),
    ],
)
def test_health_bands_are_inclusive_at_their_edges(
    direction: str, green: object, amber: object, expected: dict[str, str]
) -> None:
    thresholds = thresholds_for(direction, green, amber)
    assert {value: thresholds.health(D(value)) for value in expected} == expected


def test_a_missing_bound_is_open_ended() -> None:
    assert Thresholds(green_low=D(90)).health(D(10**9)) == "green"
    assert Thresholds(green_high=D(5), amber_high=D(9)).health(D(-(10**9))) == "green"


@pytest.mark.parametrize(
    ("direction", "thresholds"),
    [
        ("higher_is_better", Thresholds(green_high=D(1), amber_high=D(2))),
        ("lower_is_better", Thresholds(green_low=D(1), amber_low=D(0))),
        ("target_band", Thresholds(green_low=D(1), green_high=D(2))),
        (
            "target_band",
            Thresholds(D(1), D(5), D(2), D(4)),  # amber inside green
        ),
    ],
)
def test_thresholds_must_fit_the_direction(direction: str, thresholds: Thresholds) -> None:
    with pytest.raises(DomainError) as refused:
        Kpi.define(
            name="K", unit="", direction=direction, target=None, thresholds=thresholds,
            frequency="daily", actor="t",
        )  # fmt: skip
    assert refused.value.field.startswith("thresholds")
