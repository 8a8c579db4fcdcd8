"""Alerts raised, their deliveries (attempts and dead letters), and the subscriptions that
route alert kinds × teams to notification channels."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from goalledger.api.auth import Principal, TeamScope, requires
from goalledger.api.bootstrap import System
from goalledger.api.http_conventions import aggregate_response
from goalledger.api.http_json import Body, JsonResponse
from goalledger.api.pagination import Cursor, Limit, Page, decode_cursor, page
from goalledger.api.problems import Forbidden, problem_responses
from goalledger.core.subscriptions import Channel, Subscription
from goalledger.plugins.catalogue import ChannelBinding
from goalledger.projections.alert_store import (
    Delivery,
    list_alerts,
    list_deliveries,
    subscription_ids,
)
from goalledger.projections.alerts import Alert
from goalledger.projections.schema import ts

# Cursor parts are bounded so a forged cursor is a 400, not a number the database refuses.
Key = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
AlertKind = Literal["kpi_health_changed", "key_result_off_pace", "check_in_overdue", "cycle_ending"]
DeliveryStatus = Literal["pending", "delivered", "dead", "cancelled"]


class ChannelIn(Body):
    """A notification-channel plugin and its config, which the plugin validates."""

    plugin: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)


class SubscriptionIn(Body):
    """Alert kinds × teams (none: every team) → a channel."""

    alert_kinds: list[str]
    channel: ChannelIn
    team_ids: list[UUID] = msgspec.field(default_factory=list)


class SubscriptionOut(msgspec.Struct, frozen=True):
    """A subscription; secret values of its channel's config are masked."""

    id: UUID
    alert_kinds: list[str]
    team_ids: list[UUID]
    channel: dict[str, Any]
    deleted: bool
    version: int


def subscription_out(system: System, subscription: Subscription) -> SubscriptionOut:
    """A subscription as the API shows it (never a channel secret)."""
    channel = subscription.channel
    shown = system.plugins.redact(ChannelBinding(channel.plugin, channel.config))
    return SubscriptionOut(
        id=subscription.id, alert_kinds=list(subscription.alert_kinds),
        team_ids=list(subscription.team_ids),
        channel={"plugin": shown.plugin, "config": shown.config},
        deleted=subscription.deleted, version=subscription.version,
    )  # fmt: skip


def in_scope(access: TeamScope, team_ids: list[UUID] | list[str]) -> bool:
    """Whether a subscription about `team_ids` is the caller's to see and change: a
    team-scoped admin only handles subscriptions limited to its own teams."""
    if access.team_id is None:
        return True
    return bool(team_ids) and all(access.covers(UUID(str(team))) for team in team_ids)


