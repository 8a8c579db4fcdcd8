"""Cycles and teams: the periods objectives live in and the org units that own them."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from goalledger.api.auth import Principal, TeamScope, requires
from goalledger.api.bootstrap import System
from goalledger.api.http_conventions import IfMatch, aggregate_response, preconditions
from goalledger.api.http_json import Body, JsonResponse
from goalledger.api.http_reads import cycle_ids, team_ids
from goalledger.api.pagination import Cursor, Limit, Page, decode_cursor, page
from goalledger.api.problems import problem_responses
from goalledger.core.cycles import Cycle
from goalledger.core.teams import DEFAULT_CHECK_IN_INTERVAL_DAYS, Team


class CycleIn(Body):
    """A cycle to define."""

    name: str
    starts_on: date
    ends_on: date


class CycleClose(Body):
    """How to close a cycle: the scoring rule its grades freeze under (default: the
    system's default rule) and why."""

    rule: str | None = None
    reason: str | None = None


class CycleOut(msgspec.Struct, frozen=True):
    """A cycle."""

    id: UUID
    name: str
    starts_on: date
    ends_on: date
    status: str
    rule: str | None
    version: int


class TeamIn(Body):
    """A team to form, under an optional parent."""

    name: str
    parent_id: UUID | None = None
    check_in_interval_days: int = DEFAULT_CHECK_IN_INTERVAL_DAYS


class TeamOut(msgspec.Struct, frozen=True):
    """A team."""

    id: UUID
    name: str
    parent_id: UUID | None
    check_in_interval_days: int
    version: int


def cycle_out(cycle: Cycle) -> CycleOut:
    """A cycle aggregate as the API shows it."""
    return CycleOut(
        id=cycle.id, name=cycle.name, starts_on=cycle.starts_on, ends_on=cycle.ends_on,
        status=cycle.status, rule=cycle.rule, version=cycle.version,
    )  # fmt: skip


def team_out(team: Team) -> TeamOut:
    """A team aggregate as the API shows it."""
    return TeamOut(
        id=team.id, name=team.name, parent_id=team.parent_id,
        check_in_interval_days=team.check_in_interval_days, version=team.version,
    )  # fmt: skip


class CycleController(Controller):
    """Cycles."""

    path = "/v1/cycles"
    tags = ("cycles",)

    @post(
        operation_id="createCycle", guards=[requires("administer")], sync_to_thread=True,
        responses=problem_responses(422),
    )  # fmt: skip
    def create_cycle(
        self,
        system: NamedDependency[System],
        principal: NamedDependency[Principal],
        access: NamedDependency[TeamScope],
        data: JSONBody[CycleIn],
    ) -> JsonResponse[CycleOut]:
        """Define a cycle (admin, not team-scoped)."""
        access.check_unscoped("defining a cycle")
        written = system.ledger.define_cycle(
            name=data.name, starts_on=data.starts_on, ends_on=data.ends_on, actor=principal.actor
        )
        cycle = system.ledger.load(written.id, Cycle)
        return aggregate_response(
            cycle_out(cycle), cycle.version, status_code=201, position=written.position,
            location=f"/v1/cycles/{cycle.id}",
        )  # fmt: skip

    @get(
        operation_id="listCycles",
        guards=[requires("read")],
        sync_to_thread=True,
        responses=problem_responses(503),
    )
    def list_cycles(
        self,
        system: NamedDependency[System],
        consistency: NamedDependency[int | None],
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[CycleOut]:
        """List cycles, oldest first."""
        after = decode_cursor(cursor, int) or 0
        rows = cycle_ids(system, after, limit + 1)
        by_id = {row[0]: row[1] for row in rows}
        items = [cycle_out(system.ledger.load(UUID(i), Cycle)) for i, _ in rows]
        return page(items, limit, lambda c: by_id[str(c.id)])

    @get(
        "/{cycle_id:uuid}", operation_id="getCycle", guards=[requires("read")],
        sync_to_thread=True, responses=problem_responses(404, 503),
    )  # fmt: skip
    def get_cycle(
        self,
        system: NamedDependency[System],
        consistency: NamedDependency[int | None],
        cycle_id: FromPath[UUID],
    ) -> JsonResponse[CycleOut]:
        """One cycle, with its status and (once closed) the rule its grades froze under."""
        cycle = system.ledger.load(cycle_id, Cycle, "cycle_id")
        return aggregate_response(cycle_out(cycle), cycle.version)

    @post(
        "/{cycle_id:uuid}/close", operation_id="closeCycle", guards=[requires("administer")],
        sync_to_thread=True, status_code=200, responses=problem_responses(404, 409, 412, 422),
    )  # fmt: skip
    def close_cycle(
        self,
        system: NamedDependency[System],
        principal: NamedDependency[Principal],
        access: NamedDependency[TeamScope],
        cycle_id: FromPath[UUID],
        data: JSONBody[CycleClose],
        if_match: IfMatch = None,
    ) -> JsonResponse[CycleOut]:
        """Close a cycle: its grades and scoring rule freeze from this position on."""
        access.check_unscoped("closing a cycle")
        rule = system.queries.rule(data.rule or system.queries.default_rule).id
        system.ledger.load(cycle_id, Cycle, "cycle_id")
        with preconditions(if_match) as version:
            written = system.ledger.close_cycle(
                cycle_id, rule=rule, actor=principal.actor, reason=data.reason,
                expected_version=version,
            )  # fmt: skip
        cycle = system.ledger.load(cycle_id, Cycle)
        return aggregate_response(cycle_out(cycle), cycle.version, position=written.position)


class TeamController(Controller):
    """Teams."""

    path = "/v1/teams"
    tags = ("teams",)

    @post(
        operation_id="formTeam", guards=[requires("administer")], sync_to_thread=True,
        responses=problem_responses(404, 422),
    )  # fmt: skip
    def form_team(
        self,
        system: NamedDependency[System],
        principal: NamedDependency[Principal],
        access: NamedDependency[TeamScope],
        data: JSONBody[TeamIn],
    ) -> JsonResponse[TeamOut]:
        """Form a team; a team-scoped admin forms teams only under its own."""
        access.check_write(data.parent_id, "the parent team")
        written = system.ledger.form_team(
            name=data.name, parent_id=data.parent_id,
            check_in_interval_days=data.check_in_interval_days, actor=principal.actor,
        )  # fmt: skip
        team = system.ledger.load(written.id, Team)
        return aggregate_response(
            team_out(team), team.version, status_code=201, position=written.position,
            location=f"/v1/teams/{team.id}",
        )  # fmt: skip

    @get(
        operation_id="listTeams",
        guards=[requires("read")],
        sync_to_thread=True,
        responses=problem_responses(503),
    )
    def list_teams(
        self,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        consistency: NamedDependency[int | None],
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[TeamOut]:
        """List teams in id order (a team-scoped token sees its subtree)."""
        after = decode_cursor(cursor, str) or ""
        ids = team_ids(system, after, limit + 1, access.team_id)
        items = [team_out(system.ledger.load(UUID(i), Team)) for i in ids]
        return page(items, limit, lambda t: str(t.id))

    @get(
        "/{team_id:uuid}", operation_id="getTeam", guards=[requires("read")],
        sync_to_thread=True, responses=problem_responses(404, 503),
    )  # fmt: skip
    def get_team(
        self,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        consistency: NamedDependency[int | None],
        team_id: FromPath[UUID],
    ) -> JsonResponse[TeamOut]:
        """One team."""
        team = system.ledger.load(team_id, Team, "team_id")
        access.check_read(team.id, "this team")
        return aggregate_response(team_out(team), team.version)
