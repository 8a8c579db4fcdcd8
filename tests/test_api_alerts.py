"""Over HTTP: subscriptions (admin), alerts (viewer, paginated) and deliveries with their
attempts and dead letters (admin). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from api_fixtures import Api, api_fixture  # noqa: F401

from goalledger.api.cli_worker import dispatcher_for
from goalledger.plugins.outbox import RetryPolicy
from goalledger.plugins.testkit import Exchange, local_http_server

SECRET = "whsec-0123456789abcdef"


def webhook(url: str = "https://hooks.example.com/in") -> dict[str, Any]:
    return {"plugin": "webhook", "config": {"url": url, "secret": SECRET}}


def at(moment: datetime) -> str:
    return moment.isoformat()


def refused(api: Api, body: dict[str, Any]) -> tuple[int, list[str]]:
    response = api.post("/v1/subscriptions", json=body)
    return response.status_code, [e["field"] for e in response.json().get("errors", [])]


def test_subscriptions_are_validated_masked_listed_and_deleted(api: Api) -> None:
    team = api.created("/v1/teams", {"name": "Platform"})["id"]
    kinds = ["kpi_health_changed", "cycle_ending"]
    bad_url = {"alert_kinds": kinds, "channel": webhook("ftp://nowhere")}
    assert refused(api, bad_url) == (422, ["channel.config.url"])
    no_plugin = {"alert_kinds": kinds, "channel": {"plugin": "pigeon", "config": {}}}
    assert refused(api, no_plugin) == (422, ["channel.plugin"])
    assert refused(api, {"alert_kinds": ["gossip"], "channel": webhook()}) == (
        422,
        ["alert_kinds[0]"],
    )
    assert refused(api, {"alert_kinds": kinds, "channel": webhook(), "teams": []})[0] == 400
    response = api.post(
        "/v1/subscriptions", json={"alert_kinds": kinds, "team_ids": [team], "channel": webhook()}
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["Location"] == f"/v1/subscriptions/{created['id']}"
    assert response.headers["ETag"] == '"1"'
    assert created["channel"]["config"]["secret"] == "********"
    assert (created["alert_kinds"], created["team_ids"], created["deleted"]) == (
        kinds,
        [team],
        False,
    )
    assert SECRET not in response.text
    listed = api.settled("/v1/subscriptions").json()
    assert [s["id"] for s in listed["items"]] == [created["id"]]
    assert SECRET not in api.get(f"/v1/subscriptions/{created['id']}").text
    deleted = api.call("DELETE", f"/v1/subscriptions/{created['id']}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert api.call("DELETE", f"/v1/subscriptions/{created['id']}").status_code == 422
    assert api.settled("/v1/subscriptions").json()["items"] == []
    everything = api.settled("/v1/subscriptions", params={"include_deleted": "true"}).json()
    assert [s["deleted"] for s in everything["items"]] == [True]
    assert api.get(f"/v1/subscriptions/{created['id']}x").status_code == 404


def test_alerts_are_listed_in_pages_and_scoped_to_teams(api: Api) -> None:
    org = api.org()
    kpi, team = org["kpi"]["id"], org["team"]["id"]
    other = api.created("/v1/teams", {"name": "Sales", "parent_id": org["company"]["id"]})["id"]
    start = datetime.now(UTC) - timedelta(hours=5)
    readings = [
        {"reading_id": f"r{i}", "value": value, "observed_at": at(start + timedelta(hours=i))}
        for i, value in enumerate(["99.95", "98", "99.95", "50"])
    ]
    api.created(f"/v1/kpis/{kpi}/readings", readings)
    first = api.settled("/v1/alerts", params={"limit": 2}).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = api.get("/v1/alerts", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    items = first["items"] + rest["items"]
    assert rest["next_cursor"] is None
    assert [(a["kind"], a["subject_id"], a["data"]["health"]) for a in items] == [
        ("kpi_health_changed", kpi, "red"),
        ("kpi_health_changed", kpi, "green"),
        ("kpi_health_changed", kpi, "red"),
    ]
    assert {"id", "kind", "subject_id", "raised_at", "position", "title"} <= set(items[0])
    assert [a["position"] for a in items] == sorted(a["position"] for a in items)
    assert items[1]["title"] == "Uptime recovered to green"
    filtered = api.get("/v1/alerts", params={"kind": "cycle_ending"}).json()
    assert filtered["items"] == []
    assert api.get("/v1/alerts", params={"kind": "gossip"}).status_code == 400
    own, foreign = api.token("viewer", team), api.token("viewer", other)
    assert len(api.get("/v1/alerts", token=own).json()["items"]) == 3
    assert api.get("/v1/alerts", token=foreign).json()["items"] == []


def test_deliveries_show_attempts_and_dead_letters(api: Api) -> None:
    def refuse(exchange: Exchange) -> tuple[int, dict[str, str], bytes]:
        return 503, {}, b"busy"

    org = api.org()
    with local_http_server(refuse) as receiver:
        body = {"alert_kinds": ["kpi_health_changed"], "channel": webhook(f"{receiver.url}/h")}
        api.created("/v1/subscriptions", body)
        kpi = org["kpi"]["id"]
        now = datetime.now(UTC)
        api.created(f"/v1/kpis/{kpi}/readings", [
            {"reading_id": "a", "value": "99.95", "observed_at": at(now - timedelta(hours=2))},
            {"reading_id": "b", "value": "1", "observed_at": at(now - timedelta(hours=1))},
        ])  # fmt: skip
        api.system.projector.wait_for(api.system.ledger.head_position(), 5)
        policy = RetryPolicy(max_attempts=2, first_delay=0)
        assert dispatcher_for(api.system, policy=policy).drain() == 2
    (dead,) = api.settled("/v1/deliveries", params={"status": "dead"}).json()["items"]
    assert (dead["status"], dead["attempts"], dead["channel"]) == ("dead", 2, "webhook")
    assert [a["attempt"] for a in dead["history"]] == [1, 2]
    assert all("HTTP 503" in a["error"] for a in dead["history"])
    assert api.get("/v1/deliveries", params={"status": "delivered"}).json()["items"] == []
    assert len(receiver.received) == 2
    viewer = api.token("viewer")
    assert api.get("/v1/deliveries", token=viewer).status_code == 403
