"""Access hardening: token expiry (API and CLI), per-token write rate limits, security
headers on every kind of response, no trace or path in a 500, and no secret in the logs.

The in-process tests use the Litestar app over an SQLite file; the event stream, the
internal-error path and the logs are checked against a real `goalledger serve`
process with logging at debug.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from api_fixtures import CYCLE, Api, _api
from click.testing import CliRunner
from test_api_serve import STOP_SECONDS, Server, free_port

from goalledger.api import cli
from goalledger.api.auth import TOKEN_CACHE_SECONDS
from goalledger.api.http_idempotency import TABLE as IDEMPOTENCY_TABLE
from goalledger.core.errors import DomainError
from goalledger.core.ledger import Ledger
from goalledger.core.settings import Settings

PROBLEM_JSON = "application/problem+json"
# What must never reach a client: traceback lines, source files, library internals.
LEAKS = ("Traceback", 'File "', ".py", "/work", "site-packages", "sqlite3", "OperationalError",
         "no such table", IDEMPOTENCY_TABLE)  # fmt: skip


@pytest.fixture(name="api")
def api_fixture(sqlite_url: str) -> Iterator[Api]:
    """The API over an SQLite file, with the default limits."""
    yield from _api(Settings(database_url=sqlite_url))


@pytest.fixture(name="limited_api")
def limited_api_fixture(sqlite_url: str) -> Iterator[Api]:
    """The API with a low write rate (3 writes in a burst, then 2 a second)."""
    yield from _api(Settings(database_url=sqlite_url, write_rate=2, write_burst=3))


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# -- token expiry ------------------------------------------------------------------------


def test_a_token_issued_with_an_expiry_stops_working_after_it(api: Api):
    expires_at = datetime.now(UTC) + timedelta(seconds=2)
    issued = api.post("/v1/tokens", json={
        "name": "ci", "role": "viewer", "expires_at": expires_at.isoformat()})  # fmt: skip
    assert issued.status_code == 201, issued.text
    body = issued.json()
    assert datetime.fromisoformat(body["expires_at"]) == expires_at
    assert api.get("/v1/cycles", token=body["secret"]).status_code == 200
    listed = api.settled("/v1/tokens").json()["items"]  # the list is a read model
    assert [t["expires_at"] for t in listed if t["id"] == body["id"]] == [body["expires_at"]]
    # Past the expiry and past the time an authenticated token is trusted unasked.
    time.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()))
    time.sleep(TOKEN_CACHE_SECONDS + 0.2)
    refused = api.get("/v1/cycles", token=body["secret"])
    assert refused.status_code == 401
    assert "expired" in refused.json()["detail"]


def test_an_expiry_in_the_past_or_without_offset_is_refused_naming_the_field(api: Api):
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    response = api.post("/v1/tokens", json={"name": "x", "role": "viewer", "expires_at": past})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["expires_at"]
    naive = api.post("/v1/tokens", json={
        "name": "x", "role": "viewer", "expires_at": "2099-01-01T00:00:00"})  # fmt: skip
    assert naive.status_code == 400
    assert [e["field"] for e in naive.json()["errors"]] == ["expires_at"]


def test_the_cli_issues_tokens_that_expire(sqlite_url: str):
    runner = CliRunner()
    base = ["--database-url", sqlite_url, "tokens", "create", "--role", "viewer", "--json"]
    result = runner.invoke(cli.goalledger, [*base, "--expires-in", "0.5"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.splitlines()[0])
    expires_at = datetime.fromisoformat(record["expires_at"])
    assert timedelta(hours=11) < expires_at - datetime.now(UTC) <= timedelta(hours=12)
    secret = result.output.strip().splitlines()[-1]
    ledger = Ledger(Settings(database_url=sqlite_url))
    try:
        assert ledger.authenticate(secret) is not None
    finally:
        ledger.close()
    at = runner.invoke(cli.goalledger, [*base, "--expires-at", "2099-01-01T00:00:00Z"])
    assert '"expires_at": "2099-01-01T00:00:00+00:00"' in at.output
    both = runner.invoke(cli.goalledger, [*base, "--expires-at", "2099-01-01T00:00:00Z",
                                          "--expires-in", "1"])  # fmt: skip
    assert both.exit_code == 2
    past = runner.invoke(cli.goalledger, [*base, "--expires-at", "2020-01-01T00:00:00Z"])
    assert past.exit_code == 2
    assert "expires_at" in past.output


# -- write rate --------------------------------------------------------------------------


def test_writes_beyond_a_tokens_rate_are_429_with_retry_after(limited_api: Api):
    api = limited_api
    other = api.token("admin")
    statuses = [
        api.post("/v1/cycles", json={**CYCLE, "name": f"Q{n}"}).status_code for n in range(5)
    ]
    assert statuses[:3] == [201, 201, 201]
    assert 429 in statuses[3:]
    limited = api.post("/v1/cycles", json={**CYCLE, "name": "late"})
    assert limited.status_code == 429
    assert limited.headers["content-type"] == PROBLEM_JSON
    assert int(limited.headers["Retry-After"]) >= 1
    assert [e["field"] for e in limited.json()["errors"]] == ["Authorization"]
    assert_secure(limited, authenticated=True)
    # Reads are not limited; another token has a bucket of its own.
    assert api.get("/v1/cycles").status_code == 200
    assert api.post("/v1/cycles", other, json={**CYCLE, "name": "other"}).status_code == 201
    time.sleep(int(limited.headers["Retry-After"]))
    assert api.post("/v1/cycles", json={**CYCLE, "name": "after"}).status_code == 201


def test_a_wrong_secret_cannot_drain_another_tokens_bucket(limited_api: Api):
    api = limited_api
    victim = api.token("admin")
    forged = victim[:36] + "x" * (len(victim) - 36)  # the victim's token id, a wrong secret
    for _ in range(10):
        assert api.post("/v1/cycles", forged, json=CYCLE).status_code == 401
    assert api.post("/v1/cycles", victim, json={**CYCLE, "name": "mine"}).status_code == 201


def test_limits_are_settings_checked_at_start():
    for name, value in (("WRITE_RATE", "-1"), ("WRITE_BURST", "0"), ("MAX_BODY_BYTES", "10")):
        with pytest.raises(DomainError) as refused:
            Settings.from_env({f"GOALLEDGER_{name}": value})
        assert refused.value.field == f"GOALLEDGER_{name}"
    settings = Settings.from_env({"GOALLEDGER_WRITE_RATE": "0.5", "GOALLEDGER_WRITE_BURST": "4"})
    assert (settings.write_rate, settings.write_burst) == (0.5, 4)


# -- security headers --------------------------------------------------------------------


def assert_secure(response: httpx.Response, *, authenticated: bool, docs: bool = False) -> None:
    where = f"{response.request.method} {response.request.url.path} → {response.status_code}"
    headers = response.headers
    assert headers.get("X-Content-Type-Options") == "nosniff", where
    assert headers.get("X-Frame-Options") == "DENY", where
    assert headers.get("Referrer-Policy") == "no-referrer", where
    policy = headers.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy, where
    assert ("script-src https://cdn.jsdelivr.net" in policy) == docs, where
    if authenticated:
        assert headers.get("Cache-Control") == "no-store", where


def test_every_kind_of_response_carries_the_security_headers(api: Api, tmp_path: Path):
    org = api.org()
    viewer = api.token("viewer")
    kpi = org["kpi"]["id"]
    settled = {"min_position": api.system.ledger.head_position()}
    authenticated = [
        api.get("/v1/cycles"),  # a JSON list
        api.post("/v1/cycles", json={**CYCLE, "name": "headers"}),  # 201 write
        api.get(f"/v1/objectives/{org['objective']['id']}"),  # an aggregate with ETag
        api.get(f"/v1/kpis/{kpi}/chart.svg", params=settled),  # SVG
        api.get("/v1/audit/export"),  # NDJSON stream
        api.get("/v1/cycles", token="not-a-token"),  # 401
        api.post("/v1/cycles", viewer, json=CYCLE),  # 403
        api.get(f"/v1/cycles/{org['kpi']['id']}"),  # 404 from the domain
        api.post("/v1/cycles", json={"name": 1}),  # 400
        api.post("/v1/tokens", json={"name": "t", "role": "emperor"}),  # 422
        api.call("PUT", "/v1/cycles"),  # 405
        api.post("/v1/cycles", content=b"x" * 3_000_000),  # 413
        api.get("/nowhere"),  # 404 for a path no route matches
    ]
    statuses = {r.status_code for r in authenticated}
    assert {200, 201, 400, 401, 403, 404, 405, 413, 422} <= statuses
    for response in authenticated:
        assert_secure(response, authenticated=True)
    for path in ("/health", "/ready", "/metrics", "/schema/openapi.json", "/nowhere"):
        assert_secure(api.get(path, token=None), authenticated=False)
    docs = api.get("/schema", token=None)
    assert docs.status_code == 200 and "cdn.jsdelivr.net" in docs.text
    assert_secure(docs, authenticated=False, docs=True)


# -- a real server: the event stream, a real internal fault, the logs --------------------


@contextmanager
def debug_server(database_url: str, **settings: str) -> Iterator[Server]:
    """`goalledger serve` at debug log level, its stdout and stderr captured together;
    `settings` are GOALLEDGER_* variables (by default a low write rate)."""
    port = free_port()
    command = [sys.executable, "-m", "goalledger.api.cli", "--database-url", database_url,
               "serve", "--port", str(port), "--log-level", "debug"]  # fmt: skip
    limits = {"WRITE_RATE": "1", "WRITE_BURST": "5", **settings}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.update({f"GOALLEDGER_{name.upper()}": value for name, value in limits.items()})
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    server = Server(process, f"http://127.0.0.1:{port}")
    try:
        server.wait_healthy()
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_SECONDS)
        server.pump.join(timeout=STOP_SECONDS)
        assert process.stdout is not None
        process.stdout.close()


def issue(database_url: str, role: str, *, revoked: bool = False) -> str:
    ledger = Ledger(Settings(database_url=database_url))
    try:
        written, secret = ledger.issue_token(name=f"{role} secret", role=role, actor="test")
        if revoked:
            ledger.revoke_token(written.id, actor="test")
        return secret
    finally:
        ledger.close()


def drop_idempotency_table(database_url: str) -> None:
    """A real fault under the running server: a table it needs disappears."""
    ledger_file = Path(database_url.removeprefix("sqlite:///"))
    projections = ledger_file.with_name(f"{ledger_file.stem}.projections.db")
    with sqlite3.connect(projections) as db:
        db.execute(f"DROP TABLE IF EXISTS {IDEMPOTENCY_TABLE}")


@pytest.mark.slow
def test_a_real_server_shows_no_trace_and_logs_no_secret(sqlite_url: str):
    admin = issue(sqlite_url, "admin")
    viewer = issue(sqlite_url, "viewer")
    revoked = issue(sqlite_url, "admin", revoked=True)
    unknown = admin[:36] + "Z" * (len(admin) - 36)
    secrets = {"admin": admin, "viewer": viewer, "revoked": revoked, "unknown": unknown}
    with debug_server(sqlite_url) as server:
        url = server.url
        with httpx.Client(base_url=url, timeout=10) as client:
            # Successes and every kind of failure, each carrying a secret in a header.
            sent = [
                client.get("/v1/cycles", headers=bearer(admin)),
                client.post("/v1/cycles", json=CYCLE, headers=bearer(admin)),
                client.post("/v1/cycles", json=CYCLE, headers=bearer(viewer)),
                client.get("/v1/cycles", headers=bearer(revoked)),
                client.get("/v1/cycles", headers=bearer(unknown)),
                client.get("/v1/cycles", headers={"Authorization": f"Basic {admin}"}),
                client.get("/v1/cycles", headers={"Authorization": admin}),
                client.post("/v1/cycles", content=b"{", headers=bearer(admin)),
                client.post("/v1/cycles", content=b"x" * 3_000_000, headers=bearer(admin)),
                client.get("/nowhere", headers=bearer(admin)),
            ]
            assert {r.status_code for r in sent} >= {200, 201, 400, 401, 403, 404, 413}
            writes = [
                client.post("/v1/teams", json={"name": "t"}, headers=bearer(admin)).status_code
                for _ in range(8)
            ]
            assert writes[-1] == 429, writes
            # The event stream: headers on its first (and only) response start.
            with client.stream("GET", "/v1/events/stream", headers=bearer(viewer)) as stream:
                assert stream.status_code == 200
                assert_secure(stream, authenticated=True)
            # A real fault: the idempotency table vanishes under the running server.
            drop_idempotency_table(sqlite_url)
            time.sleep(1.1)  # a fresh write token in the bucket
            failed = client.post(
                "/v1/cycles", json={**CYCLE, "name": "fault"},
                headers={**bearer(admin), "Idempotency-Key": "fault-1"},
            )  # fmt: skip
        assert failed.status_code == 500, failed.text
        assert failed.headers["content-type"] == PROBLEM_JSON
        assert failed.json()["detail"] == "an unexpected error occurred; it has been logged"
        for leak in LEAKS:
            assert leak not in failed.text, leak
        assert_secure(failed, authenticated=True)
        assert server.stop() == 0
    output = "\n".join(server.output)
    assert "no such table" in output and "Traceback" in output  # logged in full, server-side
    assert "DEBUG goalledger.api.http_limits: write rate exceeded" in output  # debug is on
    for name, secret in secrets.items():
        random_part = secret[36:]  # the token id before it is public (events name it)
        assert secret not in output and random_part not in output, name
