"""Built-in channels against real receivers on 127.0.0.1 (HTTP and SMTP), and sending
isolation: a raising or hanging channel never crashes the host."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import Message

import msgspec
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from goalledger.core.secrets import Keyring, new_key
from goalledger.plugins import ChannelError, Notification, hookimpl
from goalledger.plugins.catalogue import ChannelBinding
from goalledger.plugins.channels import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookChannel,
    WebhookConfig,
    sign,
    slack_payload,
    verify_signature,
)
from goalledger.plugins.delivery import Sender
from goalledger.plugins.manager import load_plugins
from goalledger.plugins.testkit import Exchange, SourceHarness, local_http_server, make_notification

pytest_plugins = ["goalledger.plugins.testing"]

SECRET = "whsec-0123456789abcdef"
OK = (200, {}, b"ok")


def test_channel_webhook_signs_what_a_receiver_can_verify(
    goalledger_harness: SourceHarness,
) -> None:
    verdicts: list[bool] = []

    def receiver(exchange: Exchange) -> tuple[int, dict[str, str], bytes]:
        headers = {k.lower(): v for k, v in exchange.headers.items()}
        authentic = verify_signature(
            SECRET,
            exchange.body,
            headers.get(TIMESTAMP_HEADER.lower()),
            headers.get(SIGNATURE_HEADER.lower()),
        )
        verdicts.append(authentic)
        return (204, {}, b"") if authentic else (401, {}, b"bad signature")

    notification = make_notification(title="Signups <amber> & falling")
    with local_http_server(receiver) as server:
        config = {"url": f"{server.url}/hooks/goalledger", "secret": SECRET}
        delivery = goalledger_harness.send("webhook", config, notification)
        wrong = goalledger_harness.send("webhook", dict(config, secret="x" * 16), notification)
    assert delivery.ok, delivery.error
    assert (wrong.ok, wrong.error) == (False, "the receiver answered HTTP 401 bad signature")
    assert verdicts == [True, False]
    request = server.received[0]
    assert request.method == "POST" and request.path == "/hooks/goalledger"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers[ID_HEADER] == notification.id
    assert msgspec.json.decode(request.body, type=Notification) == notification
    timestamp = request.headers[TIMESTAMP_HEADER]
    assert request.headers[SIGNATURE_HEADER] == sign(SECRET, int(timestamp), request.body)


def test_verify_signature_refuses_tampering_and_replays() -> None:
    body = b'{"id":"a"}'
    signature = sign(SECRET, 1_700_000_000, body)
    assert verify_signature(SECRET, body, "1700000000", signature, now=1_700_000_100)
    assert not verify_signature(SECRET, body + b" ", "1700000000", signature, now=1_700_000_100)
    assert not verify_signature(SECRET, body, "1700000001", signature, now=1_700_000_100)
    assert not verify_signature("another-secret-16", body, "1700000000", signature, now=1.7e9)
    assert not verify_signature(SECRET, body, "1700000000", signature, now=1_700_000_301)
    assert not verify_signature(SECRET, body, None, signature)
    assert not verify_signature(SECRET, body, "soon", signature)
    # The documented recipe, by hand: HMAC-SHA256 over "<timestamp>.<body>".
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"


def test_channel_slack(goalledger_harness: SourceHarness) -> None:
    with local_http_server(lambda e: OK) as server:
        delivery = goalledger_harness.send(
            "slack", {"webhook_url": f"{server.url}/services/T0/B0/x"}, make_notification()
        )
    assert delivery.ok, delivery.error
    payload = json.loads(server.received[0].body)
    assert payload == slack_payload(make_notification())
    assert payload["text"] == "Signups turned amber\nSignups fell to 180 (amber below 200)."
    assert [block["type"] for block in payload["blocks"]] == ["header", "section", "context"]
    escaped = slack_payload(make_notification(body="a <b> & c"))
    assert escaped["blocks"][1]["text"]["text"] == "a &lt;b&gt; &amp; c"


def test_channel_log(goalledger_harness: SourceHarness, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="goalledger.notifications"):
        delivery = goalledger_harness.send("log", {}, make_notification())
        quiet = goalledger_harness.send("log", {"level": "debug", "logger": "x.y"})
    assert delivery.ok and quiet.ok
    (record,) = caplog.records
    assert record.levelname == "INFO"
    assert record.getMessage() == (
        "kpi_health_changed 3f1c0000-0000-4000-8000-000000000001: Signups turned amber "
        "[kpi_health_changed:3f1c0000-0000-4000-8000-000000000001:42]"
    )
    assert record.notification["position"] == 42  # type: ignore[attr-defined]


class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, Message]] = []

    async def handle_DATA(self, server: object, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append((envelope, message_from_bytes(content, policy=policy.default)))
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Inbox]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_require_tls=False,
        ready_timeout=10,
    )
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def test_channel_email(goalledger_harness: SourceHarness, smtp_server: tuple[int, Inbox]) -> None:
    port, inbox = smtp_server
    config = {
        "host": "127.0.0.1",
        "port": port,
        "sender": "goalledger@example.org",
        "to": ["ops@example.org", "ceo@example.org"],
    }
    notification = make_notification()
    assert goalledger_harness.send("email", config, notification).ok
    logged_in = dict(config, username="bot", password="s3cret")
    assert goalledger_harness.send("email", logged_in, notification).ok
    refused = goalledger_harness.send("email", dict(logged_in, password="nope"), notification)
    assert not refused.ok and "Authentication" in (refused.error or "")
    assert len(inbox.messages) == 2
    envelope, message = inbox.messages[0]
    assert envelope.rcpt_tos == ["ops@example.org", "ceo@example.org"]
    assert message["Subject"] == "Signups turned amber"
    digest = hashlib.sha256(notification.id.encode()).hexdigest()[:40]
    assert message["Message-ID"] == f"<{digest}@goalledger>"
    assert message["X-Goalledger-Notification-Id"].strip() == notification.id  # may be folded
    assert "Signups fell to 180" in message.get_content()
    # The same notification gives the same Message-ID: receivers can deduplicate.
    assert inbox.messages[1][1]["Message-ID"] == message["Message-ID"]


def test_email_config_is_checked(goalledger_harness: SourceHarness) -> None:
    from goalledger.core.errors import DomainError

    base = {"host": "mail", "sender": "a@b.c", "to": ["d@e.f"]}
    for config, field in [
        (dict(base, to=[]), "channel.config.to"),
        (dict(base, sender="not an address"), "channel.config.sender"),
        (dict(base, username="u"), "channel.config.password"),
        (dict(base, security="ssl"), "channel.config.security"),
    ]:
        with pytest.raises(DomainError) as caught:
            goalledger_harness.registry.validate_channel("email", config)
        assert caught.value.field == field


RELEASE = threading.Event()


class Unruly(msgspec.Struct):
    behaviour: str = "raise"


class UnrulyChannel:
    name = "unruly"
    config_type = Unruly

    def send(self, config: Unruly, notification: Notification) -> None:
        if config.behaviour == "hang":
            RELEASE.wait(30)
        elif config.behaviour == "expected":
            raise ChannelError("receiver is on holiday")
        else:
            raise KeyError("surprise")


class UnrulyPlugin:
    @hookimpl
    def register_notification_channels(self, register):
        register(UnrulyChannel())


def test_hook_register_notification_channels(
    goalledger_harness: SourceHarness, captured_notifications: list[Notification]
) -> None:
    registry = load_plugins(entry_points_=[], extra=[("unruly", UnrulyPlugin())])
    assert "unruly" in registry.channels
    sender = Sender(registry, timeout=0.3)
    try:
        started = time.monotonic()
        hanging = sender.send(ChannelBinding("unruly", {"behaviour": "hang"}), make_notification())
        assert time.monotonic() - started < 2
        assert (hanging.ok, hanging.error) == (False, "timed out after 0.3s")
        again = sender.send(ChannelBinding("unruly", {"behaviour": "hang"}), make_notification())
        assert again.error == "an earlier call is still running (it overran its timeout)"
        # Other notifications go out while the hanging one still holds its own slot.
        raising = sender.send(ChannelBinding("unruly", {}), make_notification(id="n-raise"))
        assert raising.error == "KeyError: 'surprise'"
        expected = sender.send(
            ChannelBinding("unruly", {"behaviour": "expected"}), make_notification(id="n-expected")
        )
        assert expected.error == "receiver is on holiday"
        unknown = sender.send(ChannelBinding("gone", {}), make_notification())
        assert unknown.error is not None and unknown.error.startswith(
            "channel.plugin: no notification channel named 'gone'"
        )
    finally:
        RELEASE.set()
    # Meanwhile other channels work, and the test kit's capture channel records sends.
    assert goalledger_harness.send("capture", {}, make_notification(id="n-1")).ok
    assert goalledger_harness.send("capture", {}, make_notification(id="n-2")).ok
    assert [n.id for n in captured_notifications] == ["n-1", "n-2"]


def test_webhook_failures_are_reported_not_raised() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    registry = load_plugins(entry_points_=[])
    registry.keyring = Keyring.parse(new_key())  # the secret is sealed, as the server does
    binding = registry.validate_channel(
        "webhook", {"url": f"http://127.0.0.1:{port}/", "secret": SECRET}
    )
    delivery = Sender(registry).send(binding, make_notification())
    assert not delivery.ok and "ConnectionRefusedError" in (delivery.error or "")
    with pytest.raises(ChannelError):  # called directly, a channel raises: the host isolates
        WebhookChannel().send(
            WebhookConfig(url=f"http://127.0.0.1:{port}/", secret=SECRET), make_notification()
        )
