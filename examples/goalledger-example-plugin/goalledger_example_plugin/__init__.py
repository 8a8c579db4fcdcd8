"""An example goalledger plugin: the `countdown` source and the `jsonl-file` channel."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import msgspec

from goalledger.plugins import KpiRef, Notification, Observation, hookimpl


class CountdownConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The day something is due."""

    deadline: date

    def __post_init__(self) -> None:
        if self.deadline.year < 2000:
            raise ValueError("deadline: must be in this century")


class CountdownSource:
    """Days left until the deadline (negative once it has passed), one reading per day."""

    name = "countdown"
    config_type = CountdownConfig

    def fetch(self, config: CountdownConfig, kpi: KpiRef, since: datetime | None):
        now = datetime.now(UTC)
        days_left = (config.deadline - now.date()).days
        # The reading id is the day: fetching again today records nothing new.
        return [Observation(now.date().isoformat(), Decimal(days_left), now)]


class JsonLinesConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The file notifications are appended to."""

    path: str


class JsonLinesChannel:
    """Appends notifications to a JSON Lines file, skipping ids it already holds."""

    name = "jsonl-file"
    config_type = JsonLinesConfig
    _lock = threading.Lock()

    def send(self, config: JsonLinesConfig, notification: Notification) -> None:
        path = Path(config.path)
        with self._lock:
            if path.exists():
                seen = {json.loads(line)["id"] for line in path.read_text().splitlines() if line}
                if notification.id in seen:
                    return  # delivery is at least once: deduplicate by id
            with path.open("ab") as file:
                file.write(msgspec.json.encode(notification) + b"\n")


@hookimpl
def register_metric_sources(register):
    register(CountdownSource())


@hookimpl
def register_notification_channels(register):
    register(JsonLinesChannel())
