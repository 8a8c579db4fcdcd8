"""Subscriptions: which alerts (kinds × teams) go to which notification channel."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import msgspec
from eventsourcing.domain import Aggregate

from goalledger.core.errors import DomainError, require
from goalledger.core.model import LedgerAggregate, non_blank

ALERT_KINDS = ("kpi_health_changed", "key_result_off_pace", "check_in_overdue", "cycle_ending")
MAX_TEAMS = 1000


class Channel(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A notification-channel plugin and its config (validated by the plugin registry)."""

    plugin: str
    config: dict[str, Any]


class Subscription(LedgerAggregate):
    """Alerts of some kinds about some teams (none listed: every team) sent to a channel."""

    TOPIC = "goalledger/subscription"

    class Event(LedgerAggregate.Event):
        """An event of a Subscription."""

    class Created(Event, Aggregate.Created):
        """A subscription was created."""

        TOPIC = "goalledger/subscription/created"
        alert_kinds: list[str]
        team_ids: list[UUID]
        channel: Channel

        def apply(self, subscription: Subscription) -> None:
            subscription.alert_kinds = list(self.alert_kinds)
            subscription.team_ids = list(self.team_ids)
            subscription.channel = self.channel
            subscription.deleted = False

    class ChannelChanged(Event):
        """The channel's config was recorded anew (e.g. its secrets re-sealed under a new
        key); the plugin stays the same."""

        TOPIC = "goalledger/subscription/channel-changed"
        channel: Channel
        reason: str | None

        def apply(self, subscription: Subscription) -> None:
            subscription.channel = self.channel

    class Deleted(Event):
        """A subscription was deleted; nothing more is sent through it."""

        TOPIC = "goalledger/subscription/deleted"
        reason: str | None

        def apply(self, subscription: Subscription) -> None:
            subscription.deleted = True

    # Typed state; under TYPE_CHECKING because eventsourcing turns class
    # annotations into __init__ parameters.
    if TYPE_CHECKING:
        alert_kinds: list[str]
        team_ids: list[UUID]
        channel: Channel
        deleted: bool

    @classmethod
    def create(
        cls, *, alert_kinds: list[str], team_ids: list[UUID], channel: Channel, actor: str
    ) -> Subscription:
        """Subscribe a channel to alerts of `alert_kinds` about `team_ids` (empty: all)."""
        return cls._create(
            cls.Created,
            id=uuid4(),
            alert_kinds=_kinds(alert_kinds),
            team_ids=_teams(team_ids),
            channel=Channel(
                plugin=non_blank(channel.plugin, "channel.plugin"), config=channel.config
            ),
            actor=actor,
        )

    def change_channel(self, channel: Channel, *, actor: str, reason: str | None = None) -> None:
        """Record the channel's config anew; changing its plugin means subscribing anew."""
        if self.deleted:
            raise DomainError("subscription", "is deleted")
        if channel.plugin != self.channel.plugin:
            raise DomainError("channel.plugin", "cannot change: delete and subscribe anew")
        self.trigger_event(self.ChannelChanged, channel=channel, actor=actor, reason=reason)

    def delete(self, *, actor: str, reason: str | None = None) -> None:
        """Delete the subscription."""
        if self.deleted:
            raise DomainError("subscription", "is already deleted")
        self.trigger_event(self.Deleted, actor=actor, reason=reason)

    def covers(self, kind: str, lineage: set[UUID] | None) -> bool:
        """Whether an alert of `kind` goes to this subscription (see `covers`)."""
        return not self.deleted and covers(self.alert_kinds, self.team_ids, kind, lineage)


def covers(
    alert_kinds: Iterable[str], team_ids: Iterable[Any], kind: str, lineage: set[Any] | None
) -> bool:
    """Whether a subscription to `alert_kinds` about `team_ids` (empty: every team) takes an
    alert of `kind` about a team whose `lineage` is the team and its ancestors; an alert
    about no team in particular (`lineage` None: a cycle, an org-wide KPI) goes to every
    subscription of its kind."""
    if kind not in alert_kinds:
        return False
    teams = set(team_ids)
    return not teams or lineage is None or bool(teams & lineage)


def _kinds(kinds: list[str]) -> list[str]:
    require(isinstance(kinds, list) and bool(kinds), "alert_kinds", "must name at least one kind")
    for index, kind in enumerate(kinds):
        require(
            kind in ALERT_KINDS, f"alert_kinds[{index}]", f"must be one of {', '.join(ALERT_KINDS)}"
        )
    return list(dict.fromkeys(kinds))


def _teams(team_ids: list[UUID]) -> list[UUID]:
    require(isinstance(team_ids, list), "team_ids", "must be a list of team ids")
    require(len(team_ids) <= MAX_TEAMS, "team_ids", f"must hold at most {MAX_TEAMS} teams")
    return list(dict.fromkeys(team_ids))
