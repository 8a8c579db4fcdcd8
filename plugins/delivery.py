"""Sending one notification through a channel, isolated: it never raises to the host.

The outbox (retries, backoff, dead letters) builds on this; here is one attempt.
"""

from __future__ import annotations

import time

import msgspec

from goalledger.plugins.catalogue import Catalogue, ChannelBinding
from goalledger.plugins.contracts import Notification
from goalledger.plugins.isolation import Isolated, reason

DEFAULT_TIMEOUT = 30.0


class Delivery(msgspec.Struct, frozen=True):
    """The outcome of one attempt to send one notification through one channel."""

    notification_id: str
    channel: str
    ok: bool
    error: str | None
    seconds: float


class Sender:
    """Sends notifications through registered channels with a timeout per attempt."""

    def __init__(self, catalogue: Catalogue, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.catalogue, self.timeout = catalogue, timeout
        self.isolated = Isolated()

    def send(self, binding: ChannelBinding, notification: Notification) -> Delivery:
        """One attempt; a raising, hanging or unknown channel gives `ok=False`."""
        started = time.monotonic()
        error: str | None = None
        try:
            channel = self.catalogue.channel(binding.plugin)
            config = self.catalogue.config_of(binding)
            key = (binding.plugin, notification.id)
            self.isolated.call(key, self.timeout, channel.send, config, notification)
        except Exception as failure:  # a channel never crashes the host
            error = reason(failure)
        return Delivery(
            notification_id=notification.id,
            channel=binding.plugin,
            ok=error is None,
            error=error,
            seconds=round(time.monotonic() - started, 6),
        )
