"""Every error path of the API: problem+json with the field named, and never a 500."""

from __future__ import annotations

import hashlib
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from api_fixtures import CYCLE, sqlite_api_fixture, store_api_fixture  # noqa: F401

from goalledger.api import http_conventions
from goalledger.api.http_idempotency import IdempotencyStore
from goalledger.api.pagination import encode_cursor
from goalledger.core.ledger import Ledger
from goalledger.core.objectives import Objective

PROBLEM = "application/problem+json"
MISSING = "00000000-0000-4000-8000-000000000000"


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert {"type", "title", "status", "detail", "errors"} <= set(body)
    assert body["status"] == status
    return body


def fields(body: dict) -> list[str]:
    return [e["field"] for e in body["errors"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**CYCLE, "colour": "red"}, "colour"),  # unknown field
        ({**CYCLE, "starts_on": 12}, "starts_on"),  # wrong type
        ({"starts_on": CYCLE["starts_on"], "ends_on": CYCLE["ends_on"]}, "name"),  # missing
    ],
)
def test_malformed_bodies_are_400_naming_the_field(api, body, field):
    assert fields(problem(api.post("/v1/cycles", json=body), 400)) == [field]


def test_malformed_json_and_missing_body_are_400(api):
    headers = {"content-type": "application/json"}
    problem(api.post("/v1/cycles", content=b"{nope", headers=headers), 400)
    assert fields(problem(api.post("/v1/cycles"), 400)) == ["body"]


def test_list_bodies_name_the_item_and_field(api):
    kpi = api.org()["kpi"]["id"]
    good = {"kpi_id": kpi, "reading_id": "a", "value": 1, "observed_at": "2026-01-01T00:00:00Z"}
    for bad, field in (
        ({**good, "value": "x"}, "body[1].value"),
        ({**good, "value": "NaN"}, "body[1].value"),
        ({**good, "colour": 1}, "body[1].colour"),
        ({**good, "kpi_id": MISSING}, "readings[1].kpi_id"),
    ):
        response = api.post("/v1/readings", json=[good, bad])
        assert fields(problem(response, 404 if bad["kpi_id"] == MISSING else 400)) == [field]


def test_bad_numbers_and_times_are_400(api):
    org = api.org()
    objective = org["objective"]["id"]
    for value in ("NaN", "Infinity", "1e999999", "abc"):
        response = api.post(
            f"/v1/objectives/{objective}/key-results",
            json={"title": "x", "kind": "increase_to", "start": 0, "target": value},
        )
        assert fields(problem(response, 400)) == ["target"], value
    naive = api.post(
        f"/v1/key-results/{org['kr']['id']}/check-ins",
        json={"value": 1, "effective_at": "2026-01-01T00:00:00"},
    )
    assert fields(problem(naive, 400)) == ["effective_at"]
    query = api.get("/v1/scoreboard", params={"as_of": "yesterday"})
    assert fields(problem(query, 400)) == ["as_of"]


def test_domain_refusals_are_422_naming_the_field(api):
    body = {**CYCLE, "ends_on": CYCLE["starts_on"]}
    assert fields(problem(api.post("/v1/cycles", json=body), 422)) == ["ends_on"]
    org = api.org()
    milestone = api.post(
        f"/v1/key-results/{org['kr']['id']}/check-ins", json={"done": True}
    )  # an increase_to KR takes a value
    assert fields(problem(milestone, 422)) == ["value"]
    no_reason = api.patch(f"/v1/key-results/{org['kr']['id']}", json={"target": 5, "reason": ""})
    assert fields(problem(no_reason, 422)) == ["reason"]


def test_unknown_ids_are_404(api):
    for path in (
        f"/v1/cycles/{MISSING}",
        f"/v1/teams/{MISSING}",
        f"/v1/objectives/{MISSING}",
        f"/v1/key-results/{MISSING}",
        f"/v1/kpis/{MISSING}",
        f"/v1/kpis/{MISSING}/history",
        "/v1/cycles/not-a-uuid",
        "/v1/nothing-here",
    ):
        problem(api.get(path), 404)
    response = api.post("/v1/objectives", json={
        "title": "t", "cycle_id": MISSING, "team_id": MISSING, "owner": "o", "kind": "committed",
    })  # fmt: skip
    assert fields(problem(response, 404)) == ["cycle_id"]
    assert problem(api.call("PUT", "/v1/cycles"), 405)["type"].endswith("method-not-allowed")


def test_stale_if_match_is_412_and_nothing_is_recorded(store_api):
    api = store_api
    kr = api.org()["kr"]
    api.post(f"/v1/key-results/{kr['id']}/check-ins", json={"value": 10})
    head = api.system.ledger.head_position()
    stale = api.patch(
        f"/v1/key-results/{kr['id']}",
        json={"target": 50, "reason": "r"},
        headers={"If-Match": '"1"'},
    )
    assert fields(problem(stale, 412)) == ["If-Match"]
    objective_id = kr["objective_id"]
    stale_objective = api.patch(
        f"/v1/objectives/{objective_id}",
        json={"title": "new"},
        headers={"If-Match": '"7"'},
    )
    problem(stale_objective, 412)
    assert api.system.ledger.head_position() == head
    problem(api.patch(f"/v1/key-results/{kr['id']}", json={"reason": "r"},
                      headers={"If-Match": "soon"}), 400)  # fmt: skip


