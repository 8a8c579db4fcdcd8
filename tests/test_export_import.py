"""Export the ledger as NDJSON and import it elsewhere: same events at the same positions,
the same chain head and the same read models; a bad file is refused and changes nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path
from uuid import UUID

import pytest
from projection_fixtures import system_fixture
from test_chain import RawLedger, fresh_url, record_some, reference_links

from goalledger.api.bootstrap import System, bootstrap
from goalledger.core.errors import DomainError
from goalledger.core.kpis import Reading
from goalledger.core.ledger import Ledger, ReadingInput
from goalledger.core.settings import Settings
from goalledger.projections import chain
from goalledger.projections.chain import GENESIS, links
from goalledger.projections.ledger_io import (
    ChainBroken,
    check_export,
    export_lines,
    import_ledger,
)
from goalledger.projections.projector import view_state

__all__ = ["fresh_url", "system_fixture"]


@pytest.fixture
def recorded(system: System) -> System:
    record_some(system.ledger)
    system.catch_up()
    return system


@pytest.fixture
def target(fresh_url: str) -> Iterator[System]:
    """An empty goalledger in another database of the same kind."""
    with bootstrap(Settings(database_url=fresh_url)) as built:
        yield built


def export_to(system: System, path: Path) -> Path:
    path.write_bytes(b"".join(export_lines(system.ledger, system.store)))
    return path


def stored(ledger: Ledger) -> list[tuple]:
    return [
        (n.id, UUID(str(n.originator_id)), n.originator_version, n.topic, n.state)
        for n in ledger.notifications()
    ]


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_lines(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def relinked(lines: list[dict]) -> list[dict]:
    """The lines with their links recomputed: a well-formed export of these events."""
    previous = GENESIS
    for line in lines:
        row = (line["position"], line["aggregate_id"], line["version"], line["topic"],
               base64.b64decode(line["state"]))  # fmt: skip
        previous = links(previous, [row])[0]
        line["link"] = previous.hex()
    return lines


def test_an_export_holds_every_event_with_its_link(recorded: System, tmp_path: Path) -> None:
    lines = lines_of(export_to(recorded, tmp_path / "ledger.ndjson"))
    assert [line["position"] for line in lines] == [n[0] for n in stored(recorded.ledger)]
    assert [(line["position"], line["link"]) for line in lines] == reference_links(recorded.ledger)
    first = lines[0]
    assert set(first) == {"position", "aggregate_id", "version", "topic", "state", "link"}
    assert base64.b64decode(first["state"]) == stored(recorded.ledger)[0][4]


def test_an_import_reproduces_events_chain_and_read_models(
    recorded: System, target: System, tmp_path: Path
) -> None:
    export = export_to(recorded, tmp_path / "ledger.ndjson")
    imported = import_ledger(target.ledger, export)
    assert imported.events == len(stored(recorded.ledger))
    assert stored(target.ledger) == stored(recorded.ledger)
    target.catch_up()
    assert chain.head(target.store) == chain.head(recorded.store) == imported.head
    assert view_state(target.store) == view_state(recorded.store)
    assert chain.verify(target.ledger, target.store).ok
    # The imported readings are named: sent again they are duplicates, and correctable.
    kpi_id, reading = next(
        (e.kpi_id, e.reading_id)
        for _, e in target.ledger.read_events()
        if type(e) is Reading.Recorded
    )
    again = ReadingInput(kpi_id, reading, D("1"), datetime(2026, 1, 1, tzinfo=UTC))
    assert target.ledger.record_readings([again], source="s", actor="a").duplicates == [reading]
    target.ledger.correct_reading(kpi_id, reading, value=D("2"), reason="r", actor="a")
    assert target.ledger.reading(kpi_id, reading).value == D("2")


def test_an_import_keeps_gaps_between_positions(
    recorded: System, target: System, tmp_path: Path
) -> None:
    lines = lines_of(export_to(recorded, tmp_path / "ledger.ndjson"))
    for line in lines[5:]:
        line["position"] += 10  # as rolled-back appends leave gaps
    export = write_lines(tmp_path / "gappy.ndjson", relinked(lines))
    import_ledger(target.ledger, export)
    positions = [n[0] for n in stored(target.ledger)]
    assert positions == [line["position"] for line in lines]
    target.catch_up()
    assert chain.verify(target.ledger, target.store).ok
    written = target.ledger.form_team(name="After the import", actor="alice")
    assert written.position == positions[-1] + 1  # new events follow the imported ones


def refused(target: System, path: Path, *words: str) -> None:
    with pytest.raises(DomainError) as caught:
        import_ledger(target.ledger, path)
    message = f"{caught.value.field}: {caught.value.message}"
    for word in words:
        assert word in message
    assert target.ledger.is_empty()


def test_a_broken_chain_is_refused_and_nothing_is_written(
    recorded: System, target: System, tmp_path: Path
) -> None:
    lines = lines_of(export_to(recorded, tmp_path / "ledger.ndjson"))
    state = bytearray(base64.b64decode(lines[6]["state"]))
    state[-1] ^= 1
    lines[6]["state"] = base64.b64encode(bytes(state)).decode()
    position = lines[6]["position"]
    refused(target, write_lines(tmp_path / "bad.ndjson", lines), "line 7", f"position {position}")


def test_an_out_of_order_position_is_refused(
    recorded: System, target: System, tmp_path: Path
) -> None:
    lines = lines_of(export_to(recorded, tmp_path / "ledger.ndjson"))
    lines[3], lines[4] = lines[4], lines[3]
    refused(target, write_lines(tmp_path / "bad.ndjson", relinked(lines)), "line 5", "out of order")


def test_a_late_error_still_writes_nothing(
    recorded: System, target: System, tmp_path: Path
) -> None:
    lines = lines_of(export_to(recorded, tmp_path / "ledger.ndjson"))
    lines[-1]["topic"] = "goalledger/no/such-event"
    refused(target, write_lines(tmp_path / "bad.ndjson", relinked(lines)), "unknown event topic")
    (tmp_path / "junk.ndjson").write_text('{"position": 1}\n')
    refused(target, tmp_path / "junk.ndjson", "line 1", "not an exported event")


def test_an_import_into_a_ledger_that_holds_events_is_refused(
    recorded: System, target: System, tmp_path: Path
) -> None:
    export = export_to(recorded, tmp_path / "ledger.ndjson")
    target.ledger.form_team(name="Already here", actor="alice")
    with pytest.raises(DomainError, match="import only into an empty ledger"):
        import_ledger(target.ledger, export)
    assert target.ledger.head_position() == 1


def test_a_tampered_ledger_is_not_exported(
    recorded: System, settings: Settings, tmp_path: Path
) -> None:
    raw = RawLedger(settings)
    try:
        raw.flip_byte(9)
    finally:
        raw.close()
    with pytest.raises(ChainBroken) as caught:
        export_to(recorded, tmp_path / "ledger.ndjson")
    assert caught.value.broken.position == 9


def test_an_export_prefix_is_itself_a_valid_export(recorded: System, tmp_path: Path) -> None:
    lines = lines_of(export_to(recorded, tmp_path / "ledger.ndjson"))
    prefix = write_lines(tmp_path / "prefix.ndjson", lines[:8])
    assert check_export(prefix).head == chain.Link(lines[7]["position"], lines[7]["link"])


GOLDEN = Path(__file__).with_name("golden") / "events.ndjson"
# sha256-chain-v1 over the golden events: a fixed contract, like the events themselves.
# (Rows 27-28 were appended for subscriptions; the link at 26 stays 99a35fe4afbef6d2….)
GOLDEN_HEAD = chain.Link(30, "8469c0c7e8d53bd5a849557dc71c2c9fb0f970490200db8a6b09e8c85cdfee03")


def test_the_golden_events_import_and_chain_to_a_fixed_head(target: System, tmp_path: Path) -> None:
    golden = [
        {"position": line["position"], "aggregate_id": line["originator_id"],
         "version": line["originator_version"], "topic": line["topic"], "state": line["state"]}
        for line in lines_of(GOLDEN)
    ]  # fmt: skip
    imported = import_ledger(
        target.ledger, write_lines(tmp_path / "golden.ndjson", relinked(golden))
    )
    assert imported.head == GOLDEN_HEAD
    target.catch_up()
    assert chain.head(target.store) == GOLDEN_HEAD
    assert chain.verify(target.ledger, target.store).ok
