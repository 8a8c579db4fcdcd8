"""Golden history: stored events committed in tests/golden/ must load forever.

The rows were written once by tests/golden/make_golden.py. If a test here fails after
a change in core, the change orphans stored history: add an upcaster or register the
old topic; never regenerate the file to make the failure go away.
"""

from __future__ import annotations

import base64
import importlib
import json
import pkgutil
import sqlite3
from contextlib import closing
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

import goalledger.core
from goalledger.core.cycles import Cycle
from goalledger.core.kpis import Kpi, Reading, Thresholds
from goalledger.core.ledger import Ledger, ReadingInput
from goalledger.core.model import LedgerAggregate
from goalledger.core.objectives import KeyResult, Objective
from goalledger.core.secrets import Keyring
from goalledger.core.settings import Settings
from goalledger.core.subscriptions import Channel, Subscription
from goalledger.core.teams import Team
from goalledger.core.tokens import Token

ROWS = [
    json.loads(line)
    for line in (Path(__file__).parent / "golden" / "events.ndjson").read_text().splitlines()
]


def golden_id(n: int) -> UUID:
    return UUID(f"00000000-0000-4000-8000-{n:012d}")


ACME, PLATFORM, CYCLE, GROW, FAST, ARR, LATENCY, BELOW, PAGE, LIVE, GONE = map(
    golden_id, range(1, 12)
)
READING_0201 = UUID("90adbda9-9d1f-5aee-9ea5-6ea2c0872b76")
READING_0202 = UUID("883b562c-8491-53f4-befa-fc8e0a50f53e")
JAN_5, FEB_1 = datetime(2026, 1, 5, 9, tzinfo=UTC), datetime(2026, 2, 1, 9, tzinfo=UTC)


def expect(thing: object, **expected: object) -> None:
    """Assert that `thing` has the expected attribute values."""
    assert {name: getattr(thing, name) for name in expected} == expected


@pytest.fixture
def golden(ledger: Ledger) -> Ledger:
    """A fresh ledger (SQLite and PostgreSQL) holding exactly the golden rows."""
    assert ledger.is_empty()
    ledger.recorder.insert_events(
        [
            StoredEvent(
                originator_id=UUID(row["originator_id"]),
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=base64.b64decode(row["state"]),
            )
            for row in ROWS
        ]
    )
    return ledger


def test_golden_log_replays_in_order_with_its_actors(golden: Ledger) -> None:
    events = list(golden.read_events())
    assert [position for position, _ in events] == [row["position"] for row in ROWS]
    assert [get_topic(type(event)) for _, event in events] == [row["topic"] for row in ROWS]
    actors = "founder founder cto ceo ceo cto cto ceo cto cto sre bob bob ceo ceo bob sre sre"
    actors += " sre sre sre sre admin admin admin ceo admin admin admin cli:ops"
    assert [event.actor for _, event in events] == actors.split()
    assert golden.head_position() == 30


def test_golden_teams_and_cycle(golden: Ledger) -> None:
    acme = golden.load(ACME, Team)
    expect(acme, name="Acme", parent_id=None, check_in_interval_days=7, version=1)
    assert acme.created_on == datetime(2026, 11, 22, 0, 31, 44, 223012, tzinfo=UTC)
    platform = golden.load(PLATFORM, Team)
    expect(platform, name="Platform Engineering", parent_id=ACME, check_in_interval_days=14)
    cycle = golden.load(CYCLE, Cycle)
    expect(cycle, name="2026-Q1", starts_on=date(2026, 1, 1), ends_on=date(2026, 3, 31))
    expect(cycle, status="closed", rule="linear-v1", is_open=False, version=2)


def test_golden_objectives_and_key_results(golden: Ledger) -> None:
    grow = golden.load(GROW, Objective)
    expect(grow, title="Grow revenue", kind="committed", status="active", team_id=ACME)
    fast = golden.load(FAST, Objective)
    expect(fast, title="Make the platform fast and reliable", description="p99 under 300 ms")
    expect(fast, owner="bob", kind="aspirational", status="active", cycle_id=CYCLE, version=4)
    expect(fast, parent_objective_id=None, parent_key_result_id=ARR)

    arr = golden.load(ARR, KeyResult)
    expect(arr, kind="increase_to", start=D("10000000"), target=D("12500000"), unit="EUR")
    expect(arr, weight=D("2"), objective_id=GROW, owner="ceo", check_ins=1, version=3)
    below = golden.load(BELOW, KeyResult)
    expect(below, kind="stay_below", target=D("300"), kpi_id=LATENCY, weight=D("1"), version=1)
    page = golden.load(PAGE, KeyResult)
    expect(page, kind="milestone", steps=["design", "build", "ship"], check_ins=1, version=2)

    check_ins = [e for _, e in golden.read_events() if isinstance(e, KeyResult.CheckedIn)]
    expect(check_ins[0], value=D("10800000.50"), confidence=D("0.7"), note="two big deals")
    expect(check_ins[0], effective_at=FEB_1, done=None, steps_done=None)
    assert str(check_ins[0].value) == "10800000.50"
    expect(check_ins[1], value=None, steps_done=2, confidence=D("0.9"), note="")


