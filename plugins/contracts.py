"""What a plugin implements and what it receives: the contract types.

A metric source is any object with

- `name`: the name KPIs bind to (lower case, digits and dashes, e.g. `http-json`);
- `config_type`: a msgspec Struct class; fields annotated `Annotated[T, Secret]` (or
  listed in a class-level `secret_fields`) are secrets, never echoed by the API;
- `fetch(config, kpi, since) -> Sequence[Observation]`, where `since` is the newest
  `observed_at` already recorded from this source (or None). Reading ids must be
  deterministic: fetching the same data twice records nothing new.

A notification channel has `name`, `config_type` and `send(config, notification)`,
which raises on failure (the host retries). Both may raise `SourceError` /
`ChannelError` for an expected failure whose message is shown as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Protocol, get_args, get_origin, runtime_checkable
from uuid import UUID

import msgspec

REDACTED = "********"


class Secret:
    """Marks a config field as secret: `token: Annotated[str | None, Secret] = None`."""


class SourceError(Exception):
    """A metric source could not fetch (upstream down, bad payload); the message is shown."""


class ChannelError(Exception):
    """A channel could not deliver (receiver refused, unreachable); the message is shown."""


class Observation(msgspec.Struct, frozen=True):
    """One value a source observed; `reading_id` is its idempotency key within the KPI."""

    reading_id: str
    value: Decimal
    observed_at: datetime


class KpiRef(msgspec.Struct, frozen=True):
    """What a source is told about the KPI it fetches for (a read-only snapshot)."""

    id: UUID
    name: str
    unit: str
    direction: str
    frequency: str  # hourly | daily | weekly | monthly
    team_id: UUID | None = None


class Notification(msgspec.Struct, frozen=True):
    """Something to tell people; `id` is deterministic so receivers can deduplicate."""

    id: str
    kind: str
    subject_id: str
    raised_at: datetime
    position: int
    title: str
    body: str
    data: dict[str, Any] = {}


@runtime_checkable
class MetricSource(Protocol):
    """A metric source plugin object."""

    name: str
    config_type: type[msgspec.Struct]

    def fetch(self, config: Any, kpi: KpiRef, since: datetime | None) -> Sequence[Observation]:
        """Observations for `kpi`, newest data included; raise on failure."""
        ...


@runtime_checkable
class NotificationChannel(Protocol):
    """A notification channel plugin object."""

    name: str
    config_type: type[msgspec.Struct]

    def send(self, config: Any, notification: Notification) -> None:
        """Deliver one notification; raise on failure."""
        ...


def secret_fields(config_type: type[msgspec.Struct]) -> frozenset[str]:
    """Names of the secret fields of a config Struct (as they appear in JSON)."""
    names = set(getattr(config_type, "secret_fields", ()))
    for field in msgspec.structs.fields(config_type):
        if _is_secret(field.type):
            names.add(field.encode_name)
        elif field.name in names:
            names.discard(field.name)
            names.add(field.encode_name)
    return frozenset(names)


def _is_secret(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        return any(meta is Secret or isinstance(meta, Secret) for meta in get_args(annotation)[1:])
    return False
