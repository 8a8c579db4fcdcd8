"""Unit and property tests for goalledger.core.scoring."""

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, localcontext

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goalledger.core.scoring import (
    BUILTIN_RULES,
    KR_KINDS,
    LINEAR_V1,
    GradeBands,
    KeyResultFacts,
    KeyResultScore,
    Progress,
    ScoringRule,
)

D = Decimal
RULE = LINEAR_V1

# A ten-day cycle: each elapsed day adds exactly 0.1 to the expected progress.
STARTS_ON, ENDS_ON = date(2026, 1, 1), date(2026, 1, 10)
CYCLE_BEGIN, CYCLE_END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 11, tzinfo=UTC)
MIDDLE = datetime(2026, 1, 6, tzinfo=UTC)  # expected progress 0.5
INTERVAL = timedelta(days=7)

# No deadline: timing on a loaded CI machine is not what these properties are about.
PROPERTY = settings(deadline=None, max_examples=200)


def facts(kind: str, **fields: object) -> KeyResultFacts:
    return KeyResultFacts(kind, **fields)  # type: ignore[arg-type]


def progress(kind: str, **fields: object) -> tuple[Decimal, Decimal] | None:
    result = RULE.progress(facts(kind, **fields))
    return None if result is None else (result.raw, result.clamped)


def status(kr: KeyResultFacts, at: datetime = MIDDLE, interval: timedelta = INTERVAL) -> str:
    score = RULE.score_key_result(
        kr, starts_on=STARTS_ON, ends_on=ENDS_ON, at=at, check_in_interval=interval
    )
    return score.status


def checked_in(kind: str, at: datetime = MIDDLE, **fields: object) -> KeyResultFacts:
    """Facts of a KR checked in one hour before `at`, so it is never stale."""
    return facts(kind, last_check_in_at=at - timedelta(hours=1), **fields)


# --- rule identity -------------------------------------------------------------------------


def test_builtin_rule_is_linear_v1() -> None:
    assert LINEAR_V1.id == "linear-v1"
    assert BUILTIN_RULES == (LINEAR_V1,)
    assert repr(LINEAR_V1) == "<LinearRule linear-v1>"


def test_subclass_tunes_thresholds_and_has_its_own_id() -> None:
    class Strict(ScoringRule):
        name = "strict"
        version = 2
        on_track_margin = D(0)
        grade_bands = GradeBands(green_from=D("0.9"), yellow_from=D("0.5"))

    strict = Strict()
    kr = checked_in("increase_to", start=D(0), target=D(100), value=D(45))
    scored = strict.score_key_result(
        kr, starts_on=STARTS_ON, ends_on=ENDS_ON, at=MIDDLE, check_in_interval=INTERVAL
    )
    assert strict.id == "strict-v2"
    assert scored.status == "at_risk"
    assert status(kr) == "on_track"
    assert strict.grade(D("0.8")) == "yellow"


# --- increase_to / decrease_to -------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "target", "value", "raw", "clamped"),
    [
        ("0", "100", "50", "0.5000", "0.5000"),
        ("0", "100", "0", "0.0000", "0.0000"),
        ("0", "100", "100", "1.0000", "1.0000"),
        ("0", "100", "150", "1.5000", "1.0000"),  # past target
        ("0", "100", "-20", "-0.2000", "0.0000"),  # negative raw
        ("10", "20", "12.5", "0.2500", "0.2500"),
        ("0", "3", "1", "0.3333", "0.3333"),
        ("0", "100000", "5", "0.0000", "0.0000"),  # 0.00005 rounds half to even
        ("0", "100000", "15", "0.0002", "0.0002"),  # 0.00015 rounds half to even
    ],
)
def test_increase_to(start: str, target: str, value: str, raw: str, clamped: str) -> None:
    result = progress("increase_to", start=D(start), target=D(target), value=D(value))
    assert result == (D(raw), D(clamped))


