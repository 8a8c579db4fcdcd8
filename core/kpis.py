"""KPIs, their health thresholds, and the readings observed for them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import msgspec
from eventsourcing.domain import Aggregate

from goalledger.core.errors import DomainError, require
from goalledger.core.model import LedgerAggregate, as_decimal, aware, non_blank, optional_decimal
from goalledger.core.objectives import effective_time
from goalledger.core.ordered_ids import ordered_uuid

DIRECTIONS = ("higher_is_better", "lower_is_better", "target_band")
FREQUENCIES = ("hourly", "daily", "weekly", "monthly")
HEALTHS = ("green", "amber", "red")


class Thresholds(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Health bands as bounds: green inside the green bounds, amber inside amber, else red.

    A missing bound is open-ended, so `higher_is_better` keeps only lows,
    `lower_is_better` only highs and `target_band` all four.
    """

    green_low: Decimal | None = None
    green_high: Decimal | None = None
    amber_low: Decimal | None = None
    amber_high: Decimal | None = None

    def health(self, value: Decimal) -> str:
        """Classify `value` as green, amber or red."""
        if _within(value, self.green_low, self.green_high):
            return "green"
        if _within(value, self.amber_low, self.amber_high):
            return "amber"
        return "red"

    def check(self, direction: str, field: str = "thresholds") -> Thresholds:
        """Refuse bounds that make no sense for `direction` (e.g. an upper bound when
        higher is better), and amber bands that do not contain the green one."""
        if direction == "higher_is_better":
            shape_ok = self.green_low is not None and self.amber_low is not None
            shape_ok = shape_ok and self.green_high is None and self.amber_high is None
        elif direction == "lower_is_better":
            shape_ok = self.green_high is not None and self.amber_high is not None
            shape_ok = shape_ok and self.green_low is None and self.amber_low is None
        else:
            bounds = (self.green_low, self.green_high, self.amber_low, self.amber_high)
            shape_ok = all(bound is not None for bound in bounds)
        require(shape_ok, field, f"do not fit a {direction} KPI")
        for name in ("green_low", "green_high", "amber_low", "amber_high"):
            optional_decimal(getattr(self, name), f"{field}.{name}")
        require(
            _contains(self.amber_low, self.amber_high, self.green_low, self.green_high),
            f"{field}.amber",
            "must contain the green band",
        )
        return self

    def as_contract(self, direction: str) -> dict[str, Any]:
        """The API's `{"green": G, "amber": A}` shape (pairs for `target_band`)."""
        if direction == "higher_is_better":
            return {"green": self.green_low, "amber": self.amber_low}
        if direction == "lower_is_better":
            return {"green": self.green_high, "amber": self.amber_high}
        return {
            "green": [self.green_low, self.green_high],
            "amber": [self.amber_low, self.amber_high],
        }


