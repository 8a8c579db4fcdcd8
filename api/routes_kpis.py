"""KPIs, their readings (one, many, or a batch across KPIs) and corrections."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody

from goalledger.api.auth import Principal, TeamScope, requires
from goalledger.api.bootstrap import System
from goalledger.api.http_conventions import (
    AwareDatetime,
    IfMatch,
    aggregate_response,
    preconditions,
    written_out,
    written_response,
)
from goalledger.api.http_json import Body, JsonResponse
from goalledger.api.http_reads import kpi_ids
from goalledger.api.pagination import Cursor, Limit, Page, decode_cursor, page
from goalledger.api.problems import problem_responses
from goalledger.api.reading_bodies import (
    BatchReadingIn,
    KpiReadingBodies,
    ReadingBodies,
    ReadingIn,
)
from goalledger.api.routes_ops import LedgerMetrics
from goalledger.core.errors import DomainError, require
from goalledger.core.kpis import FREQUENCIES, Kpi, SourceBinding, thresholds_for
from goalledger.core.ledger import UNCHANGED, ReadingInput, Unchanged

READING_SOURCE = "api"
Bound = Decimal | list[Decimal]


class ThresholdsIn(Body):
    """`{"green": G, "amber": A}`; for `target_band` each is a `[low, high]` pair."""

    green: Bound
    amber: Bound


class SourceIn(Body):
    """A metric-source plugin and its config, which the plugin validates."""

    plugin: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)


class KpiIn(Body):
    """A KPI to define."""

    name: str
    direction: str
    thresholds: ThresholdsIn
    frequency: str
    unit: str = ""
    target: Decimal | None = None
    team_id: UUID | None = None
    effective_at: AwareDatetime | None = None
    source: SourceIn | None = None


class KpiPatch(Body):
    """Changes to a KPI. New `thresholds` need `effective_from`; `reason` is kept."""

    name: str | None = None
    unit: str | None = None
    target: Decimal | None = None
    frequency: str | None = None
    thresholds: ThresholdsIn | None = None
    effective_from: AwareDatetime | None = None
    source: SourceIn | msgspec.UnsetType | None = msgspec.UNSET  # null unbinds
    reason: str | None = None


class KpiOut(msgspec.Struct, frozen=True):
    """A KPI; `source` is its bound metric source, with secret config values masked."""

    id: UUID
    name: str
    unit: str
    direction: str
    target: Decimal | None
    thresholds: dict[str, Any]
    frequency: str
    team_id: UUID | None
    source: dict[str, Any] | None
    version: int


class CorrectionIn(Body):
    """A corrected value for a reading, and why."""

    value: Decimal
    reason: str


class ReadingsOut(msgspec.Struct, frozen=True):
    """Which readings were recorded and which were already held (recorded nothing)."""

    recorded: list[str]
    duplicates: list[str]
    position: int | None


# 201 when something was recorded; 200 when every reading was already held.
READINGS_RESPONSES = {
    **problem_responses(404, 422),
    200: ResponseSpec(ReadingsOut, description="Every reading was already held: nothing new"),
}


def kpi_out(system: System, kpi: Kpi) -> KpiOut:
    """A KPI aggregate as the API shows it (secrets of its source's config masked)."""
    source = None
    if kpi.source is not None:
        shown = system.plugins.redact(kpi.source)
        source = {"plugin": shown.plugin, "config": shown.config}
    return KpiOut(
        id=kpi.id, name=kpi.name, unit=kpi.unit, direction=kpi.direction, target=kpi.target,
        thresholds=kpi.thresholds.as_contract(kpi.direction), frequency=kpi.frequency,
        team_id=kpi.team_id, source=source, version=kpi.version,
    )  # fmt: skip


def record(
    system: System,
    metrics: LedgerMetrics,
    access: TeamScope,
    actor: str,
    readings: Sequence[ReadingInput],
) -> JsonResponse[ReadingsOut]:
    """Record readings after checking the caller may write to each KPI."""
    if access.team_id is not None:
        for kpi_id, index in {r.kpi_id: i for i, r in enumerate(readings)}.items():
            kpi = system.ledger.load(kpi_id, Kpi, f"readings[{index}].kpi_id")
            access.check_write(kpi.team_id, f"KPI {kpi_id}")
    result = system.ledger.record_readings(readings, source=READING_SOURCE, actor=actor)
    metrics.readings_recorded(len(result.recorded), len(result.duplicates))
    body = ReadingsOut(result.recorded, result.duplicates, result.position)
    return written_response(body, result.position, status_code=201 if result.recorded else 200)


class KpiController(Controller):
    """KPIs and their readings."""

    path = "/v1/kpis"
    tags = ("kpis",)

    @post(
        operation_id="defineKpi", guards=[requires("manage")], sync_to_thread=True,
        responses=problem_responses(404, 422),
    )  # fmt: skip
    def define_kpi(
        self,
        system: NamedDependency[System],
        principal: NamedDependency[Principal],
        access: NamedDependency[TeamScope],
        data: JSONBody[KpiIn],
    ) -> JsonResponse[KpiOut]:
        """Define a KPI (a team-scoped token: for one of its teams)."""
        access.check_write(data.team_id, "the KPI's team")
        thresholds = thresholds_for(data.direction, data.thresholds.green, data.thresholds.amber)
        source = None
        if data.source is not None:
            source = system.plugins.validate_source(data.source.plugin, data.source.config)
        written = system.ledger.define_kpi(
            name=data.name, direction=data.direction, thresholds=thresholds,
            frequency=data.frequency, unit=data.unit, target=data.target, team_id=data.team_id,
            effective_at=data.effective_at, source=source, actor=principal.actor,
        )  # fmt: skip
        kpi = system.ledger.load(written.id, Kpi)
        return aggregate_response(
            kpi_out(system, kpi), kpi.version, status_code=201, position=written.position,
            location=f"/v1/kpis/{kpi.id}",
        )  # fmt: skip

    @get(
        operation_id="listKpis",
        guards=[requires("read")],
        sync_to_thread=True,
        responses=problem_responses(503),
    )
    def list_kpis(
        self,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        consistency: NamedDependency[int | None],
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[KpiOut]:
        """List KPIs, oldest first (a team-scoped token: its teams' and org-wide ones)."""
        after = decode_cursor(cursor, int) or 0
        rows = kpi_ids(system, after, limit + 1, access.team_id)
        positions = {row[0]: row[1] for row in rows}
        items = [kpi_out(system, system.ledger.load(UUID(i), Kpi)) for i, _ in rows]
        return page(items, limit, lambda k: positions[str(k.id)])

    @get(
        "/{kpi_id:uuid}", operation_id="getKpi", guards=[requires("read")],
        sync_to_thread=True, responses=problem_responses(404, 503),
    )  # fmt: skip
    def get_kpi(
        self,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        consistency: NamedDependency[int | None],
        kpi_id: FromPath[UUID],
    ) -> JsonResponse[KpiOut]:
        """One KPI."""
        kpi = system.ledger.load(kpi_id, Kpi, "kpi_id")
        access.check_read(kpi.team_id, "this KPI")
        return aggregate_response(kpi_out(system, kpi), kpi.version)

    @patch(
        "/{kpi_id:uuid}", operation_id="changeKpi", guards=[requires("manage")],
        sync_to_thread=True, responses=problem_responses(404, 409, 412, 422),
    )  # fmt: skip
    def change_kpi(
        self,
        system: NamedDependency[System],
        principal: NamedDependency[Principal],
        access: NamedDependency[TeamScope],
        kpi_id: FromPath[UUID],
        data: JSONBody[KpiPatch],
        if_match: IfMatch = None,
    ) -> JsonResponse[KpiOut]:
        """Change a KPI's description or target, or its thresholds from `effective_from` on."""
        ledger, actor = system.ledger, principal.actor
        kpi = ledger.load(kpi_id, Kpi, "kpi_id")
        access.check_write(kpi.team_id, "this KPI")
        # Validate everything before the first write, so a refusal records nothing.
        thresholds = None
        if data.thresholds is not None:
            require(data.effective_from is not None, "effective_from", "comes with thresholds")
            thresholds = thresholds_for(kpi.direction, data.thresholds.green, data.thresholds.amber)
            thresholds.check(kpi.direction)
        elif data.effective_from is not None:
            raise DomainError("effective_from", "applies only to a change of thresholds")
        if data.frequency is not None:
            require(data.frequency in FREQUENCIES, "frequency", f"must be one of {FREQUENCIES}")
        describe = {
            k: v
            for k, v in (("name", data.name), ("unit", data.unit), ("target", data.target),
                         ("frequency", data.frequency))
            if v is not None
        }  # fmt: skip
        source: SourceBinding | Unchanged | None = UNCHANGED
        if data.source is None:
            source = None
        elif not isinstance(data.source, msgspec.UnsetType):
            source = system.plugins.validate_source(
                data.source.plugin, data.source.config, previous=kpi.source
            )
        with preconditions(if_match) as expected:
            written = ledger.revise_kpi(
                kpi_id, actor=actor, reason=data.reason,
                expected_version=kpi.version if expected is None else expected,
                changes=describe, thresholds=thresholds, effective_from=data.effective_from,
                source=source,
            )  # fmt: skip
        position = written.position
        kpi = ledger.load(kpi_id, Kpi)
        return aggregate_response(kpi_out(system, kpi), kpi.version, position=position)

    @post(
        "/{kpi_id:uuid}/readings", operation_id="recordReadings",
        guards=[requires("contribute")], sync_to_thread=True, responses=READINGS_RESPONSES,
        dto=KpiReadingBodies, return_dto=None,  # one typed decode of the body: reading_bodies.py
    )  # fmt: skip
    def record_readings(
        self,
        system: NamedDependency[System],
        metrics: NamedDependency[LedgerMetrics],
        principal: NamedDependency[Principal],
        access: NamedDependency[TeamScope],
        kpi_id: FromPath[UUID],
        data: JSONBody[ReadingIn | list[ReadingIn]],
    ) -> JsonResponse[ReadingsOut]:
        """Record one reading or many; a `reading_id` already held records nothing."""
        system.ledger.load(kpi_id, Kpi, "kpi_id")
        items = data if isinstance(data, list) else [data]
        readings = [ReadingInput(kpi_id, r.reading_id, r.value, r.observed_at) for r in items]
        return record(system, metrics, access, principal.actor, readings)

    @post(
        "/{kpi_id:uuid}/readings/{reading_id:str}/corrections", operation_id="correctReading",
        guards=[requires("contribute")], sync_to_thread=True,
        responses=problem_responses(404, 422),
    )  # fmt: skip
    def correct_reading(
        self,
        system: NamedDependency[System],
        principal: NamedDependency[Principal],
        access: NamedDependency[TeamScope],
        kpi_id: FromPath[UUID],
        reading_id: FromPath[str],
        data: JSONBody[CorrectionIn],
    ) -> JsonResponse[dict[str, Any]]:
        """Correct a reading: the new value supersedes it; the old one stays in the ledger."""
        kpi = system.ledger.load(kpi_id, Kpi, "kpi_id")
        access.check_write(kpi.team_id, "this KPI")
        written = system.ledger.correct_reading(
            kpi_id, reading_id, value=data.value, reason=data.reason, actor=principal.actor
        )
        return aggregate_response(
            written_out(written), written.version, status_code=201, position=written.position
        )


class ReadingBatchController(Controller):
    """Batch ingestion of readings across KPIs."""

    path = "/v1/readings"
    tags = ("kpis",)

    @post(
        operation_id="recordReadingBatch", guards=[requires("contribute")],
        sync_to_thread=True, responses=READINGS_RESPONSES,
        dto=ReadingBodies, return_dto=None,  # one typed decode of the body: reading_bodies.py
    )  # fmt: skip
    def record_batch(
        self,
        system: NamedDependency[System],
        metrics: NamedDependency[LedgerMetrics],
        principal: NamedDependency[Principal],
        access: NamedDependency[TeamScope],
        data: JSONBody[list[BatchReadingIn]],
    ) -> JsonResponse[ReadingsOut]:
        """Record readings of many KPIs in one request (thousands at a time)."""
        return record(system, metrics, access, principal.actor, data)
