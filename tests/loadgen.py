"""A loopback load generator for `goalledger serve`: mixed reads and writes over raw
HTTP/1.1 keep-alive connections (asyncio), with the server's RSS sampled from /proc.

Shared by tests/test_load.py (a bounded run in the suite) and bench/soak.py (the same
for longer). Neither wrk nor an HTTP client library is needed: one small client that
reads `Content-Length` bodies keeps the generator cheap beside the server on 2 cores.

The write mix is designed so that a conflict can only come from a real concurrent edit:
- each connection checks in its *own* key result, one request at a time: never a 409;
- readings carry ids unique to the connection and the request: never a duplicate;
- the contended edit reads the shared objective's ETag and PATCHes it with `If-Match`:
  a 412 there is real (another connection changed it in between) and is counted.
At the end, `check_ledger` proves no update was lost: the shared objective's version
grew by exactly the edits that succeeded, and each key result holds every check-in
acknowledged on it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import UUID

from goalledger.core.kpis import thresholds_for
from goalledger.core.ledger import Ledger
from goalledger.core.objectives import KeyResult, Objective
from goalledger.core.settings import Settings

STARTUP_SECONDS = 60
REQUEST_SECONDS = 30  # a request slower than this is a failure, not a wait
READINGS_PER_BATCH = 20
# op name → weight in the mix (reads ~60%, writes ~40%)
MIX = {
    "scoreboard": 25,
    "history": 15,
    "check_ins": 10,
    "objective": 10,
    "check_in": 20,
    "readings": 10,
    "edit": 10,
}
# What each op may answer; anything else is counted as unexpected.
EXPECTED = {
    "scoreboard": {200},
    "history": {200},
    "check_ins": {200},
    "objective": {200},
    "check_in": {201},
    "readings": {201},
    "edit_read": {200},
    "edit": {200, 412},  # 412: another connection edited the objective in between
}


@dataclass(frozen=True)
class World:
    """What the load works on: a token, a cycle, one shared objective, a key result per
    connection and some KPIs."""

    secret: str
    cycle_id: UUID
    objective_id: UUID
    key_result_ids: list[UUID]
    kpi_ids: list[UUID]
    objective_version: int  # before the load


def prepare(database_url: str, key_results: int, kpis: int = 8) -> World:
    """Build the world in the ledger with the core API, before a server starts."""
    ledger = Ledger(Settings(database_url=database_url))
    try:
        _, secret = ledger.issue_token(name="load", role="admin", actor="load")
        today = datetime.now(UTC).date()
        cycle = ledger.define_cycle(
            name="Load", starts_on=today - timedelta(days=30),
            ends_on=today + timedelta(days=60), actor="load",
        )  # fmt: skip
        team = ledger.form_team(name="Load", actor="load")
        objective = ledger.define_objective(
            title="Hold the load", cycle_id=cycle.id, team_id=team.id, owner="load",
            kind="committed", actor="load",
        )  # fmt: skip
        krs = [
            ledger.define_key_result(
                objective.id, title=f"KR {i}", kind="increase_to", start=Decimal(0),
                target=Decimal(1000), actor="load",
            ).id
            for i in range(key_results)
        ]  # fmt: skip
        kpi_ids = [
            ledger.define_kpi(
                name=f"KPI {i}", direction="higher_is_better", frequency="hourly",
                thresholds=thresholds_for("higher_is_better", 90, 50), actor="load",
            ).id
            for i in range(kpis)
        ]  # fmt: skip
        version = ledger.load(objective.id, Objective).version
    finally:
        ledger.close()
    return World(secret, cycle.id, objective.id, krs, kpi_ids, version)


# -- a server process --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`goalledger serve` on 127.0.0.1 (projector embedded), its output in a log file."""

    def __init__(self, database_url: str, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "goalledger.api.cli", "--database-url", database_url,
                   "serve", "--port", str(self.port), "--log-level", "warning"]  # fmt: skip
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log_path.read_text()[-2000:]}")
            try:
                status, _, _ = asyncio.run(_once(self.port, "GET", "/health"))
                if status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the server never became healthy")

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=timeout)


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


