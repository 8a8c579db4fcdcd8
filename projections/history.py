"""KPI history (bitemporal readings, health, buckets) and the audit timeline."""

from __future__ import annotations

import bisect
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec

from goalledger.core.errors import DomainError, NotFound
from goalledger.core.kpis import Thresholds
from goalledger.projections.queries import Views, latest
from goalledger.projections.schema import from_dec, from_ts, ts

BUCKETS = ("day", "week", "month")


class HistoryItem(msgspec.Struct, frozen=True):
    """One reading as known at the query's position, with its health at its observed time."""

    reading_id: str
    value: Decimal
    observed_at: datetime
    recorded_at: datetime
    position: int
    health: str
    superseded_by: int | None
    version: int


class Bucket(msgspec.Struct, frozen=True):
    """Readings of one day, week (from Monday) or month, summarised."""

    start: datetime
    count: int
    min: Decimal
    max: Decimal
    mean: Decimal
    last: Decimal
    health: str  # the health of the bucket's last reading


class ThresholdPeriod(msgspec.Struct, frozen=True):
    """Thresholds in force from `effective_from` on (as known at the query's position)."""

    effective_from: datetime
    thresholds: Thresholds


class KpiHistory(msgspec.Struct, frozen=True):
    """A KPI's readings (or buckets) between two observed times, at a moment."""

    kpi_id: UUID
    name: str
    unit: str
    direction: str
    position: int
    at: datetime
    known_at: datetime | None
    thresholds: list[ThresholdPeriod]
    items: list[HistoryItem]
    buckets: list[Bucket] | None


class AuditEvent(msgspec.Struct, frozen=True):
    """One ledger event in the audit timeline."""

    position: int
    aggregate_id: UUID
    version: int
    topic: str
    actor: str
    reason: str | None
    recorded_at: datetime
    effective_at: datetime | None


def kpi_history(
    views: Views,
    kpi_id: UUID,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    bucket: str | None = None,
    as_of: datetime | None = None,
    known_at: datetime | None = None,
    include_superseded: bool = False,
    limit: int | None = None,
    after: tuple[datetime, int] | None = None,
) -> KpiHistory:
    """Readings of a KPI observed in [start, end] and by `as_of`, as known at `known_at`."""
    if bucket is not None and bucket not in BUCKETS:
        raise DomainError("bucket", f"must be one of {', '.join(BUCKETS)}")
    for field, moment in (("from", start), ("to", end), ("cursor", after and after[0])):
        if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
            raise DomainError(field, "must carry a UTC offset")
    with views.store.read() as tx:
        t = views.tables(tx)
        moment = views.moment(tx, t, as_of, known_at)
        p = moment.position
        kpi = tx.one(
            f"SELECT x.name, x.unit, k.direction FROM {t['kpis']} k"
            f" JOIN {latest(t['kpi_texts'], 'id, name, unit')} x ON x.id = k.id"
            f" WHERE k.id = ? AND k.defined_position <= ?",
            (p, str(kpi_id), p),
        )
        if kpi is None:
            raise NotFound("kpi_id", f"no KPI with id {kpi_id}")
        periods = [
            ThresholdPeriod(
                effective_from=from_ts(row[0]),
                thresholds=Thresholds(*(from_dec(v) for v in row[1:])),
            )
            for row in tx.all(
                f"SELECT effective_from, green_low, green_high, amber_low, amber_high"
                f" FROM {t['kpi_thresholds']} WHERE kpi_id = ? AND position <= ?"
                f" ORDER BY effective_from, position",
                (str(kpi_id), p),
            )
        ]
        upper = moment.at if end is None else min(end, moment.at)
        where = ["kpi_id = ?", "position <= ?", "observed_at <= ?"]
        params: list[Any] = [str(kpi_id), p, ts(upper)]
        if not include_superseded:
            where.append("(superseded_by IS NULL OR superseded_by > ?)")
            params.append(p)
        if start is not None:
            where.append("observed_at >= ?")
            params.append(ts(start))
        if after is not None:
            where.append("(observed_at > ? OR (observed_at = ? AND position > ?))")
            params += [ts(after[0]), ts(after[0]), after[1]]
        sql = (
            f"SELECT reading_id, value, observed_at, recorded_at, position, superseded_by,"
            f" version FROM {t['readings']} WHERE {' AND '.join(where)}"
            f" ORDER BY observed_at, position"
        )
        if limit is not None and bucket is None:
            sql += f" LIMIT {int(limit)}"
        rows = tx.all(sql, params)
    starts = [period.effective_from for period in periods]
    items = []
    for reading_id, value, observed, recorded, position, superseded_by, version in rows:
        observed_at = from_ts(observed)
        value = Decimal(value)
        items.append(
            HistoryItem(
                reading_id=reading_id, value=value, observed_at=observed_at,
                recorded_at=from_ts(recorded), position=position,
                health=_health(periods, starts, observed_at, value),
                superseded_by=superseded_by if superseded_by and superseded_by <= p else None,
                version=version,
            )
        )  # fmt: skip
    return KpiHistory(
        kpi_id=kpi_id, name=kpi[0], unit=kpi[1], direction=kpi[2], position=p,
        at=moment.at, known_at=known_at, thresholds=periods, items=items,
        buckets=None if bucket is None else _buckets(items, bucket),
    )  # fmt: skip


def _health(
    periods: list[ThresholdPeriod], starts: list[datetime], observed_at: datetime, value: Decimal
) -> str:
    index = bisect.bisect_right(starts, observed_at) - 1
    return periods[max(index, 0)].thresholds.health(value)


def bucket_start(moment: datetime, bucket: str) -> datetime:
    """The start (UTC midnight) of the day, ISO week or month containing `moment`."""
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if bucket == "week":
        return day - timedelta(days=day.weekday())
    if bucket == "month":
        return day.replace(day=1)
    return day


def _buckets(items: list[HistoryItem], bucket: str) -> list[Bucket]:
    groups: dict[datetime, list[HistoryItem]] = {}
    for item in items:
        groups.setdefault(bucket_start(item.observed_at, bucket), []).append(item)
    result = []
    for start, members in groups.items():
        values = [m.value for m in members]
        mean = (sum(values, Decimal(0)) / len(values)).quantize(Decimal("0.0001"))
        result.append(
            Bucket(
                start=start, count=len(values), min=min(values), max=max(values), mean=mean,
                last=members[-1].value, health=members[-1].health,
            )
        )  # fmt: skip
    return result


def audit_events(
    views: Views,
    *,
    after: int = 0,
    limit: int = 100,
    aggregate_id: UUID | None = None,
    topic: str | None = None,
) -> list[AuditEvent]:
    """The ledger's events in position order, with actor, reason and both times."""
    where, params = ["position > ?"], [after]
    if aggregate_id is not None:
        where.append("aggregate_id = ?")
        params.append(str(aggregate_id))
    if topic is not None:
        where.append("topic = ?")
        params.append(topic)
    with views.store.read() as tx:
        t = views.tables(tx)
        rows = tx.all(
            f"SELECT position, aggregate_id, version, topic, actor, reason, recorded_at,"
            f" effective_at FROM {t['events']} WHERE {' AND '.join(where)}"
            f" ORDER BY position LIMIT {int(limit)}",
            params,
        )
    return [
        AuditEvent(
            position=row[0], aggregate_id=UUID(row[1]), version=row[2], topic=row[3],
            actor=row[4], reason=row[5], recorded_at=from_ts(row[6]),
            effective_at=from_ts(row[7]),
        )
        for row in rows
    ]  # fmt: skip
