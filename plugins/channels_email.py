"""Built-in `email` channel: one plain-text message per notification, over SMTP."""

from __future__ import annotations

import hashlib
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Annotated, Any, Literal

import msgspec

from goalledger.plugins.contracts import ChannelError, Notification, Secret, SourceError
from goalledger.plugins.egress import EgressPolicy
from goalledger.plugins.hookspecs import Register, hookimpl
from goalledger.plugins.sources_http import Seconds

Address = Annotated[str, msgspec.Meta(pattern=r"^[^@\s<>]+@[^@\s<>]+$", max_length=254)]


class EmailConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An SMTP server, the sender and the recipients."""

    host: Annotated[str, msgspec.Meta(min_length=1)]
    port: Annotated[int, msgspec.Meta(gt=0, lt=65536)] = 25
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: Annotated[str | None, Secret] = None
    sender: Address
    to: Annotated[list[Address], msgspec.Meta(min_length=1, max_length=100)]
    timeout: Seconds = 10.0

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            raise ValueError("password: give both username and password, or neither")


def email_message(notification: Notification, sender: str, to: list[str]) -> EmailMessage:
    """The message for a notification; its Message-ID follows from the notification id,
    so a mail system that deduplicates by Message-ID sees a re-send as the same mail."""
    message = EmailMessage()
    message["Subject"] = notification.title.replace("\n", " ")[:200]
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Date"] = formatdate(notification.raised_at.timestamp(), usegmt=True)
    digest = hashlib.sha256(notification.id.encode()).hexdigest()[:40]
    message["Message-ID"] = f"<{digest}@goalledger>"  # short enough never to be folded
    message["X-Goalledger-Notification-Id"] = notification.id
    message.set_content(
        f"{notification.body}\n\n"
        f"-- \n{notification.kind} · {notification.subject_id} · "
        f"{notification.raised_at.isoformat()} · ledger position {notification.position}\n"
    )
    return message


class EmailChannel:
    """Sends through SMTP (plain, STARTTLS or implicit TLS), logging in when configured."""

    name = "email"
    config_type = EmailConfig

    def send(self, config: EmailConfig, notification: Notification) -> None:
        try:
            address = EgressPolicy.from_env().resolve(config.host, config.port)
        except SourceError as error:
            raise ChannelError(str(error)) from None
        message = email_message(notification, config.sender, config.to)
        context = ssl.create_default_context()
        try:
            if config.security == "tls":
                smtp: smtplib.SMTP = _PinnedSMTPS(
                    address, config.host, config.port, timeout=config.timeout, context=context
                )
            else:
                smtp = _PinnedSMTP(address, config.host, config.port, timeout=config.timeout)
            with smtp:
                if config.security == "starttls":
                    smtp.starttls(context=context)
                if config.username is not None and config.password is not None:
                    smtp.login(config.username, config.password)
                refused = smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as error:
            raise ChannelError(f"SMTP {config.host}:{config.port}: {error}") from None
        if refused:
            raise ChannelError(f"SMTP refused {', '.join(sorted(refused))}")


class _PinnedSMTP(smtplib.SMTP):
    """Connects to the address the egress policy checked (no second lookup); TLS still
    verifies the certificate against the host name."""

    def __init__(self, address: str, host: str, port: int, **options: Any) -> None:
        self._address = address  # set before SMTP.__init__ connects
        super().__init__(host, port, **options)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return super()._get_socket(self._address, port, timeout)  # type: ignore[misc]


class _PinnedSMTPS(_PinnedSMTP, smtplib.SMTP_SSL):
    pass


@hookimpl
def register_notification_channels(register: Register) -> None:
    register(EmailChannel())
