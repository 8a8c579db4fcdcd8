"""Cycles: the named periods objectives live in."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING
from uuid import uuid4

from eventsourcing.domain import Aggregate

from goalledger.core.errors import DomainError, require
from goalledger.core.model import LedgerAggregate, non_blank


class Cycle(LedgerAggregate):
    """A named period (e.g. `2026-Q1`); closing it freezes grades and the scoring rule."""

    TOPIC = "goalledger/cycle"

    class Event(LedgerAggregate.Event):
        """An event of a Cycle."""

    class Defined(Event, Aggregate.Created):
        """A cycle was defined."""

        TOPIC = "goalledger/cycle/defined"
        name: str
        starts_on: date
        ends_on: date

        def apply(self, cycle: Cycle) -> None:
            cycle.name = self.name
            cycle.starts_on = self.starts_on
            cycle.ends_on = self.ends_on
            cycle.status = "open"
            cycle.rule = None

    Created = Defined

    class Closed(Event):
        """A cycle was closed under a scoring rule, which it keeps from then on."""

        TOPIC = "goalledger/cycle/closed"
        rule: str
        reason: str | None

        def apply(self, cycle: Cycle) -> None:
            cycle.status = "closed"
            cycle.rule = self.rule

    # Typed state; under TYPE_CHECKING because eventsourcing turns class
    # annotations into __init__ parameters.
    if TYPE_CHECKING:
        name: str
        starts_on: date
        ends_on: date
        status: str
        rule: str | None

    @classmethod
    def define(cls, *, name: str, starts_on: date, ends_on: date, actor: str) -> Cycle:
        """Define a cycle; it must end after it starts."""
        name = non_blank(name, "name", max_length=100)
        require(ends_on > starts_on, "ends_on", "must be after starts_on")
        return cls._create(
            cls.Defined, id=uuid4(), name=name, starts_on=starts_on, ends_on=ends_on, actor=actor
        )

    @property
    def is_open(self) -> bool:
        """Whether check-ins and changes are still accepted."""
        return self.status == "open"

    def close(self, *, rule: str, actor: str, reason: str | None) -> None:
        """Close the cycle, freezing its scoring rule."""
        if not self.is_open:
            raise DomainError("status", "the cycle is already closed")
        self.trigger_event(self.Closed, rule=non_blank(rule, "rule"), actor=actor, reason=reason)
