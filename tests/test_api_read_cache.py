"""The read cache answers exactly as the routes would: writes show once the read models
move (at once with `min_position`), revoked tokens are refused at once, a team-scoped
token never gets another scope's answer, and odd queries still get their problem."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import Any

from api_fixtures import sqlite_api_fixture, store_api_fixture  # noqa: F401

from goalledger.api.auth import TOKEN_CACHE_SECONDS
from goalledger.api.read_cache import READ_CACHE_SECONDS, ReadCache, SQLitePosition


def _twice(api: Any, path: str, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same read twice within the cache's lifetime (retried if the machine stalls)."""
    for _ in range(5):
        started = time.monotonic()
        first = api.get(path, **kwargs)
        second = api.get(path, **kwargs)
        assert first.status_code == second.status_code == 200, first.text
        if time.monotonic() - started < READ_CACHE_SECONDS / 2:
            return first.json(), second.json()
    raise AssertionError("two reads never ran within half the cache's lifetime")


def _check_in(api: Any, kr_id: str, value: int) -> int:
    written = api.created(f"/v1/key-results/{kr_id}/check-ins", {"value": value})
    return written["position"]


def _value(board: dict[str, Any]) -> Any:
    return board["objectives"][0]["key_results"][0]["value"]


def test_a_kept_answer_is_reused_until_a_write_is_projected(store_api):
    org = store_api.org()
    store_api.settled("/v1/scoreboard")
    first, second = _twice(store_api, "/v1/scoreboard")
    assert second == first  # the same moment `at`: one answer, computed once
    position = _check_in(store_api, org["kr"]["id"], 40)
    # Read-your-writes: min_position above the cached answer's position waits for it.
    board = store_api.get("/v1/scoreboard", params={"min_position": position}).json()
    assert _value(board) == 40
    assert board["position"] >= position
    # Without min_position, the answer moves as soon as the projector does.
    position = _check_in(store_api, org["kr"]["id"], 55)
    assert store_api.system.projector.wait_for(position, 5)
    assert _value(store_api.get("/v1/scoreboard").json()) == 55


def test_history_shows_a_new_reading_with_min_position(store_api):
    org = store_api.org()
    path = f"/v1/kpis/{org['kpi']['id']}/history"
    assert store_api.settled(path).json()["items"] == []
    store_api.get(path)  # kept
    written = store_api.created(
        f"/v1/kpis/{org['kpi']['id']}/readings",
        {"reading_id": "r1", "value": 99.95, "observed_at": "2026-01-05T00:00:00Z"},
    )
    items = store_api.get(path, params={"min_position": written["position"]}).json()["items"]
    assert [item["reading_id"] for item in items] == ["r1"]


def test_answers_for_now_age_at_most_the_cache_lifetime(api):
    api.org()
    first = api.settled("/v1/scoreboard").json()
    time.sleep(READ_CACHE_SECONDS + 0.1)
    later = api.get("/v1/scoreboard").json()
    assert datetime.fromisoformat(later["at"]) > datetime.fromisoformat(first["at"])
    assert later["position"] == first["position"]


def test_a_token_revoked_through_the_api_is_refused_at_once(api):
    api.org()
    issued = api.post("/v1/tokens", json={"name": "reader", "role": "viewer"}).json()
    api.settled("/v1/scoreboard", token=issued["secret"])
    _twice(api, "/v1/scoreboard", token=issued["secret"])  # answered from the cache
    assert api.call("DELETE", f"/v1/tokens/{issued['id']}").status_code == 200
    refused = api.get("/v1/scoreboard", token=issued["secret"])
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/problem+json")


def test_a_token_revoked_elsewhere_is_refused_within_the_token_cache_time(api):
    api.org()
    secret = api.token("viewer")
    _twice(api, "/v1/scoreboard", token=secret)
    api.system.ledger.revoke_token(uuid.UUID(secret[3:35]), actor="another process")
    deadline = time.monotonic() + TOKEN_CACHE_SECONDS + 0.5
    while api.get("/v1/scoreboard", token=secret).status_code == 200:
        assert time.monotonic() < deadline, "a revoked token kept reading the cache"
        time.sleep(0.05)
    assert api.get("/v1/scoreboard", token=secret).status_code == 401


