"""Fixtures for HTTP API tests: a whole system behind the Litestar app, and token helpers.

A test module imports `api_fixture` to get the `api` fixture (on SQLite and PostgreSQL,
through the `settings` fixture) or `sqlite_api_fixture` for an SQLite-only `api`, and
`store_api_fixture` beside it for the tests that must also run on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from conftest import TEST_SECRET_KEY
from litestar.testing import TestClient

from goalledger.api.app import create_app
from goalledger.api.bootstrap import System, bootstrap
from goalledger.core.settings import Settings

TODAY = datetime.now(UTC).date()
CYCLE = {
    "name": "2026-Q4",
    "starts_on": (TODAY - timedelta(days=30)).isoformat(),
    "ends_on": (TODAY + timedelta(days=60)).isoformat(),
}


class Api:
    """A running app over a whole system, with an admin token and helpers for others."""

    def __init__(self, system: System, client: TestClient) -> None:
        self.system = system
        self.client = client
        self.admin = self.token("admin")

    def token(self, role: str, team_id: UUID | str | None = None) -> str:
        """Issue a token straight through the ledger; returns its secret."""
        team = UUID(str(team_id)) if team_id is not None else None
        _, secret = self.system.ledger.issue_token(
            name=f"{role} for tests", role=role, team_id=team, actor="test"
        )
        return secret

    def call(
        self, method: str, path: str, token: str | None = "admin", **kwargs: Any
    ) -> httpx.Response:
        """Send a request with `token` (default: the admin's; None: no Authorization)."""
        headers = dict(kwargs.pop("headers", {}) or {})
        secret = self.admin if token == "admin" else token
        if secret is not None:
            headers["Authorization"] = f"Bearer {secret}"
        return self.client.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, token: str | None = "admin", **kwargs: Any) -> httpx.Response:
        return self.call("GET", path, token, **kwargs)

    def post(self, path: str, token: str | None = "admin", **kwargs: Any) -> httpx.Response:
        return self.call("POST", path, token, **kwargs)

    def patch(self, path: str, token: str | None = "admin", **kwargs: Any) -> httpx.Response:
        return self.call("PATCH", path, token, **kwargs)

    def created(self, path: str, body: Any, token: str | None = "admin") -> dict[str, Any]:
        """POST that must answer 201; returns the JSON body."""
        response = self.post(path, token, json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def settled(self, path: str, token: str | None = "admin", **kwargs: Any) -> httpx.Response:
        """GET once the read models reflect everything recorded so far."""
        params = dict(kwargs.pop("params", {}) or {})
        params["min_position"] = self.system.ledger.head_position()
        return self.get(path, token, params=params, **kwargs)

    # -- a small organisation ------------------------------------------------------------

    def org(self) -> dict[str, Any]:
        """A cycle, a company with one team under it, an objective with a KR, and a KPI."""
        cycle = self.created("/v1/cycles", CYCLE)
        company = self.created("/v1/teams", {"name": "Acme"})
        team = self.created("/v1/teams", {"name": "Platform", "parent_id": company["id"]})
        objective = self.created(
            "/v1/objectives",
            {"title": "Reliable platform", "cycle_id": cycle["id"], "team_id": team["id"],
             "owner": "bob", "kind": "committed"},
        )  # fmt: skip
        kr = self.created(
            f"/v1/objectives/{objective['id']}/key-results",
            {"title": "Adoption", "kind": "increase_to", "start": 0, "target": "100"},
        )
        kpi = self.created(
            "/v1/kpis",
            {"name": "Uptime", "unit": "%", "direction": "higher_is_better",
             "thresholds": {"green": 99.9, "amber": "99"}, "frequency": "daily",
             "team_id": team["id"]},
        )  # fmt: skip
        return {
            "cycle": cycle, "company": company, "team": team, "objective": objective,
            "kr": kr, "kpi": kpi,
        }  # fmt: skip


def _api(settings: Settings) -> Iterator[Api]:
    system = bootstrap(settings)
    system.projector.start(poll_interval=0.01)
    try:
        with TestClient(create_app(system)) as client:
            yield Api(system, client)
    finally:
        system.close()


@pytest.fixture(name="api")
def api_fixture(settings: Settings) -> Iterator[Api]:
    """The API over a whole system, on each store."""
    yield from _api(settings)


@pytest.fixture(name="store_api")
def store_api_fixture(settings: Settings) -> Iterator[Api]:
    """Like `api` (each store), for modules whose `api` is the SQLite-only one."""
    yield from _api(settings)


@pytest.fixture(name="api")
def sqlite_api_fixture(sqlite_url: str) -> Iterator[Api]:
    """The API over a whole system on SQLite only (for tests that do not touch storage
    differences, such as the role matrix)."""
    yield from _api(Settings(database_url=sqlite_url, secret_key=TEST_SECRET_KEY))
