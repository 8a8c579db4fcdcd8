"""Projected reads: KPI history and chart, scoreboard, alignment tree (time travel on all)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from goalledger.api.auth import TeamScope, requires
from goalledger.api.bootstrap import System
from goalledger.api.http_chart import render_chart
from goalledger.api.http_conventions import AsOf, AwareDatetime, KnownAt
from goalledger.api.http_json import JsonResponse
from goalledger.api.http_reads import subtree, teams
from goalledger.api.pagination import Cursor, Limit, decode_cursor, encode_cursor
from goalledger.api.problems import problem_responses
from goalledger.api.read_cache import answer, cached_read
from goalledger.core.kpis import Kpi
from goalledger.projections.history import Bucket, HistoryItem, kpi_history
from goalledger.projections.queries import AlignmentNode, AlignmentTree
from goalledger.projections.shapes import Scoreboard

From = Annotated[
    AwareDatetime | None, QueryParameter(name="from", description="Observed at or after.")
]
To = Annotated[AwareDatetime | None, QueryParameter(name="to", description="Observed by.")]
BucketSize = Annotated[
    str | None, QueryParameter(description="Summarise by `day`, `week` or `month`.")
]


class ThresholdsPeriodOut(msgspec.Struct, frozen=True):
    """Thresholds in force from `effective_from` on, in the contract's green/amber shape."""

    effective_from: datetime
    green: Any
    amber: Any


class HistoryOut(msgspec.Struct, frozen=True):
    """A KPI's readings (a page of them) or buckets, with health, at a moment."""

    kpi_id: UUID
    name: str
    unit: str
    direction: str
    position: int
    at: datetime
    known_at: datetime | None
    thresholds: list[ThresholdsPeriodOut]
    items: list[HistoryItem]
    buckets: list[Bucket] | None
    next_cursor: str | None


def _check_kpi_scope(system: System, access: TeamScope, kpi_id: UUID) -> None:
    if access.team_id is not None:
        access.check_read(system.ledger.load(kpi_id, Kpi, "kpi_id").team_id, "this KPI")


def _history_out(
    system: System,
    kpi_id: UUID,
    start: datetime | None,
    end: datetime | None,
    bucket: str | None,
    as_of: datetime | None,
    known_at: datetime | None,
    limit: int,
    after: tuple[datetime, int] | None,
) -> HistoryOut:
    found = kpi_history(
        system.queries, kpi_id, start=start, end=end, bucket=bucket, as_of=as_of,
        known_at=known_at, limit=None if bucket else limit + 1, after=after,
    )  # fmt: skip
    items, next_cursor = found.items, None
    if bucket is None and len(items) > limit:
        items = items[:limit]
        next_cursor = encode_cursor([items[-1].observed_at, items[-1].position])
    periods = [
        ThresholdsPeriodOut(p.effective_from, **p.thresholds.as_contract(found.direction))
        for p in found.thresholds
    ]
    return HistoryOut(
        kpi_id=found.kpi_id, name=found.name, unit=found.unit, direction=found.direction,
        position=found.position, at=found.at, known_at=found.known_at, thresholds=periods,
        items=items, buckets=found.buckets, next_cursor=next_cursor,
    )  # fmt: skip


def _prune(nodes: list[AlignmentNode], keep: set[str]) -> list[AlignmentNode]:
    """Only objectives of `keep` teams; children of a dropped objective move up."""
    kept: list[AlignmentNode] = []
    for node in nodes:
        children = _prune(node.children, keep)
        if str(node.team_id) in keep:
            node.children = children
            kept.append(node)
        else:
            kept += children
    return kept


class ReadController(Controller):
    """Projected state."""

    tags = ("reads",)

    @get(
        "/v1/kpis/{kpi_id:uuid}/history", operation_id="kpiHistory", guards=[requires("read")],
        opt=cached_read(),
        responses=problem_responses(404, 422, 503),
    )  # fmt: skip
    async def history(
        self,
        request: Request,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        consistency: NamedDependency[int | None],
        kpi_id: FromPath[UUID],
        start: From = None,
        end: To = None,
        bucket: BucketSize = None,
        as_of: AsOf = None,
        known_at: KnownAt = None,
        limit: Limit = 1000,
        cursor: Cursor = None,
    ) -> JsonResponse[HistoryOut]:
        """Readings (paged) or day/week/month buckets, each with its health."""
        after = decode_cursor(cursor, tuple[AwareDatetime, int])

        def compute() -> HistoryOut:
            _check_kpi_scope(system, access, kpi_id)
            return _history_out(system, kpi_id, start, end, bucket, as_of, known_at, limit, after)

        return await answer(request, compute)

    @get(
        "/v1/kpis/{kpi_id:uuid}/chart.svg", operation_id="kpiChart", guards=[requires("read")],
        sync_to_thread=True, media_type="image/svg+xml", responses=problem_responses(404, 422, 503),
    )  # fmt: skip
    def chart(
        self,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        consistency: NamedDependency[int | None],
        kpi_id: FromPath[UUID],
        start: From = None,
        end: To = None,
        as_of: AsOf = None,
        known_at: KnownAt = None,
    ) -> Response[str]:
        """The KPI's history as an SVG line chart over its threshold bands."""
        _check_kpi_scope(system, access, kpi_id)
        found = kpi_history(
            system.queries, kpi_id, start=start, end=end, as_of=as_of, known_at=known_at
        )
        return Response(render_chart(found, start, end), media_type="image/svg+xml")

    @get(
        "/v1/scoreboard", operation_id="scoreboard", guards=[requires("read")],
        responses=problem_responses(404, 422, 503),
        # A scoped caller's own scope comes from the read models; `team_id` asks the ledger.
        opt=cached_read(scoped=True, unless=("team_id",)),
    )  # fmt: skip
    async def scoreboard(
        self,
        request: Request,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        consistency: NamedDependency[int | None],
        cycle_id: FromQuery[UUID | None] = None,
        team_id: FromQuery[UUID | None] = None,
        as_of: AsOf = None,
        known_at: KnownAt = None,
        rule: FromQuery[str | None] = None,
    ) -> JsonResponse[Scoreboard]:
        """Objectives and key results with progress, pace, status, grade and provenance."""

        def compute() -> Scoreboard:
            if team_id is not None:
                access.check_read(team_id, "that team")
            return system.queries.scoreboard(
                cycle_id=cycle_id, team_id=team_id or access.team_id, as_of=as_of,
                known_at=known_at, rule=rule,
            )  # fmt: skip

        return await answer(request, compute)

    @get(
        "/v1/alignment", operation_id="alignment", guards=[requires("read")],
        opt=cached_read(scoped=True),
        responses=problem_responses(404, 422, 503),
    )  # fmt: skip
    async def alignment(
        self,
        request: Request,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        consistency: NamedDependency[int | None],
        cycle_id: FromQuery[UUID | None] = None,
        as_of: AsOf = None,
        known_at: KnownAt = None,
    ) -> JsonResponse[AlignmentTree]:
        """The cycle's objective tree as it stood at a moment."""

        def compute() -> AlignmentTree:
            tree = system.queries.alignment(cycle_id=cycle_id, as_of=as_of, known_at=known_at)
            if access.team_id is None:
                return tree
            with system.store.read() as tx:
                keep = subtree(teams(tx, system.queries.tables(tx)), access.team_id)
            return msgspec.structs.replace(tree, roots=_prune(tree.roots, keep))

        return await answer(request, compute)