@pytest.mark.parametrize(
    ("value", "raw", "clamped"),
    [
        ("75", "0.5000", "0.5000"),
        ("100", "0.0000", "0.0000"),
        ("50", "1.0000", "1.0000"),
        ("40", "1.2000", "1.0000"),  # past target
        ("120", "-0.4000", "0.0000"),  # negative raw
    ],
)
def test_decrease_to(value: str, raw: str, clamped: str) -> None:
    result = progress("decrease_to", start=D(100), target=D(50), value=D(value))
    assert result == (D(raw), D(clamped))


def test_progress_is_quantized_to_four_places_and_never_negative_zero() -> None:
    result = RULE.progress(facts("increase_to", start=D(0), target=D(100000), value=D(-3)))
    assert result == Progress(raw=D("0.0000"), clamped=D("0.0000"))
    assert str(result.raw) == "0.0000"


def test_progress_ignores_the_callers_decimal_context() -> None:
    with localcontext(prec=2):
        result = progress("increase_to", start=D(0), target=D(3), value=D(1))
    assert result == (D("0.3333"), D("0.3333"))


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("increase_to", "10", "1"),
        ("increase_to", "11", "1"),
        ("increase_to", "9", "0"),
        ("decrease_to", "10", "1"),
        ("decrease_to", "9", "1"),
        ("decrease_to", "11", "0"),
    ],
)
def test_start_equal_to_target_is_reached_or_not(kind: str, value: str, expected: str) -> None:
    assert progress(kind, start=D(10), target=D(10), value=D(value)) == (D(expected), D(expected))


# --- stay_above / stay_below / stay_within -------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "fields", "value", "raw", "clamped"),
    [
        ("stay_above", {"target": D("99.9")}, "99.9", "1.0000", "1.0000"),  # edge inclusive
        ("stay_above", {"target": D("99.9")}, "100", "1.0000", "1.0000"),
        ("stay_above", {"target": D("99.9")}, "98.901", "0.9000", "0.9000"),  # tolerance 9.99
        ("stay_above", {"target": D("99.5")}, "98", "0.8492", "0.8492"),
        ("stay_above", {"target": D(99), "start": D(98)}, "98.5", "0.5000", "0.5000"),
        ("stay_above", {"target": D(99), "start": D(98)}, "96", "-2.0000", "0.0000"),
        ("stay_above", {"target": D(50), "start": D(50)}, "49", "0.8000", "0.8000"),
        ("stay_below", {"target": D(200)}, "200", "1.0000", "1.0000"),  # edge inclusive
        ("stay_below", {"target": D(200)}, "150", "1.0000", "1.0000"),
        ("stay_below", {"target": D(200)}, "205", "0.7500", "0.7500"),
        ("stay_below", {"target": D(200), "start": D(300)}, "275", "0.2500", "0.2500"),
        ("stay_below", {"target": D(0)}, "0.25", "0.7500", "0.7500"),  # tolerance 1
        ("stay_within", {"band_low": D(10), "band_high": D(20)}, "10", "1.0000", "1.0000"),
        ("stay_within", {"band_low": D(10), "band_high": D(20)}, "20", "1.0000", "1.0000"),
        ("stay_within", {"band_low": D(10), "band_high": D(20)}, "15", "1.0000", "1.0000"),
        ("stay_within", {"band_low": D(10), "band_high": D(20)}, "5", "0.5000", "0.5000"),
        ("stay_within", {"band_low": D(10), "band_high": D(20)}, "25", "0.5000", "0.5000"),
        ("stay_within", {"band_low": D(10), "band_high": D(20)}, "40", "-1.0000", "0.0000"),
        ("stay_within", {"band_low": D(5), "band_high": D(5)}, "5", "1.0000", "1.0000"),
        ("stay_within", {"band_low": D(5), "band_high": D(5)}, "5.5", "0.5000", "0.5000"),
    ],
)
def test_stay_kinds(kind: str, fields: dict, value: str, raw: str, clamped: str) -> None:
    assert progress(kind, value=D(value), **fields) == (D(raw), D(clamped))


