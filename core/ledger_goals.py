"""Commands on cycles, teams, objectives, key results and check-ins."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from datetime import date, datetime
from typing import Any
from uuid import UUID

from goalledger.core.cycles import Cycle
from goalledger.core.errors import DomainError, require
from goalledger.core.kpis import Kpi
from goalledger.core.ledger_base import LedgerBase, Written, expect_version
from goalledger.core.objectives import KeyResult, Objective
from goalledger.core.teams import DEFAULT_CHECK_IN_INTERVAL_DAYS, Team

# Deepest parent chain we follow when checking an alignment for a loop.
MAX_ALIGNMENT_DEPTH = 64
# How long a queued check-in may trust the aggregate cache without asking the log for
# other processes' writes (see `queue_check_in`): at 3k check-ins/s, one question in six.
QUEUED_STALENESS = 0.002


class GoalCommands(LedgerBase):
    """What teams do with goals: define cycles, teams, objectives and key results; check in."""

    # -- cycles and teams --------------------------------------------------------------

    def define_cycle(self, *, name: str, starts_on: date, ends_on: date, actor: str) -> Written:
        """Define a cycle."""
        return self._written(
            Cycle.define(name=name, starts_on=starts_on, ends_on=ends_on, actor=actor)
        )

    def close_cycle(
        self,
        cycle_id: UUID,
        *,
        rule: str,
        actor: str,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> Written:
        """Close a cycle under `rule`; its grades are frozen from this position on."""
        cycle = self._change(cycle_id, Cycle, expected_version)
        cycle.close(rule=rule, actor=actor, reason=reason)
        return self._written(cycle)

    def form_team(
        self,
        *,
        name: str,
        parent_id: UUID | None = None,
        check_in_interval_days: int = DEFAULT_CHECK_IN_INTERVAL_DAYS,
        actor: str,
    ) -> Written:
        """Form a team under an optional parent."""
        if parent_id is not None:
            self.load(parent_id, Team, "parent_id")
        return self._written(
            Team.form(
                name=name,
                parent_id=parent_id,
                check_in_interval_days=check_in_interval_days,
                actor=actor,
            )
        )

    def change_team(
        self,
        team_id: UUID,
        *,
        actor: str,
        expected_version: int | None = None,
        **changes: Any,
    ) -> Written:
        """Rename, re-parent or re-time a team; refuses to make a loop of parents."""
        team = self._change(team_id, Team, expected_version)
        parent_id = changes.get("parent_id")
        if parent_id is not None:
            ancestor: UUID | None = parent_id
            for _ in range(MAX_ALIGNMENT_DEPTH):
                if ancestor is None:
                    break
                require(ancestor != team_id, "parent_id", "would make a loop of teams")
                ancestor = self.load(ancestor, Team, "parent_id").parent_id
        team.change(actor=actor, **changes)
        return self._written(team)

    # -- objectives and key results ----------------------------------------------------

    def define_objective(
        self,
        *,
        title: str,
        cycle_id: UUID,
        team_id: UUID,
        owner: str,
        kind: str,
        description: str = "",
        status: str = "active",
        parent_objective_id: UUID | None = None,
        parent_key_result_id: UUID | None = None,
        effective_at: datetime | None = None,
        actor: str,
    ) -> Written:
        """Define an objective in an open cycle, owned by a team."""
        cycle = self.load(cycle_id, Cycle, "cycle_id")
        require(cycle.is_open, "cycle_id", "the cycle is closed")
        self.load(team_id, Team, "team_id")
        self._check_parent(None, parent_objective_id, parent_key_result_id)
        return self._written(
            Objective.define(
                title=title,
                description=description,
                cycle_id=cycle_id,
                team_id=team_id,
                owner=owner,
                kind=kind,
                status=status,
                parent_objective_id=parent_objective_id,
                parent_key_result_id=parent_key_result_id,
                effective_at=effective_at,
                actor=actor,
            )
        )

    def revise_objective(
        self,
        objective_id: UUID,
        *,
        actor: str,
        reason: str | None = None,
        expected_version: int | None = None,
        edits: Mapping[str, Any] | None = None,
        status: str | None = None,
        parents: tuple[UUID | None, UUID | None] | None = None,
        effective_at: datetime | None = None,
    ) -> Written:
        """Re-align, re-word and/or change the status of an objective, all recorded in one
        save or none at all. `parents` is (parent objective, parent key result)."""
        objective = self._change(objective_id, Objective, expected_version)
        if parents is not None:
            self._check_parent(objective_id, *parents)
            objective.align(
                parent_objective_id=parents[0],
                parent_key_result_id=parents[1],
                effective_at=effective_at,
                actor=actor,
                reason=reason,
            )
        if edits:
            objective.edit(**edits, actor=actor, reason=reason)
        if status is not None:
            objective.change_status(status=status, actor=actor, reason=reason)
        return self._written(objective)

    def edit_objective(
        self,
        objective_id: UUID,
        *,
        actor: str,
        reason: str | None = None,
        expected_version: int | None = None,
        **edits: Any,
    ) -> Written:
        """Change an objective's title, description or owner."""
        return self.revise_objective(
            objective_id, actor=actor, reason=reason, expected_version=expected_version,
            edits=edits,
        )  # fmt: skip

    def align_objective(
        self,
        objective_id: UUID,
        *,
        parent_objective_id: UUID | None,
        parent_key_result_id: UUID | None,
        effective_at: datetime | None = None,
        actor: str,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> Written:
        """Re-align an objective; refuses a parent that would make a loop."""
        return self.revise_objective(
            objective_id, actor=actor, reason=reason, expected_version=expected_version,
            parents=(parent_objective_id, parent_key_result_id), effective_at=effective_at,
        )  # fmt: skip

    def change_objective_status(
        self,
        objective_id: UUID,
        *,
        status: str,
        actor: str,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> Written:
        """Move an objective to another status."""
        return self.revise_objective(
            objective_id, actor=actor, reason=reason, expected_version=expected_version,
            status=status,
        )  # fmt: skip

    def _check_parent(
        self,
        objective_id: UUID | None,
        parent_objective_id: UUID | None,
        parent_key_result_id: UUID | None,
    ) -> None:
        if parent_key_result_id is not None:
            parent_kr = self.load(parent_key_result_id, KeyResult, "parent_key_result_id")
            require(
                parent_kr.objective_id != objective_id,
                "parent_key_result_id",
                "an objective cannot align to its own key result",
            )
            parent_objective_id_to_walk: UUID | None = parent_kr.objective_id
            field = "parent_key_result_id"
        else:
            parent_objective_id_to_walk = parent_objective_id
            field = "parent_objective_id"
        for _ in range(MAX_ALIGNMENT_DEPTH):
            if parent_objective_id_to_walk is None:
                return
            require(
                parent_objective_id_to_walk != objective_id,
                field,
                "would make a loop of alignments",
            )
            parent = self.load(parent_objective_id_to_walk, Objective, field)
            if parent.parent_key_result_id is not None:
                parent_objective_id_to_walk = self.load(
                    parent.parent_key_result_id, KeyResult, field
                ).objective_id
            else:
                parent_objective_id_to_walk = parent.parent_objective_id
        raise DomainError(field, f"alignment chain is deeper than {MAX_ALIGNMENT_DEPTH}")

    def define_key_result(self, objective_id: UUID, *, actor: str, **fields: Any) -> Written:
        """Define a key result under an objective in an open cycle."""
        objective = self.load(objective_id, Objective, "objective_id")
        require(
            self.load(objective.cycle_id, Cycle).is_open,
            "objective_id",
            "the objective's cycle is closed",
        )
        if fields.get("kpi_id") is not None:
            self.load(fields["kpi_id"], Kpi, "kpi_id")
        return self._written(KeyResult.define(objective=objective, actor=actor, **fields))

    def change_key_result_target(
        self,
        key_result_id: UUID,
        *,
        actor: str,
        reason: str | None,
        expected_version: int | None = None,
        **changes: Any,
    ) -> Written:
        """Change a key result's target, band or weight, with a reason."""
        kr = self._change(key_result_id, KeyResult, expected_version)
        self._require_open_cycle(kr)
        kr.change_target(actor=actor, reason=reason, **changes)
        return self._written(kr)

    def check_in(
        self,
        key_result_id: UUID,
        *,
        actor: str,
        expected_version: int | None = None,
        **check_in: Any,
    ) -> Written:
        """Record a check-in; refused when the key result's cycle is closed."""
        with self._appending_to(key_result_id):
            return self._written(self._checked_in(key_result_id, actor, expected_version, check_in))

    def queue_check_in(
        self,
        key_result_id: UUID,
        *,
        actor: str,
        expected_version: int | None = None,
        **check_in: Any,
    ) -> Future[Written]:
        """`check_in` for an event loop (see `record_queued`): decided at once, from
        cached state, and committed by the writer's committer. The caller keeps
        check-ins to one key result apart, as `check_in` does with its lock.

        A key result with check-ins of this process still queued is decided on the
        state they leave (`queued_state`), so check-ins to one key result share a group
        commit instead of waiting for each other's; this one is refused (a `Conflict`)
        if they are. `expected_version` is then compared with that state's version, and
        the cycle is read from a cache that asked the log less than QUEUED_STALENESS ago.

        Otherwise, without `expected_version` the cache is trusted if it asked the log
        less than QUEUED_STALENESS ago: a key result another process changed meanwhile is
        refused at commit by the store's (id, version) key, a `Conflict` the caller
        retries, and the next use asks the log again. (A cycle closed elsewhere in that
        window is the race any check-in has with a close committed while it commits.)
        With it, the version compared is the log's, as `check_in` compares."""
        queued = self.queued_state(key_result_id)
        if queued is not None and isinstance(queued[0], KeyResult):
            kr, after = queued
            expect_version(kr, expected_version)
            self._require_open_cycle(kr, staleness=QUEUED_STALENESS)
            kr.check_in(actor=actor, **check_in)
            return self.record_queued(kr, after)
        staleness = QUEUED_STALENESS if expected_version is None else 0.0
        kr = self._checked_in(key_result_id, actor, expected_version, check_in, staleness)
        return self.record_queued(kr)

    def _checked_in(
        self,
        key_result_id: UUID,
        actor: str,
        expected_version: int | None,
        check_in: Any,
        staleness: float = 0.0,
    ) -> KeyResult:
        kr = self._change(key_result_id, KeyResult, expected_version, staleness)
        self._require_open_cycle(kr)
        kr.check_in(actor=actor, **check_in)
        return kr

    def _require_open_cycle(self, kr: KeyResult, staleness: float | None = None) -> None:
        """Refuse a key result whose cycle is closed. The cycle is read as the key result
        was (`just_read`), unless `staleness` says how fresh it must be (the key result
        came from queued state, not from the log)."""
        if staleness is None:
            cycle = self.load(kr.cycle_id, Cycle, just_read=True)
        else:
            cycle = self.load(kr.cycle_id, Cycle, staleness=staleness)
        require(
            cycle.is_open,
            "key_result_id",
            "the key result's cycle is closed",
        )