class SubscriptionController(Controller):
    """Subscriptions (admin)."""

    path = "/v1/subscriptions"
    tags = ("alerts",)
    guards = (requires("administer"),)

    @post(operation_id="subscribe", sync_to_thread=True, responses=problem_responses(404, 422))
    def subscribe(
        self,
        system: NamedDependency[System],
        principal: NamedDependency[Principal],
        access: NamedDependency[TeamScope],
        data: JSONBody[SubscriptionIn],
    ) -> JsonResponse[SubscriptionOut]:
        """Send alerts of some kinds about some teams to a notification channel."""
        if not in_scope(access, data.team_ids):
            raise Forbidden(
                f"this token is scoped to team {access.team_id}; list team_ids within it"
            )
        binding = system.plugins.validate_channel(data.channel.plugin, data.channel.config)
        written = system.ledger.subscribe(
            alert_kinds=data.alert_kinds, team_ids=data.team_ids,
            channel=Channel(binding.plugin, binding.config), actor=principal.actor,
        )  # fmt: skip
        subscription = system.ledger.load(written.id, Subscription)
        return aggregate_response(
            subscription_out(system, subscription), subscription.version, status_code=201,
            position=written.position, location=f"/v1/subscriptions/{subscription.id}",
        )  # fmt: skip

    @get(operation_id="listSubscriptions", sync_to_thread=True, responses=problem_responses(503))
    def list_subscriptions(
        self,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        consistency: NamedDependency[int | None],
        include_deleted: FromQuery[bool] = False,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[SubscriptionOut]:
        """Subscriptions, oldest first (deleted ones only when asked for)."""
        after = decode_cursor(cursor, Key) or 0
        rows = subscription_ids(
            system.store, after=after, limit=limit + 1, include_deleted=include_deleted
        )
        positions = {row[0]: row[1] for row in rows}
        items = [
            subscription_out(system, system.ledger.load(UUID(i), Subscription)) for i, _ in rows
        ]
        result = page(items, limit, lambda s: positions[str(s.id)])
        # The read model may trail a deletion by a moment; the ledger has the last word.
        result.items = [
            s
            for s in result.items
            if (include_deleted or not s.deleted) and in_scope(access, s.team_ids)
        ]
        return result

    @get(
        "/{subscription_id:uuid}", operation_id="getSubscription", sync_to_thread=True,
        responses=problem_responses(404),
    )  # fmt: skip
    def get_subscription(
        self,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        subscription_id: FromPath[UUID],
    ) -> JsonResponse[SubscriptionOut]:
        """One subscription (deleted ones too, marked `deleted`)."""
        subscription = system.ledger.load(subscription_id, Subscription, "subscription_id")
        if not in_scope(access, subscription.team_ids):
            raise Forbidden(f"this token is scoped to team {access.team_id}; this is outside it")
        return aggregate_response(subscription_out(system, subscription), subscription.version)

    @delete(
        "/{subscription_id:uuid}", operation_id="deleteSubscription", sync_to_thread=True,
        status_code=200, responses=problem_responses(404, 422),
    )  # fmt: skip
    def delete_subscription(
        self,
        system: NamedDependency[System],
        principal: NamedDependency[Principal],
        access: NamedDependency[TeamScope],
        subscription_id: FromPath[UUID],
    ) -> JsonResponse[SubscriptionOut]:
        """Delete a subscription: nothing more is sent through it, queued alerts included."""
        subscription = system.ledger.load(subscription_id, Subscription, "subscription_id")
        if not in_scope(access, subscription.team_ids):
            raise Forbidden(f"this token is scoped to team {access.team_id}; this is outside it")
        written = system.ledger.delete_subscription(subscription_id, actor=principal.actor)
        subscription = system.ledger.load(subscription_id, Subscription)
        return aggregate_response(
            subscription_out(system, subscription), subscription.version, position=written.position
        )


class AlertController(Controller):
    """Alerts raised (viewer) and their deliveries (admin)."""

    tags = ("alerts",)

    @get(
        "/v1/alerts", operation_id="listAlerts", guards=[requires("read")], sync_to_thread=True,
        responses=problem_responses(503),
    )  # fmt: skip
    def list_alerts(
        self,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        consistency: NamedDependency[int | None],
        kind: FromQuery[AlertKind | None] = None,
        subject_id: FromQuery[UUID | None] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[Alert]:
        """Alerts in the order they were raised (a team-scoped token: its teams' and
        org-wide ones); each `id` is what receivers deduplicate by."""
        after = decode_cursor(cursor, tuple[Key, Key, str])
        found = list_alerts(
            system.store, after=after, limit=limit + 1, kind=kind,
            subject_id=None if subject_id is None else str(subject_id),
        )  # fmt: skip
        result = page(found, limit, lambda a: (ts(a.raised_at), a.position, a.id))
        if access.team_id is not None:  # a page may come out short; the cursor stays right
            result.items = [
                a for a in result.items if a.team_id is None or access.covers(UUID(a.team_id))
            ]
        return result

    @get(
        "/v1/deliveries", operation_id="listDeliveries", guards=[requires("administer")],
        sync_to_thread=True, responses=problem_responses(503),
    )  # fmt: skip
    def list_deliveries(
        self,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        consistency: NamedDependency[int | None],
        status: FromQuery[DeliveryStatus | None] = None,
        alert_id: FromQuery[UUID | None] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[Delivery]:
        """Each alert × subscription with its status and every attempt; `status=dead` lists
        the dead letters (every attempt failed)."""
        after = decode_cursor(cursor, tuple[Key, str, str])
        found = list_deliveries(
            system.store, after=after, limit=limit + 1, status=status,
            alert_id=None if alert_id is None else str(alert_id),
        )  # fmt: skip
        result = page(found, limit, lambda d: (ts(d.created_at), d.alert_id, d.subscription_id))
        result.items = [d for d in result.items if in_scope(access, d.team_ids)]
        return result
