"""Reading and updating the alert tables: the outbox's claims and settlements, and the
lists the API shows (alerts, deliveries with their attempts, subscriptions)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from goalledger.projections.alert_state import SUBSCRIPTIONS_TABLE
from goalledger.projections.alerts import ALERTS_TABLE, ATTEMPTS_TABLE, OUTBOX_TABLE, Alert
from goalledger.projections.schema import from_ts, ts
from goalledger.projections.store import Tx, ViewStore

ALERT_COLUMNS = "id, kind, subject_id, team_id, position, raised_at, title, body, data"
STATUSES = ("pending", "delivered", "dead", "cancelled")


class Attempt(msgspec.Struct, frozen=True):
    """One try at sending an alert through a subscription's channel."""

    attempt: int
    attempted_at: datetime
    ok: bool
    error: str | None
    seconds: float


class Delivery(msgspec.Struct, frozen=True):
    """An alert on its way to one subscription: its state and every attempt so far.

    `status` is `pending` (waiting for its next attempt), `delivered`, `dead` (a dead
    letter: every attempt failed) or `cancelled` (the subscription was deleted first).
    """

    alert_id: str
    subscription_id: str
    channel: str | None
    kind: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    history: list[Attempt]
    team_ids: list[str] = []


# Settling one claim: (alert_id, subscription_id, attempt, status, attempted,
# attempted_at, error, seconds, next_attempt_at).
Settlement = tuple[str, str, int, str, bool, datetime, str | None, float, datetime | None]


def alert_of(row: Sequence[Any]) -> Alert:
    """An alert from a row of ALERT_COLUMNS."""
    return Alert(
        id=row[0], kind=row[1], subject_id=row[2], team_id=row[3], position=row[4],
        raised_at=from_ts(row[5]), title=row[6], body=row[7], data=json.loads(row[8]),
    )  # type: ignore[arg-type]  # fmt: skip


class OutboxTables:
    """The outbox's rows in the read-model store (the dispatcher's side of it)."""

    def __init__(self, store: ViewStore) -> None:
        self.store = store

    def claim(
        self, now: datetime, limit: int, until: datetime, owner: str
    ) -> list[tuple[str, str, int, Alert]]:
        """(alert id, subscription id, attempt, alert) of up to `limit` due rows, each
        leased to `owner`: hidden from other claims until `until`."""
        with self.store.transaction() as tx:
            lock = " FOR UPDATE SKIP LOCKED" if tx.postgres else ""
            due = tx.all(
                f"SELECT alert_id, subscription_id, attempts FROM {OUTBOX_TABLE}"
                f" WHERE status = 'pending' AND next_attempt_at <= ?"
                f" ORDER BY next_attempt_at, created_at LIMIT {int(limit)}{lock}",
                (ts(now),),
            )
            if not due:
                return []
            tx.executemany(
                f"UPDATE {OUTBOX_TABLE} SET next_attempt_at = ?, updated_at = ?, leased_by = ?"
                " WHERE alert_id = ? AND subscription_id = ?",
                [(ts(until), ts(now), owner, row[0], row[1]) for row in due],
            )
            alerts = _alerts(tx, sorted({row[0] for row in due}))
        return [(row[0], row[1], row[2] + 1, alerts[row[0]]) for row in due if row[0] in alerts]

    def settle(self, settlements: Sequence[Settlement]) -> None:
        """Record attempts and move each row on; a row settled or re-claimed meanwhile (its
        attempts no longer match) is left as it is."""
        if not settlements:
            return
        with self.store.transaction() as tx:
            tx.executemany(
                f"INSERT INTO {ATTEMPTS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [
                    (s[0], s[1], s[2], ts(s[5]), int(s[3] == "delivered"), s[6], s[7])
                    for s in settlements
                    if s[4]
                ],
            )
            tx.executemany(
                f"UPDATE {OUTBOX_TABLE} SET status = ?, attempts = ?, last_error = ?,"
                " next_attempt_at = COALESCE(?, next_attempt_at), updated_at = ?,"
                " delivered_at = ?, leased_by = NULL"
                " WHERE alert_id = ? AND subscription_id = ? AND status = 'pending'"
                " AND attempts = ?",
                [
                    (s[3], s[2] if s[4] else s[2] - 1, s[6], ts(s[8]), ts(s[5]),
                     ts(s[5]) if s[3] == "delivered" else None, s[0], s[1], s[2] - 1)
                    for s in settlements
                ],
            )  # fmt: skip

    def reclaim(self, now: datetime, owner: str) -> int:
        """Make rows leased by anyone but `owner` due now; returns how many."""
        with self.store.transaction() as tx:
            where = "status = 'pending' AND leased_by IS NOT NULL AND leased_by <> ?"
            count = int(tx.scalar(f"SELECT count(*) FROM {OUTBOX_TABLE} WHERE {where}", (owner,)))
            tx.execute(
                f"UPDATE {OUTBOX_TABLE} SET next_attempt_at = ?, leased_by = NULL WHERE {where}",
                (ts(now), owner),
            )
        return count


