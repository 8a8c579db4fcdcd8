"""Time-travelling reads of the scoreboard and the alignment tree.

Every query answers for an effective time `as_of` (default: now) and a recorded
time `known_at` (default: everything projected), turned into a ledger position
bound. Both filter indexed tables: nothing here replays the log.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import msgspec

from goalledger.core.errors import DomainError, NotFound
from goalledger.core.scoring import LINEAR_V1, KeyResultFacts, ScoringRule
from goalledger.projections import schema
from goalledger.projections.schema import from_dec, from_ts, ts
from goalledger.projections.shapes import (
    CycleSummary,
    ProgressFigure,
    Provenance,
    Scoreboard,
    ScoreboardKeyResult,
    ScoreboardObjective,
    TeamRollup,
)
from goalledger.projections.store import Tx, ViewStore


class Moment(msgspec.Struct, frozen=True):
    """The two time axes of a read, resolved: effective time and the position bound."""

    at: datetime
    known_at: datetime | None
    position: int


class AlignmentNode(msgspec.Struct):
    """An objective in the alignment tree, with the objectives aligned under it."""

    id: UUID
    title: str
    team_id: UUID
    owner: str
    kind: str
    status: str
    parent_objective_id: UUID | None
    parent_key_result_id: UUID | None
    children: list[AlignmentNode]


class AlignmentTree(msgspec.Struct, frozen=True):
    """A cycle's objectives as a forest, as it stood at a moment."""

    cycle_id: UUID
    at: datetime
    known_at: datetime | None
    position: int
    roots: list[AlignmentNode]


