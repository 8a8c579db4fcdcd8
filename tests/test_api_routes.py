"""End-to-end over HTTP (in-process): every route's happy path, on SQLite and PostgreSQL."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from api_fixtures import api_fixture  # noqa: F401
from prometheus_client import REGISTRY

from goalledger.projections.projector import ProjectionFailed

SVG = "{http://www.w3.org/2000/svg}"


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def test_org_objectives_and_check_ins(api):
    org = api.org()
    cycle, team, objective, kr = org["cycle"], org["team"], org["objective"], org["kr"]

    response = api.post(f"/v1/key-results/{kr['id']}/check-ins", json={"value": 40})
    assert response.status_code == 201
    assert response.headers["ETag"] == '"2"'
    position = int(response.headers["X-Ledger-Position"])

    board = api.get("/v1/scoreboard", params={"cycle_id": cycle["id"], "min_position": position})
    assert board.status_code == 200
    [scored] = board.json()["objectives"]
    assert scored["key_results"][0]["value"] == 40
    assert scored["key_results"][0]["progress"] == {"raw": 0.4, "clamped": 0.4}
    assert scored["provenance"]["position"] >= position

    history = api.get(f"/v1/key-results/{kr['id']}/check-ins").json()
    assert [c["value"] for c in history["items"]] == [40]
    assert history["next_cursor"] is None

    listed = api.settled("/v1/objectives", params={"team_id": team["id"]}).json()
    assert [o["id"] for o in listed["items"]] == [objective["id"]]
    assert api.get(f"/v1/cycles/{cycle['id']}").json()["status"] == "open"
    assert api.settled("/v1/cycles").json()["items"][0]["id"] == cycle["id"]
    assert {t["id"] for t in api.settled("/v1/teams").json()["items"]} == {
        team["id"],
        org["company"]["id"],
    }

    changed = api.patch(
        f"/v1/key-results/{kr['id']}",
        json={"target": 80, "reason": "scope cut"},
        headers={"If-Match": '"2"'},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["target"] == 80

    patched = api.patch(
        f"/v1/objectives/{objective['id']}",
        json={"title": "A reliable platform", "status": "draft", "reason": "rewording"},
        headers={"If-Match": '"1"'},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["title"] == "A reliable platform"
    assert patched.json()["status"] == "draft"
    assert patched.headers["ETag"] == '"3"'

    child = api.created(
        "/v1/objectives",
        {"title": "Fast deploys", "cycle_id": cycle["id"], "team_id": team["id"],
         "owner": "eve", "kind": "aspirational", "parent_key_result_id": kr["id"]},
    )  # fmt: skip
    tree = api.settled("/v1/alignment", params={"cycle_id": cycle["id"]}).json()
    [root] = tree["roots"]
    assert root["id"] == objective["id"]
    assert [c["id"] for c in root["children"]] == [child["id"]]

    closed = api.post(f"/v1/cycles/{cycle['id']}/close", json={"reason": "quarter over"})
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed"
    assert closed.json()["rule"] == "linear-v1"


def test_kpis_readings_history_and_chart(api):
    org = api.org()
    kpi = org["kpi"]
    one = api.post(
        f"/v1/kpis/{kpi['id']}/readings",
        json={"reading_id": "r1", "value": "99.95", "observed_at": ago(days=3)},
    )
    assert one.status_code == 201
    assert one.json() == {"recorded": ["r1"], "duplicates": [], "position": one.json()["position"]}
    many = api.post(
        f"/v1/kpis/{kpi['id']}/readings",
        json=[
            {"reading_id": "r1", "value": 1, "observed_at": ago(days=3)},
            {"reading_id": "r2", "value": 99.5, "observed_at": ago(days=2)},
        ],
    )
    assert many.json()["recorded"] == ["r2"]
    assert many.json()["duplicates"] == ["r1"]
    batch = api.post(
        "/v1/readings",
        json=[{"kpi_id": kpi["id"], "reading_id": "r3", "value": 98, "observed_at": ago(days=1)}],
    )
    assert batch.status_code == 201
    corrected = api.post(
        f"/v1/kpis/{kpi['id']}/readings/r3/corrections", json={"value": 99.99, "reason": "typo"}
    )
    assert corrected.status_code == 201, corrected.text

    history = api.settled(f"/v1/kpis/{kpi['id']}/history").json()
    assert [(i["reading_id"], i["value"], i["health"]) for i in history["items"]] == [
        ("r1", 99.95, "green"),
        ("r2", 99.5, "amber"),
        ("r3", 99.99, "green"),
    ]
    assert history["thresholds"][0]["green"] == 99.9
    paged = api.get(f"/v1/kpis/{kpi['id']}/history", params={"limit": 2}).json()
    rest = api.get(
        f"/v1/kpis/{kpi['id']}/history", params={"limit": 2, "cursor": paged["next_cursor"]}
    ).json()
    assert [i["reading_id"] for i in paged["items"] + rest["items"]] == ["r1", "r2", "r3"]
    assert rest["next_cursor"] is None
    buckets = api.get(f"/v1/kpis/{kpi['id']}/history", params={"bucket": "week"}).json()
    assert sum(b["count"] for b in buckets["buckets"]) == 3

    changed = api.patch(
        f"/v1/kpis/{kpi['id']}",
        json={"name": "Availability", "thresholds": {"green": 99.99, "amber": 99.5},
              "effective_from": ago(days=10), "reason": "stricter SLO"},
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    assert changed.json()["thresholds"] == {"green": 99.99, "amber": 99.5}
    assert api.settled(f"/v1/kpis/{kpi['id']}").json()["name"] == "Availability"
    assert [k["id"] for k in api.settled("/v1/kpis").json()["items"]] == [kpi["id"]]

    chart = api.settled(f"/v1/kpis/{kpi['id']}/chart.svg")
    assert chart.status_code == 200
    assert chart.headers["content-type"].startswith("image/svg+xml")
    svg = ET.fromstring(chart.text)
    assert svg.tag == f"{SVG}svg"
    bands = [r.get("class") for r in svg.iter(f"{SVG}rect") if "band" in (r.get("class") or "")]
    assert {"band red", "band amber", "band green"} <= set(bands)
    assert len(list(svg.iter(f"{SVG}circle"))) == 3


def test_tokens_and_audit(api):
    org = api.org()
    issued = api.post("/v1/tokens", json={"name": "ci", "role": "viewer"})
    assert issued.status_code == 201
    secret = issued.json()["secret"]
    assert api.get("/v1/cycles", token=secret).status_code == 200
    listed = api.settled("/v1/tokens").json()
    assert issued.json()["id"] in [t["id"] for t in listed["items"]]
    assert all("secret" not in t and "secret_hash" not in t for t in listed["items"])
    revoked = api.call("DELETE", f"/v1/tokens/{issued.json()['id']}")
    assert revoked.status_code == 200
    assert revoked.json()["revoked"] is True
    assert api.get("/v1/cycles", token=secret).status_code == 401

    events = api.settled("/v1/audit/events", params={"limit": 3}).json()
    assert [e["position"] for e in events["items"]] == [1, 2, 3]
    assert events["items"][0]["actor"].startswith("test") or events["items"][0]["actor"]
    history = api.settled(f"/v1/audit/aggregates/{org['objective']['id']}/history").json()
    assert history["items"][0]["actor"].startswith("token:")
    token_history = api.settled(f"/v1/audit/aggregates/{issued.json()['id']}/history").json()
    fields = {c["field"]: c["after"] for c in token_history["items"][0]["changes"]}
    assert fields["secret_hash"] == "[redacted]"


def test_http_metrics_count_each_request_by_route_template_and_status(api):
    org = api.org()
    path = f"/v1/cycles/{org['cycle']['id']}"
    api.settled(path)

    def sample(name: str, status: str) -> float:
        labels = {"method": "GET", "path": "/v1/cycles/{cycle_id}", "status_code": status}
        return REGISTRY.get_sample_value(name, {**labels, "app_name": "goalledger"}) or 0.0

    names = ("goalledger_http_requests_total", "goalledger_http_request_duration_seconds_count")
    before = {(n, s): sample(n, s) for n in names for s in ("200", "401")}
    api.get(path)
    api.get(path, token=None)
    api.get(path, token=None)
    for name in names:
        assert sample(name, "200") == before[name, "200"] + 1
        assert sample(name, "401") == before[name, "401"] + 2
    assert sample("goalledger_http_requests_in_progress", "200") == 0  # none left running
    assert sample("goalledger_http_requests_error_total", "401") == 0  # only 5xx are errors


def test_operations_and_schema(api):
    assert api.get("/health", token=None).json() == {"status": "ok"}
    ready = api.get("/ready", token=None)
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    org = api.org()
    api.settled(f"/v1/cycles/{org['cycle']['id']}")
    api.post(
        f"/v1/kpis/{org['kpi']['id']}/readings",
        json=[{"reading_id": "a", "value": 1, "observed_at": ago(hours=1)}] * 2,
    )
    metrics = api.get("/metrics", token=None).text
    head = api.system.ledger.head_position()
    assert f"goalledger_ledger_head_position {float(head)}" in metrics
    assert 'path="/v1/cycles/{cycle_id}"' in metrics  # grouped by route template
    assert org["cycle"]["id"] not in metrics
    assert 'goalledger_readings_ingested_total{outcome="recorded"} 1.0' in metrics
    assert 'goalledger_readings_ingested_total{outcome="duplicate"} 1.0' in metrics
    # Caught up first: a batch applied afterwards would clear the planted failure.
    assert api.system.projector.wait_for(head, timeout=30)
    api.system.projector.failure = ProjectionFailed(1, "goalledger/cycle/defined", "boom")
    failed = api.get("/ready", token=None)
    assert failed.status_code == 503
    assert failed.json()["status"] == "failed"
    api.system.projector.failure = None
    schema = api.get("/schema/openapi.json", token=None).json()
    assert schema["openapi"].startswith("3.1")
    operations = [op for path in schema["paths"].values() for op in path.values()]
    assert all(op.get("operationId") for op in operations)
    assert api.get("/schema", token=None).status_code == 200
