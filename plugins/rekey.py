"""Secrets at rest across keys: which recorded bindings hold secrets under which keys,
the start-up check that refuses to run without them, and rotation.

Rotation re-records every binding still in use whose secrets are not all sealed under
the current key (or were recorded in plain text before sealing existed) as a new
event, with its actor and reason: history is immutable, so the old events keep their
old seals, and a retired key stops opening only those past copies.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Literal
from uuid import UUID

import msgspec

from goalledger.core.errors import Conflict, DomainError
from goalledger.core.kpis import Kpi
from goalledger.core.ledger import Ledger
from goalledger.core.secrets import (
    KEY_VARIABLE,
    PREVIOUS_VARIABLE,
    Keyring,
    SecretKeyProblem,
    is_sealed,
    sealed_key_id,
)
from goalledger.core.subscriptions import Channel, Subscription
from goalledger.plugins.catalogue import Catalogue, ChannelBinding

log = logging.getLogger(__name__)
BATCH = 1000
# The events that set a binding, and the one that ends a subscription's.
TOPICS = (
    Kpi.Defined.TOPIC,
    Kpi.SourceBound.TOPIC,
    Subscription.Created.TOPIC,
    Subscription.ChannelChanged.TOPIC,
    Subscription.Deleted.TOPIC,
)
Owner = Literal["kpi", "subscription"]


class Held(msgspec.Struct, frozen=True):
    """A binding in use that holds secrets: whose, which plugin, under which keys."""

    owner: Owner
    id: UUID
    plugin: str
    key_ids: list[str]  # keys its sealed values are sealed under
    plain: list[str]  # secret fields recorded in plain text, before sealing existed


class Inventory(msgspec.Struct, frozen=True):
    """Every binding in use that holds secrets."""

    held: list[Held]

    def key_ids(self) -> set[str]:
        """Every key some binding in use needs."""
        return {kid for held in self.held for kid in held.key_ids}

    def stale(self, current_id: str | None) -> list[Held]:
        """Bindings a rotation re-records: plain text, or sealed under another key."""
        return [h for h in self.held if h.plain or any(k != current_id for k in h.key_ids)]


class Rotated(msgspec.Struct, frozen=True):
    """What a rotation did: bindings re-recorded, and those it could not (with why)."""

    key_id: str
    rotated: list[Held]
    failed: list[tuple[Held, str]]
    position: int | None


def bindings_in_use(ledger: Ledger) -> Iterator[tuple[Owner, UUID, Any]]:
    """(owner, id, binding) of every KPI source and live subscription channel, from the
    events that set them (read by topic, so the scan skips readings and check-ins)."""
    current: dict[UUID, tuple[Owner, Any]] = {}
    position = 0
    while True:
        page = ledger.recorder.select_notifications(
            position, BATCH, topics=TOPICS, inclusive_of_start=False
        )
        for notification in page:
            event = ledger.mapper.to_domain_event(notification)
            if isinstance(event, (Kpi.Defined, Kpi.SourceBound)):
                current[event.originator_id] = ("kpi", event.source)
            elif isinstance(event, (Subscription.Created, Subscription.ChannelChanged)):
                channel = event.channel
                binding = ChannelBinding(channel.plugin, channel.config)
                current[event.originator_id] = ("subscription", binding)
            else:
                current.pop(event.originator_id, None)
        if len(page) < BATCH:
            break
        position = page[-1].id
    for aggregate_id, (owner, binding) in current.items():
        if binding is not None:
            yield owner, aggregate_id, binding


def inventory(ledger: Ledger, catalogue: Catalogue) -> Inventory:
    """The bindings in use that hold secrets, sealed or (from before sealing) plain."""
    held = []
    for owner, aggregate_id, binding in bindings_in_use(ledger):
        values = {key: binding.config.get(key) for key in catalogue.secrets_in(binding)}
        key_ids = sorted({sealed_key_id(v) for v in values.values() if is_sealed(v)})
        plain = sorted(k for k, v in values.items() if v not in (None, "") and not is_sealed(v))
        if key_ids or plain:
            held.append(Held(owner, aggregate_id, binding.plugin, key_ids, plain))
    return Inventory(held)


def check_keys(ledger: Ledger, catalogue: Catalogue) -> Inventory:
    """The inventory, once every key it needs is set; `SecretKeyProblem` otherwise.

    A server that started without the keys could neither fetch nor deliver through the
    bindings sealed under them, and might be mistaken for one that lost them.
    """
    found = inventory(ledger, catalogue)
    missing = sorted(found.key_ids() - catalogue.keyring.ids)
    if missing:
        count = sum(1 for held in found.held if set(held.key_ids) & set(missing))
        where = f"{count} binding{'s' if count != 1 else ''} in use"
        keys = ", ".join(missing)
        if catalogue.keyring.current_id is None:
            message = (
                f"is not set, and the ledger holds secrets of {where} encrypted under key "
                f"{keys}: set it to that key (see docs/secrets.md); refusing to start"
            )
        else:
            message = (
                f"holds key {catalogue.keyring.current_id}, but the ledger holds secrets of "
                f"{where} encrypted under key {keys}, which neither it nor "
                f"{PREVIOUS_VARIABLE} holds: set the key they were sealed with (see "
                "docs/secrets.md); refusing to start"
            )
        raise SecretKeyProblem(KEY_VARIABLE, message)
    return found


def warn_of_stale(found: Inventory, keyring: Keyring) -> None:
    """Log what `goalledger secrets rotate` would re-record, if anything."""
    plain = sum(1 for held in found.held if held.plain)
    if plain:
        log.warning(
            "%d binding(s) in use hold secrets recorded in plain text before they were "
            "encrypted; run 'goalledger secrets rotate' to re-record them encrypted",
            plain,
        )
    old = sum(1 for held in found.held if any(k != keyring.current_id for k in held.key_ids))
    if old:
        log.warning(
            "%d binding(s) in use hold secrets sealed under a previous key; run "
            "'goalledger secrets rotate' before retiring it",
            old,
        )


def rotate(ledger: Ledger, catalogue: Catalogue, *, actor: str, reason: str) -> Rotated:
    """Re-record every stale binding in use with its secrets sealed under the current
    key, one event each; one that changed meanwhile or cannot be opened is reported."""
    current_id = catalogue.keyring.current_id
    if current_id is None:
        raise SecretKeyProblem(KEY_VARIABLE, "is not set: rotation seals under it")
    rotated: list[Held] = []
    failed: list[tuple[Held, str]] = []
    position: int | None = None
    for held in check_keys(ledger, catalogue).stale(current_id):
        try:
            position = _rerecord(ledger, catalogue, held, actor=actor, reason=reason)
        except (DomainError, Conflict) as error:
            failed.append((held, str(error)))
        else:
            rotated.append(held)
    return Rotated(current_id, rotated, failed, position)


def _rerecord(ledger: Ledger, catalogue: Catalogue, held: Held, *, actor: str, reason: str) -> int:
    if held.owner == "kpi":
        kpi = ledger.load(held.id, Kpi)
        if kpi.source is None:
            raise DomainError("source", "was unbound meanwhile")
        source = catalogue.reseal(kpi.source)
        return ledger.bind_kpi_source(
            held.id, source=source, actor=actor, reason=reason, expected_version=kpi.version
        ).position
    subscription = ledger.load(held.id, Subscription)
    channel = subscription.channel
    sealed = catalogue.reseal(ChannelBinding(channel.plugin, channel.config))
    subscription.change_channel(Channel(sealed.plugin, sealed.config), actor=actor, reason=reason)
    return ledger.record(subscription)
