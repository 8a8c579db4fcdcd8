"""`goalledger serve` runs its projector, alert clock and dispatcher in a child process
it supervises: real server processes on 127.0.0.1, a real SQLite file."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from test_api_serve import Server, admin_secret, serving

DEADLINE = 20.0

pytestmark = pytest.mark.slow


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (from /proc), zombies left out."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return [c for c in found if alive(c)]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def worker_child(server: Server, other_than: int | None = None) -> int:
    """The server's worker child (waiting for it to be started, or restarted)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found = [c for c in children(server.process.pid) if c != other_than]
        # A child between fork and exec still shows the server's command line.
        if found and b"worker" in Path(f"/proc/{found[0]}/cmdline").read_bytes().split(b"\0"):
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no worker child: {server.output}")


def wait_gone(pid: int, timeout: float = DEADLINE) -> float:
    """Seconds until `pid` is gone; fails after `timeout`."""
    start = time.monotonic()
    while alive(pid):
        assert time.monotonic() - start < timeout, f"process {pid} is still running"
        time.sleep(0.02)
    return time.monotonic() - start


def create_and_read_back(server: Server, auth: dict[str, str], name: str) -> float:
    """Create a cycle, read it back with `min_position`; seconds the read took."""
    body = {"name": name, "starts_on": "2026-01-01", "ends_on": "2026-03-31"}
    created = httpx.post(f"{server.url}/v1/cycles", json=body, headers=auth, timeout=10)
    assert created.status_code == 201, created.text
    position = created.headers["X-Ledger-Position"]
    start = time.monotonic()
    listed = httpx.get(
        f"{server.url}/v1/cycles", params={"min_position": position, "limit": 1000},
        headers=auth, timeout=10,
    )  # fmt: skip
    took = time.monotonic() - start
    assert listed.status_code == 200, listed.text
    assert created.json()["id"] in [c["id"] for c in listed.json()["items"]]
    return took


def test_serve_projects_in_a_child_and_reads_its_own_writes(sqlite_url: str) -> None:
    auth = {"Authorization": f"Bearer {admin_secret(sqlite_url)}"}
    with serving(sqlite_url) as server:
        server.wait_healthy()
        child = worker_child(server)
        took = [create_and_read_back(server, auth, f"Q{i}") for i in range(5)]
        assert max(took) < 1.0, took  # the child is woken, and the reader polls
        ready = httpx.get(f"{server.url}/ready", timeout=10).json()
        assert ready["status"] == "ready"
        assert ready["position"] == ready["head"]  # the lag the child's projection leaves
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert f"goalledger_projection_position {float(ready['head'])}" in metrics
        assert server.stop() == 0
        assert wait_gone(child, 1) < 1  # stopped by the server, before it exited


def test_a_killed_child_is_started_again(sqlite_url: str) -> None:
    auth = {"Authorization": f"Bearer {admin_secret(sqlite_url)}"}
    with serving(sqlite_url, "--log-level", "info") as server:
        server.wait_healthy()
        first = worker_child(server)
        os.kill(first, signal.SIGKILL)
        second = worker_child(server, other_than=first)
        create_and_read_back(server, auth, "after the restart")
        assert any(f"exited with signal {signal.SIGKILL.value}" in line for line in server.output)
        assert server.stop() == 0
        wait_gone(second, 1)


def test_the_child_exits_when_the_server_is_killed(sqlite_url: str) -> None:
    with serving(sqlite_url) as server:
        server.wait_healthy()
        child = worker_child(server)
        server.process.kill()
        server.process.wait(timeout=10)
        assert wait_gone(child, 5) < 5  # it reads end-of-file on the server's pipe at once


@pytest.mark.parametrize("mode", [("--projector", "thread"), ("--projector", "off")])
def test_thread_and_off_modes_start_no_child(sqlite_url: str, mode: tuple[str, str]) -> None:
    auth = {"Authorization": f"Bearer {admin_secret(sqlite_url)}"}
    with serving(sqlite_url, *mode) as server:
        server.wait_healthy()
        if mode[1] == "thread":
            create_and_read_back(server, auth, "projected here")
        time.sleep(0.5)
        assert children(server.process.pid) == []
        assert server.stop() == 0


def test_no_projector_is_off_and_a_separate_worker_projects(sqlite_url: str) -> None:
    import subprocess
    import sys

    auth = {"Authorization": f"Bearer {admin_secret(sqlite_url)}"}
    command = [sys.executable, "-m", "goalledger.api.cli", "--database-url", sqlite_url,
               "worker", "--log-level", "warning"]  # fmt: skip
    with serving(sqlite_url, "--no-projector") as server, subprocess.Popen(command) as worker:
        try:
            server.wait_healthy()
            assert children(server.process.pid) == []
            create_and_read_back(server, auth, "projected by the worker")
            assert server.stop() == 0
        finally:
            worker.terminate()
            worker.wait(timeout=DEADLINE)


def test_what_the_ledger_held_at_start_is_readable_once_healthy(sqlite_url: str) -> None:
    from datetime import date

    from goalledger.core.ledger import Ledger
    from goalledger.core.settings import Settings

    secret = admin_secret(sqlite_url)
    ledger = Ledger(Settings(database_url=sqlite_url))
    try:
        cycle = ledger.define_cycle(
            name="before the server", starts_on=date(2026, 1, 1), ends_on=date(2026, 3, 31),
            actor="test",
        )  # fmt: skip
    finally:
        ledger.close()
    with serving(sqlite_url) as server:
        server.wait_healthy()
        listed = httpx.get(
            f"{server.url}/v1/cycles", headers={"Authorization": f"Bearer {secret}"}, timeout=10
        )
        assert str(cycle.id) in [c["id"] for c in listed.json()["items"]]  # no min_position
        assert server.stop() == 0
