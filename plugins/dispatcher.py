"""The notification dispatcher: sends what the outbox holds, at least once.

Each round claims due deliveries (hidden from other claims for a lease), sends each
through its subscription's channel (`Sender`: isolated, with a timeout), and only then
records the outcome: delivered, retried later with exponential backoff, or a dead
letter after the policy's last attempt. A process that dies between sending and
recording sends again once the lease ends, so receivers deduplicate by the
notification id (the alert id), which every channel carries.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from uuid import UUID

from goalledger.core.errors import NotFound
from goalledger.core.ledger import Ledger
from goalledger.core.subscriptions import Subscription
from goalledger.core.unavailable import LoopFailures
from goalledger.plugins.catalogue import ChannelBinding
from goalledger.plugins.delivery import Sender
from goalledger.plugins.outbox import Outbox, PendingDelivery, RetryPolicy, Settled, settle

log = logging.getLogger("goalledger.dispatcher")
DELETED = "the subscription was deleted before the alert was sent"


class Dispatcher:
    """Moves deliveries from the outbox through their channels."""

    def __init__(
        self,
        outbox: Outbox,
        ledger: Ledger,
        sender: Sender,
        *,
        policy: RetryPolicy | None = None,
        batch: int = 64,
        workers: int = 8,
        lease: timedelta | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.outbox, self.ledger, self.sender = outbox, ledger, sender
        self.policy = policy or RetryPolicy()
        self.batch, self.workers, self.clock = batch, workers, clock
        # A claim outlives the slowest round (every attempt timing out, `workers` at a
        # time), so a live dispatcher never has its rows claimed from under it.
        waves = -(-batch // max(1, workers))
        self.lease = lease or timedelta(seconds=sender.timeout * waves + 10)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def dispatch_once(self) -> list[Settled]:
        """Claim due deliveries, send them, record each outcome; returns the outcomes."""
        claimed = self.outbox.claim(self.clock(), self.batch, self.lease)
        if not claimed:
            return []
        bindings = self._bindings({d.subscription_id for d in claimed})
        # One alert's deliveries go one after another: a channel call is keyed by
        # (plugin, notification id), so two at once would collide.
        by_alert: dict[str, list[PendingDelivery]] = {}
        for delivery in claimed:
            by_alert.setdefault(delivery.alert_id, []).append(delivery)
        workers = max(1, min(self.workers, len(by_alert)))
        with ThreadPoolExecutor(workers, thread_name_prefix="goalledger-send") as pool:
            groups = pool.map(lambda group: [self._send(d, bindings) for d in group],
                              by_alert.values())  # fmt: skip
            outcomes = [outcome for group in groups for outcome in group]
        self.outbox.settle(outcomes)
        for outcome in outcomes:
            if outcome.status == "dead":
                log.warning(
                    "dead letter: alert %s to subscription %s after %d attempts: %s",
                    outcome.delivery.alert_id, outcome.delivery.subscription_id,
                    outcome.delivery.attempt, outcome.error,
                )  # fmt: skip
        return outcomes

    def _bindings(self, subscription_ids: set[str]) -> dict[str, ChannelBinding | None]:
        """Each subscription's channel, read from the ledger (None: deleted or unknown)."""
        found: dict[str, ChannelBinding | None] = {}
        for sid in subscription_ids:
            try:
                subscription = self.ledger.load(UUID(sid), Subscription)
            except (NotFound, ValueError):
                found[sid] = None
                continue
            channel = subscription.channel
            found[sid] = (
                None if subscription.deleted else ChannelBinding(channel.plugin, channel.config)
            )
        return found

    def _send(
        self, delivery: PendingDelivery, bindings: dict[str, ChannelBinding | None]
    ) -> Settled:
        binding = bindings.get(delivery.subscription_id)
        if binding is None:
            return Settled(delivery, "cancelled", False, self.clock(), DELETED)
        attempt = self.sender.send(binding, delivery.notification)
        return settle(
            delivery, ok=attempt.ok, error=attempt.error, seconds=attempt.seconds,
            at=self.clock(), policy=self.policy,
        )  # fmt: skip

    def drain(self, timeout: float = 10.0) -> int:
        """Dispatch until nothing is due (or `timeout` seconds pass); returns attempts made."""
        deadline = datetime.now(UTC) + timedelta(seconds=timeout)
        total = 0
        while datetime.now(UTC) < deadline:
            outcomes = self.dispatch_once()
            if not outcomes:
                break
            total += len(outcomes)
        return total

    # -- running in the background ---------------------------------------------------

    def start(self, interval: float = 0.5, *, reclaim: bool = False) -> None:
        """Dispatch on a daemon thread, polling every `interval` seconds when idle.

        With `reclaim` (the active worker), first take over every lease other
        dispatchers hold: they are gone, and their claims need not wait out the lease.
        """
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(interval, reclaim), name="goalledger-dispatcher", daemon=True
        )
        self._thread.start()

    def notify(self) -> None:
        """Look at the outbox now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the round in hand (its outcomes are recorded)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self, interval: float, reclaim: bool) -> None:
        while reclaim and not self._stop.is_set():
            try:
                taken = self.outbox.reclaim(self.clock())
            except Exception:
                log.exception("could not take over earlier dispatchers' leases")
                self._stop.wait(1.0)
                continue
            if taken:
                log.info("took over %d deliveries an earlier dispatcher had claimed", taken)
            break
        failures = LoopFailures(log, "dispatch round")
        while not self._stop.is_set():
            try:
                busy = bool(self.dispatch_once())
                failures.succeeded()
            except Exception as error:  # the store may be briefly unreachable: try again
                busy = False
                self._stop.wait(failures.failed(error))
            if not busy:
                self._wake.wait(interval)
                self._wake.clear()
