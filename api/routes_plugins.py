"""Plugins over HTTP: what is installed, and fetching a KPI's bound source now."""

from __future__ import annotations

from uuid import UUID

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from goalledger.api.auth import Principal, TeamScope, requires
from goalledger.api.bootstrap import System
from goalledger.api.problems import ApiError, FieldError, problem_responses
from goalledger.core.kpis import Kpi
from goalledger.plugins.fetch import FetchFailed, FetchResult, fetch_now
from goalledger.plugins.manager import PluginInfo


class SourceFailed(ApiError):
    """The metric source failed (or timed out); its health says when it is retried."""

    status = 502
    kind = "source-failed"


class PluginList(msgspec.Struct, frozen=True):
    """Every plugin the server tried to load, loaded or failed."""

    items: list[PluginInfo]


class PluginController(Controller):
    """Installed plugins."""

    path = "/v1/plugins"
    tags = ("plugins",)

    @get(operation_id="listPlugins", guards=[requires("read")], sync_to_thread=False)
    def list_plugins(self, system: NamedDependency[System]) -> PluginList:
        """Name, version, hooks and status (`loaded` or `failed` with its reason) of each."""
        return PluginList(items=list(system.plugins.plugins))


class SourceFetchController(Controller):
    """Fetching a KPI's bound metric source on demand."""

    path = "/v1/kpis"
    tags = ("kpis",)

    @post(
        "/{kpi_id:uuid}/source/fetch", operation_id="fetchKpiSource", status_code=200,
        guards=[requires("manage")], sync_to_thread=True,
        responses=problem_responses(404, 422, 502),
    )  # fmt: skip
    def fetch(
        self,
        system: NamedDependency[System],
        principal: NamedDependency[Principal],
        access: NamedDependency[TeamScope],
        kpi_id: FromPath[UUID],
    ) -> FetchResult:
        """Fetch from the KPI's bound source now; answers with what was recorded."""
        kpi = system.ledger.load(kpi_id, Kpi, "kpi_id")
        access.check_write(kpi.team_id, "this KPI")
        try:
            return fetch_now(system, kpi_id, actor=principal.actor)
        except FetchFailed as failed:
            health = failed.health
            retry = health.next_retry_at.isoformat() if health.next_retry_at else "unknown"
            raise SourceFailed(
                f"{health.plugin}: {health.last_error} (attempt {health.attempts}; "
                f"next retry {retry})",
                [FieldError("source", health.last_error or "failed")],
            ) from None
