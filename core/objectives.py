"""Objectives and their key results, with check-ins."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from goalledger.core.errors import DomainError, require
from goalledger.core.model import (
    LedgerAggregate,
    as_decimal,
    aware,
    non_blank,
    optional_decimal,
    utc_now,
)

OBJECTIVE_KINDS = ("committed", "aspirational")
OBJECTIVE_STATUSES = ("draft", "active", "closed", "archived")
KEY_RESULT_KINDS = (
    "increase_to",
    "decrease_to",
    "stay_above",
    "stay_below",
    "stay_within",
    "milestone",
)
# How far ahead of the server's clock an effective time may lie (clock skew).
FUTURE_TOLERANCE = timedelta(minutes=5)


class Objective(LedgerAggregate):
    """A qualitative, time-bound, owned goal in a cycle, optionally aligned to a parent."""

    TOPIC = "goalledger/objective"

    class Event(LedgerAggregate.Event):
        """An event of a Objective."""

    class Defined(Event, Aggregate.Created):
        """An objective was defined."""

        TOPIC = "goalledger/objective/defined"
        title: str
        description: str
        cycle_id: UUID
        team_id: UUID
        owner: str
        kind: str
        status: str
        parent_objective_id: UUID | None
        parent_key_result_id: UUID | None
        effective_at: datetime

        def apply(self, objective: Objective) -> None:
            for name in ("title", "description", "cycle_id", "team_id", "owner", "kind"):
                setattr(objective, name, getattr(self, name))
            objective.status = self.status
            objective.parent_objective_id = self.parent_objective_id
            objective.parent_key_result_id = self.parent_key_result_id

    Created = Defined

    class Edited(Event):
        """An objective's wording or owner changed."""

        TOPIC = "goalledger/objective/edited"
        title: str
        description: str
        owner: str
        reason: str | None

        def apply(self, objective: Objective) -> None:
            objective.title = self.title
            objective.description = self.description
            objective.owner = self.owner

    class Aligned(Event):
        """An objective was (re-)aligned to a parent objective, a parent KR, or nothing."""

        TOPIC = "goalledger/objective/aligned"
        parent_objective_id: UUID | None
        parent_key_result_id: UUID | None
        effective_at: datetime
        reason: str | None

        def apply(self, objective: Objective) -> None:
            objective.parent_objective_id = self.parent_objective_id
            objective.parent_key_result_id = self.parent_key_result_id

    class StatusChanged(Event):
        """An objective moved to another status."""

        TOPIC = "goalledger/objective/status-changed"
        status: str
        reason: str | None

        def apply(self, objective: Objective) -> None:
            objective.status = self.status

    # Typed state; under TYPE_CHECKING because eventsourcing turns class
    # annotations into __init__ parameters.
    if TYPE_CHECKING:
        title: str
        description: str
        cycle_id: UUID
        team_id: UUID
        owner: str
        kind: str
        status: str
        parent_objective_id: UUID | None
        parent_key_result_id: UUID | None

    @classmethod
    def define(
        cls,
        *,
        title: str,
        description: str,
        cycle_id: UUID,
        team_id: UUID,
        owner: str,
        kind: str,
        status: str = "active",
        parent_objective_id: UUID | None = None,
        parent_key_result_id: UUID | None = None,
        effective_at: datetime | None = None,
        actor: str,
    ) -> Objective:
        """Define an objective; at most one parent (an objective or a key result)."""
        require(kind in OBJECTIVE_KINDS, "kind", f"must be one of {', '.join(OBJECTIVE_KINDS)}")
        require(status in ("draft", "active"), "status", "a new objective is draft or active")
        _one_parent(parent_objective_id, parent_key_result_id)
        return cls._create(
            cls.Defined,
            id=uuid4(),
            title=non_blank(title, "title", max_length=300),
            description=(description or "").strip()[:5000],
            cycle_id=cycle_id,
            team_id=team_id,
            owner=non_blank(owner, "owner", max_length=200),
            kind=kind,
            status=status,
            parent_objective_id=parent_objective_id,
            parent_key_result_id=parent_key_result_id,
            effective_at=effective_time(effective_at, "effective_at"),
            actor=actor,
        )

    def edit(
        self,
        *,
        title: str | None = None,
        description: str | None = None,
        owner: str | None = None,
        actor: str,
        reason: str | None = None,
    ) -> None:
        """Change the wording or owner; fields left as None keep their value."""
        self.trigger_event(
            self.Edited,
            title=self.title if title is None else non_blank(title, "title", max_length=300),
            description=self.description if description is None else description.strip()[:5000],
            owner=self.owner if owner is None else non_blank(owner, "owner", max_length=200),
            actor=actor,
            reason=reason,
        )

    def align(
        self,
        *,
        parent_objective_id: UUID | None,
        parent_key_result_id: UUID | None,
        effective_at: datetime | None = None,
        actor: str,
        reason: str | None = None,
    ) -> None:
        """Align to a new parent (or none); history keeps every earlier alignment."""
        _one_parent(parent_objective_id, parent_key_result_id)
        require(
            parent_objective_id != self.id,
            "parent_objective_id",
            "an objective cannot be its own parent",
        )
        self.trigger_event(
            self.Aligned,
            parent_objective_id=parent_objective_id,
            parent_key_result_id=parent_key_result_id,
            effective_at=effective_time(effective_at, "effective_at"),
            actor=actor,
            reason=reason,
        )

    def change_status(self, *, status: str, actor: str, reason: str | None = None) -> None:
        """Move the objective to another status."""
        require(
            status in OBJECTIVE_STATUSES,
            "status",
            f"must be one of {', '.join(OBJECTIVE_STATUSES)}",
        )
        require(status != self.status, "status", f"is already {status}")
        self.trigger_event(self.StatusChanged, status=status, actor=actor, reason=reason)


