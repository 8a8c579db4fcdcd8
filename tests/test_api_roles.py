"""Every route × every principal: each role, no token, a revoked token, a token of the
resource's own team and one of another team, with the expected 2xx / 401 / 403.

SQLite only: authorisation does not depend on the store.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from api_fixtures import CYCLE, TODAY, Api, sqlite_api_fixture  # noqa: F401

from goalledger.api.auth import ABILITIES
from goalledger.core.ledger import ReadingInput
from goalledger.core.subscriptions import Channel


class World(NamedTuple):
    """What the routes act on: everything owned by team A; B is A's sibling."""

    api: Api
    cycle: str
    team_a: str
    team_b: str
    objective: str
    kr: str
    kpi: str


Build = Callable[[World], tuple[str, Any]]  # (path, JSON body or None)


class Route(NamedTuple):
    method: str
    build: Build
    ability: str | None  # None: open to anyone
    reach: str  # "org-write" | "org-read" | "team" (team A's) | "list" | "open"


def unique() -> str:
    return uuid.uuid4().hex[:8]


def fresh_cycle(w: World) -> str:
    return str(w.api.system.ledger.define_cycle(
        name=unique(), starts_on=TODAY - timedelta(days=1), ends_on=TODAY + timedelta(days=9),
        actor="test",
    ).id)  # fmt: skip


def fresh_reading(w: World) -> str:
    reading_id = unique()
    moment = datetime.now(UTC) - timedelta(hours=1)
    w.api.system.ledger.record_readings(
        [ReadingInput(uuid.UUID(w.kpi), reading_id, Decimal(5), moment)], source="t", actor="t"
    )
    return reading_id


def fresh_token(w: World) -> str:
    return str(w.api.system.ledger.issue_token(
        name="t", role="viewer", team_id=uuid.UUID(w.team_a), actor="t"
    )[0].id)  # fmt: skip


def fresh_subscription(w: World) -> str:
    return str(w.api.system.ledger.subscribe(
        alert_kinds=["cycle_ending"], team_ids=[uuid.UUID(w.team_a)], channel=Channel("log", {}),
        actor="t",
    ).id)  # fmt: skip


def settled(w: World) -> str:
    return f"min_position={w.api.system.ledger.head_position()}"


