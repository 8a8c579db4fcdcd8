"""Built-in notification channels: `webhook` (HMAC-signed JSON), `slack`, `log`.

A webhook request carries

    X-Goalledger-Timestamp: <unix seconds>
    X-Goalledger-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the secret>
    X-Goalledger-Notification-Id: <the notification id, for deduplication>

and receivers check it with `verify_signature` (or the same three lines in any
language): recompute the HMAC over the raw body, compare in constant time, and
refuse timestamps older than a few minutes so a captured request cannot be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec

from goalledger.plugins.contracts import ChannelError, Notification, Secret, SourceError
from goalledger.plugins.egress import request
from goalledger.plugins.hookspecs import Register, hookimpl
from goalledger.plugins.sources_http import Seconds, check_url

SIGNATURE_HEADER = "X-Goalledger-Signature"
TIMESTAMP_HEADER = "X-Goalledger-Timestamp"
ID_HEADER = "X-Goalledger-Notification-Id"
REPLAY_TOLERANCE = 300  # seconds
RESPONSE_LIMIT = 65_536


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    tolerance: int = REPLAY_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether a webhook request is authentic and fresh (for receivers)."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    sent = int(timestamp)
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)


def post_json(url: str, payload: bytes, headers: dict[str, str], timeout: float) -> None:
    """POST a JSON body; anything but a 2xx answer is a ChannelError."""
    headers = {"Content-Type": "application/json", "User-Agent": "goalledger", **headers}
    try:
        response = request(
            "POST", url, body=payload, headers=headers, timeout=timeout, max_bytes=RESPONSE_LIMIT
        )
    except SourceError as error:  # egress and transport failures
        raise ChannelError(str(error)) from None
    if not 200 <= response.status < 300:
        detail = response.body[:200].decode("utf-8", "replace").strip()
        raise ChannelError(f"the receiver answered HTTP {response.status} {detail}".strip())


class WebhookConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where to POST, and the shared secret the body is signed with."""

    url: str
    secret: Annotated[str, Secret, msgspec.Meta(min_length=16)]
    timeout: Seconds = 10.0

    def __post_init__(self) -> None:
        check_url(self.url)


class WebhookChannel:
    """POSTs the notification as JSON, signed with HMAC-SHA256."""

    name = "webhook"
    config_type = WebhookConfig

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def send(self, config: WebhookConfig, notification: Notification) -> None:
        body = msgspec.json.encode(notification)
        timestamp = int(self.clock())
        headers = {
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(config.secret, timestamp, body),
            ID_HEADER: notification.id,
        }
        post_json(config.url, body, headers, config.timeout)


class SlackConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A Slack (or compatible) incoming-webhook URL; it is a secret."""

    webhook_url: Annotated[str, Secret]
    timeout: Seconds = 10.0

    def __post_init__(self) -> None:
        check_url(self.webhook_url, "webhook_url")


def slack_payload(notification: Notification) -> dict[str, Any]:
    """The incoming-webhook payload: plain `text` for previews, `blocks` for layout."""
    title, body = _mrkdwn(notification.title), _mrkdwn(notification.body)
    context = (
        f"{notification.kind} · {notification.subject_id} · "
        f"{notification.raised_at.isoformat()} · id {notification.id}"
    )
    return {
        "text": f"{notification.title}\n{notification.body}".strip()[:3000],
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": notification.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": (body or title)[:3000]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _mrkdwn(context)}]},
        ],
    }


def _mrkdwn(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel:
    """Posts to a Slack-compatible incoming webhook."""

    name = "slack"
    config_type = SlackConfig

    def send(self, config: SlackConfig, notification: Notification) -> None:
        payload = msgspec.json.encode(slack_payload(notification))
        post_json(config.webhook_url, payload, {}, config.timeout)


class LogConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which logger and level notifications are written to."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    logger: Annotated[str, msgspec.Meta(min_length=1)] = "goalledger.notifications"


class LogChannel:
    """Writes each notification to a Python logger (one line, structured `extra`)."""

    name = "log"
    config_type = LogConfig

    def send(self, config: LogConfig, notification: Notification) -> None:
        logging.getLogger(config.logger).log(
            logging.getLevelNamesMapping()[config.level.upper()],
            "%s %s: %s [%s]",
            notification.kind,
            notification.subject_id,
            notification.title,
            notification.id,
            extra={"notification": msgspec.to_builtins(notification)},
        )


@hookimpl
def register_notification_channels(register: Register) -> None:
    register(WebhookChannel())
    register(SlackChannel())
    register(LogChannel())
