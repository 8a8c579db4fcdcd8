"""`goalledger serve` as a real process on 127.0.0.1: demo, token, a write and a read,
a clean stop on SIGTERM; and two servers sharing one PostgreSQL database."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from api_fixtures import CYCLE

from goalledger.core.ledger import Ledger
from goalledger.core.settings import Settings

STARTUP_SECONDS = 60
STOP_SECONDS = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A `goalledger serve` subprocess and the lines it printed."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))

    def line_after(self, marker: str, timeout: float = STARTUP_SECONDS) -> str:
        """The line printed after the first line containing `marker`."""
        deadline = time.monotonic() + timeout
        seen = False
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.process.poll() is None, f"server exited: {self.output}"
                continue
            if seen:
                return line
            seen = marker in line
        raise AssertionError(f"no line after {marker!r} in {self.output}")

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited: {self.output}"
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("the server never became healthy")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STOP_SECONDS)


def admin_secret(database_url: str) -> str:
    """The secret of a new admin token in the ledger at `database_url`."""
    ledger = Ledger(Settings(database_url=database_url))
    try:
        _, secret = ledger.issue_token(name="admin", role="admin", actor="test")
    finally:
        ledger.close()
    return secret


@contextmanager
def serving(database_url: str, *args: str) -> Iterator[Server]:
    port = free_port()
    command = [sys.executable, "-m", "goalledger.api.cli", "--database-url", database_url,
               "serve", "--port", str(port), "--log-level", "warning", *args]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    server = Server(process, f"http://127.0.0.1:{port}")
    try:
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_SECONDS)
        server.pump.join(timeout=STOP_SECONDS)
        assert process.stdout is not None
        process.stdout.close()


@pytest.mark.slow
def test_serve_with_demo_answers_over_http_and_stops_cleanly(sqlite_url):
    with serving(sqlite_url, "--demo") as server:
        secret = server.line_after("Admin token")
        server.wait_healthy()
        auth = {"Authorization": f"Bearer {secret}"}
        head = httpx.get(f"{server.url}/ready", timeout=10).json()["head"]
        board = httpx.get(
            f"{server.url}/v1/scoreboard", params={"min_position": head}, headers=auth, timeout=10
        )
        assert board.status_code == 200, board.text
        assert len(board.json()["objectives"]) == 5  # the demo's quarter
        created = httpx.post(f"{server.url}/v1/cycles", json=CYCLE, headers=auth, timeout=10)
        assert created.status_code == 201, created.text
        position = created.headers["X-Ledger-Position"]
        listed = httpx.get(
            f"{server.url}/v1/cycles", params={"min_position": position, "limit": 1000},
            headers=auth, timeout=10,
        )  # fmt: skip
        assert created.json()["id"] in [c["id"] for c in listed.json()["items"]]
        assert server.stop() == 0


@pytest.mark.slow
@pytest.mark.postgres
def test_two_servers_on_one_postgres_read_each_others_writes(postgres_url):
    from goalledger.core.ledger import Ledger
    from goalledger.core.settings import Settings

    ledger = Ledger(Settings(database_url=postgres_url))
    _, secret = ledger.issue_token(name="t", role="admin", actor="test")
    ledger.close()
    auth = {"Authorization": f"Bearer {secret}"}
    with serving(postgres_url) as projecting:
        # One after the other: two processes creating the view tables at once race
        # in PostgreSQL's catalogue (see the issue note).
        projecting.wait_healthy()
        with serving(postgres_url, "--no-projector") as writer:
            writer.wait_healthy()
            _write_here_read_there(writer, projecting, auth)
            assert writer.stop() == 0
        assert projecting.stop() == 0


def _write_here_read_there(writer: Server, projecting: Server, auth: dict[str, str]) -> None:
    for step in range(3):
        created = httpx.post(
            f"{writer.url}/v1/cycles", json={**CYCLE, "name": f"Q{step}"}, headers=auth,
            timeout=10,
        )  # fmt: skip
        assert created.status_code == 201, created.text
        position = created.headers["X-Ledger-Position"]
        for server in (projecting, writer):  # the writer waits on the other's projector
            listed = httpx.get(
                f"{server.url}/v1/cycles", params={"min_position": position},
                headers=auth, timeout=10,
            )  # fmt: skip
            assert listed.status_code == 200, listed.text
            assert created.json()["id"] in [c["id"] for c in listed.json()["items"]]


@pytest.mark.slow
def test_event_stream_delivers_resumes_and_beats(sqlite_url):
    from goalledger.core.ledger import Ledger
    from goalledger.core.settings import Settings

    ledger = Ledger(Settings(database_url=sqlite_url))
    team = ledger.form_team(name="Platform", actor="test")
    _, admin = ledger.issue_token(name="a", role="admin", actor="test")
    _, viewer = ledger.issue_token(name="v", role="viewer", actor="test")
    _, scoped = ledger.issue_token(name="s", role="viewer", team_id=team.id, actor="test")
    ledger.close()
    with serving(sqlite_url) as server:
        server.wait_healthy()
        url = f"{server.url}/v1/events/stream"
        assert httpx.get(url, timeout=10).status_code == 401
        assert httpx.get(url, headers=bearer(scoped), timeout=10).status_code == 403
        with httpx.stream(
            "GET", url, headers=bearer(viewer), params={"heartbeat": 1}, timeout=10
        ) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            seen = sse_events_from(lines, lambda e: len(ids(e)) == 4)
            assert ids(seen) == [1, 2, 3, 4]
            assert seen[-1]["data"]["topic"] == "goalledger/token/issued"
            created = httpx.post(
                f"{server.url}/v1/cycles", json=CYCLE, headers=bearer(admin), timeout=10
            )
            position = int(created.headers["X-Ledger-Position"])
            more = sse_events_from(lines, lambda e: position in ids(e))
            assert more[-1]["data"]["aggregate_id"] == created.json()["id"]
            beats = sse_events_from(lines, lambda e: {"comment": "heartbeat"} in e)
            assert beats
        headers = {**bearer(viewer), "Last-Event-ID": "2"}
        with httpx.stream("GET", url, headers=headers, timeout=10) as resumed:
            again = sse_events_from(resumed.iter_lines(), lambda e: position in ids(e))
            assert ids(again) == [3, 4, position]
        assert server.stop() == 0


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def ids(events: list[dict]) -> list[int]:
    return [e["id"] for e in events if "id" in e]


def sse_events_from(lines: Iterator[str], until: Callable[[list[dict]], bool]) -> list[dict]:
    """Parse text/event-stream lines into events ({"id", "data"} or {"comment"})."""
    events: list[dict] = []
    current: dict = {}
    for line in lines:
        if line.startswith(":"):
            events.append({"comment": line[1:].strip()})
        elif line.startswith("id: "):
            current["id"] = int(line[4:])
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif line == "" and current:
            events.append(current)
            current = {}
        if until(events):
            return events
    raise AssertionError(f"the stream ended: {events}")