def test_a_change_that_loses_a_race_is_409_never_a_lost_update(store_api, monkeypatch):
    api = store_api
    objective_id = api.org()["objective"]["id"]
    ledger = api.system.ledger
    load = Ledger.load
    raced = []

    def load_then_race(self, aggregate_id, kind, field="id", **options):
        found = load(self, aggregate_id, kind, field, **options)
        if kind is Objective and field == "objective_id" and not raced:
            raced.append(ledger.edit_objective(aggregate_id, title="sneaky", actor="rival"))
        return found

    monkeypatch.setattr(Ledger, "load", load_then_race)
    response = api.patch(f"/v1/objectives/{objective_id}", json={"title": "mine"})
    problem(response, 409)
    monkeypatch.undo()
    assert api.get(f"/v1/objectives/{objective_id}").json()["title"] == "sneaky"


def test_concurrent_patches_without_if_match_never_lose_an_update(store_api):
    api = store_api
    objective_id = api.org()["objective"]["id"]

    def rename(i: int) -> int:
        return api.patch(f"/v1/objectives/{objective_id}", json={"title": f"t{i}"}).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(rename, range(16)))
    assert set(statuses) <= {200, 409}
    version = api.get(f"/v1/objectives/{objective_id}").json()["version"]
    assert version == 1 + statuses.count(200)


def test_idempotency_key_replays_and_refuses_a_different_body(store_api):
    api = store_api
    key = {"Idempotency-Key": "create-q4"}
    first = api.post("/v1/cycles", json=CYCLE, headers=key)
    head = api.system.ledger.head_position()
    again = api.post("/v1/cycles", json=CYCLE, headers=key)
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    assert again.headers["X-Ledger-Position"] == first.headers["X-Ledger-Position"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert api.system.ledger.head_position() == head  # nothing recorded twice
    other = api.post("/v1/cycles", json={**CYCLE, "name": "other"}, headers=key)
    assert fields(problem(other, 422)) == ["Idempotency-Key"]
    # Keys are per token: another token's same key is a new request.
    viewer_admin = api.token("admin")
    fresh = api.post("/v1/cycles", token=viewer_admin, json=CYCLE, headers=key)
    assert fresh.status_code == 201
    assert fresh.json()["id"] != first.json()["id"]
    # A failed request keeps nothing: the retry runs afresh.
    bad = {"Idempotency-Key": "bad-then-good"}
    problem(api.post("/v1/cycles", json={**CYCLE, "ends_on": CYCLE["starts_on"]}, headers=bad), 422)
    assert api.post("/v1/cycles", json={**CYCLE, "ends_on": CYCLE["starts_on"]},
                    headers=bad).status_code == 422  # fmt: skip


def test_a_key_still_in_flight_is_409_and_concurrent_retries_record_once(store_api):
    api = store_api
    body = json.dumps(CYCLE).encode()
    headers = {"Idempotency-Key": "k1", "content-type": "application/json"}
    fingerprint = hashlib.sha256(b"\n".join([b"POST", b"/v1/cycles", b"", body])).hexdigest()
    token_id = str(uuid.UUID(api.admin[3:35]))
    IdempotencyStore(api.system.store).claim(token_id, "k1", fingerprint)
    assert fields(problem(api.post("/v1/cycles", content=body, headers=headers), 409)) == [
        "Idempotency-Key"
    ]
    head = api.system.ledger.head_position()
    retry = {"Idempotency-Key": "k2", "content-type": "application/json"}
    with ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(lambda _: api.post("/v1/cycles", content=body, headers=retry), range(8))
        )
    assert {r.status_code for r in responses} <= {201, 409}
    assert len({r.json()["id"] for r in responses if r.status_code == 201}) == 1
    assert api.system.ledger.head_position() == head + 1


def test_min_position_waits_then_503(api, monkeypatch):
    monkeypatch.setattr(http_conventions, "READ_WAIT_SECONDS", 0.2)
    response = api.get("/v1/cycles", params={"min_position": 10_000})
    assert fields(problem(response, 503)) == ["min_position"]
    assert response.headers["Retry-After"] == "1"
    problem(api.get("/v1/cycles", params={"min_position": -1}), 400)


def test_pagination_covers_every_item_once(store_api):
    api = store_api
    made = [api.created("/v1/cycles", {**CYCLE, "name": f"C{i}"})["id"] for i in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, "min_position": api.system.ledger.head_position()}
        if cursor:
            params["cursor"] = cursor
        body = api.get("/v1/cycles", params=params).json()
        seen += [c["id"] for c in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == made
    assert pages == 3
    for cursor in ("!!", encode_cursor(-3), encode_cursor("x")):
        assert fields(problem(api.get("/v1/cycles", params={"cursor": cursor}), 400)) == ["cursor"]
    assert fields(problem(api.get("/v1/cycles", params={"limit": 0}), 400)) == ["limit"]
    assert fields(problem(api.get("/v1/cycles", params={"limit": 1001}), 400)) == ["limit"]


def test_authentication_failures_are_401(api):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        response = api.client.get("/v1/cycles", headers=headers)
        problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "body",
    [b"[]", b"null", b"1", b'"x"', b"{}", b'{"value": {"a": 1}}', b'{"value": 1e999999}',
     b'{"value": "1e-999999"}', b'{"value": 1, "done": "yes"}', b'\xff\xfe'],
)  # fmt: skip
def test_no_body_a_client_can_send_is_a_500(api, body):
    org = api.org()
    headers = {"content-type": "application/json"}
    for path in (
        "/v1/cycles", "/v1/teams", "/v1/objectives", "/v1/kpis", "/v1/readings", "/v1/tokens",
        f"/v1/key-results/{org['kr']['id']}/check-ins",
        f"/v1/objectives/{org['objective']['id']}/key-results",
        f"/v1/kpis/{org['kpi']['id']}/readings",
        f"/v1/kpis/{org['kpi']['id']}/readings/r1/corrections",
        f"/v1/cycles/{org['cycle']['id']}/close",
    ):  # fmt: skip
        response = api.post(path, content=body, headers=headers)
        assert response.status_code < 500, (path, response.text)