NOW = datetime.now(UTC).isoformat()
ROUTES: list[Route] = [
    Route("POST", lambda w: ("/v1/cycles", {**CYCLE, "name": unique()}), "administer", "org-write"),
    Route("GET", lambda w: ("/v1/cycles", None), "read", "org-read"),
    Route("GET", lambda w: (f"/v1/cycles/{w.cycle}", None), "read", "org-read"),
    Route("POST", lambda w: (f"/v1/cycles/{fresh_cycle(w)}/close", {}), "administer", "org-write"),
    Route("POST", lambda w: ("/v1/teams", {"name": unique(), "parent_id": w.team_a}),
          "administer", "team"),
    Route("GET", lambda w: ("/v1/teams", None), "read", "list"),
    Route("GET", lambda w: (f"/v1/teams/{w.team_a}", None), "read", "team"),
    Route("POST", lambda w: ("/v1/objectives", {
        "title": unique(), "cycle_id": w.cycle, "team_id": w.team_a, "owner": "o",
        "kind": "committed"}), "manage", "team"),
    Route("GET", lambda w: ("/v1/objectives", None), "read", "list"),
    Route("GET", lambda w: (f"/v1/objectives/{w.objective}", None), "read", "team"),
    Route("PATCH", lambda w: (f"/v1/objectives/{w.objective}", {"title": unique()}),
          "manage", "team"),
    Route("POST", lambda w: (f"/v1/objectives/{w.objective}/key-results",
                             {"title": unique(), "kind": "milestone"}), "manage", "team"),
    Route("GET", lambda w: (f"/v1/key-results/{w.kr}", None), "read", "team"),
    Route("PATCH", lambda w: (f"/v1/key-results/{w.kr}", {"target": 7, "reason": "r"}),
          "manage", "team"),
    Route("POST", lambda w: (f"/v1/key-results/{w.kr}/check-ins", {"value": 3}),
          "contribute", "team"),
    Route("GET", lambda w: (f"/v1/key-results/{w.kr}/check-ins", None), "read", "team"),
    Route("POST", lambda w: ("/v1/kpis", {
        "name": unique(), "direction": "lower_is_better", "frequency": "daily",
        "thresholds": {"green": 1, "amber": 2}, "team_id": w.team_a}), "manage", "team"),
    Route("GET", lambda w: ("/v1/kpis", None), "read", "list"),
    Route("GET", lambda w: (f"/v1/kpis/{w.kpi}", None), "read", "team"),
    Route("PATCH", lambda w: (f"/v1/kpis/{w.kpi}", {"name": unique()}), "manage", "team"),
    Route("POST", lambda w: (f"/v1/kpis/{w.kpi}/readings",
                             {"reading_id": unique(), "value": 1, "observed_at": NOW}),
          "contribute", "team"),
    Route("POST", lambda w: ("/v1/readings", [
        {"kpi_id": w.kpi, "reading_id": unique(), "value": 1, "observed_at": NOW}]),
          "contribute", "team"),
    Route("POST", lambda w: (f"/v1/kpis/{w.kpi}/readings/{fresh_reading(w)}/corrections",
                             {"value": 6, "reason": "r"}), "contribute", "team"),
    Route("POST", lambda w: (f"/v1/kpis/{w.kpi}/source/fetch", None), "manage", "team"),
    Route("GET", lambda w: ("/v1/plugins", None), "read", "org-read"),
    Route("GET", lambda w: (f"/v1/kpis/{w.kpi}/history?{settled(w)}", None), "read", "team"),
    Route("GET", lambda w: (f"/v1/kpis/{w.kpi}/chart.svg?{settled(w)}", None), "read", "team"),
    Route("GET", lambda w: (f"/v1/scoreboard?{settled(w)}", None), "read", "list"),
    Route("GET", lambda w: (f"/v1/alignment?{settled(w)}", None), "read", "list"),
    Route("POST", lambda w: ("/v1/tokens", {"name": "t", "role": "viewer", "team_id": w.team_a}),
          "administer", "team"),
    Route("GET", lambda w: ("/v1/tokens", None), "administer", "list"),
    Route("DELETE", lambda w: (f"/v1/tokens/{fresh_token(w)}", None), "administer", "team"),
    Route("POST", lambda w: ("/v1/subscriptions", {
        "alert_kinds": ["cycle_ending"], "team_ids": [w.team_a],
        "channel": {"plugin": "log", "config": {}}}), "administer", "team"),
    Route("GET", lambda w: ("/v1/subscriptions", None), "administer", "list"),
    Route("GET", lambda w: (f"/v1/subscriptions/{fresh_subscription(w)}", None),
          "administer", "team"),
    Route("DELETE", lambda w: (f"/v1/subscriptions/{fresh_subscription(w)}", None),
          "administer", "team"),
    Route("GET", lambda w: (f"/v1/alerts?{settled(w)}", None), "read", "list"),
    Route("GET", lambda w: (f"/v1/deliveries?{settled(w)}", None), "administer", "list"),
    Route("GET", lambda w: (f"/v1/audit/events?{settled(w)}", None), "audit", "org-write"),
    Route("GET", lambda w: (f"/v1/audit/aggregates/{w.objective}/history?{settled(w)}", None),
          "audit", "org-write"),
    Route("GET", lambda w: ("/v1/audit/verify", None), "audit", "org-write"),
    Route("GET", lambda w: ("/v1/audit/anchor", None), "audit", "org-write"),
    Route("GET", lambda w: ("/v1/audit/export", None), "audit", "org-write"),
    Route("GET", lambda w: ("/health", None), None, "open"),
    Route("GET", lambda w: ("/ready", None), None, "open"),
    Route("GET", lambda w: ("/metrics", None), None, "open"),
    Route("GET", lambda w: ("/schema/openapi.json", None), None, "open"),
]  # fmt: skip
# An endless stream hangs the in-process client: test_api_serve covers its auth over HTTP.
STREAMS = {("GET", "/v1/events/stream")}
ROLES = ("viewer", "contributor", "manager", "admin", "auditor")
PRINCIPALS = (*ROLES, "none", "revoked", "own-team admin", "other-team admin")


