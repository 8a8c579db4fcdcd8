"""The hash chain: kept by the projector, recomputed by `verify`, and tampering found where
it happened — on SQLite and PostgreSQL, with the rows changed directly in the database."""

from __future__ import annotations

import hashlib
import sqlite3
import struct
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from conftest import POSTGRES_ADMIN, require_postgres
from projection_fixtures import days_ago, increase_kr, plan, system_fixture, uptime_kpi

from goalledger.api.bootstrap import System, bootstrap
from goalledger.core.ledger import Ledger, ReadingInput
from goalledger.core.settings import Settings
from goalledger.projections import chain, schema
from goalledger.projections.projector import Projector, rebuild, view_state

__all__ = ["RawLedger", "fresh_url", "record_some", "system_fixture"]
D = Decimal


def record_some(ledger: Ledger) -> None:
    """A few events of most kinds: a plan, a key result with check-ins, a KPI with readings."""
    p = plan(ledger)
    kr = increase_kr(ledger, p.objective)
    kpi = uptime_kpi(ledger)
    for i in range(3):
        ledger.check_in(kr.id, value=D(10 * i), confidence=D("0.5"), actor="bob",
                        effective_at=days_ago(10 - i))  # fmt: skip
    readings = [ReadingInput(kpi.id, f"r{i}", D("99.5"), days_ago(i)) for i in range(5)]
    ledger.record_readings(readings, source="test", actor="alice")
    ledger.edit_objective(p.objective.id, title="Run a very reliable platform", actor="alice",
                          reason="sharper wording")  # fmt: skip


class RawLedger:
    """Direct SQL on the stored events, bypassing goalledger, as someone tampering would."""

    def __init__(self, settings: Settings) -> None:
        storage = settings.storage()
        self.sqlite = storage.kind == "sqlite"
        if self.sqlite:
            self.db: Any = sqlite3.connect(storage.path, isolation_level=None)
            self.table, self.pos = "stored_events", "rowid"
        else:
            self.db = psycopg.connect(settings.database_url, autocommit=True)
            self.table, self.pos = "goalledger_events", "notification_id"

    def run(self, sql: str, params: tuple = ()) -> list[tuple]:
        sql = sql.format(t=self.table, pos=self.pos)
        cursor = self.db.execute(sql if self.sqlite else sql.replace("?", "%s"), params)
        return list(cursor.fetchall()) if cursor.description else []

    def state(self, position: int) -> bytes:
        return bytes(self.run("SELECT state FROM {t} WHERE {pos} = ?", (position,))[0][0])

    def set_state(self, position: int, state: bytes) -> None:
        self.run("UPDATE {t} SET state = ? WHERE {pos} = ?", (state, position))

    def flip_byte(self, position: int, index: int = -1) -> None:
        state = bytearray(self.state(position))
        state[index] ^= 0x01
        self.set_state(position, bytes(state))

    def delete(self, position: int) -> None:
        self.run("DELETE FROM {t} WHERE {pos} = ?", (position,))

    def move(self, old: int, new: int) -> None:
        self.run("UPDATE {t} SET {pos} = ? WHERE {pos} = ?", (new, old))

    def swap(self, a: int, b: int) -> None:
        self.move(a, -1)
        self.move(b, a)
        self.move(-1, b)

    def append_forged(self, like: int) -> None:
        """A new event copied from the one at `like`, under a new aggregate id, at the end."""
        topic, state = self.run("SELECT topic, state FROM {t} WHERE {pos} = ?", (like,))[0]
        forged = uuid.uuid4()
        self.run(
            "INSERT INTO {t} (originator_id, originator_version, topic, state) VALUES (?, 1, ?, ?)",
            (forged.hex if self.sqlite else forged, topic, bytes(state)),
        )

    def close(self) -> None:
        self.db.close()


@pytest.fixture
def raw(settings: Settings) -> Iterator[RawLedger]:
    handle = RawLedger(settings)
    try:
        yield handle
    finally:
        handle.close()


