"""The ledger: one eventsourcing Application that owns every aggregate.

One application means one notification log, so every event in goalledger has
one global position. Commands here are what the API, the CLI, the demo loader
and the plugins call; each returns where its events landed in that log.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import msgspec
from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, Mapper, Notification
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import Environment

from goalledger.core.cycles import Cycle
from goalledger.core.errors import Conflict, DomainError, NotFound, require
from goalledger.core.kpis import Kpi, Reading, SourceBinding, Thresholds, reading_key
from goalledger.core.mapper import MsgspecMapper
from goalledger.core.model import LedgerAggregate, non_blank, utc_now
from goalledger.core.objectives import KeyResult, Objective
from goalledger.core.settings import Settings
from goalledger.core.subscriptions import Channel, Subscription
from goalledger.core.teams import DEFAULT_CHECK_IN_INTERVAL_DAYS, Team
from goalledger.core.tokens import Token, token_id_of

A = TypeVar("A", bound=LedgerAggregate)

# eventsourcing's PostgreSQL recorder stalls on very large single saves; readings are
# idempotent, so a big batch is saved in chunks and a retry after a crash is safe.
READING_CHUNK = 5000
# Deepest parent chain we follow when checking an alignment for a loop.
MAX_ALIGNMENT_DEPTH = 64


class Unchanged(enum.Enum):
    """Marks an optional argument that was not given (None has a meaning of its own)."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED


class Written(msgspec.Struct, frozen=True):
    """Where a command's events landed: the aggregate, its new version, the log position."""

    id: UUID
    version: int
    position: int


class ReadingInput(msgspec.Struct, frozen=True):
    """One reading to record for a KPI."""

    kpi_id: UUID
    reading_id: str
    value: Decimal
    observed_at: datetime


class ReadingsWritten(msgspec.Struct, frozen=True):
    """The outcome of recording readings: which were new and which were already held."""

    recorded: list[str]
    duplicates: list[str]
    position: int | None


