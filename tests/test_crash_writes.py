"""A real `goalledger serve` killed with SIGKILL under concurrent writes, several times:
every write that got a 2xx is in the ledger exactly once, a write that got no answer is
there at most once, and the live read models equal a rebuild."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

import httpx
import pytest
from loadgen import World, prepare
from test_api_serve import Server, serving

from goalledger.api.bootstrap import bootstrap
from goalledger.core.kpis import Reading
from goalledger.core.objectives import KeyResult
from goalledger.core.settings import Settings
from goalledger.projections.projector import rebuild, view_state

KILLS = 4
CHECK_IN_WRITERS = 3
READING_WRITERS = 3
BATCH = 50
ROUND_SECONDS = 30  # a round that acknowledges nothing in this long has failed
CATCH_UP_SECONDS = 60


@dataclass
class Writes:
    """What the writers sent and what the server acknowledged."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    check_ins: dict[str, UUID] = field(default_factory=dict)  # acknowledged note → KR
    unanswered_check_ins: set[str] = field(default_factory=set)
    readings: set[tuple[str, str]] = field(default_factory=set)  # acknowledged (KPI, id)
    unanswered_batches: list[list[dict]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # answers other than 2xx

    def acknowledged(self) -> int:
        with self.lock:
            return len(self.check_ins) + len(self.readings) // BATCH


class Writers:
    """Threads writing at one server until it dies (or `stop`): check-ins, each writer on
    its own key result, and batches of readings with unique ids."""

    def __init__(self, server: Server, world: World, writes: Writes, round_: int) -> None:
        self.server, self.world, self.writes, self.round = server, world, writes, round_
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._check_ins, args=(i,), daemon=True)
            for i in range(CHECK_IN_WRITERS)
        ] + [
            threading.Thread(target=self._readings, args=(i,), daemon=True)
            for i in range(READING_WRITERS)
        ]
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=ROUND_SECONDS)
            assert not thread.is_alive(), "a writer hung"

    def _client(self) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.world.secret}"}
        return httpx.Client(base_url=self.server.url, headers=auth, timeout=ROUND_SECONDS)

    def _check_ins(self, writer: int) -> None:
        kr = self.world.key_result_ids[writer]
        with self._client() as client:
            for step in range(1_000_000):
                if self.stop.is_set():
                    return
                note = f"round {self.round} writer {writer} step {step}"
                try:
                    answer = client.post(
                        f"/v1/key-results/{kr}/check-ins", json={"value": step, "note": note}
                    )
                except httpx.TransportError:
                    with self.writes.lock:
                        self.writes.unanswered_check_ins.add(note)
                    return  # the server died
                with self.writes.lock:
                    if answer.status_code == 201:
                        self.writes.check_ins[note] = kr
                    else:
                        self.writes.refused.append(f"{note}: {answer.status_code} {answer.text}")

    def _readings(self, writer: int) -> None:
        with self._client() as client:
            for step in range(1_000_000):
                if self.stop.is_set():
                    return
                batch = readings_batch(self.world, f"r{self.round}-w{writer}-s{step}")
                try:
                    answer = client.post("/v1/readings", json=batch)
                except httpx.TransportError:
                    with self.writes.lock:
                        self.writes.unanswered_batches.append(batch)
                    return
                with self.writes.lock:
                    if answer.status_code == 201 and len(answer.json()["recorded"]) == BATCH:
                        self.writes.readings |= {(r["kpi_id"], r["reading_id"]) for r in batch}
                    else:
                        self.writes.refused.append(f"readings: {answer.status_code} {answer.text}")


def readings_batch(world: World, prefix: str) -> list[dict]:
    now = datetime.now(UTC)
    return [
        {"kpi_id": str(world.kpi_ids[i % len(world.kpi_ids)]), "reading_id": f"{prefix}-{i}",
         "value": i, "observed_at": (now - timedelta(minutes=i)).isoformat()}
        for i in range(BATCH)
    ]  # fmt: skip


def kill_under_writes(server: Server, world: World, writes: Writes, round_: int, target: int):
    """Write until `target` more writes are acknowledged, then SIGKILL the server."""
    server.wait_healthy()
    start = writes.acknowledged()
    writers = Writers(server, world, writes, round_)
    deadline = time.monotonic() + ROUND_SECONDS
    while writes.acknowledged() < start + target:
        assert time.monotonic() < deadline, f"no progress: {writes.refused[:3]}"
        assert server.process.poll() is None, server.output
        time.sleep(0.01)
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    writers.join()


