"""Write tests/golden/events.ndjson: stored events covering every event class in core.

Run once, commit the output, and never regenerate it to make a test pass: the file is
history that goalledger must keep loading. Add rows (a new file or appended events) when
a new event class appears. Ids are fixed by numbering uuid4() calls; token secrets
are fixed too, so the test can check that the hashing scheme still accepts them.

    .venv/bin/python tests/golden/make_golden.py

Event classes added later get rows appended after the existing ones, which stay
byte for byte as they are: `record_additions` runs on a ledger holding the committed
rows, and only the new rows are written:

    .venv/bin/python tests/golden/make_golden.py --append
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, date, datetime
from decimal import Decimal as D
from itertools import count
from pathlib import Path
from types import SimpleNamespace
from unittest import mock
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from goalledger.core import cycles, kpis, objectives, subscriptions, teams, tokens
from goalledger.core.kpis import thresholds_for
from goalledger.core.ledger import Ledger, ReadingInput
from goalledger.core.settings import Settings
from goalledger.core.subscriptions import Channel

OUTPUT = Path(__file__).with_name("events.ndjson")
SECRETS = iter(["golden-live-token-secret", "golden-revoked-token-secret"])


def fixed_ids(first: int = 1) -> ExitStack:
    """Number every uuid4() the core makes: 00000000-0000-4000-8000-000000000001, …"""
    numbers = count(first)

    def next_id() -> UUID:
        return UUID(f"00000000-0000-4000-8000-{next(numbers):012d}")

    stack = ExitStack()
    for module in (cycles, teams, objectives, kpis, tokens, subscriptions):
        stack.enter_context(mock.patch.object(module, "uuid4", next_id))
    fake_secrets = SimpleNamespace(token_urlsafe=lambda _: next(SECRETS))
    stack.enter_context(mock.patch.object(tokens, "secrets", fake_secrets))
    return stack


def record_history(ledger: Ledger) -> dict[str, object]:
    """Run one command per event class (some twice); return the ids and secrets."""
    jan, feb = datetime(2026, 1, 5, 9, 0, tzinfo=UTC), datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
    acme = ledger.form_team(name="Acme", actor="founder").id
    platform = ledger.form_team(name="Platform", parent_id=acme, actor="founder").id
    ledger.change_team(
        platform, name="Platform Engineering", check_in_interval_days=14, actor="cto",
        reason="renamed in the reorg",
    )  # fmt: skip
    cycle = ledger.define_cycle(
        name="2026-Q1", starts_on=date(2026, 1, 1), ends_on=date(2026, 3, 31), actor="ceo"
    ).id
    grow = ledger.define_objective(
        title="Grow revenue", cycle_id=cycle, team_id=acme, owner="ceo", kind="committed",
        effective_at=jan, actor="ceo",
    ).id  # fmt: skip
    fast = ledger.define_objective(
        title="Make the platform fast", description="p99 under 300 ms", cycle_id=cycle,
        team_id=platform, owner="bob", kind="aspirational", status="draft", effective_at=jan,
        actor="cto",
    ).id  # fmt: skip
    ledger.edit_objective(
        fast, title="Make the platform fast and reliable", actor="cto", reason="reliability too"
    )
    arr = ledger.define_key_result(
        grow, title="ARR to 12M", kind="increase_to", start=D("10000000"),
        target=D("12000000"), unit="EUR", weight=D("2"), effective_at=jan, actor="ceo",
    ).id  # fmt: skip
    ledger.align_objective(
        fast, parent_objective_id=None, parent_key_result_id=arr, effective_at=jan,
        actor="cto", reason="speed sells",
    )  # fmt: skip
    ledger.change_objective_status(fast, status="active", actor="cto", reason="kick-off")
    latency = ledger.define_kpi(
        name="p99 latency", unit="ms", direction="lower_is_better", target=D("250"),
        thresholds=thresholds_for("lower_is_better", "300", "500"), frequency="daily",
        team_id=platform, effective_at=jan, actor="sre",
    ).id  # fmt: skip
    below = ledger.define_key_result(
        fast, title="p99 below 300 ms", kind="stay_below", target=D("300"), unit="ms",
        kpi_id=latency, effective_at=jan, actor="bob",
    ).id  # fmt: skip
    page = ledger.define_key_result(
        fast, title="Launch a status page", kind="milestone", steps=["design", "build", "ship"],
        effective_at=jan, actor="bob",
    ).id  # fmt: skip
    ledger.change_key_result_target(
        arr, target=D("12500000"), effective_at=feb, actor="ceo", reason="board raised the bar"
    )
    ledger.check_in(
        arr, value=D("10800000.50"), confidence=D("0.7"), note="two big deals",
        effective_at=feb, actor="ceo",
    )  # fmt: skip
    ledger.check_in(page, steps_done=2, confidence=D("0.9"), effective_at=feb, actor="bob")
    ledger.change_kpi(latency, name="p99 API latency", actor="sre", reason="scope")
    ledger.change_kpi_thresholds(
        latency, thresholds=thresholds_for("lower_is_better", "250", "400"),
        effective_from=feb, actor="sre", reason="tighter SLO",
    )  # fmt: skip
    ledger.bind_kpi_source(latency, source=None, actor="sre", reason="manual until Prometheus")
    ledger.record_readings(
        [
            ReadingInput(latency, "2026-02-01", D("287.5"), feb),
            ReadingInput(latency, "2026-02-02", D("301.25"), datetime(2026, 2, 2, tzinfo=UTC)),
        ],
        source="manual",
        actor="sre",
    )
    ledger.correct_reading(
        latency, "2026-02-02", value=D("310.125"), reason="late samples", actor="sre"
    )
    live, live_secret = ledger.issue_token(
        name="dashboard", role="viewer", team_id=platform,
        expires_at=datetime(2099, 1, 1, tzinfo=UTC), actor="admin",
    )  # fmt: skip
    gone, gone_secret = ledger.issue_token(name="ci", role="contributor", actor="admin")
    ledger.revoke_token(gone.id, actor="admin", reason="leaked in a log")
    ledger.close_cycle(cycle, rule="linear-v1", actor="ceo", reason="quarter over")
    return {
        "acme": acme, "platform": platform, "cycle": cycle, "grow": grow, "fast": fast,
        "arr": arr, "latency": latency, "below": below, "page": page,
        "live_token": live.id, "live_secret": live_secret,
        "revoked_token": gone.id, "revoked_secret": gone_secret,
    }  # fmt: skip


def record_additions(ledger: Ledger) -> dict[str, object]:
    """Events of the classes added after the first rows (ids go on from 12)."""
    platform = UUID("00000000-0000-4000-8000-000000000002")
    channel = Channel(
        "webhook",
        {"url": "https://hooks.example.com/goalledger", "secret": "golden-webhook-secret-01",
         "timeout": 10.0},
    )  # fmt: skip
    subscription = ledger.subscribe(
        alert_kinds=["kpi_health_changed", "check_in_overdue"], team_ids=[platform],
        channel=channel, actor="admin",
    ).id  # fmt: skip
    ledger.delete_subscription(subscription, actor="admin", reason="moved to Slack")
    return {"subscription": subscription}


GOLDEN_SECRET_KEY = "Z29sZGVuLXNlY3JldC1rZXktb2YtMzItYnl0ZXMtLS0="  # a test key, not a real one


def record_channel_change(ledger: Ledger) -> dict[str, object]:
    """A subscription whose webhook secret is sealed (enc:v1), then re-sealed (id 13 on)."""
    from goalledger.core.secrets import Keyring

    keyring = Keyring.parse(GOLDEN_SECRET_KEY)

    def channel() -> Channel:
        sealed = keyring.seal("golden-webhook-secret-02", "webhook.secret", field="secret")
        return Channel("webhook", {"url": "https://hooks.example.com/sealed", "secret": sealed})

    subscription = ledger.subscribe(
        alert_kinds=["cycle_ending"], team_ids=[], channel=channel(), actor="admin"
    ).id
    loaded = ledger.load(subscription, subscriptions.Subscription)
    loaded.change_channel(channel(), actor="cli:ops", reason="secrets re-sealed")
    ledger.record(loaded)
    return {"subscription": subscription}


# Later additions in the order they were made: the first id each numbers from, and its
# commands. `--append` runs those whose first id the file does not hold yet.
ADDITIONS = [(12, record_additions), (13, record_channel_change)]


def rows_of(ledger: Ledger, after: int = 0) -> list[dict[str, object]]:
    return [
        {
            "position": n.id,
            "originator_id": str(n.originator_id),
            "originator_version": n.originator_version,
            "topic": n.topic,
            "state": base64.b64encode(n.state).decode(),
        }
        for n in ledger.notifications(after)
    ]


def append() -> None:
    """Append rows for the pending `ADDITIONS`, leaving the committed rows untouched."""
    held = {json.loads(line)["originator_id"] for line in OUTPUT.read_text().splitlines()}
    for first, record in ADDITIONS:
        if f"00000000-0000-4000-8000-{first:012d}" not in held:
            append_one(first, record)


def append_one(first: int, record: Callable[[Ledger], dict[str, object]]) -> None:
    """Append the rows `record` writes, its ids numbered from `first`."""
    existing = OUTPUT.read_text()
    rows = [json.loads(line) for line in existing.splitlines()]
    with tempfile.TemporaryDirectory() as tmp, fixed_ids(first=first):
        ledger = Ledger(Settings(database_url=f"sqlite:///{tmp}/golden.db"))
        try:
            ledger.recorder.insert_events(
                [
                    StoredEvent(
                        UUID(r["originator_id"]),
                        r["originator_version"],
                        r["topic"],
                        base64.b64decode(r["state"]),
                    )
                    for r in rows
                ]
            )
            names = record(ledger)
            added = rows_of(ledger, after=rows[-1]["position"])
        finally:
            ledger.close()
    OUTPUT.write_text(existing + "".join(json.dumps(row) + "\n" for row in added))
    print(f"appended {len(added)} events to {OUTPUT}")
    for name, value in names.items():
        print(f"{name} = {value}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, fixed_ids():
        ledger = Ledger(Settings(database_url=f"sqlite:///{tmp}/golden.db"))
        try:
            names = record_history(ledger)
            rows = [
                {
                    "position": n.id,
                    "originator_id": str(n.originator_id),
                    "originator_version": n.originator_version,
                    "topic": n.topic,
                    "state": base64.b64encode(n.state).decode(),
                }
                for n in ledger.notifications()
            ]
        finally:
            ledger.close()
    OUTPUT.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"wrote {len(rows)} events to {OUTPUT}")
    for name, value in names.items():
        print(f"{name} = {value}")


if __name__ == "__main__":
    append() if "--append" in sys.argv[1:] else main()