# --- milestone -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"done": True}, "1"),
        ({"done": False}, "0"),
        ({"steps_total": 4, "steps_done": 3}, "0.75"),
        ({"steps_total": 4, "steps_done": 0}, "0"),
        ({"steps_total": 4, "steps_done": 1, "done": True}, "1"),  # done wins over steps
        ({"steps_total": 4, "done": False}, "0"),
        ({"steps_total": 3, "steps_done": 1}, "0.3333"),
    ],
)
def test_milestone(fields: dict, expected: str) -> None:
    assert progress("milestone", **fields) == (D(expected), D(expected))


# --- no value yet and invalid facts --------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("increase_to", {"start": D(0), "target": D(1)}),
        ("decrease_to", {"start": D(1), "target": D(0)}),
        ("stay_above", {"target": D(1)}),
        ("stay_below", {"target": D(1)}),
        ("stay_within", {"band_low": D(0), "band_high": D(1)}),
        ("milestone", {}),
        ("milestone", {"steps_total": 4}),
    ],
)
def test_no_value_yet_means_no_progress(kind: str, fields: dict) -> None:
    assert progress(kind, **fields) is None


@pytest.mark.parametrize(
    ("kind", "fields", "field"),
    [
        ("percent", {}, "kind"),
        ("increase_to", {"start": D(0)}, "target"),
        ("increase_to", {"target": D(1), "value": D(1)}, "start"),
        ("increase_to", {"start": D(5), "target": D(1)}, "target"),
        ("decrease_to", {"start": D(1), "target": D(5)}, "target"),
        ("stay_above", {"value": D(1)}, "target"),
        ("stay_below", {"start": D(1)}, "target"),
        ("stay_within", {"band_high": D(1)}, "band_low"),
        ("stay_within", {"band_low": D(1)}, "band_high"),
        ("stay_within", {"band_low": D(2), "band_high": D(1)}, "band_high"),
        ("milestone", {"steps_total": -1}, "steps_total"),
        ("milestone", {"steps_total": 2, "steps_done": 3}, "steps_done"),
        ("milestone", {"steps_total": 2, "steps_done": -1}, "steps_done"),
        ("increase_to", {"start": D(0), "target": D(1), "value": D("NaN")}, "value"),
        ("stay_above", {"target": D("Infinity")}, "target"),
        ("milestone", {"weight": D(-1)}, "weight"),
        ("milestone", {"confidence": D("1.5")}, "confidence"),
        ("milestone", {"confidence": D("-0.1")}, "confidence"),
    ],
)
def test_invalid_facts_name_the_field(kind: str, fields: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        RULE.progress(facts(kind, **fields))


# --- objective score -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([(D(1), D("0.5")), (D(3), D(1))], D("0.8750")),
        ([(D(1), D("0.2")), (D(1), D("0.6"))], D("0.4000")),
        ([(D(1), D(1)), (D(1), D(0)), (D(1), D(0))], D("0.3333")),
        ([(D(0), D(1)), (D(2), D("0.5"))], D("0.5000")),  # weight 0 does not count
        ([(D("0.5"), D("0.7"))], D("0.7000")),
    ],
)
def test_objective_score_is_weighted_mean(
    items: list[tuple[Decimal, Decimal]], expected: Decimal
) -> None:
    assert RULE.objective_score(items) == expected


def test_objective_without_key_results_or_weight_has_no_score() -> None:
    assert RULE.objective_score([]) is None
    assert RULE.objective_score([(D(0), D(1))]) is None
    assert RULE.score_objective([]) is None


@pytest.mark.parametrize(
    ("items", "field"),
    [([(D(-1), D("0.5"))], "weight"), ([(D(1), D("1.5"))], "progress")],
)
def test_objective_score_rejects_bad_items(
    items: list[tuple[Decimal, Decimal]], field: str
) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        RULE.objective_score(items)


def test_score_objective_counts_missing_values_as_zero_and_uses_clamped_progress() -> None:
    key_results = [
        facts("increase_to", start=D(0), target=D(10), value=D(20)),  # raw 2, clamped 1
        facts("increase_to", start=D(0), target=D(10), weight=D(3)),  # no value yet
    ]
    assert RULE.score_objective(key_results) == D("0.2500")


