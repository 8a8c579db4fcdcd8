"""Objectives: define, read (scored), list, change; alignment lives in the PATCH."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import msgspec
from litestar import Controller, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody

from goalledger.api.auth import Principal, TeamScope, requires
from goalledger.api.bootstrap import System
from goalledger.api.http_conventions import (
    AsOf,
    AwareDatetime,
    IfMatch,
    KnownAt,
    aggregate_response,
    preconditions,
)
from goalledger.api.http_json import Body, JsonResponse
from goalledger.api.pagination import Cursor, Limit, Page, decode_cursor, page
from goalledger.api.problems import problem_responses
from goalledger.api.routes_key_results import KeyResultIn, KeyResultOut, key_result_out
from goalledger.core.errors import NotFound
from goalledger.core.objectives import KeyResult, Objective
from goalledger.projections.shapes import Provenance, ScoreboardKeyResult, ScoreboardObjective

UNSET = msgspec.UNSET
Unset = msgspec.UnsetType


class ObjectiveIn(Body):
    """An objective to define in a cycle, owned by a team."""

    title: str
    cycle_id: UUID
    team_id: UUID
    owner: str
    kind: str
    description: str = ""
    status: str = "active"
    parent_objective_id: UUID | None = None
    parent_key_result_id: UUID | None = None
    effective_at: AwareDatetime | None = None


class ObjectivePatch(Body):
    """Changes to an objective; fields left out keep their value. A parent field given
    (even null) re-aligns the objective; `reason` is kept in the audit trail."""

    title: str | Unset = UNSET
    description: str | Unset = UNSET
    owner: str | Unset = UNSET
    status: str | Unset = UNSET
    parent_objective_id: UUID | Unset | None = UNSET
    parent_key_result_id: UUID | Unset | None = UNSET
    effective_at: AwareDatetime | None = None
    reason: str | None = None


class ObjectiveOut(msgspec.Struct, frozen=True):
    """An objective with its score, grade and key results (once projected)."""

    id: UUID
    title: str
    description: str
    cycle_id: UUID
    team_id: UUID
    owner: str
    kind: str
    status: str
    parent_objective_id: UUID | None
    parent_key_result_id: UUID | None
    version: int
    score: Decimal | None
    grade: str | None
    key_results: list[ScoreboardKeyResult]
    provenance: Provenance | None


def objective_out(system: System, objective: Objective) -> ObjectiveOut:
    """An objective as the ledger holds it, scored from the read models when projected."""
    scored: ScoreboardObjective | None = None
    try:
        board = system.queries.scoreboard(cycle_id=objective.cycle_id)
        scored = next((o for o in board.objectives if o.id == objective.id), None)
    except NotFound:  # not projected yet
        pass
    return ObjectiveOut(
        id=objective.id, title=objective.title, description=objective.description,
        cycle_id=objective.cycle_id, team_id=objective.team_id, owner=objective.owner,
        kind=objective.kind, status=objective.status,
        parent_objective_id=objective.parent_objective_id,
        parent_key_result_id=objective.parent_key_result_id, version=objective.version,
        score=scored.score if scored else None, grade=scored.grade if scored else None,
        key_results=scored.key_results if scored else [],
        provenance=scored.provenance if scored else None,
    )  # fmt: skip


def _edits(data: ObjectivePatch) -> dict[str, str]:
    fields = {"title": data.title, "description": data.description, "owner": data.owner}
    return {name: value for name, value in fields.items() if value is not UNSET}  # type: ignore[misc]


class ObjectiveController(Controller):
    """Objectives."""

    path = "/v1/objectives"
    tags = ("objectives",)

    @post(
        operation_id="defineObjective", guards=[requires("manage")], sync_to_thread=True,
        responses=problem_responses(404, 422),
    )  # fmt: skip
    def define_objective(
        self,
        system: NamedDependency[System],
        principal: NamedDependency[Principal],
        access: NamedDependency[TeamScope],
        data: JSONBody[ObjectiveIn],
    ) -> JsonResponse[ObjectiveOut]:
        """Define an objective in an open cycle (a team-scoped token: for its teams)."""
        access.check_write(data.team_id, "the objective's team")
        written = system.ledger.define_objective(
            **msgspec.structs.asdict(data), actor=principal.actor
        )
        objective = system.ledger.load(written.id, Objective)
        return aggregate_response(
            objective_out(system, objective), objective.version, status_code=201,
            position=written.position, location=f"/v1/objectives/{objective.id}",
        )  # fmt: skip

    @get(
        operation_id="listObjectives",
        guards=[requires("read")],
        sync_to_thread=True,
        responses=problem_responses(404, 422, 503),
    )
    def list_objectives(
        self,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        consistency: NamedDependency[int | None],
        cycle_id: FromQuery[UUID | None] = None,
        team_id: FromQuery[UUID | None] = None,
        as_of: AsOf = None,
        known_at: KnownAt = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[ScoreboardObjective]:
        """A cycle's objectives (default: the current cycle), scored, key results inline."""
        if team_id is not None:
            access.check_read(team_id, "that team")
        board = system.queries.scoreboard(
            cycle_id=cycle_id, team_id=team_id or access.team_id, as_of=as_of, known_at=known_at
        )
        after = decode_cursor(cursor, int) or 0
        items = board.objectives[after : after + limit + 1]
        indexes = {o.id: after + i + 1 for i, o in enumerate(items)}
        return page(items, limit, lambda o: indexes[o.id])

    @get(
        "/{objective_id:uuid}", operation_id="getObjective", guards=[requires("read")],
        sync_to_thread=True, responses=problem_responses(404, 503),
    )  # fmt: skip
    def get_objective(
        self,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        consistency: NamedDependency[int | None],
        objective_id: FromPath[UUID],
    ) -> JsonResponse[ObjectiveOut]:
        """One objective, with its score, grade and key results."""
        objective = system.ledger.load(objective_id, Objective, "objective_id")
        access.check_read(objective.team_id, "this objective")
        return aggregate_response(objective_out(system, objective), objective.version)

    @patch(
        "/{objective_id:uuid}", operation_id="changeObjective", guards=[requires("manage")],
        sync_to_thread=True, responses=problem_responses(404, 409, 412, 422),
    )  # fmt: skip
    def change_objective(
        self,
        system: NamedDependency[System],
        principal: NamedDependency[Principal],
        access: NamedDependency[TeamScope],
        objective_id: FromPath[UUID],
        data: JSONBody[ObjectivePatch],
        if_match: IfMatch = None,
    ) -> JsonResponse[ObjectiveOut]:
        """Change wording, owner, status or alignment, with a reason for the audit trail."""
        ledger, actor, reason = system.ledger, principal.actor, data.reason
        objective = ledger.load(objective_id, Objective, "objective_id")
        access.check_write(objective.team_id, "this objective")
        edits = _edits(data)
        realign = data.parent_objective_id is not UNSET or data.parent_key_result_id is not UNSET
        parent_objective = data.parent_objective_id or None
        parent_kr = data.parent_key_result_id or None
        with preconditions(if_match) as expected:
            written = ledger.revise_objective(
                objective_id, actor=actor, reason=reason,
                expected_version=objective.version if expected is None else expected,
                edits=edits, status=None if data.status is UNSET else data.status,
                parents=(parent_objective, parent_kr) if realign else None,  # type: ignore[arg-type]
                effective_at=data.effective_at,
            )  # fmt: skip
        position = written.position
        current = ledger.load(objective_id, Objective)
        return aggregate_response(
            objective_out(system, current), current.version, position=position
        )

    @post(
        "/{objective_id:uuid}/key-results", operation_id="defineKeyResult",
        guards=[requires("manage")], sync_to_thread=True,
        responses=problem_responses(404, 422),
    )  # fmt: skip
    def define_key_result(
        self,
        system: NamedDependency[System],
        principal: NamedDependency[Principal],
        access: NamedDependency[TeamScope],
        objective_id: FromPath[UUID],
        data: JSONBody[KeyResultIn],
    ) -> JsonResponse[KeyResultOut]:
        """Define a key result under an objective."""
        objective = system.ledger.load(objective_id, Objective, "objective_id")
        access.check_write(objective.team_id, "this objective")
        fields = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not None}
        written = system.ledger.define_key_result(objective_id, actor=principal.actor, **fields)
        kr = system.ledger.load(written.id, KeyResult)
        return aggregate_response(
            key_result_out(kr), kr.version, status_code=201, position=written.position,
            location=f"/v1/key-results/{kr.id}",
        )  # fmt: skip
