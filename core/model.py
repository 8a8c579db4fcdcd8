"""What every goalledger aggregate and event shares: an actor on every event."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from eventsourcing.domain import Aggregate

from goalledger.core.errors import DomainError, require


class LedgerAggregate(Aggregate):
    """Base of every aggregate in the ledger; its events name who caused them.

    Each aggregate declares its own `Event` (a subclass of this one), derives its
    first event from that `Event` and `Aggregate.Created`, and binds it to the name
    `Created` too, so eventsourcing uses it rather than defining one of its own.
    """

    class Event(Aggregate.Event):
        """An event of a goalledger aggregate, recorded on behalf of `actor`."""

        actor: str

    def __init__(self) -> None:
        # State is set by each aggregate's created event's `apply`.
        pass

    def __deepcopy__(self, memo: dict[int, Any]) -> LedgerAggregate:
        """A copy for one command (the aggregate cache hands these out).

        State values are immutable (str, Decimal, UUID, datetime, frozen Structs) apart
        from lists, so copying the lists is a full copy at a fraction of `deepcopy`'s
        cost, which dominated single commands.
        """
        copy = object.__new__(type(self))
        copy.__dict__.update(
            {k: list(v) if isinstance(v, list) else v for k, v in self.__dict__.items()}
        )
        return copy


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def aware(value: datetime, field: str) -> datetime:
    """Refuse naive datetimes: a fact's time must say its offset."""
    require(
        value.tzinfo is not None and value.utcoffset() is not None, field, "must carry a UTC offset"
    )
    return value


def as_decimal(value: Any, field: str) -> Decimal:
    """Turn a number (or numeric string) into an exact, finite Decimal."""
    if isinstance(value, bool):
        raise DomainError(field, "must be a number, not a boolean")
    if isinstance(value, float):
        value = repr(value)  # the shortest repr, not the binary expansion
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise DomainError(field, f"must be a number, got {value!r}") from None
    require(number.is_finite(), field, "must be a finite number")
    return number


def optional_decimal(value: Any, field: str) -> Decimal | None:
    """Like `as_decimal`, keeping None."""
    return None if value is None else as_decimal(value, field)


def non_blank(value: str, field: str, *, max_length: int = 500) -> str:
    """A stripped, non-empty string of bounded length."""
    require(isinstance(value, str), field, "must be a string")
    text = value.strip()
    require(bool(text), field, "must not be blank")
    require(len(text) <= max_length, field, f"must be at most {max_length} characters")
    return text


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of `day`."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
