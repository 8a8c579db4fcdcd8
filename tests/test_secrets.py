"""Secrets at rest: plugin-config secrets are sealed in the ledger (docs/secrets.md).

The stored rows and the audit export never hold a secret in plain text; fetch and
delivery still get it; without the key a secret is refused (nothing recorded), and a
wrong key is a clear reason, never a crash.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from uuid import UUID

import msgspec
import psycopg
import pytest
from api_fixtures import Api, _api, api_fixture  # noqa: F401  (the `api` fixture, each store)
from conftest import TEST_SECRET_KEY

from goalledger.api.bootstrap import System, bootstrap
from goalledger.core.kpis import Kpi, SourceBinding, thresholds_for
from goalledger.core.secrets import (
    KEY_VARIABLE,
    PREVIOUS_VARIABLE,
    Keyring,
    SecretKeyProblem,
    key_id,
    new_key,
)
from goalledger.core.settings import Settings
from goalledger.core.subscriptions import Subscription
from goalledger.plugins.catalogue import ChannelBinding
from goalledger.plugins.channels import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from goalledger.plugins.fetch import FetchFailed
from goalledger.plugins.rekey import check_keys, inventory, rotate
from goalledger.plugins.testkit import Exchange, LocalServer, local_http_server, make_notification

KPI = {
    "name": "Signups", "direction": "higher_is_better", "frequency": "daily",
    "thresholds": {"green": 100, "amber": 50},
}  # fmt: skip
TOKEN = "tok-very-secret-0001"
HOOK_SECRET = "whsec-very-secret-0002"


def stored_states(system: System) -> list[bytes]:
    """Every stored event's state, read straight from the database's own table."""
    storage = system.settings.storage()
    table = system.ledger.recorder.events_table_name
    if storage.kind == "sqlite":
        with sqlite3.connect(storage.path) as db:
            return [bytes(row[0]) for row in db.execute(f"SELECT state FROM {table}")]
    with psycopg.connect(system.settings.database_url) as db:
        return [bytes(row[0]) for row in db.execute(f"SELECT state FROM {table}")]


@pytest.fixture
def upstream() -> Iterator[LocalServer]:
    """A metric endpoint that answers only the right bearer token, and a webhook receiver
    that accepts only bodies signed with the right secret."""

    def respond(exchange: Exchange) -> tuple[int, dict[str, str], bytes]:
        if exchange.path.startswith("/hook"):
            timestamp = int(exchange.headers[TIMESTAMP_HEADER])
            good = exchange.headers[SIGNATURE_HEADER] == sign(HOOK_SECRET, timestamp, exchange.body)
            return (204 if good else 401), {}, b""
        if exchange.headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {}, b"who are you?"
        at = datetime.now(UTC).replace(microsecond=0).isoformat()
        return 200, {"Content-Type": "application/json"}, msgspec.json.encode({"n": 7, "at": at})

    with local_http_server(respond) as server:
        yield server


def source_for(server: LocalServer) -> dict:
    config = {"url": f"{server.url}/m", "pointer": "/n", "observed_at_pointer": "/at"}
    return {"plugin": "http-json", "config": {**config, "token": TOKEN}}


def hook_for(server: LocalServer) -> dict:
    return {"plugin": "webhook", "config": {"url": f"{server.url}/hook", "secret": HOOK_SECRET}}


def define_both(api: Api, server: LocalServer) -> tuple[str, str]:
    """A KPI whose source holds a token and a subscription whose webhook holds a secret."""
    kpi = api.created("/v1/kpis", {**KPI, "source": source_for(server)})["id"]
    body = {"alert_kinds": ["kpi_health_changed"], "channel": hook_for(server)}
    subscription = api.created("/v1/subscriptions", body)["id"]
    return kpi, subscription


def deliver(system: System, subscription_id: str) -> None:
    """Send one notification through the subscription's recorded channel; assert it landed."""
    channel = system.ledger.load(UUID(subscription_id), Subscription).channel
    delivery = system.sender.send(
        ChannelBinding(channel.plugin, channel.config), make_notification()
    )
    assert delivery.ok, delivery.error


