"""Hostile request bodies: every write route's body Struct under generated garbage answers
a 4xx problem (never a 5xx); oversized bodies are refused early with 413; deeply nested,
huge or key-heavy JSON is refused without the server's memory running away.

The generated part runs in process (derandomized; `GOALLEDGER_FUZZ_EXAMPLES` raises the
count). The size and memory part runs against a real `goalledger serve` on 127.0.0.1,
reading its resident memory from /proc.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from api_fixtures import CYCLE, Api, sqlite_api_fixture  # noqa: F401
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_api_security import bearer, debug_server, issue

from goalledger.core.settings import Settings

EXAMPLES = int(os.environ.get("GOALLEDGER_FUZZ_EXAMPLES", "300")) // 5
LIMIT = Settings().max_body_bytes
PROBLEM_JSON = "application/problem+json"
NOW = datetime.now(UTC).isoformat()

json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=2**80),
        st.floats(allow_nan=False), st.text(max_size=30),
        st.sampled_from(["1e999999", "NaN", "-Infinity", "2026-02-30", "9999-12-31T23:59:59-05:00",
                         "00000000-0000-0000-0000-000000000000", "", " ", "\x00", "💥" * 3]),
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=15,
)  # fmt: skip


def write_routes(api: Api) -> list[tuple[str, str, Any]]:
    """(method, path, a valid body) for every route that takes a body."""
    org = api.org()
    kpi, kr, objective = org["kpi"]["id"], org["kr"]["id"], org["objective"]["id"]
    api.created(f"/v1/kpis/{kpi}/readings", {"reading_id": "r0", "value": 1, "observed_at": NOW})
    spare_cycle = api.created("/v1/cycles", {**CYCLE, "name": "spare"})["id"]
    return [
        ("POST", "/v1/cycles", {**CYCLE, "name": "Q"}),
        ("POST", "/v1/teams", {"name": "T", "parent_id": org["company"]["id"]}),
        ("POST", "/v1/objectives", {"title": "O", "cycle_id": org["cycle"]["id"],
                                    "team_id": org["team"]["id"], "owner": "o",
                                    "kind": "committed"}),
        ("PATCH", f"/v1/objectives/{objective}", {"title": "O2", "reason": "r"}),
        ("POST", f"/v1/objectives/{objective}/key-results",
         {"title": "K", "kind": "stay_within", "band_low": 1, "band_high": "2", "weight": 1}),
        ("PATCH", f"/v1/key-results/{kr}", {"target": 7, "reason": "r", "effective_at": NOW}),
        ("POST", f"/v1/key-results/{kr}/check-ins",
         {"value": 3, "confidence": 0.5, "note": "n", "effective_at": NOW}),
        ("POST", "/v1/kpis", {"name": "L", "direction": "target_band", "frequency": "daily",
                              "thresholds": {"green": [1, 2], "amber": [0, 3]},
                              "source": {"plugin": "csv", "config": {
                                  "path": "/nonexistent.csv", "date_column": "d",
                                  "value_column": "v"}}}),
        ("PATCH", f"/v1/kpis/{kpi}", {"name": "U2", "thresholds": {"green": 5, "amber": 4},
                                      "effective_from": NOW, "reason": "r"}),
        ("POST", f"/v1/kpis/{kpi}/readings", {"reading_id": "r1", "value": 2,
                                              "observed_at": NOW}),
        ("POST", "/v1/readings", [{"kpi_id": kpi, "reading_id": "r2", "value": 2,
                                   "observed_at": NOW}]),
        ("POST", f"/v1/kpis/{kpi}/readings/r0/corrections", {"value": 6, "reason": "r"}),
        ("POST", "/v1/tokens", {"name": "t", "role": "viewer", "expires_at": "2099-01-01T00:00Z"}),
        ("POST", "/v1/subscriptions", {"alert_kinds": ["cycle_ending"], "team_ids": [],
                                       "channel": {"plugin": "log", "config": {}}}),
        ("POST", f"/v1/cycles/{spare_cycle}/close", {}),
    ]  # fmt: skip


def alike(value: Any) -> st.SearchStrategy[Any]:
    """Values of the same JSON type as `value`: any string, any number, any list."""
    if isinstance(value, bool) or value is None:
        return st.sampled_from([True, False, None])
    if isinstance(value, int | float):
        return st.one_of(
            st.integers(),
            st.floats(allow_nan=False, allow_infinity=False),
            st.decimals(allow_nan=False, allow_infinity=False).map(float),
        )
    if isinstance(value, str):
        return st.one_of(
            st.text(),
            st.text(min_size=190, max_size=260),
            st.just(value + "x"),
            st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
            st.uuids().map(str),
            st.decimals().map(str),
        )
    if isinstance(value, list):
        return st.lists(
            st.one_of(*(alike(item) for item in value)) if value else json_values, max_size=3
        )
    return st.dictionaries(st.sampled_from(sorted(value) or ["x"]), json_values, max_size=3)


@st.composite
def hostile(draw: st.DrawFn, valid: Any) -> bytes:
    """A body near `valid` (a field changed, dropped or added) or anything at all."""
    how = draw(st.sampled_from(["alike", "alike", "field", "drop", "add", "any", "bytes", "item"]))
    body = json.loads(json.dumps(valid))
    target = body[0] if isinstance(body, list) else body
    if how == "alike" and target:  # a value of the same JSON type: reaches the domain
        name = draw(st.sampled_from(sorted(target)))
        target[name] = draw(alike(target[name]))
    elif how == "field" and target:
        target[draw(st.sampled_from(sorted(target)))] = draw(json_values)
    elif how == "drop" and target:
        target.pop(draw(st.sampled_from(sorted(target))))
    elif how == "add":
        target[draw(st.text(max_size=10))] = draw(json_values)
    elif how == "any":
        return json.dumps(draw(json_values)).encode()
    elif how == "bytes":
        return draw(st.binary(max_size=200))
    elif how == "item" and isinstance(body, list):
        body.append(draw(json_values))
    return json.dumps(body).encode()


def assert_problem(response: httpx.Response, where: str) -> None:
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert response.headers["content-type"] == PROBLEM_JSON, where
        problem = response.json()
        assert problem["status"] == response.status_code and problem["detail"], where


def fuzz_route(api: Api, method: str, path: str, valid: Any, statuses: dict[int, int]) -> None:
    """Send generated bodies near `valid` to one route, counting the statuses."""

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(body=hostile(valid))
    def send(body: bytes) -> None:
        response = api.call(method, path, content=body,
                            headers={"content-type": "application/json"})  # fmt: skip
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert_problem(response, f"{method} {path} {body[:200]!r}")

    send()


@pytest.mark.slow
def test_no_generated_body_on_any_write_route_is_a_5xx(api: Api):
    routes = write_routes(api)
    statuses: dict[int, int] = {}
    for method, path, valid in routes:
        fuzz_route(api, method, path, valid, statuses)
    print(f"write routes: {len(routes)}, bodies: {sum(statuses.values())}, statuses: {statuses}")
    assert sum(statuses.values()) >= len(routes) * EXAMPLES
    assert {400, 422} <= set(statuses) and any(200 <= s < 300 for s in statuses)


@pytest.mark.parametrize(
    "body",
    [b'"\x80"', b'{"name": "\xc3"}', b'[{"a\xff": 1}]', b"[" * 200_000 + b"]" * 200_000],
    ids=["invalid UTF-8 string", "truncated UTF-8", "invalid UTF-8 key", "deep nesting"],
)
def test_bodies_the_fuzzers_found_are_400(api: Api, body: bytes):
    """Found by the generated bodies above: Litestar let these decoder errors through (500)."""
    for path in ("/v1/teams", "/v1/readings"):
        response = api.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text
        assert_problem(response, path)
        assert response.json()["errors"][0]["field"] == "body"


# -- size and memory, against a real server ------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def raw_request(url: str, head: str, send_body: Callable[[socket.socket], int]) -> tuple[str, int]:
    """Send a request by hand; returns (status line, body bytes sent before the answer)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=15) as sock:
        sock.sendall(head.encode())
        sent = send_body(sock)
        answer = sock.recv(65536).decode("latin-1")
    return answer.split("\r\n", 1)[0], sent