class KeyResult(LedgerAggregate):
    """A measurable outcome under one objective, moved by check-ins."""

    TOPIC = "goalledger/key-result"

    class Event(LedgerAggregate.Event):
        """An event of a KeyResult."""

    class Defined(Event, Aggregate.Created):
        """A key result was defined under an objective."""

        TOPIC = "goalledger/key-result/defined"
        objective_id: UUID
        cycle_id: UUID
        team_id: UUID
        title: str
        kind: str
        start: Decimal | None
        target: Decimal | None
        band_low: Decimal | None
        band_high: Decimal | None
        unit: str
        weight: Decimal
        owner: str
        kpi_id: UUID | None
        steps: list[str]
        effective_at: datetime

        def apply(self, kr: KeyResult) -> None:
            for name in (
                "objective_id",
                "cycle_id",
                "team_id",
                "title",
                "kind",
                "start",
                "target",
                "band_low",
                "band_high",
                "unit",
                "weight",
                "owner",
                "kpi_id",
            ):
                setattr(kr, name, getattr(self, name))
            kr.steps = list(self.steps)
            kr.check_ins = 0

    Created = Defined

    class TargetChanged(Event):
        """A key result's target, band or weight changed from `effective_at` on."""

        TOPIC = "goalledger/key-result/target-changed"
        target: Decimal | None
        band_low: Decimal | None
        band_high: Decimal | None
        weight: Decimal
        effective_at: datetime
        reason: str | None

        def apply(self, kr: KeyResult) -> None:
            kr.target = self.target
            kr.band_low = self.band_low
            kr.band_high = self.band_high
            kr.weight = self.weight

    class CheckedIn(Event):
        """Someone reported a key result's value (or done flag) as of `effective_at`."""

        TOPIC = "goalledger/key-result/checked-in"
        value: Decimal | None
        done: bool | None
        steps_done: int | None
        confidence: Decimal | None
        note: str
        effective_at: datetime

        def apply(self, kr: KeyResult) -> None:
            kr.check_ins += 1

    # Typed state; under TYPE_CHECKING because eventsourcing turns class
    # annotations into __init__ parameters.
    if TYPE_CHECKING:
        objective_id: UUID
        cycle_id: UUID
        team_id: UUID
        title: str
        kind: str
        start: Decimal | None
        target: Decimal | None
        band_low: Decimal | None
        band_high: Decimal | None
        unit: str
        weight: Decimal
        owner: str
        kpi_id: UUID | None
        steps: list[str]
        check_ins: int

    @classmethod
    def define(
        cls,
        *,
        objective: Objective,
        title: str,
        kind: str,
        start: Decimal | None = None,
        target: Decimal | None = None,
        band_low: Decimal | None = None,
        band_high: Decimal | None = None,
        unit: str = "",
        weight: Decimal = Decimal(1),
        owner: str | None = None,
        kpi_id: UUID | None = None,
        steps: list[str] | None = None,
        effective_at: datetime | None = None,
        actor: str,
    ) -> KeyResult:
        """Define a key result; which of start/target/band are needed depends on `kind`."""
        require(kind in KEY_RESULT_KINDS, "kind", f"must be one of {', '.join(KEY_RESULT_KINDS)}")
        start, target = optional_decimal(start, "start"), optional_decimal(target, "target")
        band_low = optional_decimal(band_low, "band_low")
        band_high = optional_decimal(band_high, "band_high")
        weight = as_decimal(weight, "weight")
        _check_shape(kind, start, target, band_low, band_high)
        _check_weight(weight)
        steps = [
            non_blank(step, f"steps[{i}]", max_length=300) for i, step in enumerate(steps or [])
        ]
        require(not steps or kind == "milestone", "steps", "only a milestone has steps")
        return cls._create(
            cls.Defined,
            id=uuid4(),
            objective_id=objective.id,
            cycle_id=objective.cycle_id,
            team_id=objective.team_id,
            title=non_blank(title, "title", max_length=300),
            kind=kind,
            start=start,
            target=target,
            band_low=band_low,
            band_high=band_high,
            unit=(unit or "").strip()[:50],
            weight=weight,
            owner=objective.owner if owner is None else non_blank(owner, "owner", max_length=200),
            kpi_id=kpi_id,
            steps=steps,
            effective_at=effective_time(effective_at, "effective_at"),
            actor=actor,
        )

    def change_target(
        self,
        *,
        target: Decimal | None = None,
        band_low: Decimal | None = None,
        band_high: Decimal | None = None,
        weight: Decimal | None = None,
        effective_at: datetime | None = None,
        actor: str,
        reason: str | None,
    ) -> None:
        """Change the target, band or weight; a reason is required for the audit trail."""
        require(bool(reason and reason.strip()), "reason", "is required when a target changes")
        target = self.target if target is None else as_decimal(target, "target")
        band_low = self.band_low if band_low is None else as_decimal(band_low, "band_low")
        band_high = self.band_high if band_high is None else as_decimal(band_high, "band_high")
        weight = self.weight if weight is None else as_decimal(weight, "weight")
        _check_shape(self.kind, self.start, target, band_low, band_high)
        _check_weight(weight)
        self.trigger_event(
            self.TargetChanged,
            target=target,
            band_low=band_low,
            band_high=band_high,
            weight=weight,
            effective_at=effective_time(effective_at, "effective_at"),
            actor=actor,
            reason=reason,
        )

    def check_in(
        self,
        *,
        value: Decimal | None = None,
        done: bool | None = None,
        steps_done: int | None = None,
        confidence: Decimal | None = None,
        note: str = "",
        effective_at: datetime | None = None,
        actor: str,
    ) -> None:
        """Record progress; milestones take `done`/`steps_done`, the others a `value`."""
        value = optional_decimal(value, "value")
        confidence = optional_decimal(confidence, "confidence")
        if self.kind == "milestone":
            require(value is None, "value", "a milestone is checked in with done or steps_done")
            require(
                done is not None or steps_done is not None,
                "done",
                "is required for a milestone (or give steps_done)",
            )
            if steps_done is not None:
                require(
                    0 <= steps_done <= len(self.steps),
                    "steps_done",
                    f"must be between 0 and {len(self.steps)}",
                )
        else:
            require(value is not None, "value", f"is required for a {self.kind} key result")
            require(done is None and steps_done is None, "done", "only a milestone takes done")
        if confidence is not None:
            require(
                Decimal(0) <= confidence <= Decimal(1), "confidence", "must be between 0.0 and 1.0"
            )
        require(len(note or "") <= 5000, "note", "must be at most 5000 characters")
        self.trigger_event(
            self.CheckedIn,
            value=value,
            done=done,
            steps_done=steps_done,
            confidence=confidence,
            note=note or "",
            effective_at=effective_time(effective_at, "effective_at"),
            actor=actor,
        )