# -- HTTP/1.1 keep-alive ---------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection; reopened after the server closes it."""

    def __init__(self, port: int, secret: str | None = None) -> None:
        self.port = port
        self.auth = f"Authorization: Bearer {secret}\r\n" if secret else ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-cased headers, body) of one request."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        payload = b"" if body is None else json.dumps(body).encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.auth}{extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        try:
            self.writer.write(head.encode() + payload)
            await self.writer.drain()
            status, response_headers, data = await asyncio.wait_for(
                _read_response(self.reader), REQUEST_SECONDS
            )
        except BaseException:
            self.close()
            raise
        if response_headers.get("connection", "").lower() == "close":
            self.close()
        return status, response_headers, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunks.append(await reader.readexactly(size + 2))
            if size == 0:
                return status, headers, b"".join(c[:-2] for c in chunks)
    return status, headers, await reader.readexactly(int(headers.get("content-length", "0")))


async def _once(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = Connection(port)
    try:
        return await connection.request(method, path)
    finally:
        connection.close()


# -- the load ----------------------------------------------------------------------------


@dataclass
class Stats:
    """What the load saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    by_op: Counter[tuple[str, int]] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    transport_errors: list[str] = field(default_factory=list)
    check_ins: Counter[UUID] = field(default_factory=Counter)  # acknowledged, per KR
    readings: int = 0
    edits: int = 0
    edit_conflicts: int = 0
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds, KiB)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def summary(self) -> str:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (
            f"{self.requests} requests ({statuses}); {sum(self.check_ins.values())} check-ins,"
            f" {self.readings} readings, {self.edits} edits, {self.edit_conflicts} real 412s;"
            f" {len(self.unexpected)} unexpected, {len(self.transport_errors)} transport errors"
        )


class Load:
    """Closed-loop workers, one per connection, each with its own key result."""

    def __init__(self, port: int, world: World, stats: Stats, seed: int = 1) -> None:
        self.port = port
        self.world = world
        self.stats = stats
        self.seed = seed
        self.run_id = f"{seed}-{time.time_ns()}"

    async def worker(self, index: int, stop_at: float) -> None:
        rng = random.Random(self.seed * 1000 + index)
        connection = Connection(self.port, self.world.secret)
        kr = self.world.key_result_ids[index]
        ops, weights = list(MIX), list(MIX.values())
        sequence = 0
        try:
            while time.monotonic() < stop_at:
                sequence += 1
                op = rng.choices(ops, weights)[0]
                try:
                    await getattr(self, f"_{op}")(connection, rng, kr, f"{index}-{sequence}")
                except (OSError, asyncio.IncompleteReadError, TimeoutError) as error:
                    self.stats.transport_errors.append(f"{op}: {type(error).__name__} {error}")
                    connection.close()
        finally:
            connection.close()

    async def _call(
        self, connection: Connection, op: str, method: str, path: str, body: object = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        status, response_headers, data = await connection.request(method, path, body, headers)
        self.stats.statuses[status] += 1
        self.stats.by_op[op, status] += 1
        if status not in EXPECTED[op]:
            self.stats.unexpected.append(f"{op} {method} {path}: {status} {data[:300]!r}")
        return status, response_headers, data

    async def _scoreboard(self, c: Connection, rng: random.Random, kr: UUID, tag: str) -> None:
        await self._call(c, "scoreboard", "GET", f"/v1/scoreboard?cycle_id={self.world.cycle_id}")

    async def _history(self, c: Connection, rng: random.Random, kr: UUID, tag: str) -> None:
        kpi = rng.choice(self.world.kpi_ids)
        await self._call(c, "history", "GET", f"/v1/kpis/{kpi}/history?limit=50")

    async def _check_ins(self, c: Connection, rng: random.Random, kr: UUID, tag: str) -> None:
        await self._call(c, "check_ins", "GET", f"/v1/key-results/{kr}/check-ins?limit=20")

    async def _objective(self, c: Connection, rng: random.Random, kr: UUID, tag: str) -> None:
        await self._call(c, "objective", "GET", f"/v1/objectives/{self.world.objective_id}")

    async def _check_in(self, c: Connection, rng: random.Random, kr: UUID, tag: str) -> None:
        body = {"value": rng.randint(0, 1000), "confidence": 0.7, "note": f"load {tag}"}
        status, _, _ = await self._call(c, "check_in", "POST", f"/v1/key-results/{kr}/check-ins",
                                        body)  # fmt: skip
        if status == 201:
            self.stats.check_ins[kr] += 1

    async def _readings(self, c: Connection, rng: random.Random, kr: UUID, tag: str) -> None:
        now = datetime.now(UTC)
        body = [
            {"kpi_id": str(rng.choice(self.world.kpi_ids)),
             "reading_id": f"{self.run_id}-{tag}-{i}", "value": rng.randint(0, 100),
             "observed_at": (now - timedelta(minutes=rng.randint(0, 30 * 24 * 60))).isoformat()}
            for i in range(READINGS_PER_BATCH)
        ]  # fmt: skip
        status, _, data = await self._call(c, "readings", "POST", "/v1/readings", body)
        if status == 201:
            recorded = json.loads(data)["recorded"]
            self.stats.readings += len(recorded)
            if len(recorded) != READINGS_PER_BATCH:
                self.stats.unexpected.append(f"readings: only {len(recorded)} recorded")

    async def _edit(self, c: Connection, rng: random.Random, kr: UUID, tag: str) -> None:
        path = f"/v1/objectives/{self.world.objective_id}"
        status, headers, _ = await self._call(c, "edit_read", "GET", path)
        if status != 200:
            return
        body = {"description": f"edited by {tag}", "reason": "load"}
        status, _, _ = await self._call(c, "edit", "PATCH", path, body,
                                        {"If-Match": headers["etag"]})  # fmt: skip
        if status == 200:
            self.stats.edits += 1
        elif status == 412:
            self.stats.edit_conflicts += 1


async def run_load(
    port: int,
    world: World,
    *,
    connections: int,
    seconds: float,
    pid: int | None = None,
    sample_every: float = 1.0,
    seed: int = 1,
    on_sample: Callable[[Stats], None] | None = None,
) -> Stats:
    """Drive `connections` closed-loop workers for `seconds`; sample `pid`'s RSS."""
    assert connections <= len(world.key_result_ids), "one key result per connection"
    stats = Stats()
    load = Load(port, world, stats, seed)
    started = time.monotonic()
    stop_at = started + seconds
    workers = [asyncio.create_task(load.worker(i, stop_at)) for i in range(connections)]
    while pid is not None and time.monotonic() < stop_at:
        stats.rss.append((time.monotonic() - started, rss_kib(pid)))
        if on_sample is not None:
            on_sample(stats)
        await asyncio.sleep(min(sample_every, max(0.0, stop_at - time.monotonic())))
    await asyncio.gather(*workers)
    if pid is not None:
        stats.rss.append((time.monotonic() - started, rss_kib(pid)))
    return stats


def check_ledger(database_url: str, world: World, stats: Stats) -> None:
    """No lost update: the shared objective moved by exactly the edits that succeeded,
    and each key result holds exactly the check-ins acknowledged on it."""
    ledger = Ledger(Settings(database_url=database_url))
    try:
        objective = ledger.load(world.objective_id, Objective)
        assert objective.version == world.objective_version + stats.edits, (
            f"objective at version {objective.version}, expected "
            f"{world.objective_version} + {stats.edits} successful edits"
        )
        for kr_id, acknowledged in stats.check_ins.items():
            kr = ledger.load(kr_id, KeyResult)
            assert kr.version - 1 == acknowledged, f"{kr_id}: {kr.version - 1} != {acknowledged}"
    finally:
        ledger.close()


def growth_in_second_half(samples: list[tuple[float, int]]) -> tuple[int, int, int]:
    """(RSS at the middle, RSS at the end, the largest rise over the middle) in KiB,
    from samples taken over a run."""
    half = samples[-1][0] / 2
    second = [kib for seconds, kib in samples if seconds >= half]
    middle = second[0]
    return middle, second[-1], max(second) - middle