class Views:
    """Read-only queries over the live generation of read models."""

    def __init__(
        self,
        store: ViewStore,
        rules: Mapping[str, ScoringRule] | None = None,
        default_rule: str = LINEAR_V1.id,
    ) -> None:
        self.store = store
        self.rules = dict(rules or {LINEAR_V1.id: LINEAR_V1})
        self.default_rule = default_rule

    # -- shared ---------------------------------------------------------------------------

    def tables(self, tx: Tx) -> dict[str, str]:
        generation = schema.live_generation(tx)
        if generation is None:
            raise NotFound("views", "nothing has been projected yet")
        return {name: schema.table(generation, name) for name in schema.TABLES}

    def moment(
        self, tx: Tx, t: dict[str, str], as_of: datetime | None, known_at: datetime | None
    ) -> Moment:
        """Resolve `as_of`/`known_at` into an effective time and a position bound."""
        projected = int(tx.scalar(f"SELECT position FROM {t['tracking']}") or 0)
        position = projected
        if known_at is not None:
            _require_aware(known_at, "known_at")
            known = tx.scalar(
                f"SELECT max(position) FROM {t['events']} WHERE recorded_at <= ?",
                (ts(known_at),),
            )
            position = min(projected, int(known or 0))
        if as_of is not None:
            _require_aware(as_of, "as_of")
        at = as_of if as_of is not None else datetime.now(UTC)
        return Moment(at=at, known_at=known_at, position=position)

    def position(self) -> int:
        """The ledger position the read models reflect."""
        with self.store.read() as tx:
            t = self.tables(tx)
            return int(tx.scalar(f"SELECT position FROM {t['tracking']}") or 0)

    def rule(self, name: str) -> ScoringRule:
        """A registered scoring rule by id, or a DomainError naming `rule`."""
        try:
            return self.rules[name]
        except KeyError:
            known = ", ".join(sorted(self.rules))
            raise DomainError("rule", f"unknown scoring rule {name!r}; known: {known}") from None

    # -- cycles -----------------------------------------------------------------------------

    def _cycle(self, tx: Tx, t: dict[str, str], cycle_id: UUID | None, position: int) -> tuple:
        columns = "id, name, starts_on, ends_on, status, rule, closed_position, closed_at"
        if cycle_id is not None:
            row = tx.one(
                f"SELECT {columns} FROM {t['cycles']} WHERE id = ? AND defined_position <= ?",
                (str(cycle_id), position),
            )
            if row is None:
                raise NotFound("cycle_id", f"no cycle with id {cycle_id}")
            return row
        today = datetime.now(UTC).date().isoformat()
        row = tx.one(
            f"SELECT {columns} FROM {t['cycles']} WHERE defined_position <= ?"
            " ORDER BY (starts_on <= ? AND ends_on >= ?) DESC, starts_on DESC LIMIT 1",
            (position, today, today),
        )
        if row is None:
            raise NotFound("cycle_id", "no cycle has been defined yet")
        return row

    # -- scoreboard ---------------------------------------------------------------------------

    def scoreboard(
        self,
        *,
        cycle_id: UUID | None = None,
        team_id: UUID | None = None,
        as_of: datetime | None = None,
        known_at: datetime | None = None,
        rule: str | None = None,
    ) -> Scoreboard:
        """A cycle's objectives and key results, scored as they stood at a moment."""
        with self.store.read() as tx:
            t = self.tables(tx)
            moment = self.moment(tx, t, as_of, known_at)
            cid, name, starts_on, ends_on, status, cycle_rule, closed_position, closed_time = (
                self._cycle(tx, t, cycle_id, moment.position)
            )
            position = moment.position
            at = moment.at
            closed = closed_position is not None and closed_position <= position
            if closed:
                # Closing freezes the figures: what was known, and the moment judged, then.
                position = min(position, closed_position)
                at = min(at, from_ts(closed_time))
            else:
                status, cycle_rule = "open", None
            scoring = self.rule(rule or (cycle_rule if closed else None) or self.default_rule)
            teams = _teams(tx, t, position)
            scope = _subtree(teams, str(team_id)) if team_id is not None else None
            if team_id is not None and str(team_id) not in teams:
                raise NotFound("team_id", f"no team with id {team_id}")
            objectives = _objectives(tx, t, cid, position, at)
            if scope is not None:
                objectives = [o for o in objectives if o[2] in scope]
            facts = _key_result_facts(tx, t, cid, position, at)
            provenance = Provenance(rule=scoring.id, position=position)
            starts, ends = date.fromisoformat(starts_on), date.fromisoformat(ends_on)
            board_objectives = []
            for oid, title, owner_team, owner, kind, ostatus in objectives:
                interval = timedelta(days=teams[owner_team][2])
                krs = [
                    _score(scoring, kr, starts, ends, at, interval, provenance)
                    for kr in facts.get(oid, [])
                ]
                score = scoring.objective_score(
                    [(kr.weight, kr.progress.clamped if kr.progress else Decimal(0)) for kr in krs]
                )
                board_objectives.append(
                    ScoreboardObjective(
                        id=UUID(oid), title=title, team_id=UUID(owner_team), owner=owner,
                        kind=kind, status=ostatus, score=score, grade=scoring.grade(score),
                        key_results=krs, provenance=provenance,
                    )
                )  # fmt: skip
            return Scoreboard(
                cycle=CycleSummary(
                    id=UUID(cid),
                    name=name,
                    starts_on=starts,
                    ends_on=ends,
                    status=status,
                    rule=cycle_rule,
                ),
                rule=scoring.id,
                at=at,
                known_at=known_at,
                position=position,
                objectives=board_objectives,
                teams=_rollups(teams, board_objectives, scoring, scope),
            )

    # -- alignment -------------------------------------------------------------------------------

    def alignment(
        self,
        *,
        cycle_id: UUID | None = None,
        as_of: datetime | None = None,
        known_at: datetime | None = None,
    ) -> AlignmentTree:
        """The objective tree of a cycle as it stood at a moment."""
        with self.store.read() as tx:
            t = self.tables(tx)
            moment = self.moment(tx, t, as_of, known_at)
            cid = self._cycle(tx, t, cycle_id, moment.position)[0]
            args = (cid, moment.position, ts(moment.at))
            rows = tx.all(
                f"SELECT o.id, a.parent_objective_id, a.parent_key_result_id"
                f" FROM {t['objectives']} o"
                f" JOIN (SELECT objective_id, parent_objective_id, parent_key_result_id,"
                f"  ROW_NUMBER() OVER (PARTITION BY objective_id"
                f"   ORDER BY effective_at DESC, position DESC) AS rn"
                f"  FROM {t['alignments']} WHERE position <= ? AND effective_at <= ?) a"
                f" ON a.objective_id = o.id AND a.rn = 1"
                f" WHERE o.cycle_id = ? AND o.defined_position <= ? AND o.effective_at <= ?",
                (moment.position, ts(moment.at), *args),
            )
            parents = {row[0]: (row[1], row[2]) for row in rows}
            described = [
                (*objective, *parents[objective[0]])
                for objective in _objectives(tx, t, cid, moment.position, moment.at)
            ]
            kr_objective = dict(tx.all(f"SELECT id, objective_id FROM {t['key_results']}"))
        nodes = {
            row[0]: AlignmentNode(
                id=UUID(row[0]), title=row[1], team_id=UUID(row[2]), owner=row[3], kind=row[4],
                status=row[5], parent_objective_id=_uuid(row[6]),
                parent_key_result_id=_uuid(row[7]), children=[],
            )
            for row in described
        }  # fmt: skip
        roots = []
        for row in described:
            parent = kr_objective.get(row[7]) if row[7] else row[6]
            if parent in nodes and parent != row[0]:
                nodes[parent].children.append(nodes[row[0]])
            else:
                roots.append(nodes[row[0]])
        return AlignmentTree(
            cycle_id=UUID(cid), at=moment.at, known_at=known_at, position=moment.position,
            roots=roots,
        )  # fmt: skip


