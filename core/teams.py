"""Teams: org units that scope permissions, roll-ups and check-in intervals."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from goalledger.core.errors import require
from goalledger.core.model import LedgerAggregate, non_blank

DEFAULT_CHECK_IN_INTERVAL_DAYS = 7


class Team(LedgerAggregate):
    """A company, department, team or individual, with an optional parent team."""

    TOPIC = "goalledger/team"

    class Event(LedgerAggregate.Event):
        """An event of a Team."""

    class Formed(Event, Aggregate.Created):
        """A team was formed."""

        TOPIC = "goalledger/team/formed"
        name: str
        parent_id: UUID | None
        check_in_interval_days: int

        def apply(self, team: Team) -> None:
            team.name = self.name
            team.parent_id = self.parent_id
            team.check_in_interval_days = self.check_in_interval_days

    Created = Formed

    class Changed(Event):
        """A team was renamed, moved under another parent or given a new interval."""

        TOPIC = "goalledger/team/changed"
        name: str
        parent_id: UUID | None
        check_in_interval_days: int
        reason: str | None

        def apply(self, team: Team) -> None:
            team.name = self.name
            team.parent_id = self.parent_id
            team.check_in_interval_days = self.check_in_interval_days

    # Typed state; under TYPE_CHECKING because eventsourcing turns class
    # annotations into __init__ parameters.
    if TYPE_CHECKING:
        name: str
        parent_id: UUID | None
        check_in_interval_days: int

    @classmethod
    def form(
        cls,
        *,
        name: str,
        parent_id: UUID | None,
        check_in_interval_days: int = DEFAULT_CHECK_IN_INTERVAL_DAYS,
        actor: str,
    ) -> Team:
        """Form a team."""
        return cls._create(
            cls.Formed,
            id=uuid4(),
            name=non_blank(name, "name", max_length=200),
            parent_id=parent_id,
            check_in_interval_days=_interval(check_in_interval_days),
            actor=actor,
        )

    def change(
        self,
        *,
        name: str | None = None,
        parent_id: UUID | None = None,
        clear_parent: bool = False,
        check_in_interval_days: int | None = None,
        actor: str,
        reason: str | None = None,
    ) -> None:
        """Rename, re-parent or re-time the team; unchanged fields keep their value."""
        require(parent_id != self.id, "parent_id", "a team cannot be its own parent")
        self.trigger_event(
            self.Changed,
            name=self.name if name is None else non_blank(name, "name", max_length=200),
            parent_id=None if clear_parent else (parent_id or self.parent_id),
            check_in_interval_days=(
                self.check_in_interval_days
                if check_in_interval_days is None
                else _interval(check_in_interval_days)
            ),
            actor=actor,
            reason=reason,
        )


def _interval(days: int) -> int:
    require(
        isinstance(days, int) and 1 <= days <= 366,
        "check_in_interval_days",
        "must be a whole number of days from 1 to 366",
    )
    return days
