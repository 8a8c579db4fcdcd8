"""The outbox and its dispatcher: delivered once the channel returns, retried with
exponential backoff, dead-lettered after the last attempt, leased against a second
dispatcher. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import msgspec
import pytest

from goalledger.api.bootstrap import System, bootstrap
from goalledger.api.cli_worker import dispatcher_for
from goalledger.core.kpis import thresholds_for
from goalledger.core.ledger import ReadingInput
from goalledger.core.settings import Settings
from goalledger.core.subscriptions import Channel
from goalledger.plugins import ChannelError, Notification, hookimpl
from goalledger.plugins.channels import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from goalledger.plugins.delivery import Sender
from goalledger.plugins.manager import load_plugins
from goalledger.plugins.outbox import RetryPolicy, TableOutbox, settle
from goalledger.plugins.testkit import Exchange, local_http_server
from goalledger.projections.alert_store import OutboxTables, list_deliveries

SECRET = "whsec-0123456789abcdef"


class SwitchConfig(msgspec.Struct, forbid_unknown_fields=True):
    """No settings."""


class Switch:
    """A channel that fails while `failing` is set and keeps what it delivered."""

    name = "switch"
    config_type = SwitchConfig

    def __init__(self) -> None:
        self.failing = False
        self.sent: list[Notification] = []

    def send(self, config: SwitchConfig, notification: Notification) -> None:
        if self.failing:
            raise ChannelError("the receiver is down")
        self.sent.append(notification)

    @hookimpl
    def register_notification_channels(self, register) -> None:  # type: ignore[no-untyped-def]
        register(self)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def switch() -> Switch:
    return Switch()


@pytest.fixture
def system(settings: Settings, switch: Switch) -> Iterator[System]:
    built = bootstrap(settings, load_plugins(enabled=[], extra=[("switch", switch)]))
    try:
        yield built
    finally:
        built.close()


def raise_alerts(system: System, count: int, channel: Channel | None = None) -> UUID:
    """Subscribe `channel` (default: the switch) and raise `count` health alerts."""
    sub = system.ledger.subscribe(
        alert_kinds=["kpi_health_changed"], team_ids=[], channel=channel or Channel("switch", {}),
        actor="a",
    ).id  # fmt: skip
    kpi = system.ledger.define_kpi(
        name="Uptime", direction="higher_is_better", frequency="daily", actor="a",
        thresholds=thresholds_for("higher_is_better", "99.9", "99"),
    ).id  # fmt: skip
    start = datetime.now(UTC) - timedelta(hours=count + 2)
    values = ["99.95", *(["50", "99.95"] * count)][: count + 1]
    system.ledger.record_readings(
        [
            ReadingInput(kpi, f"r{i}", Decimal(v), start + timedelta(hours=i))
            for i, v in enumerate(values)
        ],
        source="t",
        actor="t",
    )
    system.catch_up()
    return sub


def statuses(system: System) -> list[tuple[str, int]]:
    with system.store.read() as tx:
        return tx.all("SELECT status, attempts FROM gl_outbox ORDER BY alert_id")


def test_each_alert_is_sent_once_and_recorded_as_delivered(system: System, switch: Switch) -> None:
    raise_alerts(system, 5)
    dispatcher = dispatcher_for(system)
    assert dispatcher.drain() == 5
    assert dispatcher.drain() == 0
    with system.store.read() as tx:
        ids = {row[0] for row in tx.all("SELECT id FROM gl_alerts")}
    assert sorted(n.id for n in switch.sent) == sorted(ids)
    assert statuses(system) == [("delivered", 1)] * 5
    delivered = list_deliveries(system.store, after=None, limit=10)
    assert {d.status for d in delivered} == {"delivered"}
    assert all(len(d.history) == 1 and d.history[0].ok for d in delivered)


def test_failures_back_off_exponentially_then_become_dead_letters(
    system: System, switch: Switch
) -> None:
    raise_alerts(system, 1)
    clock = Clock()
    policy = RetryPolicy(max_attempts=3, first_delay=10, factor=2)
    dispatcher = dispatcher_for(system, policy=policy)
    dispatcher.clock = clock
    switch.failing = True
    waits = []
    for _ in range(3):
        (outcome,) = dispatcher.dispatch_once()
        assert dispatcher.dispatch_once() == []  # nothing due until the backoff ends
        if outcome.next_attempt_at is not None:
            waits.append((outcome.next_attempt_at - clock.now).total_seconds())
            clock.now = outcome.next_attempt_at
    assert waits == [10, 20]
    assert outcome.status == "dead" and statuses(system) == [("dead", 3)]
    (dead,) = list_deliveries(system.store, after=None, limit=10, status="dead")
    assert [(a.attempt, a.ok, a.error) for a in dead.history] == [
        (n, False, "the receiver is down") for n in (1, 2, 3)
    ]
    clock.now += timedelta(days=1)
    assert dispatcher.dispatch_once() == [] and switch.sent == []


def test_a_deleted_subscription_cancels_what_it_had_queued(system: System, switch: Switch) -> None:
    sub = raise_alerts(system, 2)
    system.ledger.delete_subscription(sub, actor="a")
    outcomes = dispatcher_for(system).dispatch_once()
    assert {o.status for o in outcomes} == {"cancelled"} and switch.sent == []
    assert statuses(system) == [("cancelled", 0)] * 2


def test_a_claim_is_leased_and_a_late_settlement_is_ignored(system: System, switch: Switch) -> None:
    raise_alerts(system, 1)
    outbox = TableOutbox(OutboxTables(system.store))
    now = datetime.now(UTC) + timedelta(seconds=1)
    lease = timedelta(seconds=30)
    (first,) = outbox.claim(now, 10, lease)
    assert outbox.claim(now, 10, lease) == []  # hidden from a second dispatcher
    (again,) = outbox.claim(now + lease, 10, lease)  # the first one died, say
    assert (first.attempt, again.attempt) == (1, 1)
    policy = RetryPolicy()
    outbox.settle([settle(again, ok=True, error=None, seconds=0.1, at=now, policy=policy)])
    outbox.settle([settle(first, ok=False, error="late", seconds=9, at=now, policy=policy)])
    assert statuses(system) == [("delivered", 1)]
    (delivery,) = list_deliveries(system.store, after=None, limit=10)
    assert [(a.attempt, a.ok) for a in delivery.history] == [(1, True)]


def test_webhooks_reach_a_real_receiver_signed_and_named_by_alert_id(system: System) -> None:
    def accept(exchange: Exchange) -> tuple[int, dict[str, str], bytes]:
        return 204, {}, b""

    with local_http_server(accept) as receiver:
        channel = Channel("webhook", {"url": f"{receiver.url}/hook", "secret": SECRET})
        raise_alerts(system, 3, channel)
        assert dispatcher_for(system, sender=Sender(system.plugins, timeout=5)).drain() == 3
    ids = set()
    for exchange in receiver.received:
        body = json.loads(exchange.body)
        assert exchange.headers[ID_HEADER] == body["id"]
        stamp = int(exchange.headers[TIMESTAMP_HEADER])
        assert exchange.headers[SIGNATURE_HEADER] == sign(SECRET, stamp, exchange.body)
        ids.add(body["id"])
        assert body["kind"] == "kpi_health_changed" and body["title"].startswith("Uptime")
    assert len(ids) == 3


def test_the_active_worker_takes_over_the_leases_of_dispatchers_gone_before_it(
    system: System, switch: Switch
) -> None:
    raise_alerts(system, 2)
    gone = TableOutbox(OutboxTables(system.store))
    assert len(gone.claim(datetime.now(UTC) + timedelta(seconds=1), 10, timedelta(hours=1))) == 2
    dispatcher = dispatcher_for(system)
    assert dispatcher.dispatch_once() == []  # leased for an hour by a dispatcher now dead
    assert dispatcher.outbox.reclaim(datetime.now(UTC)) == 2
    assert dispatcher.outbox.reclaim(datetime.now(UTC)) == 0
    assert [o.status for o in dispatcher.dispatch_once()] == ["delivered"] * 2