def test_a_sealed_value_opens_only_with_its_key_and_in_its_place() -> None:
    key = new_key()
    keyring = Keyring.parse(key)
    sealed = keyring.seal("hunter2", "http-json.token", field="source.config.token")
    assert sealed.startswith(f"enc:v1:{keyring.current_id}:") and "hunter2" not in sealed
    assert keyring.current_id == key_id(base64.urlsafe_b64decode(key))
    assert keyring.current_id not in key and key not in repr(keyring)
    assert keyring.open(sealed, "http-json.token", field="f") == "hunter2"
    assert keyring.seal("hunter2", "http-json.token", field="f") != sealed  # a fresh nonce
    assert (
        keyring.open("plain, from before sealing", "x.y", field="f") == "plain, from before sealing"
    )

    with pytest.raises(SecretKeyProblem) as moved:  # copied into another plugin's field
        keyring.open(sealed, "prometheus.token", field="source.config.token")
    assert moved.value.field == "source.config.token"
    assert "does not open" in moved.value.message

    head, _, payload = sealed.rpartition(":")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    with pytest.raises(SecretKeyProblem, match="damaged"):
        keyring.open(f"{head}:{flipped}", "http-json.token", field="f")

    with pytest.raises(SecretKeyProblem) as other:
        Keyring.parse(new_key()).open(sealed, "http-json.token", field="source.config.token")
    assert keyring.current_id in other.value.message
    assert KEY_VARIABLE in other.value.message and PREVIOUS_VARIABLE in other.value.message

    with pytest.raises(SecretKeyProblem) as none:
        Keyring().seal("hunter2", "http-json.token", field="source.config.token")
    assert none.value.field == "source.config.token" and KEY_VARIABLE in none.value.message

    for bad, variable in (("c2hvcnQ=", KEY_VARIABLE), ("not base64 at all!", KEY_VARIABLE)):
        with pytest.raises(SecretKeyProblem) as malformed:
            Keyring.parse(bad)
        assert malformed.value.field == variable
    with pytest.raises(SecretKeyProblem) as malformed:
        Keyring.parse(key, f"{new_key()}, c2hvcnQ=")
    assert malformed.value.field == PREVIOUS_VARIABLE


def test_stored_rows_and_the_audit_export_never_hold_a_secret_yet_fetch_and_delivery_work(
    api: Api, upstream: LocalServer
) -> None:
    kpi, subscription = define_both(api, upstream)
    # A client that PATCHes back what it read (secret masked) keeps the sealed secret.
    shown = api.get(f"/v1/kpis/{kpi}").json()["source"]
    assert shown["config"]["token"] == "********"
    changed = {**shown, "config": {**shown["config"], "pointer": "/n"}}
    assert api.patch(f"/v1/kpis/{kpi}", json={"source": changed}).status_code == 200

    auditor = api.token("auditor")
    states = stored_states(api.system)
    assert len(states) == api.system.ledger.head_position()
    for secret in (TOKEN, HOOK_SECRET):
        assert not any(secret.encode() in state for state in states)
    assert sum(b"enc:v1:" in state for state in states) == 3  # defined, re-bound, subscribed

    export = api.settled("/v1/audit/export", token=auditor)
    assert export.status_code == 200, export.text
    exported = export.content
    decoded = [base64.b64decode(json.loads(line)["state"]) for line in exported.splitlines()]
    assert len(decoded) == len(states)
    for secret in (TOKEN, HOOK_SECRET):
        assert secret.encode() not in exported
        assert not any(secret.encode() in state for state in decoded)

    fetched = api.post(f"/v1/kpis/{kpi}/source/fetch")
    assert fetched.status_code == 200, fetched.text
    assert len(fetched.json()["recorded"]) == 1
    deliver(api.system, subscription)
    assert [e.path for e in upstream.received] == ["/m", "/hook"]


