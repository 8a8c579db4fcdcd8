"""Field-level change history of one aggregate, for auditors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from goalledger.core.errors import NotFound
from goalledger.core.ledger import Ledger
from goalledger.projections.queries import Views
from goalledger.projections.schema import from_ts

# Fields nobody reading history should see (a token's secret hash): shown as redacted.
REDACTED_FIELDS = frozenset({"secret_hash"})
REDACTED = "[redacted]"
# Event attributes that describe the event rather than the aggregate's fields.
_META = frozenset(
    {"originator_id", "originator_version", "originator_topic", "timestamp", "actor", "reason"}
)


class FieldChange(msgspec.Struct, frozen=True):
    """One field's value before and after an event."""

    field: str
    before: Any
    after: Any


class Change(msgspec.Struct, frozen=True):
    """One event in an aggregate's life, with who, why, when and what changed."""

    position: int | None
    version: int
    topic: str
    actor: str
    reason: str | None
    recorded_at: datetime
    effective_at: datetime | None
    changes: list[FieldChange]


def aggregate_history(
    ledger: Ledger,
    views: Views,
    aggregate_id: UUID,
    redact: Callable[[Any], Any] | None = None,
) -> list[Change]:
    """Every event of one aggregate with field-level before/after, oldest first.

    The fields come from the ledger itself (the aggregate's own event sequence);
    positions and both times come from the audit timeline. `redact` masks values
    before they are shown (plugin configs carry secrets only their plugin knows).
    """
    stored = ledger.recorder.select_events(aggregate_id)
    if not stored:
        raise NotFound("id", f"no aggregate with id {aggregate_id}")
    with views.store.read() as tx:
        t = views.tables(tx)
        rows = tx.all(
            f"SELECT version, position, effective_at FROM {t['events']} WHERE aggregate_id = ?",
            (str(aggregate_id),),
        )
    located = {version: (position, effective) for version, position, effective in rows}
    state: dict[str, Any] = {}
    history = []
    for item in stored:
        event = ledger.mapper.to_domain_event(item)
        fields = {k: v for k, v in vars(event).items() if k not in _META}
        changes = [
            FieldChange(
                field=name, before=_shown(state.get(name), redact), after=_shown(value, redact)
            )
            if name not in REDACTED_FIELDS
            else FieldChange(field=name, before=REDACTED, after=REDACTED)
            for name, value in fields.items()
            if state.get(name) != value
        ]
        state.update(fields)
        position, effective = located.get(event.originator_version, (None, None))
        history.append(
            Change(
                position=position, version=event.originator_version, topic=type(event).TOPIC,
                actor=event.actor, reason=getattr(event, "reason", None),
                recorded_at=event.timestamp, effective_at=from_ts(effective), changes=changes,
            )
        )  # fmt: skip
    return history


def _shown(value: Any, redact: Callable[[Any], Any] | None) -> Any:
    return value if redact is None or value is None else redact(value)