def wait_projected(server: Server) -> int:
    """Wait until the server's projector reaches the ledger's head; returns the head."""
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while time.monotonic() < deadline:
        ready = httpx.get(f"{server.url}/ready", timeout=10).json()
        if ready.get("positions_behind") == 0:
            return ready["head"]
        time.sleep(0.1)
    raise AssertionError(f"the projector did not catch up: {ready}")


@pytest.mark.slow
def test_sigkilled_server_keeps_each_acknowledged_write_exactly_once(database_url, tmp_path):
    world = prepare(database_url, key_results=CHECK_IN_WRITERS, kpis=4)
    writes = Writes()
    rng = random.Random()
    seed = rng.randrange(1_000_000)
    rng.seed(seed)
    for round_ in range(KILLS):
        with serving(database_url) as server:
            kill_under_writes(server, world, writes, round_, target=rng.randint(5, 60))
    with serving(database_url) as server:
        server.wait_healthy()
        auth = {"Authorization": f"Bearer {world.secret}"}
        for batch in writes.unanswered_batches:  # readings are idempotent: resend them
            answer = httpx.post(f"{server.url}/v1/readings", json=batch, headers=auth, timeout=30)
            assert answer.status_code in (200, 201), answer.text
            held = answer.json()
            assert sorted(held["recorded"] + held["duplicates"]) == sorted(
                r["reading_id"] for r in batch
            )
            writes.readings |= {(r["kpi_id"], r["reading_id"]) for r in batch}
        wait_projected(server)
        projected_notes = {kr: api_check_in_notes(server, auth, kr) for kr in world.key_result_ids}
        assert server.stop() == 0

    assert not writes.refused, writes.refused[:5]
    ledger_notes_by_kr, ledger_readings = ledger_contents(database_url)
    ledger_notes = Counter(note for notes in ledger_notes_by_kr.values() for note in notes)
    print(
        f"seed {seed}: {KILLS} kills survived; {len(writes.check_ins)} check-ins and"
        f" {len(writes.readings)} readings acknowledged (of which"
        f" {len(writes.unanswered_batches) * BATCH} in unanswered batches, resent);"
        f" {len(writes.unanswered_check_ins)} check-ins unanswered, of which"
        f" {sum(ledger_notes[n] for n in writes.unanswered_check_ins)} were recorded"
    )
    assert all(count == 1 for count in ledger_notes.values()), "a check-in recorded twice"
    assert all(ledger_notes[note] == 1 for note in writes.check_ins), "an acknowledged loss"
    assert set(ledger_notes) <= set(writes.check_ins) | writes.unanswered_check_ins
    assert all(count == 1 for count in ledger_readings.values()), "a reading recorded twice"
    assert set(ledger_readings) == writes.readings
    for kr in world.key_result_ids:  # the read models show the ledger's check-ins, once
        assert sorted(projected_notes[kr]) == sorted(ledger_notes_by_kr[kr])
    assert_projections_equal_rebuild(database_url)


def api_check_in_notes(server: Server, auth: dict[str, str], kr: UUID) -> list[str]:
    """Every check-in note of a key result, as its paginated history shows them."""
    notes: list[str] = []
    cursor = None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(
            f"{server.url}/v1/key-results/{kr}/check-ins", params=params, headers=auth, timeout=30
        )
        assert page.status_code == 200, page.text
        notes += [item["note"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return notes


def ledger_contents(
    database_url: str,
) -> tuple[dict[UUID, list[str]], Counter[tuple[str, str]]]:
    """The check-in notes the ledger holds per key result, and how many times it holds
    each (KPI, reading id)."""
    notes: dict[UUID, list[str]] = defaultdict(list)
    readings: Counter[tuple[str, str]] = Counter()
    with bootstrap(Settings(database_url=database_url)) as system:
        for _, event in system.ledger.read_events():
            if isinstance(event, KeyResult.CheckedIn):
                notes[event.originator_id].append(event.note)
            elif isinstance(event, Reading.Recorded):
                readings[str(event.kpi_id), event.reading_id] += 1
    return notes, readings


def assert_projections_equal_rebuild(database_url: str) -> None:
    with bootstrap(Settings(database_url=database_url)) as system:
        assert system.projector.position() == system.ledger.head_position()
        live = view_state(system.store)
        rebuild(system.ledger, system.store)
        assert view_state(system.store) == live