@pytest.fixture
def keyless_api(sqlite_url: str) -> Iterator[Api]:
    yield from _api(Settings(database_url=sqlite_url))


def test_without_a_key_a_secret_is_refused_and_nothing_is_recorded(
    keyless_api: Api, upstream: LocalServer
) -> None:
    api = keyless_api
    head = api.system.ledger.head_position()
    refused = api.post("/v1/kpis", json={**KPI, "source": source_for(upstream)})
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    [error] = refused.json()["errors"]
    assert error["field"] == "source.config.token"
    assert KEY_VARIABLE in error["message"] and "nothing was recorded" in error["message"]
    assert TOKEN not in refused.text

    body = {"alert_kinds": ["kpi_health_changed"], "channel": hook_for(upstream)}
    refused = api.post("/v1/subscriptions", json=body)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "channel.config.secret"
    assert api.system.ledger.head_position() == head

    # A config without secrets needs no key.
    open_source = {"plugin": "http-json", "config": {"url": f"{upstream.url}/m", "pointer": "/n"}}
    assert api.post("/v1/kpis", json={**KPI, "source": open_source}).status_code == 201


def test_a_wrong_key_is_a_clear_reason_not_a_crash(
    settings: Settings, upstream: LocalServer
) -> None:
    with bootstrap(settings) as system:
        kpi = system.ledger.define_kpi(
            name="Signups", unit="", direction="higher_is_better",
            thresholds=thresholds_for("higher_is_better", 10, 5), frequency="daily",
            source=system.plugins.validate_source(**source_for(upstream)), actor="test",
        ).id  # fmt: skip
    wrong = msgspec.structs.replace(settings, secret_key=new_key())
    with bootstrap(wrong) as system:
        with pytest.raises(SecretKeyProblem) as refused:
            check_keys(system.ledger, system.plugins)
        assert refused.value.field == KEY_VARIABLE
        assert Keyring.parse(TEST_SECRET_KEY).current_id in refused.value.message
        assert "refusing to start" in refused.value.message
        with pytest.raises(FetchFailed) as failed:
            system.sources.fetch(kpi)
        reason = failed.value.health.last_error or ""
        assert reason.startswith("source.config.token: is encrypted under key")
        assert KEY_VARIABLE in reason and TOKEN not in reason
    assert upstream.received == []  # nothing was sent with a wrong token


def test_plain_secrets_from_before_sealing_keep_working_until_rotation_seals_them(
    settings: Settings, upstream: LocalServer
) -> None:
    with bootstrap(settings) as system:
        # Recorded as goalledger did before secrets were sealed: the binding as given.
        plain = SourceBinding("http-json", source_for(upstream)["config"])
        kpi = system.ledger.define_kpi(
            name="Signups", unit="", direction="higher_is_better",
            thresholds=thresholds_for("higher_is_better", 10, 5), frequency="daily",
            source=plain, actor="test",
        ).id  # fmt: skip
        found = check_keys(system.ledger, system.plugins)  # no key needed for plain text
        assert [(h.id, h.plain, h.key_ids) for h in found.held] == [(kpi, ["token"], [])]
        assert system.sources.fetch(kpi).observed == 1

        done = rotate(system.ledger, system.plugins, actor="cli:ops", reason="seal old secrets")
        assert [h.id for h in done.rotated] == [kpi] and done.failed == []
        current = system.ledger.load(kpi, Kpi).source
        assert current is not None and current.config["token"].startswith("enc:v1:")
        assert inventory(system.ledger, system.plugins).stale(done.key_id) == []
        assert system.sources.fetch(kpi).observed == 1
        # History is immutable: the plain-text event stays; only the binding in use moved.
        assert sum(TOKEN.encode() in state for state in stored_states(system)) == 1
        last = list(system.ledger.read_events())[-1][1]
        assert isinstance(last, Kpi.SourceBound)
        assert (last.actor, last.reason) == ("cli:ops", "seal old secrets")
