"""`POST /v1/readings` bodies read in one typed pass (api/reading_bodies.py): the same
answers as every other route for bad bodies, and values recorded with their digits."""

from __future__ import annotations

import json
from decimal import Decimal
from uuid import UUID

import pytest
from api_fixtures import Api, sqlite_api_fixture  # noqa: F401

NOW = "2026-01-01T00:00:00Z"
MISSING = "00000000-0000-4000-8000-000000000000"


def post(api: Api, body: bytes):
    return api.post("/v1/readings", content=body, headers={"content-type": "application/json"})


def fields(response) -> list[str]:
    assert response.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in response.json()["errors"]]


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"value": "x"}, 400, "body[1].value"),
        ({"value": "NaN"}, 400, "body[1].value"),
        ({"value": "-Infinity"}, 400, "body[1].value"),
        ({"value": "1e31"}, 400, "body[1].value"),
        ({"value": None}, 400, "body[1].value"),
        ({"value": True}, 400, "body[1].value"),
        ({"colour": 1}, 400, "body[1].colour"),
        ({"kpi_id": "nope"}, 400, "body[1].kpi_id"),
        ({"reading_id": 5}, 400, "body[1].reading_id"),
        ({"observed_at": "2026-01-01T00:00:00"}, 400, "body[1].observed_at"),
        ({"observed_at": "yesterday"}, 400, "body[1].observed_at"),
        ({"kpi_id": MISSING}, 404, "readings[1].kpi_id"),
        ({"reading_id": " "}, 422, "readings[1].reading_id"),
        ({"observed_at": "2099-01-01T00:00:00Z"}, 422, "readings[1].observed_at"),
    ],
)
def test_a_bad_reading_is_refused_naming_its_field_and_nothing_is_recorded(
    api: Api, change: dict, status: int, field: str
):
    kpi = api.org()["kpi"]["id"]
    good = {"kpi_id": kpi, "reading_id": "a", "value": 1, "observed_at": NOW}
    head = api.system.ledger.head_position()
    response = post(api, json.dumps([good, {**good, "reading_id": "b", **change}]).encode())
    assert response.status_code == status, response.text
    assert fields(response) == [field]
    assert api.system.ledger.head_position() == head


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"", "body"),
        (b"null", "body"),
        (b'{"a": 1}', "body"),
        (b"[0]", "body[0]"),
        (b"[{nope", None),  # malformed JSON: Litestar's own answer, as on every route
        (b'[{"a\xff": 1}]', "body"),  # not UTF-8
        (b"[" * 100_000 + b"]" * 100_000, "body"),  # nested too deeply
    ],
)
def test_a_body_that_is_not_a_batch_is_400(api: Api, body: bytes, field: str | None):
    response = post(api, body)
    assert response.status_code == 400, response.text
    if field is not None:
        assert fields(response)[0] == field


def test_values_are_recorded_with_the_digits_sent(api: Api):
    kpi = api.org()["kpi"]["id"]
    body = (
        b'[{"kpi_id": "%s", "reading_id": "trailing", "value": 1.10, "observed_at": "%s"},'
        b' {"kpi_id": "%s", "reading_id": "long", "value": 1.000000000000000000000001,'
        b' "observed_at": "%s"}, {"kpi_id": "%s", "reading_id": "text", "value": "2.50",'
        b' "observed_at": "%s"}]'
    ) % ((kpi.encode(), NOW.encode()) * 3)
    response = post(api, body)
    assert response.status_code == 201, response.text
    assert response.json()["recorded"] == ["trailing", "long", "text"]
    ledger = api.system.ledger
    values = {rid: ledger.reading(UUID(kpi), rid).value for rid in ("trailing", "long", "text")}
    assert values == {
        "trailing": Decimal("1.10"),
        "long": Decimal("1.000000000000000000000001"),
        "text": Decimal("2.50"),
    }
    assert str(values["trailing"]) == "1.10"
    again = post(api, body)
    assert again.status_code == 200 and again.json()["duplicates"] == ["trailing", "long", "text"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"reading_id": "a", "value": "NaN", "observed_at": NOW}, 400, "value"),
        ({"reading_id": "a", "value": 1, "observed_at": NOW, "colour": 1}, 400, "colour"),
        ({"reading_id": "a", "observed_at": NOW}, 400, "value"),
        ([{"reading_id": "a", "value": 1, "observed_at": NOW}, {"reading_id": "b"}], 400,
         "body[1].value"),
        ({"reading_id": " ", "value": 1, "observed_at": NOW}, 422, "readings[0].reading_id"),
        (None, 400, "body"),
    ],
)  # fmt: skip
def test_a_bad_reading_of_one_kpi_names_its_field(api: Api, body, status: int, field: str):
    kpi = api.org()["kpi"]["id"]
    response = api.post(f"/v1/kpis/{kpi}/readings", json=body)
    assert response.status_code == status, response.text
    assert fields(response) == [field]


def test_readings_of_one_kpi_one_or_many_keep_their_digits(api: Api):
    kpi = api.org()["kpi"]["id"]
    one = b'{"reading_id": "one", "value": 3.140, "observed_at": "%s"}' % NOW.encode()
    many = b'[{"reading_id": "two", "value": 2.50, "observed_at": "%s"}]' % NOW.encode()
    for body in (one, many):
        response = api.post(
            f"/v1/kpis/{kpi}/readings", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 201, response.text
    ledger = api.system.ledger
    assert str(ledger.reading(UUID(kpi), "one").value) == "3.140"
    assert str(ledger.reading(UUID(kpi), "two").value) == "2.50"
