"""A test kit for plugin authors: run a source against a real ledger, capture notifications.

In your plugin's `conftest.py`:

    pytest_plugins = ["goalledger.plugins.testing"]

    @pytest.fixture
    def goalledger_plugins():          # optional: plugin objects not (yet) installed
        return [("my-plugin", my_plugin_module)]

then in a test:

    def test_my_source(goalledger_harness):
        kpi_id = goalledger_harness.define_kpi("my-source", {"url": "http://127.0.0.1:8000/"})
        result = goalledger_harness.fetch(kpi_id)
        assert result.recorded == ["2026-03-14"]

    def test_my_channel(goalledger_harness):
        delivery = goalledger_harness.send("my-channel", {...}, make_notification())
        assert delivery.ok, delivery.error
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from goalledger.plugins.contracts import Notification
from goalledger.plugins.testkit import (
    CAPTURE,
    CapturingChannel,
    Exchange,
    LocalServer,
    SourceHarness,
    local_http_server,
    make_notification,
)

__all__ = [
    "CAPTURE",
    "CapturingChannel",
    "Exchange",
    "LocalServer",
    "SourceHarness",
    "captured_notifications",
    "goalledger_harness",
    "goalledger_plugins",
    "local_http_server",
    "make_notification",
]


@pytest.fixture
def goalledger_plugins() -> list[tuple[str, object]]:
    """Plugin objects to load besides the installed ones; override to add yours."""
    return []


@pytest.fixture
def goalledger_harness(
    tmp_path: Path, goalledger_plugins: list[tuple[str, object]], monkeypatch: pytest.MonkeyPatch
) -> Iterator[SourceHarness]:
    """A `SourceHarness` on a fresh ledger, closed after the test; sources may call
    `local_http_server`s (loopback egress is allowed for the test, refused by default)."""
    monkeypatch.setenv("GOALLEDGER_EGRESS_LOOPBACK", "allow")
    harness = SourceHarness(tmp_path, goalledger_plugins)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def captured_notifications(goalledger_harness: SourceHarness) -> list[Notification]:
    """What the harness's `capture` channel has been sent (a live list)."""
    return goalledger_harness.captured.sent
