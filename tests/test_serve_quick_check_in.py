"""The check-in lane (CheckInLane, before routing) answers exactly as the route: the
usual case in full, and every unusual one handed to the app with its body intact."""

from __future__ import annotations

from typing import Any

import pytest
from api_fixtures import Api, sqlite_api_fixture  # noqa: F401

SECURITY = ["x-content-type-options", "x-frame-options", "referrer-policy",
            "content-security-policy", "cache-control"]  # fmt: skip


@pytest.fixture(name="org")
def org_fixture(api: Api) -> dict[str, Any]:
    return api.org()


def check_ins(api: Api, kr: str) -> list[dict[str, Any]]:
    return api.settled(f"/v1/key-results/{kr}/check-ins").json()["items"]


def test_a_check_in_answers_201_with_its_headers_and_is_read_back(api: Api, org) -> None:
    kr = org["kr"]["id"]
    body = {"value": 42, "confidence": 0.7, "note": "quick"}
    response = api.post(f"/v1/key-results/{kr}/check-ins", json=body)
    assert response.status_code == 201, response.text
    names = [name.decode().lower() for name, _ in response.headers.raw]
    assert names == ["etag", "x-ledger-position", "content-type", "content-length", *SECURITY]
    written = response.json()
    assert written == {"key_result_id": kr, "version": 2, "position": written["position"]}
    assert response.headers["etag"] == '"2"'
    assert response.headers["x-ledger-position"] == str(written["position"])
    assert response.headers["cache-control"] == "no-store"
    [seen] = check_ins(api, kr)
    assert (seen["value"], seen["confidence"], seen["note"]) == (42, 0.7, "quick")
    metrics = api.get("/metrics").text
    template = "/v1/key-results/{key_result_id}/check-ins"
    assert f'method="POST",path="{template}",status_code="201"' in metrics


def test_a_scoped_contributor_checks_in_on_its_own_team(api: Api, org) -> None:
    scoped = api.token("contributor", org["team"]["id"])
    kr = org["kr"]["id"]
    response = api.post(f"/v1/key-results/{kr}/check-ins", scoped, json={"value": "7.5"})
    assert response.status_code == 201, response.text
    assert [c["value"] for c in check_ins(api, kr)] == [7.5]