def test_callers_without_a_valid_token_never_get_a_kept_answer(api):
    api.org()
    _twice(api, "/v1/scoreboard")
    assert api.get("/v1/scoreboard", token=None).status_code == 401
    assert api.get("/v1/scoreboard", token="gl_" + "0" * 32 + "_nope").status_code == 401
    wrong = api.get("/v1/scoreboard", headers={"Authorization": "Basic abc"}, token=None)
    assert wrong.status_code == 401


def test_a_team_scoped_token_never_sees_another_scopes_answer(api):
    org = api.org()
    sales = api.created("/v1/teams", {"name": "Sales", "parent_id": org["company"]["id"]})
    selling = api.created("/v1/objectives", {
        "title": "Sell", "cycle_id": org["cycle"]["id"], "team_id": sales["id"],
        "owner": "sam", "kind": "committed",
    })  # fmt: skip
    sales_kpi = api.created("/v1/kpis", {
        "name": "Bookings", "direction": "higher_is_better",
        "thresholds": {"green": 10, "amber": 5}, "frequency": "daily", "team_id": sales["id"],
    })  # fmt: skip
    platform = api.token("viewer", org["team"]["id"])
    seller = api.token("viewer", sales["id"])
    api.settled("/v1/scoreboard")
    everything, _ = _twice(api, "/v1/scoreboard")
    assert {o["id"] for o in everything["objectives"]} == {org["objective"]["id"], selling["id"]}
    for token, mine in ((platform, org["objective"]["id"]), (seller, selling["id"])):
        api.get("/v1/scoreboard", token=token)  # the token is known from now on
        first, second = _twice(api, "/v1/scoreboard", token=token)
        assert second == first  # kept, for this scope
        assert [o["id"] for o in first["objectives"]] == [mine]
    # Asking for another team's board, or another team's KPI, stays forbidden after the
    # admin's identical requests were answered (and kept).
    for path, params in (
        ("/v1/scoreboard", {"team_id": sales["id"]}),
        (f"/v1/kpis/{sales_kpi['id']}/history", {}),
        (f"/v1/kpis/{sales_kpi['id']}/history?bucket=day", {}),
    ):
        _twice(api, path, params=params)
        for _ in range(2):
            assert api.get(path, token=platform, params=params).status_code == 403


def test_odd_queries_on_a_kept_answer_still_get_their_problem(api):
    api.org()
    api.settled("/v1/scoreboard")
    _twice(api, "/v1/scoreboard")
    for value in ("abc", "-1", str(2**63), "1.5"):
        refused = api.get("/v1/scoreboard", params={"min_position": value})
        assert refused.status_code == 400, value
        assert "min_position" in refused.text
    assert api.get("/v1/scoreboard", params={"as_of": "yesterday"}).status_code == 400


def test_a_kept_answer_carries_the_same_headers_as_a_computed_one(api):
    api.org()
    api.settled("/v1/scoreboard")
    api.get("/v1/scoreboard")
    computed = api.get("/v1/scoreboard", params={"as_of": "2030-01-01T00:00:00Z"})
    kept = api.get("/v1/scoreboard")
    assert computed.status_code == kept.status_code == 200
    for name in ("content-type", "cache-control", "x-content-type-options"):
        assert kept.headers[name] == computed.headers[name], name
    assert int(kept.headers["content-length"]) == len(kept.content)


def test_the_cache_holds_a_bounded_number_of_bytes(api):
    api.org()
    api.settled("/v1/scoreboard")
    cache = ReadCache(SQLitePosition(api.system.store.path), max_bytes=16_000)

    async def fill_then_count() -> int:
        for i in range(100):
            _, flight = await cache.lookup(("/v1/test", f"n={i}", None), None)
            assert flight is not None
            await cache.compute(flight, lambda: {"pad": "x" * 990})
            cache.finish(flight)
        kept = 0
        for i in range(100):
            body, flight = await cache.lookup(("/v1/test", f"n={i}", None), None)
            kept += body is not None
            if flight is not None:
                cache.finish(flight)
        return kept

    kept = asyncio.run(fill_then_count())
    assert 1 <= kept <= 16  # ~1 kB answers in 16 kB


def test_a_get_with_an_oversized_body_is_refused_as_without_a_cache(api):
    api.org()
    api.settled("/v1/scoreboard")
    _twice(api, "/v1/scoreboard")
    limit = api.system.settings.max_body_bytes
    refused = api.get("/v1/scoreboard", content=b"x" * (limit + 1))
    assert refused.status_code == 413