def test_golden_kpi_and_readings(golden: Ledger) -> None:
    kpi = golden.load(LATENCY, Kpi)
    expect(kpi, name="p99 API latency", unit="ms", direction="lower_is_better")
    expect(kpi, target=D("250"), frequency="daily", source=None, team_id=PLATFORM, version=4)
    assert kpi.thresholds == Thresholds(green_high=D("250"), amber_high=D("400"))
    assert [kpi.thresholds.health(D(v)) for v in ("250", "400", "400.01")] == [
        "green",
        "amber",
        "red",
    ]
    first = golden.load(READING_0201, Reading)
    expect(first, kpi_id=LATENCY, reading_id="2026-02-01", value=D("287.5"), observed_at=FEB_1)
    second = golden.load(READING_0202, Reading)
    expect(second, value=D("310.125"), source="manual", version=2)
    expect(second, observed_at=datetime(2026, 2, 2, tzinfo=UTC))
    values = [e.value for _, e in golden.read_events() if e.originator_id == READING_0202]
    assert values == [D("301.25"), D("310.125")]


def test_an_old_ledger_names_its_readings_once_when_opened(
    golden: Ledger, settings: Settings
) -> None:
    """The golden log predates the reading-name table (its readings are keyed by a hash
    of their names): opening such a database names them, so they stay idempotent and
    correctable, and the table is made once."""
    _drop_reading_names(settings.database_url)
    reopened = Ledger(settings)
    try:
        assert reopened.reading(LATENCY, "2026-02-01").id == READING_0201
        assert reopened.reading(LATENCY, " 2026-02-02 ").id == READING_0202
        again = ReadingInput(LATENCY, "2026-02-01", D("1"), FEB_1)
        fresh = ReadingInput(LATENCY, "2026-02-03", D("2"), FEB_1)
        written = reopened.record_readings([again, fresh], source="s", actor="a")
        assert (written.recorded, written.duplicates) == (["2026-02-03"], ["2026-02-01"])
        reopened.correct_reading(LATENCY, "2026-02-01", value=D("280"), reason="r", actor="a")
        assert golden.load(READING_0201, Reading).value == D("280")
    finally:
        reopened.close()
    third = Ledger(settings)  # the table is there now: nothing is named twice
    try:
        assert third.reading(LATENCY, "2026-02-03").reading_id == "2026-02-03"
        assert _count_reading_names(settings.database_url) == 3
    finally:
        third.close()


def _drop_reading_names(url: str) -> None:
    _execute(url, "DROP TABLE reading_names")


def _count_reading_names(url: str) -> int:
    return _execute(url, "SELECT count(*) FROM reading_names")[0]


def _execute(url: str, statement: str) -> Any:
    if url.startswith("sqlite"):
        path = Settings(database_url=url).storage().path
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            return conn.execute(statement).fetchone()
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement)
        return cursor.fetchone() if cursor.description else None


def test_golden_tokens_still_authenticate_by_their_hash(golden: Ledger) -> None:
    live = golden.load(LIVE, Token)
    expect(live, name="dashboard", role="viewer", team_id=PLATFORM, revoked=False)
    assert live.expires_at == datetime(2099, 1, 1, tzinfo=UTC)
    authenticated = golden.authenticate(f"gl_{LIVE.hex}_golden-live-token-secret")
    assert authenticated is not None and authenticated.id == LIVE
    expect(golden.load(GONE, Token), name="ci", role="contributor", revoked=True, version=2)
    assert golden.authenticate(f"gl_{GONE.hex}_golden-revoked-token-secret") is None


def test_golden_subscription_keeps_its_channel(golden: Ledger) -> None:
    subscription = golden.load(golden_id(12), Subscription)
    expect(subscription, alert_kinds=["kpi_health_changed", "check_in_overdue"])
    expect(subscription, team_ids=[PLATFORM], deleted=True, version=2)
    assert subscription.channel == Channel(
        "webhook",
        {"url": "https://hooks.example.com/goalledger", "secret": "golden-webhook-secret-01",
         "timeout": 10.0},
    )  # fmt: skip


def test_golden_sealed_secret_opens_with_its_key(golden: Ledger) -> None:
    """The enc:v1 format of sealed plugin secrets must open forever (docs/secrets.md)."""
    subscription = golden.load(golden_id(13), Subscription)
    expect(subscription, alert_kinds=["cycle_ending"], deleted=False, version=2)
    sealed = subscription.channel.config["secret"]
    assert sealed.startswith("enc:v1:") and "golden-webhook-secret-02" not in sealed
    keyring = Keyring.parse("Z29sZGVuLXNlY3JldC1rZXktb2YtMzItYnl0ZXMtLS0=")
    assert keyring.open(sealed, "webhook.secret", field="secret") == "golden-webhook-secret-02"


def core_event_classes() -> set[type]:
    """Every event class nested in an aggregate defined in goalledger.core."""
    for module in pkgutil.iter_modules(goalledger.core.__path__):
        importlib.import_module(f"goalledger.core.{module.name}")

    def aggregates(base: type) -> list[type]:
        return [c for s in base.__subclasses__() for c in (s, *aggregates(s))]

    return {
        nested
        for aggregate in aggregates(LedgerAggregate)
        if aggregate.__module__.startswith("goalledger.core.")
        for name, nested in vars(aggregate).items()
        if isinstance(nested, type) and issubclass(nested, Aggregate.Event) and name != "Event"
    }


def test_golden_file_covers_every_event_class_in_core() -> None:
    classes: dict[Any, Any] = {cls: cls.__dict__.get("TOPIC") for cls in core_event_classes()}
    assert len(classes) >= 19
    unstable = sorted(cls.__qualname__ for cls, topic in classes.items() if topic is None)
    assert not unstable, f"event classes without a stable TOPIC: {unstable}"
    golden_topics = {row["topic"] for row in ROWS}
    missing = sorted(topic for topic in classes.values() if topic not in golden_topics)
    assert not missing, f"no golden row for {missing}: add one (see tests/golden/make_golden.py)"