# -- helpers -------------------------------------------------------------------------------------


def _require_aware(moment: datetime, field: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise DomainError(field, "must carry a UTC offset")


def _uuid(text: str | None) -> UUID | None:
    return None if text is None else UUID(text)


def latest(table: str, columns: str) -> str:
    """A subquery: each id's newest row of a versioned table within a `?` position bound."""
    return (
        f"(SELECT {columns} FROM (SELECT v.*, ROW_NUMBER() OVER (PARTITION BY v.id"
        f" ORDER BY v.position DESC) AS rn FROM {table} v WHERE v.position <= ?) w"
        f" WHERE rn = 1)"
    )


def _teams(tx: Tx, t: dict[str, str], position: int) -> dict[str, tuple[str, str | None, int]]:
    """Every team known at `position`, as it stood then: (name, parent_id, interval)."""
    sql = f"SELECT * FROM {latest(t['teams'], 'id, name, parent_id, check_in_interval_days')} x"
    return {row[0]: (row[1], row[2], row[3]) for row in tx.all(sql, (position,))}


def _objectives(
    tx: Tx, t: dict[str, str], cycle_id: str, position: int, at: datetime
) -> list[tuple[str, str, str, str, str, str]]:
    """(id, title, team_id, owner, kind, status) of a cycle's objectives at a moment."""
    return tx.all(
        f"SELECT o.id, x.title, o.team_id, x.owner, o.kind, s.status FROM {t['objectives']} o"
        f" JOIN {latest(t['objective_texts'], 'id, title, owner')} x ON x.id = o.id"
        f" JOIN {latest(t['objective_statuses'], 'id, status')} s ON s.id = o.id"
        f" WHERE o.cycle_id = ? AND o.defined_position <= ? AND o.effective_at <= ?"
        f" ORDER BY o.defined_position",
        (position, position, cycle_id, position, ts(at)),
    )


def _subtree(teams: Mapping[str, tuple[str, str | None, int]], root: str) -> set[str]:
    """A team and every team under it."""
    children: dict[str | None, list[str]] = {}
    for team_id, (_, parent, _) in teams.items():
        children.setdefault(parent, []).append(team_id)
    found, frontier = {root}, [root]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


class _KeyResultRow(msgspec.Struct):
    id: str
    title: str
    kind: str
    unit: str
    facts: KeyResultFacts


def _key_result_facts(
    tx: Tx, t: dict[str, str], cycle_id: str, position: int, at: datetime
) -> dict[str, list[_KeyResultRow]]:
    """Each objective's key results with the figures in force at (`at`, `position`)."""
    at_text = ts(at)
    krs = tx.all(
        f"SELECT id, objective_id, title, kind, unit, kpi_id, steps_total, start_value"
        f" FROM {t['key_results']}"
        f" WHERE cycle_id = ? AND defined_position <= ? AND effective_at <= ?"
        f" ORDER BY defined_position",
        (cycle_id, position, at_text),
    )
    if not krs:
        return {}
    targets = {
        row[0]: row[1:]
        for row in tx.all(
            f"SELECT kr_id, target, band_low, band_high, weight FROM ("
            f" SELECT g.*, ROW_NUMBER() OVER (PARTITION BY g.kr_id"
            f"  ORDER BY g.effective_at DESC, g.position DESC) AS rn"
            f" FROM {t['kr_targets']} g JOIN {t['key_results']} k ON k.id = g.kr_id"
            f" WHERE k.cycle_id = ? AND g.position <= ?"
            f"  AND (g.effective_at <= ? OR g.position = k.defined_position)) x WHERE rn = 1",
            (cycle_id, position, at_text),
        )
    }
    check_ins = {
        row[0]: row[1:]
        for row in tx.all(
            f"SELECT kr_id, value, done, steps_done, confidence, effective_at FROM ("
            f" SELECT c.*, ROW_NUMBER() OVER (PARTITION BY c.kr_id"
            f"  ORDER BY c.effective_at DESC, c.position DESC) AS rn"
            f" FROM {t['check_ins']} c JOIN {t['key_results']} k ON k.id = c.kr_id"
            f" WHERE k.cycle_id = ? AND c.position <= ? AND c.effective_at <= ?) x"
            f" WHERE rn = 1",
            (cycle_id, position, at_text),
        )
    }
    linked = {row[5] for row in krs if row[5] is not None}
    readings = _latest_readings(tx, t, linked, position, at_text) if linked else {}
    by_objective: dict[str, list[_KeyResultRow]] = {}
    for kr_id, objective_id, title, kind, unit, kpi_id, steps_total, start in krs:
        target, band_low, band_high, weight = targets[kr_id]
        value, done, steps_done, confidence, checked_at = check_ins.get(
            kr_id, (None, None, None, None, None)
        )
        if kpi_id in readings:  # a KPI-linked KR follows the KPI's latest reading
            reading_value, observed_at = readings[kpi_id]
            value = reading_value
            checked_at = max(checked_at or observed_at, observed_at)
        facts = KeyResultFacts(
            kind=kind, start=from_dec(start), target=from_dec(target),
            band_low=from_dec(band_low), band_high=from_dec(band_high),
            weight=Decimal(weight), value=from_dec(value),
            done=None if done is None else bool(done), steps_total=steps_total,
            steps_done=steps_done, confidence=from_dec(confidence),
            last_check_in_at=from_ts(checked_at),
        )  # fmt: skip
        by_objective.setdefault(objective_id, []).append(
            _KeyResultRow(id=kr_id, title=title, kind=kind, unit=unit, facts=facts)
        )
    return by_objective


def _latest_readings(
    tx: Tx, t: dict[str, str], kpi_ids: set[str], position: int, at_text: str | None
) -> dict[str, tuple[str, str]]:
    """Each KPI's latest reading value (by observed time) known at `position`."""
    marks = ", ".join("?" for _ in kpi_ids)
    rows = tx.all(
        f"SELECT kpi_id, value, observed_at FROM ("
        f" SELECT r.*, ROW_NUMBER() OVER (PARTITION BY r.kpi_id"
        f"  ORDER BY r.observed_at DESC, r.position DESC) AS rn"
        f" FROM {t['readings']} r WHERE r.kpi_id IN ({marks}) AND r.position <= ?"
        f"  AND (r.superseded_by IS NULL OR r.superseded_by > ?) AND r.observed_at <= ?) x"
        f" WHERE rn = 1",
        (*sorted(kpi_ids), position, position, at_text),
    )
    return {row[0]: (row[1], row[2]) for row in rows}


def _score(
    rule: ScoringRule,
    kr: _KeyResultRow,
    starts_on: date,
    ends_on: date,
    at: datetime,
    interval: timedelta,
    provenance: Provenance,
) -> ScoreboardKeyResult:
    score = rule.score_key_result(
        kr.facts, starts_on=starts_on, ends_on=ends_on, at=at, check_in_interval=interval
    )
    progress = score.progress
    return ScoreboardKeyResult(
        id=UUID(kr.id), title=kr.title, kind=kr.kind, unit=kr.unit, weight=kr.facts.weight,
        value=kr.facts.value, done=kr.facts.done,
        progress=None if progress is None else ProgressFigure(progress.raw, progress.clamped),
        pace=score.expected, status=score.status, confidence=kr.facts.confidence,
        last_check_in_at=kr.facts.last_check_in_at, provenance=provenance,
    )  # fmt: skip


def _rollups(
    teams: Mapping[str, tuple[str, str | None, int]],
    objectives: list[ScoreboardObjective],
    rule: ScoringRule,
    scope: set[str] | None,
) -> list[TeamRollup]:
    """Per team: the mean score of the objectives of the team and all its sub-teams."""
    rollups = []
    for team_id, (name, parent, _) in teams.items():
        if scope is not None and team_id not in scope:
            continue
        members = _subtree(teams, team_id)
        scores = [o.score for o in objectives if str(o.team_id) in members]
        known = [s for s in scores if s is not None]
        mean = rule.objective_score([(Decimal(1), s) for s in known]) if known else None
        rollups.append(
            TeamRollup(
                team_id=UUID(team_id), name=name, parent_id=_uuid(parent),
                objectives=len(scores), score=mean, grade=rule.grade(mean),
            )
        )  # fmt: skip
    return rollups
