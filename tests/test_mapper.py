"""The msgspec mapper: exact values, compact MessagePack, upcasting and clear decode errors."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal as D
from typing import Any
from uuid import uuid4

import msgspec
import pytest
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    UUIDAsHex,
)

from goalledger.core.cycles import Cycle
from goalledger.core.kpis import Kpi, thresholds_for
from goalledger.core.ledger import Ledger, Written
from goalledger.core.model import LedgerAggregate
from goalledger.core.objectives import KeyResult

HUGE = D("12345678901234567890.000000001")
IST = timezone(timedelta(hours=5, minutes=30))


class Gauge(LedgerAggregate):
    """A test-only aggregate whose created event is at version 2."""

    TOPIC = "goalledger-tests/gauge"

    class Event(LedgerAggregate.Event):
        """An event of a Gauge."""

    class Installed(Event, Aggregate.Created):
        """Version 2 renamed `name` to `label` and added `unit`."""

        TOPIC = "goalledger-tests/gauge/installed"
        class_version = 2
        label: str
        unit: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["label"] = state.pop("name")
            state["unit"] = "requests/s"

        def apply(self, gauge: Gauge) -> None:
            gauge.label = self.label
            gauge.unit = self.unit

    Created = Installed


def key_result(ledger: Ledger, **figures: Any) -> Written:
    cycle = ledger.define_cycle(
        name="2026-Q1", starts_on=date(2026, 1, 1), ends_on=date(2026, 3, 31), actor="a"
    )
    team = ledger.form_team(name="Platform", actor="a")
    objective = ledger.define_objective(
        title="Precise", cycle_id=cycle.id, team_id=team.id, owner="o", kind="committed", actor="a"
    )
    return ledger.define_key_result(
        objective.id, title="Exact", kind="increase_to", actor="a", **figures
    )


def test_decimals_stay_exact_through_store_and_load(ledger: Ledger) -> None:
    written = key_result(ledger, start=D("0.1"), target=HUGE, weight=D("1.10"))
    ledger.check_in(written.id, value=D("-0.000000000000000000001"), actor="a")
    kr = ledger.load(written.id, KeyResult)
    assert (kr.start, kr.target, kr.weight) == (D("0.1"), HUGE, D("1.10"))
    assert [str(kr.start), str(kr.target), str(kr.weight)] == ["0.1", str(HUGE), "1.10"]
    checked_in = list(ledger.read_events())[-1][1]
    assert isinstance(checked_in.value, D) and str(checked_in.value) == "-1E-21"

    kpi = ledger.define_kpi(
        name="Error rate",
        direction="target_band",
        thresholds=thresholds_for("target_band", ["0.1", "0.3"], ["0.05", "0.35"]),
        frequency="hourly",
        target=D("0.2"),
        actor="a",
    )
    thresholds = ledger.load(kpi.id, Kpi).thresholds
    assert thresholds.as_contract("target_band") == {
        "green": [D("0.1"), D("0.3")],
        "amber": [D("0.05"), D("0.35")],
    }


def test_datetimes_keep_their_instant_and_dates_stay_dates(ledger: Ledger) -> None:
    written = key_result(ledger, start=D(0), target=D(10))
    effective_at = datetime(2026, 2, 14, 9, 30, 15, 123456, tzinfo=IST)
    ledger.check_in(written.id, value=D(3), effective_at=effective_at, actor="a")
    checked_in = list(ledger.read_events())[-1][1]
    assert checked_in.effective_at == effective_at
    assert checked_in.effective_at.utcoffset() is not None
    assert checked_in.timestamp.tzinfo is not None
    cycle = ledger.load(ledger.load(written.id, KeyResult).cycle_id, Cycle)
    assert type(cycle.starts_on) is date and cycle.starts_on == date(2026, 1, 1)


def test_stored_state_is_messagepack_and_smaller_than_json(ledger: Ledger) -> None:
    written = key_result(ledger, start=D("10.5"), target=D("99.25"))
    ledger.check_in(written.id, value=D("42.125"), confidence=D("0.7"), note="ok", actor="a")
    json_mapper: Mapper[Any] = Mapper(transcoder=JSONTranscoder())
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        json_mapper.transcoder.register(transcoding)  # type: ignore[attr-defined]

    stored = [n for n in ledger.notifications() if n.originator_id == written.id]
    assert [n.topic for n in stored] == [
        "goalledger/key-result/defined",
        "goalledger/key-result/checked-in",
    ]
    for notification in stored:
        state = msgspec.msgpack.decode(notification.state)
        assert isinstance(state, dict) and state["actor"] == "a"
        assert "originator_id" not in state and "originator_version" not in state
        event = ledger.mapper.to_domain_event(notification)
        as_json = json_mapper.to_stored_event(event).state
        assert len(notification.state) < len(as_json), notification.topic
    defined = msgspec.msgpack.decode(stored[0].state)
    assert (defined["start"], defined["target"], defined["kind"]) == (
        "10.5",
        "99.25",
        "increase_to",
    )


def test_old_event_versions_load_upcast(ledger: Ledger) -> None:
    old_id = uuid4()
    version_1 = {
        "timestamp": datetime(2025, 6, 1, 12, 0, tzinfo=UTC),
        "originator_topic": "goalledger-tests/gauge",
        "actor": "ops",
        "name": "throughput",
    }
    ledger.recorder.insert_events(
        [
            StoredEvent(
                originator_id=old_id,
                originator_version=1,
                topic="goalledger-tests/gauge/installed",
                state=msgspec.msgpack.encode(version_1),
            )
        ]
    )
    old = ledger.load(old_id, Gauge)
    assert (old.label, old.unit, old.version) == ("throughput", "requests/s", 1)
    assert old.created_on == datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

    new = Gauge._create(Gauge.Installed, id=uuid4(), label="latency", unit="ms", actor="ops")
    ledger.record(new)
    state = msgspec.msgpack.decode(list(ledger.notifications())[-1].state)
    assert (state["class_version"], state["label"]) == (2, "latency")
    assert (ledger.load(new.id, Gauge).label, ledger.load(new.id, Gauge).unit) == ("latency", "ms")


@pytest.mark.parametrize(
    "state",
    [b"\xc1 not messagepack", msgspec.msgpack.encode({"actor": "a", "name": 7})],
    ids=["corrupt-bytes", "wrong-shape"],
)
def test_undecodable_state_names_topic_and_aggregate(ledger: Ledger, state: bytes) -> None:
    broken_id = uuid4()
    ledger.recorder.insert_events([StoredEvent(broken_id, 1, "goalledger/cycle/defined", state)])
    with pytest.raises(MapperDeserialisationError) as raised:
        ledger.load(broken_id, Cycle)
    message = str(raised.value)
    assert "goalledger/cycle/defined" in message and str(broken_id) in message
