"""Helpers for testing plugins, usable with or without pytest: a harness that runs a
source against a real ledger, a capturing channel, and a local HTTP server.

The pytest fixtures built on them live in `goalledger.plugins.testing`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec

from goalledger.core.kpis import Reading, thresholds_for
from goalledger.core.ledger import Ledger
from goalledger.core.secrets import Keyring, new_key
from goalledger.core.settings import Settings
from goalledger.plugins.catalogue import ChannelBinding
from goalledger.plugins.contracts import Notification
from goalledger.plugins.delivery import Delivery, Sender
from goalledger.plugins.fetch import FetchResult, SourceRunner
from goalledger.plugins.hookspecs import Register, hookimpl
from goalledger.plugins.manager import PluginRegistry, load_plugins

CAPTURE = "capture"


class CaptureConfig(msgspec.Struct, forbid_unknown_fields=True):
    """The capture channel takes no settings."""


class CapturingChannel:
    """A channel named `capture` that keeps what it is sent, for assertions."""

    name = CAPTURE
    config_type = CaptureConfig

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def send(self, config: CaptureConfig, notification: Notification) -> None:
        self.sent.append(notification)


class RecordedReading(msgspec.Struct, frozen=True):
    """A reading as the ledger recorded it."""

    reading_id: str
    value: Decimal
    observed_at: datetime
    source: str


def make_notification(**overrides: Any) -> Notification:
    """A valid notification; override any field."""
    fields: dict[str, Any] = {
        "id": "kpi_health_changed:3f1c0000-0000-4000-8000-000000000001:42",
        "kind": "kpi_health_changed",
        "subject_id": "3f1c0000-0000-4000-8000-000000000001",
        "raised_at": datetime(2026, 3, 14, 9, 30, tzinfo=UTC),
        "position": 42,
        "title": "Signups turned amber",
        "body": "Signups fell to 180 (amber below 200).",
    }
    fields.update(overrides)
    return Notification(**fields)


class Exchange(msgspec.Struct, frozen=True):
    """One request a local test server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


# (status, headers, body) for a request.
Responder = Callable[[Exchange], tuple[int, dict[str, str], bytes]]


class LocalServer(msgspec.Struct):
    """A running local HTTP server: its base URL and the requests it has received."""

    url: str
    received: list[Exchange]


@contextmanager
def local_http_server(respond: Responder, host: str = "127.0.0.1") -> Iterator[LocalServer]:
    """A real HTTP server on `host` (a loopback address, a free port) answering with
    `respond`; it stops when the block ends. Loopback egress is refused by default: the
    `goalledger_harness` fixture allows it, other tests set `GOALLEDGER_EGRESS_LOOPBACK`."""
    received: list[Exchange] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            exchange = Exchange(
                self.command, self.path, dict(self.headers.items()), self.rfile.read(length)
            )
            received.append(exchange)
            status, headers, body = respond(exchange)
            self.send_response(status)
            for key, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    server = _QuietServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield LocalServer(f"http://{host}:{server.server_port}", received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that gave up
            super().handle_error(request, client_address)


class SourceHarness:
    """A ledger on a temporary SQLite file, the plugin registry, a source runner and a
    sender: what goalledger does with a plugin, without the HTTP API."""

    def __init__(self, directory: Path, plugins: Iterable[tuple[str, object]] = ()) -> None:
        self.captured = CapturingChannel()
        capture = _CapturePlugin(self.captured)
        self.registry: PluginRegistry = load_plugins(
            extra=[*plugins, ("goalledger.testing", capture)]
        )
        # Secrets are sealed as a server seals them, here with a throwaway key.
        self.registry.keyring = Keyring.parse(new_key())
        self.ledger = Ledger(Settings(database_url=f"sqlite:///{directory}/ledger.db"))
        self.runner = SourceRunner(self.ledger, self.registry, timeout=10.0)
        self.sender = Sender(self.registry, timeout=10.0)

    def define_kpi(
        self,
        plugin: str,
        config: dict[str, Any],
        *,
        name: str = "Test KPI",
        frequency: str = "daily",
        unit: str = "",
    ) -> UUID:
        """Define a higher-is-better KPI bound to `plugin` with `config` (validated)."""
        binding = self.registry.validate_source(plugin, config)
        written = self.ledger.define_kpi(
            name=name,
            unit=unit,
            direction="higher_is_better",
            thresholds=thresholds_for("higher_is_better", 100, 50),
            frequency=frequency,
            source=binding,
            actor="test",
        )
        return written.id

    def fetch(self, kpi_id: UUID) -> FetchResult:
        """Fetch the KPI's source now (raises `FetchFailed` when the source fails)."""
        return self.runner.fetch(kpi_id, actor="test")

    def readings(self, kpi_id: UUID) -> list[RecordedReading]:
        """Every reading recorded for the KPI, in ledger order."""
        return [
            RecordedReading(event.reading_id, event.value, event.observed_at, event.source)
            for _, event in self.ledger.read_events()
            if isinstance(event, Reading.Recorded) and event.kpi_id == kpi_id
        ]

    def send(
        self, plugin: str, config: dict[str, Any], notification: Notification | None = None
    ) -> Delivery:
        """Validate a channel config and send one notification through it."""
        binding: ChannelBinding = self.registry.validate_channel(plugin, config)
        return self.sender.send(binding, notification or make_notification())

    def close(self) -> None:
        self.ledger.close()


class _CapturePlugin:
    def __init__(self, channel: CapturingChannel) -> None:
        self.channel = channel

    @hookimpl
    def register_notification_channels(self, register: Register) -> None:
        register(self.channel)
