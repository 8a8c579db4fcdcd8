"""The hash chain over HTTP: verify, anchor and export, and a tampered ledger refused."""

from __future__ import annotations

import json
import sqlite3

from api_fixtures import Api, sqlite_api_fixture  # noqa: F401


def _auditor(api: Api) -> str:
    api.org()
    api.settled("/v1/scoreboard")  # the projector has chained everything recorded
    return api.token("auditor")


def test_verify_anchor_and_export_agree_on_an_intact_ledger(api: Api) -> None:
    auditor = _auditor(api)
    verdict = api.get("/v1/audit/verify", token=auditor).json()
    head = api.system.ledger.head_position()
    assert verdict["ok"] is True and verdict["head"]["position"] == head
    anchor = api.get("/v1/audit/anchor", token=auditor).json()
    assert anchor == verdict["head"]

    export = api.get("/v1/audit/export", token=auditor)
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert [line["position"] for line in lines] == list(range(1, head + 1))
    assert lines[-1]["link"] == anchor["hash"]


def test_a_tampered_ledger_is_reported_and_not_exported(api: Api, sqlite_url: str) -> None:
    auditor = _auditor(api)
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        (state,) = db.execute("SELECT state FROM stored_events WHERE rowid = 3").fetchone()
        flipped = bytes([state[0] ^ 1]) + state[1:]
        db.execute("UPDATE stored_events SET state = ? WHERE rowid = 3", (flipped,))

    verdict = api.get("/v1/audit/verify", token=auditor).json()
    assert verdict["ok"] is False and verdict["broken"]["position"] == 3
    for route in ("/v1/audit/anchor", "/v1/audit/export"):
        refused = api.get(route, token=auditor)
        assert refused.status_code == 409
        assert "position 3" in refused.json()["detail"]
