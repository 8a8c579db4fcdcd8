"""Secrets at rest through the real command line: serve and worker refuse to start
without the keys the ledger's secrets need, and `goalledger secrets rotate` moves every
secret in use from key A to key B, after which B alone fetches and delivers."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from uuid import UUID

import pytest
from test_api_serve import serving
from test_secrets import HOOK_SECRET, TOKEN, deliver, hook_for, source_for, upstream  # noqa: F401

from goalledger.api.bootstrap import bootstrap
from goalledger.core.kpis import Kpi, thresholds_for
from goalledger.core.secrets import KEY_VARIABLE, PREVIOUS_VARIABLE, Keyring, new_key
from goalledger.core.settings import Settings
from goalledger.core.subscriptions import Channel, Subscription
from goalledger.plugins.testkit import LocalServer

KEY_A, KEY_B = new_key(), new_key()
ID_A, ID_B = Keyring.parse(KEY_A).current_id, Keyring.parse(KEY_B).current_id
RUN_SECONDS = 60
pytestmark = pytest.mark.slow  # real subprocesses, several per test


def goalledger(database_url: str, *args: str, keys: dict[str, str]) -> subprocess.CompletedProcess:
    """Run the real CLI with exactly `keys` as its secret-key environment."""
    env = {k: v for k, v in os.environ.items() if k not in (KEY_VARIABLE, PREVIOUS_VARIABLE)}
    command = [sys.executable, "-m", "goalledger.api.cli", "--database-url", database_url, *args]
    return subprocess.run(
        command, env={**env, **keys}, capture_output=True, text=True, timeout=RUN_SECONDS
    )


@pytest.fixture
def sealed_under_a(database_url: str, upstream: LocalServer) -> Iterator[tuple[UUID, UUID]]:  # noqa: F811
    """A KPI source and a webhook subscription whose secrets are sealed under key A."""
    with bootstrap(Settings(database_url=database_url, secret_key=KEY_A)) as system:
        source = system.plugins.validate_source(**source_for(upstream))
        kpi = system.ledger.define_kpi(
            name="Signups", unit="", direction="higher_is_better",
            thresholds=thresholds_for("higher_is_better", 10, 5), frequency="daily",
            source=source, actor="test",
        ).id  # fmt: skip
        channel = system.plugins.validate_channel(**hook_for(upstream))
        subscription = system.ledger.subscribe(
            alert_kinds=["cycle_ending"], team_ids=[],
            channel=Channel(channel.plugin, channel.config), actor="test",
        ).id  # fmt: skip
    yield kpi, subscription


def test_serve_and_worker_refuse_to_start_without_the_key(
    database_url: str, sealed_under_a: tuple[UUID, UUID]
) -> None:
    for command in (["serve", "--port", "9"], ["worker"]):
        for keys in ({}, {KEY_VARIABLE: KEY_B}):
            refused = goalledger(database_url, *command, keys=keys)
            assert refused.returncode == 2, refused.stderr
            [line] = refused.stderr.splitlines()  # one line, no traceback
            assert line.startswith(f"error: {KEY_VARIABLE}: ")
            assert f"encrypted under key {ID_A}" in line and "refusing to start" in line
            assert KEY_A not in line and "Traceback" not in refused.stderr
    # Reading needs no key: an auditor exports the ledger, and no secret is in it.
    exported = goalledger(database_url, "audit", "export", "--catch-up", keys={})
    assert exported.returncode == 0, exported.stderr
    states = [base64.b64decode(json.loads(line)["state"]) for line in exported.stdout.splitlines()]
    assert len(states) == 2 and all(b"enc:v1:" + ID_A.encode() in state for state in states)
    for secret in (TOKEN, HOOK_SECRET):
        assert secret not in exported.stdout and not any(secret.encode() in s for s in states)
    malformed = goalledger(database_url, "worker", keys={KEY_VARIABLE: "too-short"})
    assert malformed.returncode == 2
    assert malformed.stderr.startswith(f"error: {KEY_VARIABLE}: must be 32 random bytes")


def test_a_ledger_without_secrets_serves_without_a_key(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_VARIABLE, raising=False)
    with serving(sqlite_url) as server:
        server.wait_healthy()
        assert server.stop() == 0


def test_rotating_from_key_a_to_b_leaves_b_alone_fetching_and_delivering(
    database_url: str,
    sealed_under_a: tuple[UUID, UUID],
    upstream: LocalServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kpi, subscription = sealed_under_a
    # B alone cannot open what A sealed: status says so and exits 1.
    before = goalledger(database_url, "secrets", "status", "--json", keys={KEY_VARIABLE: KEY_B})
    assert before.returncode == 1
    assert json.loads(before.stdout)["missing_keys"] == [ID_A]

    both = {KEY_VARIABLE: KEY_B, PREVIOUS_VARIABLE: KEY_A}
    rotated = goalledger(
        database_url, "secrets", "rotate", "--reason", "yearly rotation", keys=both
    )
    assert rotated.returncode == 0, rotated.stderr
    assert f"Re-sealed 2 binding(s) under key {ID_B}" in rotated.stdout
    again = goalledger(database_url, "secrets", "rotate", keys=both)
    assert "Re-sealed 0 binding(s)" in again.stdout  # nothing left to move

    after = goalledger(database_url, "secrets", "status", "--json", keys={KEY_VARIABLE: KEY_B})
    assert after.returncode == 0, after.stdout
    status = json.loads(after.stdout)
    assert status["missing_keys"] == [] and status["to_rotate"] == 0
    assert {b["id"] for b in status["bindings"]} == {str(kpi), str(subscription)}
    assert all(b["key_ids"] == [ID_B] for b in status["bindings"])

    # Only key B from here on: the server starts, and fetch and delivery still work.
    monkeypatch.setenv(KEY_VARIABLE, KEY_B)
    monkeypatch.delenv(PREVIOUS_VARIABLE, raising=False)
    with serving(database_url) as server:
        server.wait_healthy()
        assert server.stop() == 0
    with bootstrap(Settings(database_url=database_url, secret_key=KEY_B)) as system:
        assert system.sources.fetch(kpi, actor="test").observed == 1
        deliver(system, str(subscription))
        for aggregate in (
            system.ledger.load(kpi, Kpi),
            system.ledger.load(subscription, Subscription),
        ):
            assert aggregate.version == 2  # one new event each; the first kept as it was
        events = [
            e for _, e in system.ledger.read_events() if e.originator_id in (kpi, subscription)
        ]
        assert [(e.reason, e.actor.startswith("cli")) for e in events[-2:]] == [
            ("yearly rotation", True)
        ] * 2
    # (the server's scheduler may have fetched too, with the token opened under B)
    assert {e.path for e in upstream.received} == {"/m", "/hook"}
    assert {e.headers.get("Authorization") for e in upstream.received if e.path == "/m"} == {
        f"Bearer {TOKEN}"
    }
    # And key A alone no longer opens what is in use.
    retired = goalledger(database_url, "worker", keys={KEY_VARIABLE: KEY_A})
    assert retired.returncode == 2 and f"encrypted under key {ID_B}" in retired.stderr
