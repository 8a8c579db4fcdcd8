"""Schemathesis against a live `goalledger serve`: no 5xx, and every response as declared.

The server is a real process on 127.0.0.1 over an SQLite file with the demo loaded; the
run fetches the schema it serves at /schema/openapi.json and sends every operation
valid and invalid requests, once with generated ids (mostly 404s) and once with ids
of the demo's objects (real state). Generation is bounded and derandomized: the same
schema gives the same requests on every run, so CI stays stable.

schemathesis' own pytest integration (`schemathesis.pytest.from_fixture`) does not
work with pytest 9.2 (it sets `Node._nodeid`, which pytest removed), so the test
drives schemathesis' strategies with hypothesis itself, one subtest per operation.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from test_api_serve import serving

# Per operation, mode and id source: enough to reach the declared error paths, few
# enough that the whole run stays around a minute on two cores.
MAX_EXAMPLES = 10
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
# An endless Server-Sent Events stream: test_api_serve reads it with a real client.
EXCLUDED = {"eventStream"}


@dataclass(frozen=True)
class LiveApi:
    """A running server, its admin token and ids of objects the demo holds."""

    url: str
    secret: str
    ids: dict[str, str]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


@pytest.fixture(name="live_api", scope="module")
def live_api_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    """`goalledger serve --demo` on an SQLite file in a fresh directory."""
    database = tmp_path_factory.mktemp("schemathesis") / "goalledger.db"
    with serving(f"sqlite:///{database}", "--demo") as server:
        secret = server.line_after("Admin token")
        server.wait_healthy()
        yield LiveApi(server.url, secret, demo_ids(server.url, secret))
        assert server.stop() == 0


def demo_ids(url: str, secret: str) -> dict[str, str]:
    """Path parameter values naming real objects, by parameter name."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {secret}"}) as client:
        head = client.get("/ready").json()["head"]

        def first(path: str) -> dict[str, Any]:
            response = client.get(path, params={"min_position": head})
            assert response.status_code == 200, response.text
            return response.json()["items"][0]

        cycle = first("/v1/cycles")
        objective = first("/v1/objectives")
        kpi = first("/v1/kpis")
        history = client.get(f"/v1/kpis/{kpi['id']}/history").json()
        # A token of its own to revoke: fuzzing DELETE must not revoke the admin's.
        token = client.post("/v1/tokens", json={"name": "revoke me", "role": "viewer"})
        assert token.status_code == 201, token.text
    return {
        "cycle_id": cycle["id"],
        "team_id": objective["team_id"],
        "objective_id": objective["id"],
        "aggregate_id": objective["id"],
        "key_result_id": objective["key_results"][0]["id"],
        "kpi_id": kpi["id"],
        "reading_id": history["items"][0]["reading_id"],
        "token_id": token.json()["id"],
    }


def exercise(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    auth: dict[str, str],
    path_parameters: dict[str, str] | None,
) -> None:
    """Send up to MAX_EXAMPLES generated requests; every response must pass CHECKS."""
    fixed: dict[str, Any] = {"headers": auth, "path_parameters": path_parameters}
    if any(parameter.name == "min_position" for parameter in operation.query):
        # A position past the head makes a read wait 5 s, then answer 503 (declared, and
        # covered by test_api_errors): at 0, every read answers at once.
        fixed["query"] = {"min_position": 0}

    @settings(
        max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
        suppress_health_check=list(HealthCheck), print_blob=False,
    )  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    def send(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    send()


def modes(operation: schemathesis.APIOperation, fixed: set[str]) -> list[GenerationMode]:
    """Invalid data only where there is input left to spoil (a body, a free parameter)."""
    free = [p for p in operation.iter_parameters() if p.name not in fixed]
    if free or operation.body:
        return list(GenerationMode)
    return [GenerationMode.POSITIVE]


@pytest.mark.slow
def test_every_operation_answers_as_declared(live_api: LiveApi, subtests: pytest.Subtests) -> None:
    config = schemathesis.Config.from_dict({"request-timeout": 10})
    schema = schemathesis.openapi.from_url(f"{live_api.url}/schema/openapi.json", config=config)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    always_fixed = {"Authorization", "min_position"}
    for operation in operations:
        if operation.definition.raw.get("operationId") in EXCLUDED:
            continue
        names = {p.name for p in operation.path_parameters}
        sources: dict[str, dict[str, str] | None] = {"generated ids": None}
        if names and names <= live_api.ids.keys():
            sources["demo ids"] = {name: live_api.ids[name] for name in names}
        for source, path_parameters in sources.items():
            fixed = always_fixed | (names if path_parameters else set())
            for mode in modes(operation, fixed):
                with subtests.test(msg=f"{operation.label}, {mode.value}, {source}"):
                    exercise(operation, mode, live_api.auth, path_parameters)


@pytest.mark.slow
def test_positions_past_64_bits_and_non_ascii_digits_are_bad_requests(live_api: LiveApi) -> None:
    """Inputs the schema run (and reading around its findings) turned from 500s into 400s."""
    huge = 2**63
    cursor = base64.urlsafe_b64encode(str(huge).encode()).decode().rstrip("=")
    objective = live_api.ids["objective_id"]
    superscript = "²".encode("latin-1")  # str.isdigit() says yes, int() says no
    with httpx.Client(base_url=live_api.url, headers=live_api.auth, timeout=10) as client:
        answers = {
            "after": client.get("/v1/audit/events", params={"after": huge}),
            "min_position": client.get("/v1/cycles", params={"min_position": huge}),
            "cursor": client.get("/v1/cycles", params={"cursor": cursor}),
            "If-Match": client.patch(
                f"/v1/objectives/{objective}",
                json={"title": "x"},
                headers={"If-Match": superscript},
            ),
            "Last-Event-ID": client.get(
                "/v1/events/stream", headers={"Last-Event-ID": superscript}
            ),
            "stream after": client.get("/v1/events/stream", params={"after": huge}),
        }
    for field, response in answers.items():
        assert response.status_code == 400, (field, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
