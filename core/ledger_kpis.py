"""Commands on KPIs and their readings (bulk ingestion included)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import IntegrityError
from eventsourcing.sqlite import SQLiteApplicationRecorder

from goalledger.core.errors import Conflict, DomainError, require
from goalledger.core.kpis import Kpi, Reading, SourceBinding, Thresholds, reading_key
from goalledger.core.ledger_base import UNCHANGED, LedgerBase, Unchanged, Written
from goalledger.core.model import non_blank, utc_now
from goalledger.core.teams import Team

# eventsourcing's PostgreSQL recorder stalls on very large single saves; readings are
# idempotent, so a big batch is saved in chunks and a retry after a crash is safe.
READING_CHUNK = 5000


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


class KpiCommands(LedgerBase):
    """What integrators do with KPIs: define and change them, record and correct readings."""

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