# --- pace ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (datetime(2025, 12, 1, tzinfo=UTC), "0"),  # before the cycle
        (CYCLE_BEGIN, "0"),
        (CYCLE_BEGIN + timedelta(days=1), "0.1"),
        (MIDDLE, "0.5"),
        (datetime(2026, 1, 10, 12, tzinfo=UTC), "0.95"),  # the last day counts in full
        (CYCLE_END, "1"),
        (datetime(2026, 3, 1, tzinfo=UTC), "1"),  # after the cycle
        (datetime(2026, 1, 6, 1, tzinfo=timezone(timedelta(hours=1))), "0.5"),
        (CYCLE_BEGIN + timedelta(hours=8), "0.0333"),
    ],
)
def test_expected_progress(at: datetime, expected: str) -> None:
    assert RULE.expected_progress(STARTS_ON, ENDS_ON, at) == D(expected)


def test_one_day_cycle() -> None:
    noon = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert RULE.expected_progress(STARTS_ON, STARTS_ON, noon) == D("0.5")


def test_pace_rejects_bad_cycle_and_naive_time() -> None:
    with pytest.raises(ValueError, match=r"^ends_on:"):
        RULE.expected_progress(ENDS_ON, STARTS_ON, MIDDLE)
    with pytest.raises(ValueError, match=r"^at:"):
        RULE.expected_progress(STARTS_ON, ENDS_ON, datetime(2026, 1, 6))


def test_cycles_sharing_a_start_keep_their_own_pace() -> None:
    """Cycle bounds are cached: a cycle of 20 days judged after one of 10 with the same
    start, and the 10-day one again, each keep their own length; a bad cycle keeps
    failing (a failure is not cached)."""
    longer = date(2026, 1, 20)
    assert RULE.expected_progress(STARTS_ON, ENDS_ON, MIDDLE) == D("0.5")
    assert RULE.expected_progress(STARTS_ON, longer, MIDDLE) == D("0.25")
    assert RULE.expected_progress(STARTS_ON, ENDS_ON, MIDDLE) == D("0.5")
    late = facts("increase_to", start=D(0), target=D(1), last_check_in_at=CYCLE_END)
    stale_at = datetime(2026, 1, 19, 1, tzinfo=UTC)  # 8 days after the short cycle ends
    assert not RULE.is_stale(
        late, starts_on=STARTS_ON, ends_on=ENDS_ON, at=stale_at, check_in_interval=INTERVAL
    )
    assert RULE.is_stale(
        late, starts_on=STARTS_ON, ends_on=longer, at=stale_at, check_in_interval=INTERVAL
    )
    for _ in range(2):
        with pytest.raises(ValueError, match=r"^ends_on:"):
            RULE.expected_progress(ENDS_ON, STARTS_ON, MIDDLE)


# --- status --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100", "on_track"),
        ("40", "on_track"),  # exactly expected - 0.1
        ("39.99", "at_risk"),
        ("25", "at_risk"),  # exactly expected - 0.25
        ("24.99", "off_track"),
        ("-10", "off_track"),
    ],
)
def test_directional_status_follows_pace(value: str, expected: str) -> None:
    kr = checked_in("increase_to", start=D(0), target=D(100), value=D(value))
    assert status(kr) == expected


def test_score_key_result_reports_progress_pace_and_status() -> None:
    kr = checked_in("decrease_to", start=D(10), target=D(0), value=D(4))
    score = RULE.score_key_result(
        kr, starts_on=STARTS_ON, ends_on=ENDS_ON, at=MIDDLE, check_in_interval=INTERVAL
    )
    assert score == KeyResultScore(
        progress=Progress(raw=D("0.6"), clamped=D("0.6")), expected=D("0.5"), status="on_track"
    )
    decoded = msgspec.json.decode(msgspec.json.encode(score), type=KeyResultScore)
    assert decoded == score
    assert str(decoded.expected) == "0.5000"  # exact decimals survive serialisation


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20", "on_track"),
        ("10", "on_track"),  # band edge
        ("5", "at_risk"),  # credit exactly 0.5
        ("4.999", "off_track"),
        ("40", "off_track"),
    ],
)
def test_stay_status_follows_the_band_not_the_pace(value: str, expected: str) -> None:
    at = CYCLE_END - timedelta(hours=1)  # expected ~1: pace would say off_track for 0.5
    kr = checked_in("stay_within", at=at, band_low=D(10), band_high=D(20), value=D(value))
    assert status(kr, at=at) == expected