def _alerts(tx: Tx, ids: list[str]) -> dict[str, Alert]:
    found: dict[str, Alert] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        for row in tx.all(
            f"SELECT {ALERT_COLUMNS} FROM {ALERTS_TABLE} WHERE id IN ({marks})", chunk
        ):
            found[row[0]] = alert_of(row)
    return found


def list_alerts(
    store: ViewStore,
    *,
    after: tuple[int, int, str] | None,
    limit: int,
    kind: str | None = None,
    subject_id: str | None = None,
) -> list[Alert]:
    """Alerts in the order they were raised, after the cursor `(raised_at, position, id)`."""
    where, params = ["1 = 1"], []
    if after is not None:
        where.append(
            "(raised_at > ? OR (raised_at = ? AND (position > ? OR (position = ? AND id > ?))))"
        )
        params += [after[0], after[0], after[1], after[1], after[2]]
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    if subject_id is not None:
        where.append("subject_id = ?")
        params.append(subject_id)
    with store.read() as tx:
        rows = tx.all(
            f"SELECT {ALERT_COLUMNS} FROM {ALERTS_TABLE} WHERE {' AND '.join(where)}"
            f" ORDER BY raised_at, position, id LIMIT {int(limit)}",
            params,
        )
    return [alert_of(row) for row in rows]


def list_deliveries(
    store: ViewStore,
    *,
    after: tuple[int, str, str] | None,
    limit: int,
    status: str | None = None,
    alert_id: str | None = None,
) -> list[Delivery]:
    """Deliveries oldest first, after the cursor `(created_at, alert_id, subscription_id)`."""
    where, params = ["1 = 1"], []
    if after is not None:
        where.append(
            "(o.created_at > ? OR (o.created_at = ? AND (o.alert_id > ?"
            " OR (o.alert_id = ? AND o.subscription_id > ?))))"
        )
        params += [after[0], after[0], after[1], after[1], after[2]]
    if status is not None:
        where.append("o.status = ?")
        params.append(status)
    if alert_id is not None:
        where.append("o.alert_id = ?")
        params.append(alert_id)
    with store.read() as tx:
        rows = tx.all(
            f"SELECT o.alert_id, o.subscription_id, s.channel_plugin, a.kind, o.status,"
            f" o.attempts, o.next_attempt_at, o.last_error, o.created_at, o.delivered_at,"
            f" s.team_ids FROM {OUTBOX_TABLE} o JOIN {ALERTS_TABLE} a ON a.id = o.alert_id"
            f" LEFT JOIN {SUBSCRIPTIONS_TABLE} s ON s.id = o.subscription_id"
            f" WHERE {' AND '.join(where)}"
            f" ORDER BY o.created_at, o.alert_id, o.subscription_id LIMIT {int(limit)}",
            params,
        )
        history: dict[tuple[str, str], list[Attempt]] = {}
        for alert in sorted({row[0] for row in rows}):
            for a in tx.all(
                f"SELECT subscription_id, attempt, attempted_at, ok, error, seconds"
                f" FROM {ATTEMPTS_TABLE} WHERE alert_id = ? ORDER BY attempt",
                (alert,),
            ):
                history.setdefault((alert, a[0]), []).append(
                    Attempt(a[1], from_ts(a[2]), bool(a[3]), a[4], float(a[5]))  # type: ignore[arg-type]
                )
    return [
        Delivery(
            alert_id=r[0], subscription_id=r[1], channel=r[2], kind=r[3], status=r[4],
            attempts=r[5], next_attempt_at=from_ts(r[6]) if r[4] == "pending" else None,
            last_error=r[7], created_at=from_ts(r[8]), delivered_at=from_ts(r[9]),
            history=history.get((r[0], r[1]), []), team_ids=json.loads(r[10] or "[]"),
        )  # type: ignore[arg-type]
        for r in rows
    ]  # fmt: skip


def subscription_ids(
    store: ViewStore, *, after: int, limit: int, include_deleted: bool = False
) -> list[tuple[str, int]]:
    """(id, position created) of subscriptions created after a position, oldest first."""
    live = "" if include_deleted else " AND deleted_position IS NULL"
    with store.read() as tx:
        return tx.all(
            f"SELECT id, created_position FROM {SUBSCRIPTIONS_TABLE}"
            f" WHERE created_position > ?{live} ORDER BY created_position LIMIT {int(limit)}",
            (after,),
        )
