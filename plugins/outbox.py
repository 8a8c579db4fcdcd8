"""The outbox contract: what the dispatcher claims, how it settles each attempt, and the
retry policy (exponential backoff, then a dead letter).

The tables behind it live with the read models (`goalledger.projections.alert_store`);
the dispatcher sees only this interface, so it is tested against any implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol
from uuid import uuid4

import msgspec

from goalledger.plugins.contracts import Notification

Status = Literal["pending", "delivered", "dead", "cancelled"]


class RetryPolicy(msgspec.Struct, frozen=True):
    """Attempt `max_attempts` times, `first_delay` seconds apart at first, each wait
    `factor` times the last (at most `max_delay`); then the delivery is a dead letter."""

    max_attempts: int = 8
    first_delay: float = 10.0
    factor: float = 2.0
    max_delay: float = 3600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts: must be at least 1")
        if self.first_delay < 0 or self.factor < 1 or self.max_delay < self.first_delay:
            raise ValueError("first_delay, factor, max_delay: must make a growing backoff")

    def delay(self, attempt: int) -> timedelta:
        """How long to wait after failed attempt number `attempt` (1 for the first)."""
        seconds = self.first_delay * self.factor ** min(attempt - 1, 64)
        return timedelta(seconds=min(seconds, self.max_delay))


class PendingDelivery(msgspec.Struct, frozen=True):
    """One alert to send to one subscription: its `attempt`-th try."""

    alert_id: str
    subscription_id: str
    attempt: int
    notification: Notification


class Settled(msgspec.Struct, frozen=True):
    """What became of a claimed delivery.

    `attempted` is False when nothing was sent (the subscription was deleted meanwhile).
    `next_attempt_at` is set while `status` stays `pending`.
    """

    delivery: PendingDelivery
    status: Status
    attempted: bool
    attempted_at: datetime
    error: str | None = None
    seconds: float = 0.0
    next_attempt_at: datetime | None = None


class Outbox(Protocol):
    """Where pending deliveries wait, and where their attempts are recorded."""

    def claim(self, now: datetime, limit: int, lease: timedelta) -> list[PendingDelivery]:
        """Up to `limit` due deliveries, hidden from other claims until `now + lease`: if
        this process dies before settling them, they are sent again after the lease."""
        ...

    def settle(self, outcomes: Sequence[Settled]) -> None:
        """Record attempts and new states (a late settle of a re-claimed one is ignored)."""
        ...

    def reclaim(self, now: datetime) -> int:
        """Make every delivery leased by another dispatcher due now (that dispatcher is
        gone: the active worker calls this as it takes over); returns how many."""
        ...


def settle(
    delivery: PendingDelivery,
    *,
    ok: bool,
    error: str | None,
    seconds: float,
    at: datetime,
    policy: RetryPolicy,
) -> Settled:
    """The outcome of one attempt under `policy`: delivered, retried later, or dead."""
    if ok:
        return Settled(delivery, "delivered", True, at, None, seconds)
    if delivery.attempt >= policy.max_attempts:
        return Settled(delivery, "dead", True, at, error, seconds)
    retry_at = at + policy.delay(delivery.attempt)
    return Settled(delivery, "pending", True, at, error, seconds, retry_at)


class OutboxRows(Protocol):
    """The outbox's table rows (`goalledger.projections.alert_store.OutboxTables`)."""

    def claim(
        self, now: datetime, limit: int, until: datetime, owner: str
    ) -> list[tuple[str, str, int, Any]]:
        """(alert id, subscription id, attempt, alert) of due rows, leased to `owner`
        until `until`."""
        ...

    def reclaim(self, now: datetime, owner: str) -> int:
        """Make rows leased by anyone but `owner` due now."""
        ...

    def settle(self, settlements: Sequence[tuple[Any, ...]]) -> None:
        """Record (alert, subscription, attempt, status, attempted, at, error, seconds,
        next attempt) tuples."""
        ...


class TableOutbox:
    """An `Outbox` over table rows; alerts become the `Notification`s channels receive."""

    def __init__(self, rows: OutboxRows) -> None:
        self.rows = rows
        self.owner = uuid4().hex  # who holds a lease: this outbox, in this process

    def claim(self, now: datetime, limit: int, lease: timedelta) -> list[PendingDelivery]:
        return [
            PendingDelivery(alert_id, subscription_id, attempt, notification_of(alert))
            for alert_id, subscription_id, attempt, alert in self.rows.claim(
                now, limit, now + lease, self.owner
            )
        ]

    def settle(self, outcomes: Sequence[Settled]) -> None:
        self.rows.settle(
            [
                (
                    o.delivery.alert_id,
                    o.delivery.subscription_id,
                    o.delivery.attempt,
                    o.status,
                    o.attempted,
                    o.attempted_at,
                    o.error,
                    o.seconds,
                    o.next_attempt_at,
                )
                for o in outcomes
            ]
        )

    def reclaim(self, now: datetime) -> int:
        return self.rows.reclaim(now, self.owner)


def notification_of(alert: Any) -> Notification:
    """The notification for an alert (anything with an alert's fields)."""
    return Notification(
        id=alert.id, kind=alert.kind, subject_id=alert.subject_id, raised_at=alert.raised_at,
        position=alert.position, title=alert.title, body=alert.body, data=dict(alert.data),
    )  # fmt: skip
