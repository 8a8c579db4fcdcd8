"""Authentication and team scopes beyond the role matrix: revocation takes effect within
a second (tokens are cached that long), scoped tokens see only their subtree, and
events name the token that caused them."""

from __future__ import annotations

import time
import uuid

from api_fixtures import sqlite_api_fixture  # noqa: F401

from goalledger.api.auth import TOKEN_CACHE_SECONDS


def test_revocation_elsewhere_takes_effect_within_the_cache_time(api):
    secret = api.token("viewer")
    assert api.get("/v1/cycles", token=secret).status_code == 200  # now cached
    token_id = uuid.UUID(secret[3:35])
    api.system.ledger.revoke_token(token_id, actor="another process")
    deadline = time.monotonic() + TOKEN_CACHE_SECONDS + 0.5
    while api.get("/v1/cycles", token=secret).status_code == 200:
        assert time.monotonic() < deadline, "a revoked token kept working"
        time.sleep(0.05)
    assert api.get("/v1/cycles", token=secret).status_code == 401


def test_revocation_through_the_api_is_immediate(api):
    issued = api.post("/v1/tokens", json={"name": "n", "role": "viewer"}).json()
    assert api.get("/v1/cycles", token=issued["secret"]).status_code == 200
    assert api.call("DELETE", f"/v1/tokens/{issued['id']}").status_code == 200
    assert api.get("/v1/cycles", token=issued["secret"]).status_code == 401


def test_a_team_scoped_token_sees_its_subtree_only(api):
    org = api.org()
    sibling = api.created("/v1/teams", {"name": "Sales", "parent_id": org["company"]["id"]})
    api.created("/v1/objectives", {
        "title": "Sell", "cycle_id": org["cycle"]["id"], "team_id": sibling["id"],
        "owner": "sam", "kind": "committed",
    })  # fmt: skip
    scoped = api.token("viewer", org["team"]["id"])
    teams = api.settled("/v1/teams", token=scoped).json()["items"]
    assert [t["id"] for t in teams] == [org["team"]["id"]]
    objectives = api.settled("/v1/objectives", token=scoped).json()["items"]
    assert [o["id"] for o in objectives] == [org["objective"]["id"]]
    board = api.settled("/v1/scoreboard", token=scoped).json()
    assert [o["id"] for o in board["objectives"]] == [org["objective"]["id"]]
    tree = api.settled("/v1/alignment", token=scoped).json()
    assert [r["id"] for r in tree["roots"]] == [org["objective"]["id"]]
    assert api.get(f"/v1/teams/{sibling['id']}", token=scoped).status_code == 403
    company_board = api.get("/v1/scoreboard", token=scoped,
                            params={"team_id": org["company"]["id"]})  # fmt: skip
    assert company_board.status_code == 403


def test_events_name_the_token_that_caused_them(api):
    issued = api.post("/v1/tokens", json={"name": "robot", "role": "admin"}).json()
    cycle = api.post(
        "/v1/cycles",
        token=issued["secret"],
        json={"name": "Q", "starts_on": "2026-01-01", "ends_on": "2026-03-31"},
    ).json()
    events = api.settled("/v1/audit/events", params={"aggregate_id": cycle["id"]}).json()
    assert [e["actor"] for e in events["items"]] == [f"token:{issued['id']}"]
