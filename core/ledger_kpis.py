"""Commands on KPIs and their readings (bulk ingestion included)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec

from goalledger.core.errors import DomainError, NotFound, require
from goalledger.core.kpis import Kpi, Reading, SourceBinding, Thresholds, reading_name
from goalledger.core.ledger_base import UNCHANGED, LedgerBase, Unchanged, Written
from goalledger.core.model import non_blank, utc_now
from goalledger.core.reading_rows import RECORDED_TOPIC, ReadingInput, reading_rows
from goalledger.core.settings import Settings
from goalledger.core.teams import Team

log = logging.getLogger(__name__)


class ReadingsWritten(msgspec.Struct, frozen=True):
    """The outcome of recording readings: which were new and which were already held."""

    recorded: list[str]
    duplicates: list[str]
    position: int | None


class KpiCommands(LedgerBase):
    """What integrators do with KPIs: define and change them, record and correct readings."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        named = self._writer.prepare_reading_names(RECORDED_TOPIC, self._names_of)
        if named:
            log.info("named the %d readings held before the reading-name table", named)

    def name_imported_readings(self, cursor: Any) -> int:
        """Name the readings just written into the empty events table by `cursor` (an
        import), in its transaction, so they are idempotent and correctable as any."""
        return self._writer.name_held_readings(cursor, RECORDED_TOPIC, self._names_of)

    def _names_of(self, rows: Sequence[tuple[Any, bytes]]) -> list[tuple[str, Any]]:
        """(name, aggregate id) of stored `Reading.Recorded` states."""
        decode = self.mapper.decode_fields  # type: ignore[attr-defined]
        named = []
        for key, state in rows:
            fields = decode(RECORDED_TOPIC, state)
            named.append((reading_name(fields.kpi_id, fields.reading_id), key))
        return named

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
        The new readings commit together in one transaction, or none do.
        """
        source = non_blank(source, "source", max_length=200)

        def kpi_seen(kpi_id: UUID, index: int) -> None:
            self.require_exists(kpi_id, Kpi, f"readings[{index}].kpi_id")

        mapper = self.mapper
        batch = reading_rows(
            readings,
            source=source,
            actor=actor,
            now=utc_now(),
            seal=mapper.seal if (mapper.compressor or mapper.cipher) else None,  # type: ignore[attr-defined]
            kpi_seen=kpi_seen,
        )
        appended = self._writer.insert_new(RECORDED_TOPIC, batch.names, batch.keys, batch.states)
        self._appended(appended.first, appended.last)
        if not appended.skipped:
            return ReadingsWritten(
                recorded=batch.reading_ids, duplicates=batch.repeats, position=appended.last
            )
        recorded: list[str] = []
        held: list[str] = []
        for key, reading_id in zip(batch.keys, batch.reading_ids, strict=True):
            (held if key in appended.skipped else recorded).append(reading_id)
        return ReadingsWritten(
            recorded=recorded, duplicates=held + batch.repeats, position=appended.last
        )

    def reading(self, kpi_id: UUID, reading_id: str) -> Reading:
        """A KPI's reading by its reading id (`NotFound` naming the field that is unknown)."""
        self.load(kpi_id, Kpi, "kpi_id")
        key = self._writer.named(reading_name(kpi_id, reading_id.strip()))
        if key is None:
            raise NotFound("reading_id", f"no reading {reading_id!r} for KPI {kpi_id}")
        return self.load(UUID(hex=key), Reading, "reading_id")

    def correct_reading(
        self, kpi_id: UUID, reading_id: str, *, value: Decimal, reason: str, actor: str
    ) -> Written:
        """Supersede a reading's value; the earlier value stays in the ledger."""
        reading = self.reading(kpi_id, reading_id)
        reading.correct(value=value, reason=reason, actor=actor)
        return self._written(reading)