@pytest.fixture
def fresh_url(database_url: str, tmp_path: Any) -> Iterator[str]:
    """A second, empty database of the same kind as `database_url`."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path}/other/goalledger.db"
        return
    require_postgres()
    name = f"goalledger_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def reference_links(ledger: Ledger) -> list[tuple[int, str]]:
    """The chain computed straight from the documented encoding, independently of chain.py."""
    link, links = bytes(32), []
    for n in ledger.notifications():
        topic = n.topic.encode()
        canonical = (
            struct.pack(">q", n.id) + uuid.UUID(str(n.originator_id)).bytes
            + struct.pack(">qII", n.originator_version, len(topic), len(n.state))
            + topic + n.state
        )  # fmt: skip
        link = hashlib.sha256(link + canonical).digest()
        links.append((n.id, link.hex()))
    return links


@pytest.fixture
def recorded(system: System) -> System:
    record_some(system.ledger)
    system.catch_up()
    return system


def broken(system: System, **options: Any) -> chain.Break:
    verdict = chain.verify(system.ledger, system.store, **options)
    assert not verdict.ok and verdict.broken is not None, verdict
    return verdict.broken


# -- the chain the projector keeps -------------------------------------------------------


def test_the_projector_chains_every_event_by_the_documented_encoding(recorded: System) -> None:
    expected = reference_links(recorded.ledger)
    assert sorted(view_state(recorded.store)["chain"]) == expected
    assert chain.head(recorded.store) == chain.Link(*expected[-1])


def test_verify_holds_on_an_untouched_ledger_whatever_the_batch_size(recorded: System) -> None:
    expected = reference_links(recorded.ledger)
    for batch in (1, 2, 7, 5000):
        verdict = chain.verify(recorded.ledger, recorded.store, batch=batch)
        assert verdict.ok and verdict.broken is None
        assert verdict.checked == len(expected)
        assert verdict.head == chain.Link(*expected[-1])


def test_a_rebuild_recomputes_the_same_chain(recorded: System) -> None:
    before = view_state(recorded.store)["chain"]
    rebuild(recorded.ledger, recorded.store)
    assert view_state(recorded.store)["chain"] == before


def test_a_generation_projected_before_the_chain_existed_gets_its_chain(recorded: System) -> None:
    with recorded.store.transaction() as tx:
        generation = schema.live_generation(tx)
        tx.execute(f"DROP TABLE {schema.table(generation, 'chain')}")
    projector = Projector(recorded.ledger, recorded.store)  # as on the first start after upgrade
    recorded.ledger.form_team(name="Later", actor="alice")
    projector.catch_up()
    assert sorted(view_state(recorded.store)["chain"]) == reference_links(recorded.ledger)
    assert chain.verify(recorded.ledger, recorded.store).ok


def test_an_empty_ledger_verifies_with_no_head(system: System) -> None:
    verdict = chain.verify(system.ledger, system.store)
    assert verdict.ok and verdict.head is None and verdict.checked == 0


# -- tampering, straight in the database ---------------------------------------------------


@pytest.mark.parametrize("batch", [3, 5000])
def test_one_changed_byte_of_state_is_found_at_its_position(
    recorded: System, raw: RawLedger, batch: int
) -> None:
    raw.flip_byte(7)
    found = broken(recorded, batch=batch)
    assert (found.position, found.reason) == (7, chain.STATE_CHANGED)


def test_a_changed_recorded_time_is_a_changed_state(recorded: System, raw: RawLedger) -> None:
    state = raw.state(4)
    timestamp = state.index(b"timestamp") + len(b"timestamp") + 3  # inside the encoded moment
    raw.flip_byte(4, timestamp)
    found = broken(recorded)
    assert (found.position, found.reason) == (4, chain.STATE_CHANGED)


@pytest.mark.parametrize("position", [1, 6, 19])
def test_a_deleted_event_is_missing_at_its_position(
    recorded: System, raw: RawLedger, position: int
) -> None:
    head = recorded.ledger.head_position()
    raw.delete(min(position, head))
    found = broken(recorded, batch=4)
    assert (found.position, found.reason) == (min(position, head), chain.EVENT_MISSING)


def test_the_deleted_newest_event_is_missing(recorded: System, raw: RawLedger) -> None:
    head = recorded.ledger.head_position()
    raw.delete(head)
    found = broken(recorded)
    assert (found.position, found.reason) == (head, chain.EVENT_MISSING)


def test_two_swapped_events_are_out_of_order_at_the_first(recorded: System, raw: RawLedger) -> None:
    raw.swap(5, 9)
    found = broken(recorded, batch=2)
    assert (found.position, found.reason) == (5, chain.OUT_OF_ORDER)
    assert "placed at 9" in found.detail


def test_a_forged_event_appended_to_the_log_is_found(recorded: System, raw: RawLedger) -> None:
    head = recorded.ledger.head_position()
    raw.append_forged(like=head)
    found = broken(recorded)
    assert (found.position, found.reason) == (head + 1, chain.EXTRA_EVENT)
    assert f"beyond the chain head {head}" in found.detail


def test_a_forged_event_in_place_of_another_is_found(recorded: System, raw: RawLedger) -> None:
    head = recorded.ledger.head_position()
    raw.append_forged(like=8)
    raw.delete(8)
    raw.move(head + 1, 8)
    found = broken(recorded)
    assert (found.position, found.reason) == (8, chain.EXTRA_EVENT)


def test_an_id_shortened_to_pad_alike_is_found(recorded: System, raw: RawLedger) -> None:
    if not raw.sqlite:
        pytest.skip("PostgreSQL keeps ids in a uuid column: nothing to shorten")
    hex_id = raw.run("SELECT originator_id FROM {t} WHERE {pos} = 5")[0][0]
    raw.run("UPDATE {t} SET originator_id = ? WHERE {pos} = 5", (hex_id[:-2],))
    found = broken(recorded)
    assert (found.position, found.reason) == (5, chain.STATE_CHANGED)
    assert "is not a UUID" in found.detail


def test_an_altered_link_is_a_link_mismatch(recorded: System) -> None:
    with recorded.store.transaction() as tx:
        chain_table = schema.table(schema.live_generation(tx), "chain")
        tx.execute(f"UPDATE {chain_table} SET hash = ? WHERE position = 6", ("00" * 32,))
    found = broken(recorded)
    assert (found.position, found.reason) == (6, chain.LINK_MISMATCH)
    assert "event itself" in found.detail


def test_the_verdict_names_the_last_link_that_held(recorded: System, raw: RawLedger) -> None:
    raw.flip_byte(10)
    verdict = chain.verify(recorded.ledger, recorded.store, batch=4)
    assert verdict.checked == 9
    assert verdict.head == chain.Link(*reference_links(recorded.ledger)[8])


# -- anchors and a running projector -------------------------------------------------------


def test_an_anchor_catches_a_consistent_rewrite(recorded: System, raw: RawLedger) -> None:
    anchor = chain.head(recorded.store)
    assert anchor is not None
    assert chain.verify(recorded.ledger, recorded.store, anchor=anchor).ok
    raw.flip_byte(3)
    rebuild(recorded.ledger, recorded.store)  # the chain recomputed over the rewritten ledger
    assert chain.verify(recorded.ledger, recorded.store).ok
    found = broken(recorded, anchor=anchor)
    assert (found.position, found.reason) == (anchor.position, chain.ANCHOR_MISMATCH)


def test_an_anchor_beyond_the_ledger_is_a_mismatch(recorded: System, raw: RawLedger) -> None:
    anchor = chain.head(recorded.store)
    assert anchor is not None
    ahead = chain.Link(anchor.position + 5, anchor.hash)
    assert broken(recorded, anchor=ahead).reason == chain.ANCHOR_MISMATCH


def test_verify_can_wait_for_a_running_projector(settings: Settings) -> None:
    with bootstrap(settings) as system:
        record_some(system.ledger)
        system.projector.start(poll_interval=0.2)
        system.ledger.form_team(name="Fresh", actor="alice")
        assert chain.verify(system.ledger, system.store, wait=10).ok
