"""The audit trail for auditors: the ledger's events, and one aggregate's field changes.

Audit reads span every team, so they need a token that is not scoped to one.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from goalledger.api.auth import TeamScope, requires
from goalledger.api.bootstrap import System
from goalledger.api.pagination import MAX_POSITION, Cursor, Limit, Page, decode_cursor, page
from goalledger.api.problems import problem_responses
from goalledger.projections.audit import Change, aggregate_history
from goalledger.projections.history import AuditEvent, audit_events

After = Annotated[
    int | None,
    QueryParameter(ge=0, le=MAX_POSITION, description="Only events after this ledger position."),
]


class AuditController(Controller):
    """Audit reads (auditor or admin)."""

    path = "/v1/audit"
    tags = ("audit",)
    guards = (requires("audit"),)

    @get(
        "/events", operation_id="auditEvents", sync_to_thread=True, responses=problem_responses(503)
    )
    def events(
        self,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        consistency: NamedDependency[int | None],
        after: After = None,
        aggregate_id: FromQuery[UUID | None] = None,
        topic: FromQuery[str | None] = None,
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> Page[AuditEvent]:
        """The ledger itself, in position order, with actor, reason and both times."""
        access.check_unscoped("reading the audit trail")
        start = decode_cursor(cursor, int) or after or 0
        found = audit_events(
            system.queries, after=start, limit=limit + 1, aggregate_id=aggregate_id, topic=topic
        )
        return page(found, limit, lambda e: e.position)

    @get(
        "/aggregates/{aggregate_id:uuid}/history", operation_id="aggregateHistory",
        sync_to_thread=True, responses=problem_responses(404, 503),
    )  # fmt: skip
    def aggregate_history(
        self,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        consistency: NamedDependency[int | None],
        aggregate_id: FromPath[UUID],
        limit: Limit = 100,
        cursor: Cursor = None,
    ) -> Page[Change]:
        """Every change of one aggregate: field-level before/after, actor, reason, times."""
        access.check_unscoped("reading the audit trail")
        after = decode_cursor(cursor, int) or 0
        changes = aggregate_history(system.ledger, system.queries, aggregate_id, system.redact)
        selected = [c for c in changes if c.version > after][: limit + 1]
        return page(selected, limit, lambda c: c.version)
