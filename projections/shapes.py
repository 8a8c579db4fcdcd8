"""The shapes projected state is read in: what the CLI prints and the API returns."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from uuid import UUID

import msgspec


class Provenance(msgspec.Struct, frozen=True):
    """Which scoring rule produced a figure, and the ledger position it reflects."""

    rule: str
    position: int


class ProgressFigure(msgspec.Struct, frozen=True):
    """Progress as computed (`raw`) and limited to [0, 1] (`clamped`)."""

    raw: Decimal
    clamped: Decimal


class ScoreboardKeyResult(msgspec.Struct, frozen=True):
    """One key result on the scoreboard."""

    id: UUID
    title: str
    kind: str
    unit: str
    weight: Decimal
    value: Decimal | None
    done: bool | None
    progress: ProgressFigure | None
    pace: Decimal  # expected progress at the scoreboard's time
    status: str  # on_track / at_risk / off_track / stale
    confidence: Decimal | None
    last_check_in_at: datetime | None
    provenance: Provenance


class ScoreboardObjective(msgspec.Struct, frozen=True):
    """One objective on the scoreboard, with its key results."""

    id: UUID
    title: str
    team_id: UUID
    owner: str
    kind: str
    status: str
    score: Decimal | None
    grade: str | None
    key_results: list[ScoreboardKeyResult]
    provenance: Provenance


class TeamRollup(msgspec.Struct, frozen=True):
    """A team's score over its own and its sub-teams' objectives (mean of objective scores)."""

    team_id: UUID
    name: str
    parent_id: UUID | None
    objectives: int
    score: Decimal | None
    grade: str | None


class CycleSummary(msgspec.Struct, frozen=True):
    """The cycle a scoreboard is about."""

    id: UUID
    name: str
    starts_on: date
    ends_on: date
    status: str
    rule: str | None


class Scoreboard(msgspec.Struct, frozen=True):
    """Objectives and key results of one cycle, scored under one rule at one moment."""

    cycle: CycleSummary
    rule: str
    at: datetime  # the effective time the figures are for (as_of, or now)
    known_at: datetime | None
    position: int  # the ledger position the figures reflect
    objectives: list[ScoreboardObjective]
    teams: list[TeamRollup]
