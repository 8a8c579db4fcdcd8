"""Scoring: key-result progress, objective scores, pace, status and grades.

Pure functions over `Decimal`; no I/O. A rule is a `ScoringRule` identified by name and
version (`linear-v1`); plugins subclass it and tune its class attributes or methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from functools import lru_cache

import msgspec

KR_KINDS = ("increase_to", "decrease_to", "stay_above", "stay_below", "stay_within", "milestone")
STATUSES = ("on_track", "at_risk", "off_track", "stale")

# A fixed context so results never depend on the caller's thread-local decimal settings.
_CONTEXT = Context(
    prec=50, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
_PLACES = Decimal("0.0001")
_ZERO = Decimal("0.0000")
_ONE = Decimal(1)
_DECIMAL_FIELDS = ("start", "target", "band_low", "band_high", "weight", "value", "confidence")
_NO_TIME = timedelta(0)
_MICROSECOND = timedelta(microseconds=1)


class Progress(msgspec.Struct, frozen=True):
    """Progress of one key result; both figures quantized to 4 places (half-even)."""

    raw: Decimal  # may fall below 0 or exceed 1
    clamped: Decimal  # raw limited to [0, 1]; the figure objective scores use


class KeyResultFacts(msgspec.Struct, frozen=True):
    """What scoring needs to know about one key result and its latest check-in."""

    kind: str
    start: Decimal | None = None
    target: Decimal | None = None  # the threshold for stay_above / stay_below
    band_low: Decimal | None = None
    band_high: Decimal | None = None
    weight: Decimal = Decimal(1)
    value: Decimal | None = None
    done: bool | None = None
    steps_total: int = 0
    steps_done: int | None = None
    confidence: Decimal | None = None
    last_check_in_at: datetime | None = None


class KeyResultScore(msgspec.Struct, frozen=True):
    """Score of one key result at one instant.

    `progress` is None while the KR has no value yet (no check-in); objective scores and
    pace then count it as 0.
    """

    progress: Progress | None
    expected: Decimal  # pace: the progress expected by now, in [0, 1]
    status: str  # "on_track" | "at_risk" | "off_track" | "stale"


class GradeBands(msgspec.Struct, frozen=True):
    """Score >= green_from is green, >= yellow_from yellow, anything lower red."""

    green_from: Decimal = Decimal("0.7")
    yellow_from: Decimal = Decimal("0.4")

    def __post_init__(self) -> None:
        if self.yellow_from > self.green_from:
            raise ValueError("yellow_from: must not exceed green_from")


class ScoringRule:
    """Base scoring rule; its methods implement the linear rule, tuned by class attributes.

    Progress:
    - increase_to: (value - start) / (target - start); decrease_to: (start - value) /
      (start - target). When start == target, raw progress is 1 once the value has reached
      the target in the KR's direction (value >= target, resp. value <= target), else 0.
    - stay_above / stay_below / stay_within: 1 while the value is inside the threshold or
      band (edges inclusive); outside, 1 - distance / tolerance, where distance is how far
      the value lies from the nearest edge. Tolerance: for stay_within the band width; for
      stay_above / stay_below |target - start| when start is given and differs from target,
      else `default_tolerance_share` (10%) of |target|, so an uptime KR at 98% against a
      99.5% floor earns 0.85, not 0.98; a tolerance of 0 becomes 1. Raw credit goes
      negative far outside.
    - milestone: done -> 1; else steps_done / steps_total when steps_total > 0 and
      steps_done is known; else done False -> 0 and done None -> no progress yet.

    Status, judged at min(at, cycle end) so a finished cycle's status stops moving:
    - stale: no check-in and more than check_in_interval past the cycle start, or the last
      check-in is more than check_in_interval old. Stale overrides everything else.
    - stay_* kinds: on_track when the clamped credit is 1 (inside the band),
      at_risk when >= stay_at_risk_from, else off_track.
    - other kinds: on_track when clamped >= expected - on_track_margin, at_risk when
      >= expected - at_risk_margin, else off_track. No value yet counts as progress 0.
    - latest confidence < lost_confidence_below -> off_track; else < low_confidence_below
      -> one step down (on_track -> at_risk -> off_track).
    """

    name: str
    version: int

    default_tolerance_share: Decimal = Decimal("0.1")
    on_track_margin: Decimal = Decimal("0.1")
    at_risk_margin: Decimal = Decimal("0.25")
    stay_at_risk_from: Decimal = Decimal("0.5")
    low_confidence_below: Decimal = Decimal("0.5")
    lost_confidence_below: Decimal = Decimal("0.2")
    grade_bands: GradeBands = GradeBands()

    @property
    def id(self) -> str:
        """Stable identifier recorded with every score, e.g. `linear-v1`."""
        return f"{self.name}-v{self.version}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"

    def progress(self, kr: KeyResultFacts) -> Progress | None:
        """Progress of `kr`, None when it has no value yet; ValueError on invalid facts."""
        _check_facts(kr)
        with localcontext(_CONTEXT):
            if kr.kind == "milestone":
                raw = self.milestone_progress(kr)
            elif kr.kind in ("increase_to", "decrease_to"):
                raw = self.directional_progress(kr)
            else:
                raw = self.threshold_progress(kr)
            if raw is None:
                return None
            return Progress(raw=_quantize(raw), clamped=_quantize(min(max(raw, _ZERO), _ONE)))

    def directional_progress(self, kr: KeyResultFacts) -> Decimal | None:
        """Unrounded raw progress of an increase_to / decrease_to KR."""
        start, target = _required(kr.start, "start"), _required(kr.target, "target")
        increasing = kr.kind == "increase_to"
        if (target < start) if increasing else (target > start):
            direction = "below" if increasing else "above"
            raise ValueError(f"target: {kr.kind} target must not lie {direction} start")
        if kr.value is None:
            return None
        gained = kr.value - start if increasing else start - kr.value
        needed = abs(target - start)
        if needed == 0:
            return _ONE if gained >= 0 else _ZERO
        return gained / needed

    def threshold_progress(self, kr: KeyResultFacts) -> Decimal | None:
        """Unrounded raw credit of a stay_above / stay_below / stay_within KR."""
        low: Decimal | None
        high: Decimal | None
        if kr.kind == "stay_within":
            low, high = _required(kr.band_low, "band_low"), _required(kr.band_high, "band_high")
            if low > high:
                raise ValueError("band_high: must not be below band_low")
            tolerance = high - low
        else:
            threshold = _required(kr.target, "target")
            low, high = (threshold, None) if kr.kind == "stay_above" else (None, threshold)
            if kr.start is not None and kr.start != threshold:
                tolerance = abs(threshold - kr.start)
            else:
                tolerance = abs(threshold) * self.default_tolerance_share
        if kr.value is None:
            return None
        if low is not None and kr.value < low:
            distance = low - kr.value
        elif high is not None and kr.value > high:
            distance = kr.value - high
        else:
            return _ONE
        return self.threshold_credit(distance, tolerance if tolerance else _ONE)

    def threshold_credit(self, distance: Decimal, tolerance: Decimal) -> Decimal:
        """Partial credit for a value `distance` (> 0) outside its band."""
        return _ONE - distance / tolerance

    def milestone_progress(self, kr: KeyResultFacts) -> Decimal | None:
        """Unrounded progress of a milestone KR."""
        if kr.steps_total < 0:
            raise ValueError("steps_total: must not be negative")
        if kr.steps_done is not None and not 0 <= kr.steps_done <= kr.steps_total:
            raise ValueError(f"steps_done: must lie between 0 and steps_total ({kr.steps_total})")
        if kr.done:
            return _ONE
        if kr.steps_total > 0 and kr.steps_done is not None:
            return Decimal(kr.steps_done) / Decimal(kr.steps_total)
        return None if kr.done is None else _ZERO

    def objective_score(self, items: Sequence[tuple[Decimal, Decimal]]) -> Decimal | None:
        """Weighted mean of (weight, clamped progress) pairs; None without KRs or weight."""
        if not items:
            return None
        with localcontext(_CONTEXT):
            for weight, progress in items:
                if weight < 0:
                    raise ValueError(f"weight: must not be negative, got {weight}")
                if not 0 <= progress <= 1:
                    raise ValueError(f"progress: must lie in [0, 1], got {progress}")
            total = sum((weight for weight, _ in items), _ZERO)
            if total == 0:
                return None  # every KR has weight 0: nothing counts towards the objective
            return _quantize(sum((w * p for w, p in items), _ZERO) / total)

    def score_objective(self, key_results: Sequence[KeyResultFacts]) -> Decimal | None:
        """Objective score straight from KR facts; a KR without a value counts as 0."""
        items = []
        for kr in key_results:
            progress = self.progress(kr)
            items.append((kr.weight, _ZERO if progress is None else progress.clamped))
        return self.objective_score(items)

    def expected_progress(self, starts_on: date, ends_on: date, at: datetime) -> Decimal:
        """Pace: share of the cycle elapsed at `at`, in [0, 1].

        The cycle runs from `starts_on` 00:00 UTC up to (excluding) the day after `ends_on`.
        """
        begin, end = _cycle_bounds(starts_on, ends_on)
        length = end - begin
        elapsed = min(max(_aware(at, "at") - begin, _NO_TIME), length)
        # The context's own divide: what `/` does inside localcontext(_CONTEXT), without
        # entering and leaving it (a third of this method's time).
        return _quantize(_CONTEXT.divide(Decimal(_micros(elapsed)), _cycle_micros(length)))

    def is_stale(
        self,
        kr: KeyResultFacts,
        *,
        starts_on: date,
        ends_on: date,
        at: datetime,
        check_in_interval: timedelta,
    ) -> bool:
        """Whether `kr` has gone without a check-in for longer than `check_in_interval`."""
        if check_in_interval <= _NO_TIME:
            raise ValueError("check_in_interval: must be positive")
        begin, end = _cycle_bounds(starts_on, ends_on)
        judged_at = min(_aware(at, "at"), end)
        if kr.last_check_in_at is None:
            return judged_at - begin > check_in_interval
        return judged_at - _aware(kr.last_check_in_at, "last_check_in_at") > check_in_interval

    def status(self, kr: KeyResultFacts, progress: Progress | None, expected: Decimal) -> str:
        """on_track / at_risk / off_track from progress, pace and confidence (not staleness)."""
        clamped = _ZERO if progress is None else progress.clamped
        if progress is not None and kr.kind.startswith("stay_"):
            if clamped == 1:
                status = "on_track"
            else:
                status = "at_risk" if clamped >= self.stay_at_risk_from else "off_track"
        elif clamped >= expected - self.on_track_margin:
            status = "on_track"
        else:
            status = "at_risk" if clamped >= expected - self.at_risk_margin else "off_track"
        _check_facts(kr)
        confidence = kr.confidence
        if confidence is None:
            return status
        if confidence < self.lost_confidence_below:
            return "off_track"
        if confidence < self.low_confidence_below:
            return "off_track" if status != "on_track" else "at_risk"
        return status

    def score_key_result(
        self,
        kr: KeyResultFacts,
        *,
        starts_on: date,
        ends_on: date,
        at: datetime,
        check_in_interval: timedelta,
    ) -> KeyResultScore:
        """Progress, pace and status of `kr` at `at` within the cycle."""
        progress = self.progress(kr)
        expected = self.expected_progress(starts_on, ends_on, at)
        stale = self.is_stale(
            kr, starts_on=starts_on, ends_on=ends_on, at=at, check_in_interval=check_in_interval
        )
        status = "stale" if stale else self.status(kr, progress, expected)
        return KeyResultScore(progress=progress, expected=expected, status=status)

    def grade(self, score: Decimal | None) -> str | None:
        """green / yellow / red for a score under `grade_bands`; None for no score."""
        if score is None:
            return None
        if score >= self.grade_bands.green_from:
            return "green"
        return "yellow" if score >= self.grade_bands.yellow_from else "red"


class LinearRule(ScoringRule):
    """The built-in rule: linear progress and pace with the default thresholds."""

    name = "linear"
    version = 1


LINEAR_V1: ScoringRule = LinearRule()
BUILTIN_RULES: tuple[ScoringRule, ...] = (LINEAR_V1,)


def _quantize(number: Decimal) -> Decimal:
    rounded = number.quantize(_PLACES, context=_CONTEXT)
    return rounded if rounded else _ZERO  # avoid "-0.0000" leaking into views and JSON


def _check_facts(kr: KeyResultFacts) -> None:
    """Checks every kind shares; kind-specific fields are checked where they are used."""
    if kr.kind not in KR_KINDS:
        raise ValueError(f"kind: {kr.kind!r} is not one of {', '.join(KR_KINDS)}")
    for field in _DECIMAL_FIELDS:
        number = getattr(kr, field)
        if number is not None and not number.is_finite():
            raise ValueError(f"{field}: must be a finite number, got {number}")
    if kr.weight < 0:
        raise ValueError(f"weight: must not be negative, got {kr.weight}")
    if kr.confidence is not None and not 0 <= kr.confidence <= 1:
        raise ValueError(f"confidence: must lie in [0, 1], got {kr.confidence}")


def _required(number: Decimal | None, field: str) -> Decimal:
    if number is None:
        raise ValueError(f"{field}: required for this kind of key result")
    return number


def _aware(moment: datetime, field: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{field}: must be timezone-aware")
    return moment


@lru_cache(maxsize=256)
def _cycle_bounds(starts_on: date, ends_on: date) -> tuple[datetime, datetime]:
    """The cycle's first moment and the moment after it; cached, as a projector judges
    the same few cycles at every check-in (a raised ValueError is not cached)."""
    if ends_on < starts_on:
        raise ValueError("ends_on: must not be before starts_on")
    begin = datetime.combine(starts_on, time(), tzinfo=UTC)
    return begin, datetime.combine(ends_on + timedelta(days=1), time(), tzinfo=UTC)


@lru_cache(maxsize=256)
def _cycle_micros(length: timedelta) -> Decimal:
    return Decimal(_micros(length))


def _micros(span: timedelta) -> int:
    return span // _MICROSECOND
