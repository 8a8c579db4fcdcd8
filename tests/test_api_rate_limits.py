"""A token's write budget is one per app, whatever routes its writes go to.

Litestar builds the middleware stack once per route handler, so a limiter that kept
its buckets on itself would grant each route a burst of its own. The rate here is so
low (one write per 1000 s) that no refill happens while a test runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_fixtures import CYCLE, Api, _api

from goalledger.core.settings import Settings

BURST = 3
KPI = {"name": "Uptime", "unit": "%", "direction": "higher_is_better",
       "thresholds": {"green": 99.9, "amber": "99"}, "frequency": "daily"}  # fmt: skip


@pytest.fixture(name="api")
def limited_api_fixture(sqlite_url: str) -> Iterator[Api]:
    """The API with a burst of three writes per token and next to no refill."""
    yield from _api(Settings(database_url=sqlite_url, write_rate=0.001, write_burst=BURST))


def writes(api: Api, token: str) -> list[int]:
    """The statuses of one write to each of three routes, then one more to each."""
    statuses = []
    for n in range(2):
        name = f"{token[:8]}-{n}"  # names unique across tokens and rounds
        for path, body in (
            ("/v1/cycles", {**CYCLE, "name": name}),
            ("/v1/teams", {"name": name}),
            ("/v1/kpis", {**KPI, "name": name}),
        ):
            statuses.append(api.post(path, token, json=body).status_code)
    return statuses


def test_a_budget_spent_on_one_route_is_spent_on_every_route(api: Api):
    for n in range(BURST):
        assert api.post("/v1/cycles", json={**CYCLE, "name": f"Q{n}"}).status_code == 201
    for path, body in (("/v1/teams", {"name": "Platform"}), ("/v1/kpis", KPI)):
        refused = api.post(path, json=body)
        assert refused.status_code == 429, (path, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["Retry-After"]) >= 1
        problem = refused.json()
        assert problem["status"] == 429
        assert problem["type"].endswith("rate-limited")
        assert [e["field"] for e in problem["errors"]] == ["Authorization"]
    assert api.get("/v1/teams").status_code == 200  # reads are not limited


def test_writes_spread_over_routes_stop_at_the_burst(api: Api):
    assert writes(api, api.admin) == [201] * BURST + [429] * BURST


def test_each_token_has_a_budget_of_its_own(api: Api):
    other = api.token("admin")
    assert writes(api, api.admin) == [201] * BURST + [429] * BURST
    assert writes(api, other) == [201] * BURST + [429] * BURST


def test_a_check_in_the_lane_hands_on_costs_one_write_not_two(api: Api):
    """The check-in lane takes from the budget before deciding; a check-in it then
    hands to the route (here one the domain refuses) is given its write back, so the
    route's own take is the only one."""
    from test_concurrency import key_results

    (kr,) = key_results(api.system.ledger, 1)
    contributor = api.token("contributor")
    path = f"/v1/key-results/{kr}/check-ins"
    statuses = [api.post(path, contributor, json={"done": True}).status_code]
    statuses += [api.post(path, contributor, json={"value": n}).status_code for n in range(3)]
    assert statuses == [422, 201, 201, 429]