class Ledger(Application[UUID]):
    """goalledger's single event-sourced application."""

    name = "goalledger"

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        storage = self.settings.storage()
        super().__init__(env=storage.eventsourcing_env(self.settings))
        if storage.kind == "sqlite":
            _set_sqlite_synchronous(self, self.settings.sqlite_synchronous)

    def construct_env(self, name: str, env: Any = None) -> Any:
        """Only the environment goalledger derives from its settings.

        eventsourcing would merge `os.environ`, where `GOALLEDGER_*` keys (this
        application's prefix) could silently override the database the URL chose.
        """
        return Environment(name, dict(env or {}))

    def construct_mapper(self) -> Mapper[UUID]:
        """Use msgspec, keeping any cipher or compressor the environment configures."""
        return MsgspecMapper(
            transcoder=None, cipher=self.factory.cipher(), compressor=self.factory.compressor()
        )

    # -- reading the ledger ----------------------------------------------------------

    def load(self, aggregate_id: UUID, kind: type[A], field: str = "id") -> A:
        """The current state of one aggregate of the given kind, or `NotFound` naming `field`."""
        try:
            aggregate = self.repository.get(aggregate_id, projector_func=_replay)
        except AggregateNotFoundError:
            raise NotFound(field, f"no {_label(kind)} with id {aggregate_id}") from None
        if not isinstance(aggregate, kind):
            raise NotFound(field, f"no {_label(kind)} with id {aggregate_id}")
        return aggregate

    def head_position(self) -> int:
        """The position of the newest event in the log (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    def notifications(
        self, after: int = 0, *, batch: int = 1000, stop: int | None = None
    ) -> Iterator[Notification]:
        """Stored notifications after `after`, in order, read in batches (never all at once)."""
        position = after
        while True:
            page = self.recorder.select_notifications(
                position, batch, stop=stop, inclusive_of_start=False
            )
            yield from page
            if len(page) < batch:
                return
            position = page[-1].id

    def notification_rows(self, after: int, limit: int) -> list[tuple[int, str, int, str, bytes]]:
        """(position, aggregate id, version, topic, state) rows after `after`: the fast path
        for bulk readers such as the projector, skipping eventsourcing's per-row objects."""
        recorder = self.recorder
        if isinstance(recorder, SQLiteApplicationRecorder):
            with recorder.datastore.transaction(commit=False) as cursor:
                cursor.execute(
                    "SELECT rowid, originator_id, originator_version, topic, state"
                    f" FROM {recorder.events_table_name} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    (after, limit),
                )
                # The SQLite store keeps ids as 32 hex digits; give them their usual form.
                return [
                    (row[0], _hyphenate(row[1]), row[2], row[3], row[4])
                    for row in cursor.fetchall()
                ]
        return [
            (n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
            for n in recorder.select_notifications(after, limit, inclusive_of_start=False)
        ]

    def read_events(self, after: int = 0, *, batch: int = 1000) -> Iterator[tuple[int, Any]]:
        """(position, domain event) pairs after `after`, decoded in batches."""
        to_domain_event = self.mapper.to_domain_event
        for notification in self.notifications(after, batch=batch):
            yield notification.id, to_domain_event(notification)

    def is_empty(self) -> bool:
        """Whether nothing has been recorded yet."""
        return self.head_position() == 0

    # -- writing ---------------------------------------------------------------------

    def record(self, *aggregates: LedgerAggregate, events: Sequence[Any] = ()) -> int:
        """Save the aggregates' pending events (and any given events) atomically.

        A stale version is a `Conflict` and nothing is recorded. This is
        `Application.save` without its per-object protocol checks, which cost as
        much as the insert itself (bench/profile_append.py).
        """
        processing = ProcessingEvent[UUID]()
        for aggregate in aggregates:
            processing.events.extend(aggregate.collect_events())
            processing.aggregates[aggregate.id] = aggregate
        processing.events.extend(events)
        try:
            recordings = self._record(processing)
        except IntegrityError as error:
            ids = ", ".join(str(a.id) for a in aggregates) or "an event"
            raise Conflict(
                f"{ids} changed since it was read; reload and try again",
                aggregate_id=aggregates[0].id if aggregates else None,
            ) from error
        self._notify(recordings)
        if not recordings:
            return self.head_position()
        return max(r.notification.id for r in recordings)

    def _written(self, aggregate: LedgerAggregate) -> Written:
        position = self.record(aggregate)
        return Written(id=aggregate.id, version=aggregate.version, position=position)

    def _change(self, aggregate_id: UUID, kind: type[A], expected_version: int | None) -> A:
        aggregate = self.load(aggregate_id, kind)
        if expected_version is not None and aggregate.version != expected_version:
            raise Conflict(
                f"{_label(kind)} {aggregate_id} is at version {aggregate.version}, "
                f"not {expected_version}",
                aggregate_id=aggregate_id,
            )
        return aggregate

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
        kr = self._change(key_result_id, KeyResult, expected_version)
        self._require_open_cycle(kr)
        kr.check_in(actor=actor, **check_in)
        return self._written(kr)

    def _require_open_cycle(self, kr: KeyResult) -> None:
        require(
            self.load(kr.cycle_id, Cycle).is_open,
            "key_result_id",
            "the key result's cycle is closed",
        )

    # -- KPIs and readings -------------------------------------------------------------

    def define_kpi(
        self,
        *,
        name: str,
        direction: str,
        thresholds: Thresholds,
        frequency: str,
        unit: str = "",
        target: Decimal | None = None,
        source: SourceBinding | None = None,
        team_id: UUID | None = None,
        effective_at: datetime | None = None,
        actor: str,
    ) -> Written:
        """Define a KPI."""
        if team_id is not None:
            self.load(team_id, Team, "team_id")
        return self._written(
            Kpi.define(
                name=name,
                unit=unit,
                direction=direction,
                target=target,
                thresholds=thresholds,
                frequency=frequency,
                source=source,
                team_id=team_id,
                effective_at=effective_at,
                actor=actor,
            )
        )

    def revise_kpi(
        self,
        kpi_id: UUID,
        *,
        actor: str,
        reason: str | None = None,
        expected_version: int | None = None,
        changes: Mapping[str, Any] | None = None,
        thresholds: Thresholds | None = None,
        effective_from: datetime | None = None,
        source: SourceBinding | Unchanged | None = UNCHANGED,
    ) -> Written:
        """Change a KPI's description, its thresholds (from `effective_from` on) and/or
        its metric source (None unbinds), recorded in one save or none at all."""
        kpi = self._change(kpi_id, Kpi, expected_version)
        if not isinstance(source, Unchanged):
            kpi.bind_source(source=source, actor=actor, reason=reason)
        if changes:
            kpi.change(actor=actor, reason=reason, **changes)
        if thresholds is not None:
            require(effective_from is not None, "effective_from", "comes with new thresholds")
            assert effective_from is not None
            kpi.change_thresholds(
                thresholds=thresholds, effective_from=effective_from, actor=actor, reason=reason
            )
        elif effective_from is not None:
            raise DomainError("effective_from", "applies only to a change of thresholds")
        return self._written(kpi)

    def change_kpi(
        self,
        kpi_id: UUID,
        *,
        actor: str,
        reason: str | None = None,
        expected_version: int | None = None,
        **changes: Any,
    ) -> Written:
        """Change a KPI's name, unit, target or frequency."""
        return self.revise_kpi(
            kpi_id, actor=actor, reason=reason, expected_version=expected_version,
            changes=changes,
        )  # fmt: skip

    def change_kpi_thresholds(
        self,
        kpi_id: UUID,
        *,
        thresholds: Thresholds,
        effective_from: datetime,
        actor: str,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> Written:
        """New health thresholds for a KPI from `effective_from` on."""
        return self.revise_kpi(
            kpi_id, actor=actor, reason=reason, expected_version=expected_version,
            thresholds=thresholds, effective_from=effective_from,
        )  # fmt: skip

    def bind_kpi_source(
        self,
        kpi_id: UUID,
        *,
        source: SourceBinding | None,
        actor: str,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> Written:
        """Bind a KPI to a metric source (None unbinds it)."""
        kpi = self._change(kpi_id, Kpi, expected_version)
        kpi.bind_source(source=source, actor=actor, reason=reason)
        return self._written(kpi)

    def record_readings(
        self, readings: Iterable[ReadingInput], *, source: str, actor: str
    ) -> ReadingsWritten:
        """Record readings, skipping any (KPI, reading_id) already held.

        A reading whose id is already recorded is reported as a duplicate and
        records nothing, whatever its value: a different value needs a correction.
        Large batches are saved in chunks; a retry after a crash is safe because
        readings are idempotent.
        """
        source = non_blank(source, "source", max_length=200)
        known_kpis: set[UUID] = set()
        fresh: dict[UUID, Reading.Recorded] = {}
        repeats: list[str] = []
        now = utc_now()
        for index, item in enumerate(readings):
            if item.kpi_id not in known_kpis:
                self.load(item.kpi_id, Kpi, f"readings[{index}].kpi_id")
                known_kpis.add(item.kpi_id)
            try:
                event = Reading.observed(
                    kpi_id=item.kpi_id,
                    reading_id=item.reading_id,
                    value=item.value,
                    observed_at=item.observed_at,
                    source=source,
                    actor=actor,
                    now=now,
                )
            except DomainError as error:
                raise DomainError(f"readings[{index}].{error.field}", error.message) from None
            if event.originator_id in fresh:
                repeats.append(event.reading_id)  # a repeat inside one batch counts once
            else:
                fresh[event.originator_id] = event
        recorded: list[str] = []
        duplicates: list[str] = []
        position: int | None = None
        batch = list(fresh.values())
        for start in range(0, len(batch), READING_CHUNK):
            saved, held, chunk_position = self._save_new_readings(
                batch[start : start + READING_CHUNK]
            )
            recorded += saved
            duplicates += held
            position = chunk_position or position
        duplicates += repeats
        return ReadingsWritten(recorded=recorded, duplicates=duplicates, position=position)

    def _save_new_readings(
        self, chunk: list[Reading.Recorded]
    ) -> tuple[list[str], list[str], int | None]:
        held: list[str] = []
        while chunk:
            try:
                position = self._append(chunk)
            except Conflict:
                # Some readings were held already (or arrived concurrently): drop those.
                existing = self._existing(e.originator_id for e in chunk)
                held += [e.reading_id for e in chunk if e.originator_id in existing]
                chunk = [e for e in chunk if e.originator_id not in existing]
                continue
            return [e.reading_id for e in chunk], held, position
        return [], held, None

    def _append(self, events: Sequence[Any]) -> int:
        """Save first events of new aggregates (no aggregate objects to update).

        On SQLite one `executemany` in one transaction: eventsourcing's own insert runs
        one statement per row to collect row ids we do not need. Elsewhere, `record`.
        """
        recorder = self.recorder
        if not isinstance(recorder, SQLiteApplicationRecorder):
            return self.record(events=events)
        stored = [self.mapper.to_stored_event(event) for event in events]
        rows = [(s.originator_id.hex, s.originator_version, s.topic, s.state) for s in stored]
        try:
            with recorder.datastore.transaction(commit=True) as cursor:
                cursor.executemany(recorder.insert_events_statement, rows)
                cursor.execute(f"SELECT max(rowid) FROM {recorder.events_table_name}")
                return int(cursor.fetchone()[0])
        except IntegrityError as error:
            raise Conflict("some of these events are recorded already") from error

    def _existing(self, aggregate_ids: Iterable[UUID]) -> set[UUID]:
        """Which of these aggregate ids have events in the ledger."""
        return {i for i in aggregate_ids if self.recorder.select_events(i, limit=1)}

    def correct_reading(
        self, kpi_id: UUID, reading_id: str, *, value: Decimal, reason: str, actor: str
    ) -> Written:
        """Supersede a reading's value; the earlier value stays in the ledger."""
        self.load(kpi_id, Kpi, "kpi_id")
        reading = self.load(reading_key(kpi_id, reading_id), Reading, "reading_id")
        reading.correct(value=value, reason=reason, actor=actor)
        return self._written(reading)

    # -- tokens ------------------------------------------------------------------------

    def issue_token(
        self,
        *,
        name: str,
        role: str,
        team_id: UUID | None = None,
        expires_at: datetime | None = None,
        actor: str,
    ) -> tuple[Written, str]:
        """Issue a token; the secret is returned once and never stored."""
        if team_id is not None:
            self.load(team_id, Team, "team_id")
        token, secret = Token.issue(
            name=name, role=role, team_id=team_id, expires_at=expires_at, actor=actor
        )
        return self._written(token), secret

    def revoke_token(self, token_id: UUID, *, actor: str, reason: str | None = None) -> Written:
        """Revoke a token."""
        token = self.load(token_id, Token)
        token.revoke(actor=actor, reason=reason)
        return self._written(token)

    def authenticate(self, secret: str) -> Token | None:
        """The live token whose secret this is, or None."""
        token_id = token_id_of(secret)
        if token_id is None:
            return None
        try:
            token = self.load(token_id, Token)
        except NotFound:
            return None
        return token if token.accepts(secret, utc_now()) else None

    # -- subscriptions -----------------------------------------------------------------

    def subscribe(
        self, *, alert_kinds: list[str], team_ids: list[UUID], channel: Channel, actor: str
    ) -> Written:
        """Send alerts of `alert_kinds` about `team_ids` (empty: every team) to `channel`,
        whose config the caller has validated with the channel's plugin."""
        for index, team_id in enumerate(team_ids):
            self.load(team_id, Team, f"team_ids[{index}]")
        return self._written(
            Subscription.create(
                alert_kinds=alert_kinds, team_ids=team_ids, channel=channel, actor=actor
            )
        )

    def delete_subscription(
        self, subscription_id: UUID, *, actor: str, reason: str | None = None
    ) -> Written:
        """Delete a subscription: no alert is sent through it from now on."""
        subscription = self.load(subscription_id, Subscription, "subscription_id")
        subscription.delete(actor=actor, reason=reason)
        return self._written(subscription)


def _replay(aggregate: Any, events: Iterable[Any]) -> Any:
    """Apply events in order; eventsourcing's version asserts a protocol per event,
    which costs more than the replay itself."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def _hyphenate(hex_id: str) -> str:
    if len(hex_id) != 32:
        return str(UUID(hex_id))
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def _label(kind: type) -> str:
    return {"KeyResult": "key result", "Kpi": "KPI"}.get(kind.__name__, kind.__name__.lower())


def _set_sqlite_synchronous(ledger: Ledger, mode: str) -> None:
    """Apply `PRAGMA synchronous` to every connection of the SQLite store's pool.

    eventsourcing opens its connections itself and leaves SQLite's default (FULL);
    goalledger makes the durability trade-off a setting, so it hooks connection creation.
    """
    pool = ledger.factory.datastore.pool  # type: ignore[attr-defined]
    pragma = f"PRAGMA synchronous={mode.upper()};"
    create = pool._create_connection

    def create_with_pragma() -> Any:
        connection = create()
        connection._sqlite_conn.execute(pragma)
        return connection

    pool._create_connection = create_with_pragma
    for connection in list(pool._pool):
        connection._sqlite_conn.execute(pragma)