@pytest.mark.parametrize("kind", ["increase_to", "stay_above"])
def test_no_value_yet_is_judged_as_zero_against_pace(kind: str) -> None:
    early = CYCLE_BEGIN + timedelta(days=1)  # expected 0.1
    kr = checked_in(kind, start=D(0), target=D(10))
    assert status(kr, at=early) == "on_track"
    assert status(kr, at=MIDDLE) == "off_track"


def test_stale_without_any_check_in() -> None:
    kr = facts("increase_to", start=D(0), target=D(10))
    assert status(kr, at=datetime(2025, 12, 1, tzinfo=UTC)) == "on_track"  # before the cycle
    assert status(kr, at=CYCLE_BEGIN + INTERVAL) == "off_track"  # not yet more than interval
    assert status(kr, at=CYCLE_BEGIN + INTERVAL + timedelta(microseconds=1)) == "stale"


def test_stale_when_last_check_in_is_too_old() -> None:
    kr = facts("increase_to", start=D(0), target=D(10), value=D(10), last_check_in_at=CYCLE_BEGIN)
    assert status(kr, at=CYCLE_BEGIN + INTERVAL) == "on_track"
    assert status(kr, at=CYCLE_BEGIN + INTERVAL + timedelta(seconds=1)) == "stale"


def test_stale_is_judged_at_the_cycle_end_once_it_is_over() -> None:
    last_day = datetime(2026, 1, 10, 9, tzinfo=UTC)
    kr = facts("increase_to", start=D(0), target=D(10), value=D(10), last_check_in_at=last_day)
    assert status(kr, at=datetime(2026, 6, 1, tzinfo=UTC)) == "on_track"


def test_stale_overrides_progress_and_confidence() -> None:
    kr = facts("milestone", done=True, confidence=D("0.1"), last_check_in_at=CYCLE_BEGIN - INTERVAL)
    assert status(kr) == "stale"


@pytest.mark.parametrize(
    ("value", "confidence", "expected"),
    [
        ("100", None, "on_track"),
        ("100", "0.5", "on_track"),  # 0.5 is not low
        ("100", "0.49", "at_risk"),  # one step down
        ("30", "0.49", "off_track"),  # at_risk one step down
        ("0", "0.49", "off_track"),  # already at the bottom
        ("100", "0.2", "at_risk"),  # 0.2 is low but not lost
        ("100", "0.19", "off_track"),  # lost confidence
        ("100", "0", "off_track"),
        ("100", "1", "on_track"),
    ],
)
def test_confidence_lowers_status(value: str, confidence: str | None, expected: str) -> None:
    conf = None if confidence is None else D(confidence)
    kr = checked_in("increase_to", start=D(0), target=D(100), value=D(value), confidence=conf)
    assert status(kr) == expected


def test_score_key_result_rejects_bad_interval_and_naive_check_in() -> None:
    kr = checked_in("milestone", done=True)
    with pytest.raises(ValueError, match=r"^check_in_interval:"):
        status(kr, interval=timedelta(0))
    with pytest.raises(ValueError, match=r"^last_check_in_at:"):
        status(facts("milestone", done=True, last_check_in_at=datetime(2026, 1, 5)))


# --- grades --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "grade"),
    [
        (D(0), "red"),
        (D("0.3999"), "red"),
        (D("0.4"), "yellow"),
        (D("0.6999"), "yellow"),
        (D("0.7"), "green"),
        (D(1), "green"),
        (None, None),
    ],
)
def test_grade_bands(score: Decimal | None, grade: str | None) -> None:
    assert RULE.grade(score) == grade