def chunks_until_answered(sock: socket.socket, total: int = 50_000_000) -> int:
    """Stream a chunked body until the server answers (or `total` bytes went out)."""
    chunk = b"[" * 65536
    sent = 0
    sock.setblocking(False)
    try:
        while sent < total:
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except BlockingIOError:
                pass
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                time.sleep(0.01)
                continue
            sent += len(chunk)
    finally:
        sock.setblocking(True)
    return sent


@pytest.mark.slow
def test_oversized_and_pathological_bodies_are_refused_with_bounded_memory(sqlite_url: str):
    admin = issue(sqlite_url, "admin")
    with debug_server(sqlite_url, write_rate="0") as server:
        pid, url, auth = server.process.pid, server.url, bearer(admin)
        client = httpx.Client(base_url=url, headers=auth, timeout=30)
        kpi = client.post("/v1/kpis", json={
            "name": "Signups", "direction": "higher_is_better", "frequency": "daily",
            "thresholds": {"green": 10, "amber": 5}}).json()["id"]  # fmt: skip
        batch = [{"kpi_id": kpi, "reading_id": f"reading-{n:06d}", "value": f"{n}.25",
                  "observed_at": NOW} for n in range(1000)]  # fmt: skip
        batch_bytes = len(json.dumps(batch))
        assert client.post("/v1/readings", json=batch).status_code == 201  # the default fits
        assert batch_bytes < LIMIT / 4

        # Refused from Content-Length alone: no body is ever sent.
        head = (f"POST /v1/readings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n"
                "Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n")  # fmt: skip
        started = time.monotonic()
        status, sent = raw_request(url, head, lambda _: 0)
        assert status.startswith("HTTP/1.1 413") and sent == 0
        assert time.monotonic() - started < 10
        # Refused while streaming: the answer comes long before 50 MB went out.
        head = (f"POST /v1/readings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        status, streamed = raw_request(url, head, chunks_until_answered)
        assert status.startswith("HTTP/1.1 413"), status
        assert streamed < 20_000_000

        room = LIMIT - 200
        depth = room // 2
        pathological = {
            "nested arrays": ("/v1/readings", b"[" * depth + b"]" * depth),
            "nested objects": ("/v1/kpis", b'{"source":{"plugin":"csv","config":'
                               + b'{"a":' * (room // 6) + b"1" + b"}" * (room // 6) + b"}}"),
            "huge string": ("/v1/cycles", json.dumps({**CYCLE, "name": "x" * room}).encode()),
            "many keys": ("/v1/kpis", json.dumps({
                "name": "K", "direction": "higher_is_better", "frequency": "daily",
                "thresholds": {"green": 1, "amber": 0},
                "source": {"plugin": "csv", "config": {f"k{n}": n for n in range(room // 18)}},
            }).encode()),
            "huge number": (f"/v1/kpis/{kpi}/readings", b'{"reading_id": "n", "observed_at": "'
                            + NOW.encode() + b'", "value": ' + b"9" * (room - 100) + b"}"),
            "long list": ("/v1/readings", b"[" + b"0," * (room // 2 - 2) + b"0]"),
        }  # fmt: skip
        baseline = rss_kib(pid)
        after_round = []
        for _ in range(5):
            for name, (path, body) in pathological.items():
                assert len(body) <= LIMIT, name
                response = client.post(path, content=body,
                                       headers={"content-type": "application/json"})  # fmt: skip
                assert 400 <= response.status_code < 500, (name, response.text[:200])
                assert_problem(response, name)
            after_round.append(rss_kib(pid))
        assert client.get("/health").status_code == 200
        client.close()
        assert server.stop() == 0
    growth = [(kib - baseline) // 1024 for kib in after_round]
    print(
        f"1,000-reading batch: {batch_bytes:,} bytes (limit {LIMIT:,}); chunked body "
        f"refused after {streamed:,} bytes sent; RSS baseline {baseline // 1024} MiB, "
        f"growth after each round of {len(pathological)} bodies (MiB): {growth}"
    )
    assert max(growth) < 256  # bounded by the body limit, not by what a client sends
    assert after_round[-1] - after_round[0] < 32 * 1024  # and flat: repeats do not accumulate