def effective_time(value: datetime | None, field: str) -> datetime:
    """An effective time: now when not given; back-dating allowed, the future refused."""
    if value is None:
        return utc_now()
    aware(value, field)
    if value > utc_now() + FUTURE_TOLERANCE:
        raise DomainError(field, "must not lie in the future")
    return value


def _one_parent(parent_objective_id: UUID | None, parent_key_result_id: UUID | None) -> None:
    require(
        parent_objective_id is None or parent_key_result_id is None,
        "parent_key_result_id",
        "align to a parent objective or a parent key result, not both",
    )


def _check_weight(weight: Decimal) -> None:
    require(weight > 0, "weight", "must be greater than 0")
    require(weight <= 1000, "weight", "must be at most 1000")


def _check_shape(
    kind: str,
    start: Decimal | None,
    target: Decimal | None,
    band_low: Decimal | None,
    band_high: Decimal | None,
) -> None:
    """Check that a KR of `kind` has the figures it is scored by."""
    if kind in ("increase_to", "decrease_to"):
        require(start is not None, "start", f"is required for {kind}")
        require(target is not None, "target", f"is required for {kind}")
        assert start is not None and target is not None
        if kind == "increase_to":
            require(target >= start, "target", "must be at least start for increase_to")
        else:
            require(target <= start, "target", "must be at most start for decrease_to")
    elif kind in ("stay_above", "stay_below"):
        require(target is not None, "target", f"is the threshold of {kind} and is required")
    elif kind == "stay_within":
        require(band_low is not None, "band_low", "is required for stay_within")
        require(band_high is not None, "band_high", "is required for stay_within")
        assert band_low is not None and band_high is not None
        require(band_low <= band_high, "band_low", "must be at most band_high")
    else:
        require(start is None and target is None, "target", "a milestone has no target value")