def test_grade_bands_must_be_ordered() -> None:
    with pytest.raises(ValueError, match=r"^yellow_from:"):
        GradeBands(green_from=D("0.3"), yellow_from=D("0.4"))


# --- properties ----------------------------------------------------------------------------


def amounts(low: int = -10_000, high: int = 10_000) -> st.SearchStrategy[Decimal]:
    return st.decimals(
        allow_nan=False, allow_infinity=False, places=4, min_value=low, max_value=high
    )


@st.composite
def any_facts(draw: st.DrawFn) -> KeyResultFacts:
    """Valid facts of any kind, with a value (or done flag / steps) present."""
    kind = draw(st.sampled_from(KR_KINDS))
    start, end, value = draw(amounts()), draw(amounts()), draw(amounts())
    low, high = sorted((start, end))
    if kind == "increase_to":
        return facts(kind, start=low, target=high, value=value)
    if kind == "decrease_to":
        return facts(kind, start=high, target=low, value=value)
    if kind == "stay_within":
        return facts(kind, band_low=low, band_high=high, value=value)
    if kind == "milestone":
        total = draw(st.integers(0, 20))
        done = draw(st.integers(0, total))
        return facts(kind, done=draw(st.booleans()), steps_total=total, steps_done=done)
    start_or_none = draw(st.none() | st.just(start))
    return facts(kind, start=start_or_none, target=end, value=value)


@PROPERTY
@given(start=amounts(), span=amounts(0), a=amounts(), b=amounts())
def test_increase_to_raw_progress_is_monotone_in_value(
    start: Decimal, span: Decimal, a: Decimal, b: Decimal
) -> None:
    lower, upper = sorted((a, b))
    kr = facts("increase_to", start=start, target=start + span)
    low = RULE.progress(msgspec.structs.replace(kr, value=lower))
    high = RULE.progress(msgspec.structs.replace(kr, value=upper))
    assert low is not None and high is not None
    assert low.raw <= high.raw


@PROPERTY
@given(start=amounts(), span=amounts(0), a=amounts(), b=amounts())
def test_decrease_to_raw_progress_is_antitone_in_value(
    start: Decimal, span: Decimal, a: Decimal, b: Decimal
) -> None:
    lower, upper = sorted((a, b))
    kr = facts("decrease_to", start=start, target=start - span)
    low = RULE.progress(msgspec.structs.replace(kr, value=lower))
    high = RULE.progress(msgspec.structs.replace(kr, value=upper))
    assert low is not None and high is not None
    assert low.raw >= high.raw


@PROPERTY
@given(kr=any_facts())
def test_clamped_progress_lies_in_unit_interval(kr: KeyResultFacts) -> None:
    result = RULE.progress(kr)
    assert result is not None
    assert 0 <= result.clamped <= 1
    assert result.clamped == min(max(result.raw, D(0)), D(1))


@PROPERTY
@given(
    items=st.lists(st.tuples(amounts(0, 100).filter(bool), amounts(0, 1)), min_size=1, max_size=12)
)
def test_objective_score_lies_between_its_key_results(
    items: list[tuple[Decimal, Decimal]],
) -> None:
    score = RULE.objective_score(items)
    progresses = [p for _, p in items]
    assert score is not None
    assert min(progresses) <= score <= max(progresses)


@PROPERTY
@given(
    moments=st.lists(
        st.datetimes(
            min_value=datetime(2025, 12, 1), max_value=datetime(2026, 2, 1), timezones=st.just(UTC)
        ),
        min_size=2,
        max_size=2,
    )
)
def test_expected_progress_is_monotone_in_time(moments: list[datetime]) -> None:
    earlier, later = sorted(moments)
    before = RULE.expected_progress(STARTS_ON, ENDS_ON, earlier)
    after = RULE.expected_progress(STARTS_ON, ENDS_ON, later)
    assert 0 <= before <= after <= 1