def test_if_match_current_is_written_and_stale_is_412(api: Api, org) -> None:
    kr = org["kr"]["id"]
    path = f"/v1/key-results/{kr}/check-ins"
    assert api.post(path, json={"value": 1}, headers={"If-Match": '"1"'}).status_code == 201
    stale = api.post(path, json={"value": 2}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412, stale.text
    assert stale.headers["content-type"] == "application/problem+json"
    assert [c["value"] for c in check_ins(api, kr)] == [1]


@pytest.mark.parametrize(
    ("token", "body", "status", "kind"),
    [
        (None, b'{"value": 1}', 401, "unauthorized"),
        ("viewer", b'{"value": 1}', 403, "forbidden"),
        ("other team", b'{"value": 1}', 403, "forbidden"),
        ("admin", b'{"value": ', 400, "bad-request"),
        ("admin", b'{"value": 1, "nope": 2}', 400, "bad-request"),
        ("admin", b'{"value": "NaN"}', 400, "bad-request"),
        ("admin", b"", 400, "bad-request"),
        ("admin", b'{"done": true}', 422, "invalid"),
    ],
)
def test_unusual_requests_get_the_routes_problem_details(
    api: Api, org, token: str | None, body: bytes, status: int, kind: str
) -> None:
    secret = {
        None: None,
        "admin": "admin",
        "viewer": api.token("viewer"),
        "other team": api.token("contributor", api.created("/v1/teams", {"name": "O"})["id"]),
    }[token]
    response = api.post(
        f"/v1/key-results/{org['kr']['id']}/check-ins", secret, content=body,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith(f"/{kind}")
    assert check_ins(api, org["kr"]["id"]) == []


def test_the_lane_answers_the_usual_check_in_and_hands_on_the_rest(api: Api, org) -> None:
    """Which requests the lane answers itself: the app behind it sees only the others,
    and their bodies arrive as sent."""
    from goalledger.api.routes_key_results import CheckInLane

    lane = api.client.app.asgi_handler
    assert isinstance(lane, CheckInLane)
    inner, seen = lane.app, []

    async def app_behind(scope, receive, send):
        seen.append(scope["path"])
        await inner(scope, receive, send)

    lane.app = app_behind
    kr = org["kr"]["id"]
    path = f"/v1/key-results/{kr}/check-ins"
    assert api.post(path, json={"value": 1}).status_code == 201
    assert seen == []  # answered by the lane
    handed_on = [
        api.post(path, json={"value": 2}, headers={"Idempotency-Key": "lane-1"}),
        api.post(path + "/", json={"value": 3}),
        api.post(path, api.token("viewer"), json={"value": 4}),
        api.post(path, json={"value": 5, "nope": 1}),
        api.post(path, "gl_nope", json={"value": 6}),
        api.post(path, json={"done": True}),
    ]
    assert [r.status_code for r in handed_on] == [201, 201, 403, 400, 401, 422]
    assert len(seen) == len(handed_on)
    upper = f"/v1/key-results/{kr.upper()}/check-ins"
    assert api.post(upper, json={"value": 7}).status_code == 201
    assert len(seen) == len(handed_on)  # the lane's too: the route takes any hex case
    assert [c["value"] for c in check_ins(api, kr)] == [1, 2, 3, 7]


def test_a_header_the_route_reads_given_twice_is_the_routes_to_answer(api: Api, org) -> None:
    """The route reads the first Authorization (here empty: 401) and refuses two
    If-Match (400); the lane answers neither case itself, so it cannot differ."""
    path = f"/v1/key-results/{org['kr']['id']}/check-ins"
    admin = ("Authorization", f"Bearer {api.admin}")
    twice = api.client.post(path, json={"value": 1}, headers=[("Authorization", ""), admin])
    assert twice.status_code == 401, twice.text
    two = [admin, ("If-Match", '"7"'), ("If-Match", '"1"')]
    assert api.client.post(path, json={"value": 1}, headers=two).status_code == 400
    assert check_ins(api, org["kr"]["id"]) == []


def test_an_unknown_key_result_is_404(api: Api) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    response = api.post(f"/v1/key-results/{unknown}/check-ins", json={"value": 1})
    assert response.status_code == 404, response.text


def test_an_idempotent_check_in_is_written_once_and_replayed(api: Api, org) -> None:
    kr = org["kr"]["id"]
    headers = {"Idempotency-Key": "quick-1"}
    first = api.post(f"/v1/key-results/{kr}/check-ins", json={"value": 5}, headers=headers)
    again = api.post(f"/v1/key-results/{kr}/check-ins", json={"value": 5}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(check_ins(api, kr)) == 1


def test_lanes_keep_one_key_results_appends_apart_and_no_others() -> None:
    import asyncio
    from uuid import UUID

    from goalledger.api.routes_key_results import AppendLanes

    # Ids that fell in one stripe when lanes were `id.int % 64`.
    first, second = UUID(int=31), UUID(int=31 + 64)
    lanes = AppendLanes()
    order: list[str] = []

    async def append(name: str, key: UUID, hold: float) -> None:
        async with lanes.lane(key):
            order.append(f"{name} in")
            await asyncio.sleep(hold)
            order.append(f"{name} out")

    async def main() -> None:
        await asyncio.gather(
            append("a1", first, 0.05), append("a2", first, 0), append("b", second, 0)
        )

    asyncio.run(main())
    assert order.index("b out") < order.index("a1 out")  # another key result: no wait
    assert order.index("a1 out") < order.index("a2 in")  # the same one: after it
    assert lanes._lanes == {}  # nothing is kept once all are done


def test_check_ins_leave_the_lane_once_queued_and_if_match_waits_for_them(tmp_path) -> None:
    """Without If-Match a check-in decided on the event loop frees its key result's
    lane as soon as it is queued: the next is decided on its uncommitted state and
    both share a commit. With If-Match the route first waits for those queued before
    it, then compares the committed version: 412 for the version they replaced."""
    import asyncio
    from decimal import Decimal
    from uuid import uuid4

    from test_concurrency import key_results

    from goalledger.api.auth import Principal, TeamScope
    from goalledger.api.problems import PreconditionFailed
    from goalledger.api.routes_key_results import AppendLanes, CheckInIn, record_check_in
    from goalledger.core.ledger import Ledger
    from goalledger.core.objectives import KeyResult
    from goalledger.core.settings import Settings

    ledger = Ledger(Settings(database_url=f"sqlite:///{tmp_path / 'l.db'}"))
    try:
        (kr,) = key_results(ledger, 1)
        ledger.load(kr, KeyResult)  # cached: decided on the event loop
        access = TeamScope(ledger, Principal(uuid4(), "t", "contributor", None))
        lanes = AppendLanes()

        def check_in(value: int, if_match: str | None = None):
            data = CheckInIn(value=Decimal(value))
            return asyncio.ensure_future(record_check_in(ledger, lanes, access, kr, data, if_match))

        async def main() -> None:
            ledger._writer._lock.acquire()  # hold the commits
            try:
                plain = [check_in(1), check_in(2)]
                for _ in range(10_000):  # both decided (none can commit): at most a few steps
                    queued = ledger.queued_state(kr)
                    if queued is not None and queued[0].version == 3:
                        break
                    await asyncio.sleep(0)
                assert ledger.queued_state(kr)[0].version == 3
                stale = check_in(3, '"1"')  # the version before the two queued
                current = check_in(4, '"3"')  # after them: decided once they commit
                for _ in range(100):
                    await asyncio.sleep(0)
                assert not stale.done() and not current.done()  # waiting for the commit
            finally:
                ledger._writer._lock.release()
            assert [(await p).version for p in plain] == [2, 3]
            with pytest.raises(PreconditionFailed):
                await stale
            assert (await current).version == 4

        asyncio.run(main())
    finally:
        ledger.close()
