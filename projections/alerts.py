"""Alerts: raised as events are projected, kept with their outbox beside the read models.

Alert ids are deterministic (uuid5 of kind, subject and the triggering position or
period), so projecting the same events again raises the same alerts. Alerts, the
outbox (one row per alert × subscription) and delivery attempts live in `gl_*` tables
that a rebuild never drops or swaps. An alert's outbox rows are written in the same
transaction as the alert, and only by whoever raises it first; a rebuild raises
nothing new for positions the live projector has already passed, so it never sends
anything again.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid5

import msgspec

from goalledger.core.subscriptions import covers
from goalledger.projections import schema
from goalledger.projections.alert_state import SUBSCRIPTIONS_TABLE, AlertState
from goalledger.projections.store import Tx

log = logging.getLogger(__name__)
ALERT_NAMESPACE = UUID("0b7f5d4e-2c1a-4e8b-9f60-6a3d2c1b0e95")
ALERTS_TABLE = "gl_alerts"
OUTBOX_TABLE = "gl_outbox"
ATTEMPTS_TABLE = "gl_delivery_attempts"
TABLES = {
    ALERTS_TABLE: (
        "id TEXT PRIMARY KEY, kind TEXT NOT NULL, subject_id TEXT NOT NULL, team_id TEXT,"
        " position BIGINT NOT NULL, raised_at BIGINT NOT NULL, title TEXT NOT NULL,"
        " body TEXT NOT NULL, data TEXT NOT NULL"
    ),
    SUBSCRIPTIONS_TABLE: (
        "id TEXT PRIMARY KEY, alert_kinds TEXT NOT NULL, team_ids TEXT NOT NULL,"
        " channel_plugin TEXT NOT NULL, created_position BIGINT NOT NULL,"
        " deleted_position BIGINT"
    ),
    OUTBOX_TABLE: (
        "alert_id TEXT NOT NULL, subscription_id TEXT NOT NULL, status TEXT NOT NULL,"
        " attempts INTEGER NOT NULL, next_attempt_at BIGINT NOT NULL, last_error TEXT,"
        " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, delivered_at BIGINT,"
        " leased_by TEXT, PRIMARY KEY (alert_id, subscription_id)"
    ),
    ATTEMPTS_TABLE: (
        "alert_id TEXT NOT NULL, subscription_id TEXT NOT NULL, attempt INTEGER NOT NULL,"
        " attempted_at BIGINT NOT NULL, ok INTEGER NOT NULL, error TEXT,"
        " seconds DOUBLE PRECISION NOT NULL, PRIMARY KEY (alert_id, subscription_id, attempt)"
    ),
}
INDEXES = {
    "gl_alerts_order": f"{ALERTS_TABLE} (raised_at, position, id)",
    "gl_outbox_due": f"{OUTBOX_TABLE} (status, next_attempt_at)",
    "gl_outbox_created": f"{OUTBOX_TABLE} (created_at, alert_id, subscription_id)",
}


class Alert(msgspec.Struct, frozen=True):
    """Something a person should hear about; `id` is the same however often it is raised."""

    id: str
    kind: str
    subject_id: str
    team_id: str | None
    position: int
    raised_at: datetime
    title: str
    body: str
    data: dict[str, Any] = {}


class Raised(msgspec.Struct, frozen=True):
    """An alert and the subscriptions that take it."""

    alert: Alert
    subscription_ids: list[str]


def alert_id(kind: str, subject_id: str, key: str | int) -> str:
    """The deterministic id of the alert of `kind` about `subject_id` at `key` (a ledger
    position or a period)."""
    return str(uuid5(ALERT_NAMESPACE, f"{kind}:{subject_id}:{key}"))


def ensure_tables(tx: Tx) -> None:
    """Create the alert, subscription, outbox and delivery tables if they are missing."""
    for name, columns in TABLES.items():
        tx.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
    for name, target in INDEXES.items():
        tx.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")


def subscribers(state: AlertState, kind: str, team_id: str | None) -> list[str]:
    """The live subscriptions (as `state` knows them) that take an alert of `kind`."""
    lineage = state.lineage(team_id)
    return sorted(
        sid
        for sid, sub in state.live_subscriptions().items()
        if covers(sub.alert_kinds, sub.team_ids, kind, lineage)
    )


def record(tx: Tx, raised: list[Raised], now: datetime, *, send: bool = True) -> list[Alert]:
    """Store alerts not stored yet; with `send`, queue each new one for its subscribers.

    Returns the alerts that were new. An alert already stored queues nothing, so
    raising it again (a rebuild, a second clock) never sends it twice.
    """
    if not raised:
        return []
    ids = [r.alert.id for r in raised]
    known: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        known |= {
            row[0] for row in tx.all(f"SELECT id FROM {ALERTS_TABLE} WHERE id IN ({marks})", chunk)
        }
    fresh = [r for r in raised if r.alert.id not in known]
    tx.executemany(
        f"INSERT INTO {ALERTS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [
            (a.id, a.kind, a.subject_id, a.team_id, a.position, schema.ts(a.raised_at), a.title,
             a.body, json.dumps(a.data, sort_keys=True))
            for a in (r.alert for r in fresh)
        ],
    )  # fmt: skip
    if send:
        moment = schema.ts(now)
        tx.executemany(
            f"INSERT INTO {OUTBOX_TABLE} VALUES (?, ?, 'pending', 0, ?, NULL, ?, ?, NULL, NULL)"
            " ON CONFLICT DO NOTHING",
            [
                (r.alert.id, sid, moment, moment, moment)
                for r in fresh
                for sid in r.subscription_ids
            ],
        )
    return [r.alert for r in fresh]


def live_position(tx: Tx) -> int:
    """How far the live read models have been projected (the rebuild's send horizon)."""
    generation = schema.live_generation(tx)
    if generation is None:
        return 0
    return int(tx.scalar(f"SELECT position FROM {schema.table(generation, 'tracking')}") or 0)


def now() -> datetime:
    return datetime.now(UTC)
