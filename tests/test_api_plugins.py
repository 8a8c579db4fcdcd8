"""Plugins through the API: source configs checked at definition time, secrets never
shown, fetching a bound source on demand, and the plugin list."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from api_fixtures import Api, sqlite_api_fixture  # noqa: F401

from goalledger.core.kpis import Kpi
from goalledger.plugins.testkit import Exchange, local_http_server

KPI = {
    "name": "Signups", "direction": "higher_is_better", "frequency": "daily",
    "thresholds": {"green": 100, "amber": 50},
}  # fmt: skip
SECRET = "s3cret-token-value"


def _json(value: float, at: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"data": {"signups": value, "at": at}}).encode()
    return 200, {"Content-Type": "application/json"}, body


def test_a_bad_source_config_is_refused_naming_the_field(api: Api) -> None:
    head = api.system.ledger.head_position()
    no_url = {"plugin": "http-json", "config": {"pointer": "/data/signups"}}
    response = api.post("/v1/kpis", json={**KPI, "source": no_url})
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["field"] == "source.config.url"

    unknown = api.post("/v1/kpis", json={**KPI, "source": {"plugin": "nope", "config": {}}})
    assert 400 <= unknown.status_code < 500
    assert unknown.json()["errors"][0]["field"] == "source.plugin"
    assert api.system.ledger.head_position() == head  # nothing recorded


def test_secrets_are_never_shown_and_survive_an_update(api: Api) -> None:
    source = {
        "plugin": "http-json",
        "config": {
            "url": "http://127.0.0.1:9/metrics",
            "pointer": "/data/signups",
            "token": SECRET,
        },
    }
    kpi = api.created("/v1/kpis", {**KPI, "source": source})
    assert SECRET not in json.dumps(kpi)
    assert kpi["source"]["config"]["token"] == "********"
    assert SECRET not in api.get(f"/v1/kpis/{kpi['id']}").text
    assert SECRET not in api.get("/v1/kpis").text

    # Sending the masked config back (as a client that edits the URL would) keeps the secret.
    changed = {**kpi["source"], "config": {**kpi["source"]["config"], "pointer": "/data/n"}}
    response = api.patch(f"/v1/kpis/{kpi['id']}", json={"source": changed, "reason": "moved"})
    assert response.status_code == 200, response.text
    stored = api.system.ledger.load(__import__("uuid").UUID(kpi["id"]), Kpi)
    assert stored.source is not None
    assert stored.source.config["token"].startswith("enc:v1:")  # sealed in the ledger
    assert api.system.plugins.config_of(stored.source).token == SECRET
    assert stored.source.config["pointer"] == "/data/n"

    unbound = api.patch(f"/v1/kpis/{kpi['id']}", json={"source": None})
    assert unbound.status_code == 200 and unbound.json()["source"] is None


def test_fetching_a_bound_source_records_once_and_a_failure_is_a_502(api: Api) -> None:
    failing = {"now": False}

    def respond(exchange: Exchange) -> tuple[int, dict[str, str], bytes]:
        if failing["now"]:
            return 500, {}, b"down"
        assert exchange.headers.get("Authorization") == f"Bearer {SECRET}"
        return _json(321, datetime.now(UTC).replace(microsecond=0).isoformat())

    with local_http_server(respond) as server:
        source = {
            "plugin": "http-json",
            "config": {
                "url": f"{server.url}/m",
                "pointer": "/data/signups",
                "observed_at_pointer": "/data/at",
                "token": SECRET,
            },
        }
        kpi = api.created("/v1/kpis", {**KPI, "source": source})
        first = api.post(f"/v1/kpis/{kpi['id']}/source/fetch")
        assert first.status_code == 200, first.text
        assert len(first.json()["recorded"]) == 1 and first.json()["position"] is not None
        history = api.settled(f"/v1/kpis/{kpi['id']}/history").json()["items"]
        assert [item["value"] for item in history] == [321]

        failing["now"] = True
        failed = api.post(f"/v1/kpis/{kpi['id']}/source/fetch")
        assert failed.status_code == 502
        assert failed.headers["content-type"].startswith("application/problem+json")
        assert SECRET not in failed.text

    metrics = api.get("/metrics", token=None).text
    failing_line = next(
        line
        for line in metrics.splitlines()
        if line.startswith("goalledger_source_consecutive_failures{") and kpi["id"] in line
    )
    assert failing_line.endswith(" 1.0")
    assert SECRET not in metrics


def test_the_plugin_list_shows_the_built_ins_loaded(api: Api) -> None:
    response = api.get("/v1/plugins", token=api.token("viewer"))
    assert response.status_code == 200
    plugins = {p["name"]: p for p in response.json()["items"]}
    assert plugins["goalledger.builtin"]["status"] == "loaded"
    provided = {
        name for p in plugins.values() for names in p["provides"].values() for name in names
    }
    assert {"http-json", "csv", "sql", "prometheus", "webhook", "slack", "email", "log"} <= provided


def test_the_audit_history_masks_source_secrets(api: Api) -> None:
    source = {"plugin": "http-json", "config": {"url": "http://127.0.0.1:9/m", "token": SECRET}}
    kpi = api.created("/v1/kpis", {**KPI, "source": source})
    api.patch(f"/v1/kpis/{kpi['id']}", json={"source": None, "reason": "retired"})
    history = api.settled(f"/v1/audit/aggregates/{kpi['id']}/history", token=api.token("auditor"))
    assert history.status_code == 200
    assert SECRET not in history.text
    assert "********" in history.text
