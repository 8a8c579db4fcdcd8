"""Reading periods: deterministic reading ids for sources whose data carries no time.

A source that can only see "the value now" records one reading per KPI period (its
frequency), so polling twice in the same period records nothing new.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

FREQUENCIES = ("hourly", "daily", "weekly", "monthly")


def period_start(moment: datetime, frequency: str) -> datetime:
    """The start (UTC) of the `frequency` period holding `moment`."""
    if moment.tzinfo is None:
        raise ValueError("moment: must be timezone-aware")
    moment = moment.astimezone(UTC)
    if frequency == "hourly":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if frequency == "daily":
        return day
    if frequency == "weekly":
        return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
    if frequency == "monthly":
        return day.replace(day=1)
    raise ValueError(f"frequency: must be one of {', '.join(FREQUENCIES)}")


def next_period(start: datetime, frequency: str) -> datetime:
    """The start of the period after the one starting at `start`."""
    if frequency == "hourly":
        return start + timedelta(hours=1)
    if frequency == "daily":
        return start + timedelta(days=1)
    if frequency == "weekly":
        return start + timedelta(days=7)
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.replace(year=year, month=month, day=1)


def period_id(start: datetime, frequency: str) -> str:
    """A stable, readable id for the period starting at `start` (e.g. `2026-03-14`)."""
    if frequency == "hourly":
        return start.strftime("%Y-%m-%dT%H:00Z")
    if frequency == "monthly":
        return start.strftime("%Y-%m")
    if frequency == "weekly":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return start.strftime("%Y-%m-%d")


def period_starts(
    since: datetime | None, now: datetime, frequency: str, limit: int
) -> list[datetime]:
    """Starts of the periods after the one holding `since`, up to the one holding `now`.

    With no `since`, only the current period; at most the newest `limit` periods.
    """
    current = period_start(now, frequency)
    if since is None:
        return [current]
    starts: list[datetime] = []
    start = next_period(period_start(since, frequency), frequency)
    while start <= current:
        starts.append(start)
        start = next_period(start, frequency)
    return starts[-limit:]