def _within(value: Decimal, low: Decimal | None, high: Decimal | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def _contains(
    outer_low: Decimal | None,
    outer_high: Decimal | None,
    inner_low: Decimal | None,
    inner_high: Decimal | None,
) -> bool:
    low_ok = outer_low is None or (inner_low is not None and outer_low <= inner_low)
    high_ok = outer_high is None or (inner_high is not None and inner_high <= outer_high)
    return low_ok and high_ok


def thresholds_for(direction: str, green: Any, amber: Any) -> Thresholds:
    """Build and check thresholds from the API's `green`/`amber` values for `direction`."""
    require(direction in DIRECTIONS, "direction", f"must be one of {', '.join(DIRECTIONS)}")
    if direction == "target_band":
        green_low, green_high = _pair(green, "thresholds.green")
        amber_low, amber_high = _pair(amber, "thresholds.amber")
        require(
            amber_low <= green_low and green_high <= amber_high,
            "thresholds.amber",
            "must contain the green band",
        )
        return Thresholds(green_low, green_high, amber_low, amber_high)
    g = as_decimal(green, "thresholds.green")
    a = as_decimal(amber, "thresholds.amber")
    if direction == "higher_is_better":
        require(a <= g, "thresholds.amber", "must be at most green when higher is better")
        return Thresholds(green_low=g, amber_low=a)
    require(a >= g, "thresholds.amber", "must be at least green when lower is better")
    return Thresholds(green_high=g, amber_high=a)


def _pair(value: Any, field: str) -> tuple[Decimal, Decimal]:
    require(
        isinstance(value, (list, tuple)) and len(value) == 2,
        field,
        "must be a [low, high] pair for target_band",
    )
    low, high = as_decimal(value[0], f"{field}[0]"), as_decimal(value[1], f"{field}[1]")
    require(low <= high, field, "low must be at most high")
    return low, high


class SourceBinding(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A metric-source plugin and its (validated) config."""

    plugin: str
    config: dict[str, Any]


class Kpi(LedgerAggregate):
    """An operational metric with health thresholds and an optional metric source."""

    TOPIC = "goalledger/kpi"

    class Event(LedgerAggregate.Event):
        """An event of a Kpi."""

    class Defined(Event, Aggregate.Created):
        """A KPI was defined."""

        TOPIC = "goalledger/kpi/defined"
        name: str
        unit: str
        direction: str
        target: Decimal | None
        thresholds: Thresholds
        frequency: str
        source: SourceBinding | None
        team_id: UUID | None
        effective_at: datetime

        def apply(self, kpi: Kpi) -> None:
            for name in ("name", "unit", "direction", "target", "frequency", "source", "team_id"):
                setattr(kpi, name, getattr(self, name))
            kpi.thresholds = self.thresholds

    Created = Defined

    class Changed(Event):
        """A KPI's name, unit, target or frequency changed."""

        TOPIC = "goalledger/kpi/changed"
        name: str
        unit: str
        target: Decimal | None
        frequency: str
        reason: str | None

        def apply(self, kpi: Kpi) -> None:
            kpi.name, kpi.unit, kpi.target = self.name, self.unit, self.target
            kpi.frequency = self.frequency

    class ThresholdsChanged(Event):
        """A KPI's health thresholds changed from `effective_from` on."""

        TOPIC = "goalledger/kpi/thresholds-changed"
        thresholds: Thresholds
        effective_from: datetime
        reason: str | None

        def apply(self, kpi: Kpi) -> None:
            kpi.thresholds = self.thresholds

    class SourceBound(Event):
        """A KPI was bound to a metric source (or unbound, when `source` is None)."""

        TOPIC = "goalledger/kpi/source-bound"
        source: SourceBinding | None
        reason: str | None

        def apply(self, kpi: Kpi) -> None:
            kpi.source = self.source

    # Typed state; under TYPE_CHECKING because eventsourcing turns class
    # annotations into __init__ parameters.
    if TYPE_CHECKING:
        name: str
        unit: str
        direction: str
        target: Decimal | None
        thresholds: Thresholds
        frequency: str
        source: SourceBinding | None
        team_id: UUID | None

    @classmethod
    def define(
        cls,
        *,
        name: str,
        unit: str,
        direction: str,
        target: Decimal | None,
        thresholds: Thresholds,
        frequency: str,
        source: SourceBinding | None = None,
        team_id: UUID | None = None,
        effective_at: datetime | None = None,
        actor: str,
    ) -> Kpi:
        """Define a KPI."""
        require(direction in DIRECTIONS, "direction", f"must be one of {', '.join(DIRECTIONS)}")
        require(frequency in FREQUENCIES, "frequency", f"must be one of {', '.join(FREQUENCIES)}")
        target = optional_decimal(target, "target")
        return cls._create(
            cls.Defined,
            id=uuid4(),
            name=non_blank(name, "name", max_length=200),
            unit=(unit or "").strip()[:50],
            direction=direction,
            target=target,
            thresholds=thresholds.check(direction),
            frequency=frequency,
            source=source,
            team_id=team_id,
            effective_at=effective_time(effective_at, "effective_at"),
            actor=actor,
        )

    def change(
        self,
        *,
        name: str | None = None,
        unit: str | None = None,
        target: Decimal | None = None,
        frequency: str | None = None,
        actor: str,
        reason: str | None = None,
    ) -> None:
        """Change descriptive fields; those left as None keep their value."""
        if frequency is not None:
            require(
                frequency in FREQUENCIES, "frequency", f"must be one of {', '.join(FREQUENCIES)}"
            )
        self.trigger_event(
            self.Changed,
            name=self.name if name is None else non_blank(name, "name", max_length=200),
            unit=self.unit if unit is None else unit.strip()[:50],
            target=self.target if target is None else as_decimal(target, "target"),
            frequency=self.frequency if frequency is None else frequency,
            actor=actor,
            reason=reason,
        )

    def change_thresholds(
        self,
        *,
        thresholds: Thresholds,
        effective_from: datetime,
        actor: str,
        reason: str | None = None,
    ) -> None:
        """New thresholds from `effective_from` on; past health is recomputed from them."""
        aware(effective_from, "effective_from")
        self.trigger_event(
            self.ThresholdsChanged,
            thresholds=thresholds.check(self.direction),
            effective_from=effective_from,
            actor=actor,
            reason=reason,
        )

    def bind_source(
        self, *, source: SourceBinding | None, actor: str, reason: str | None = None
    ) -> None:
        """Bind (or with None, unbind) the metric source that feeds this KPI."""
        self.trigger_event(self.SourceBound, source=source, actor=actor, reason=reason)


def reading_name(kpi_id: UUID | str, reading_id: str) -> str:
    """A reading's name, one per (KPI, reading id): the ledger holds at most one reading
    of each name (its reading-name table), which makes re-sending a reading idempotent."""
    return f"{kpi_id}/{reading_id}"


class Reading(LedgerAggregate):
    """One observed KPI value; corrections supersede it without erasing it."""

    TOPIC = "goalledger/reading"

    class Event(LedgerAggregate.Event):
        """An event of a Reading."""

    class Recorded(Event, Aggregate.Created):
        """A KPI value was observed."""

        TOPIC = "goalledger/reading/recorded"
        kpi_id: UUID
        reading_id: str
        value: Decimal
        observed_at: datetime
        source: str

        def apply(self, reading: Reading) -> None:
            reading.kpi_id = self.kpi_id
            reading.reading_id = self.reading_id
            reading.value = self.value
            reading.observed_at = self.observed_at
            reading.source = self.source

    Created = Recorded

    class Corrected(Event):
        """A reading's value was corrected; the earlier value stays in the ledger."""

        TOPIC = "goalledger/reading/corrected"
        value: Decimal
        reason: str

        def apply(self, reading: Reading) -> None:
            reading.value = self.value

    # Typed state; under TYPE_CHECKING because eventsourcing turns class
    # annotations into __init__ parameters.
    if TYPE_CHECKING:
        kpi_id: UUID
        reading_id: str
        value: Decimal
        observed_at: datetime
        source: str

    @classmethod
    def record(
        cls,
        *,
        kpi_id: UUID,
        reading_id: str,
        value: Decimal,
        observed_at: datetime,
        source: str,
        actor: str,
    ) -> Reading:
        """A new reading aggregate under a new id. The ledger records readings with
        `record_readings`, which also claims each one's name (`reading_name`) so that
        a reading id is recorded once; saving this aggregate directly claims none."""
        reading_id = non_blank(reading_id, "reading_id", max_length=200)
        return cls._create(
            cls.Recorded,
            id=ordered_uuid(),
            kpi_id=kpi_id,
            reading_id=reading_id,
            value=as_decimal(value, "value"),
            observed_at=effective_time(observed_at, "observed_at"),
            source=non_blank(source, "source", max_length=200),
            actor=actor,
        )

    @classmethod
    def observed(
        cls,
        *,
        kpi_id: UUID,
        reading_id: str,
        value: Decimal,
        observed_at: datetime,
        source: str,
        actor: str,
        now: datetime,
        originator_id: UUID | None = None,
    ) -> Reading.Recorded:
        """The first event of a reading, built without an aggregate object.

        Bulk ingestion saves these directly: building an aggregate per reading costs
        more than storing it. The checks are those of `record`.
        """
        reading_id = non_blank(reading_id, "reading_id", max_length=200)
        return cls.Recorded(
            originator_id=originator_id or ordered_uuid(),
            originator_version=1,
            timestamp=now,
            originator_topic=cls.TOPIC,
            actor=actor,
            kpi_id=kpi_id,
            reading_id=reading_id,
            value=as_decimal(value, "value"),
            observed_at=effective_time(observed_at, "observed_at"),
            source=source,
        )

    def correct(self, *, value: Decimal, reason: str, actor: str) -> None:
        """Supersede the value; a reason is required."""
        require(bool(reason and reason.strip()), "reason", "is required for a correction")
        value = as_decimal(value, "value")
        if value == self.value:
            raise DomainError("value", "is already the reading's value")
        self.trigger_event(self.Corrected, value=value, reason=reason.strip(), actor=actor)