def expected(route: Route, principal: str) -> str:
    """'2xx', '401' or '403'."""
    if route.ability is None:
        return "2xx"
    if principal in ("none", "revoked"):
        return "401"
    role = principal.rsplit(" ", 1)[-1]
    if role not in ABILITIES[route.ability]:
        return "403"
    if principal in ROLES or route.reach in ("org-read", "list"):
        return "2xx"
    if route.reach == "org-write":
        return "403"
    return "2xx" if principal == "own-team admin" else "403"


@pytest.fixture
def world(api: Api, tmp_path) -> World:
    ledger = api.system.ledger
    readings = tmp_path / "latency.csv"
    readings.write_text("day,ms\n2026-01-05,1.5\n2026-01-06,0.9\n")
    cycle = api.created("/v1/cycles", CYCLE)["id"]
    company = api.created("/v1/teams", {"name": "Acme"})["id"]
    team_a = api.created("/v1/teams", {"name": "A", "parent_id": company})["id"]
    team_b = api.created("/v1/teams", {"name": "B", "parent_id": company})["id"]
    objective = api.created("/v1/objectives", {
        "title": "O", "cycle_id": cycle, "team_id": team_a, "owner": "o", "kind": "committed",
    })["id"]  # fmt: skip
    kr_body = {"title": "K", "kind": "increase_to", "start": 0, "target": 10}
    kr = api.created(f"/v1/objectives/{objective}/key-results", kr_body)["id"]
    kpi = api.created("/v1/kpis", {
        "name": "Latency", "direction": "lower_is_better", "frequency": "daily",
        "thresholds": {"green": 1, "amber": 2}, "team_id": team_a,
        "source": {"plugin": "csv", "config": {
            "path": str(readings), "date_column": "day", "value_column": "ms"}},
    })["id"]  # fmt: skip
    assert ledger.head_position() > 0
    return World(api, cycle, team_a, team_b, objective, kr, kpi)


def secret_for(w: World, principal: str) -> str | None:
    api = w.api
    if principal == "none":
        return None
    if principal == "revoked":
        secret = api.token("admin")
        token_id = uuid.UUID(secret[3:35])
        api.system.ledger.revoke_token(token_id, actor="test")
        return secret
    if principal == "own-team admin":
        return api.token("admin", w.team_a)
    if principal == "other-team admin":
        return api.token("admin", w.team_b)
    return api.token(principal)


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_every_route_answers_each_principal_as_expected(world: World, principal: str):
    secret = secret_for(world, principal)
    wrong = []
    for route in ROUTES:
        path, body = route.build(world)
        kwargs = {} if body is None else {"json": body}
        response = world.api.call(route.method, path, token=secret, **kwargs)
        got = "2xx" if 200 <= response.status_code < 300 else str(response.status_code)
        if got != expected(route, principal):
            wrong.append(f"{route.method} {path}: {got}, expected {expected(route, principal)}"
                         f" ({response.text[:160]})")  # fmt: skip
    assert not wrong, "\n".join(wrong)


def test_the_table_covers_every_route_of_the_app(api: Api):
    """A new route must be added to ROUTES (and so to the matrix)."""
    schema = api.get("/schema/openapi.json", token=None).json()
    documented = {
        (method.upper(), path.split("?")[0])
        for path, operations in schema["paths"].items()
        for method in operations
    }
    covered = {(route.method, _template(route.build, api)) for route in ROUTES}
    missing = documented - covered - {("GET", "/schema")} - STREAMS
    assert not missing, missing


def _template(build: Build, api: Api) -> str:
    names = build.__code__.co_names
    stub = World(api, "{cycle_id}", "{team_id}", "{team_id}", "{objective_id}",
                 "{key_result_id}", "{kpi_id}")  # fmt: skip
    if "fresh_cycle" in names:
        return "/v1/cycles/{cycle_id}/close"
    if "fresh_reading" in names:
        return "/v1/kpis/{kpi_id}/readings/{reading_id}/corrections"
    if "fresh_subscription" in names:
        return "/v1/subscriptions/{subscription_id}"
    if "fresh_token" in names:
        return "/v1/tokens/{token_id}"
    path = build(stub)[0].split("?")[0]
    if path.startswith("/v1/audit/aggregates/"):
        return "/v1/audit/aggregates/{aggregate_id}/history"
    return path
