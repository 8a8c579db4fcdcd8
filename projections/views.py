"""How each ledger event changes the read models: one handler per event topic.

Handlers receive the event's typed fields (a Struct decoded straight from the stored
bytes) rather than the event object: the projector's hot path skips building events.

Handlers append statements to a buffer; consecutive statements of the same shape
are sent as one `executemany`, so a batch of readings costs one round trip.
A handler that must read what earlier events wrote flushes the buffer first.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from operator import attrgetter
from typing import Any

from goalledger.core.cycles import Cycle
from goalledger.core.kpis import Kpi, Reading
from goalledger.core.objectives import KeyResult, Objective
from goalledger.core.teams import Team
from goalledger.projections.log_pages import READING_RECORDED, ReadingFacts, as_facts
from goalledger.projections.schema import BEGINNING, dec, table, ts, uid
from goalledger.projections.store import Tx

Handler = Callable[["ViewWriter", int, str, Any], None]
Getter = Callable[[Any], Any]


class ViewWriter:
    """Applies decoded events, in position order, to one generation's tables."""

    def __init__(self, tx: Tx, generation: int) -> None:
        self.tx = tx
        self.t = {name: table(generation, name) for name in _TABLE_NAMES}
        self.version = 0  # the version of the event being applied
        self.recorded_at = 0  # and its recorded time, as stored (`ts(e.timestamp)`)
        self._sql = _statements(self.t)
        # One list of queued rows per INSERT statement, in the order they were added.
        self.rows: dict[str, list[tuple[Any, ...]]] = {
            name: [] for name, sql in self._sql.items() if not sql.startswith("UPDATE")
        }
        self._events, self.readings = self.rows["event"], self.rows["reading"]
        self._reading_events = self.rows["reading_event"]

    def apply(self, position: int, aggregate_id: str, version: int, topic: str, e: Any) -> None:
        """Record one event (its typed fields `e`) in the audit timeline and its views."""
        if topic == READING_RECORDED:
            self.record_reading(position, aggregate_id, version, as_facts(e))
            return
        audit = audit_row(position, aggregate_id, version, topic, e)
        self._events.append(audit)
        self.version = version
        self.recorded_at = audit[6]
        handler = HANDLERS.get(topic)
        if handler is not None:
            handler(self, position, aggregate_id, e)

    def record_reading(
        self, position: int, aggregate_id: str, version: int, e: ReadingFacts
    ) -> None:
        """`apply` for a recorded reading (most events): the same rows as `audit_row` and a
        handler would queue, in fewer steps (a reading has no reason)."""
        self.version = version
        recorded = self.recorded_at = e.recorded
        observed = e.observed
        self._reading_events.append((position, aggregate_id, version, e.actor, recorded, observed))
        self.readings.append(
            (position, aggregate_id, e.kpi_id, e.reading_id, 1, e.value, observed, recorded,
             e.source)
        )  # fmt: skip

    def add(self, statement: str, params: tuple[Any, ...]) -> None:
        """Queue an INSERT; an UPDATE first sends every queued INSERT it may depend on."""
        rows = self.rows.get(statement)
        if rows is not None:
            rows.append(params)
        else:
            self.flush()
            self.tx.execute(self._sql[statement], params)

    def flush(self) -> None:
        """Send queued INSERTs, one executemany per statement.

        INSERTs into different tables commute, and each statement's rows keep their
        order; the two statements into `events` commute too (its key is the position,
        and nothing reads it while a batch is applied).
        """
        for statement, rows in self.rows.items():
            if rows:
                self.tx.executemany(self._sql[statement], rows)
                rows.clear()


def audit_row(position: int, aggregate_id: str, version: int, topic: str, e: Any) -> tuple:
    """An event's row in the audit timeline (`events`); a pure function of the event."""
    reason, effective = _audit_fields(type(e))
    return (
        position,
        aggregate_id,
        version,
        topic,
        e.actor,
        None if reason is None else reason(e),
        ts(e.timestamp),
        None if effective is None else ts(effective(e)),
    )


_TABLE_NAMES = (
    "events", "cycles", "teams", "objectives", "objective_texts", "objective_statuses",
    "alignments", "key_results", "kr_targets", "check_ins", "kpis", "kpi_texts",
    "kpi_thresholds", "readings",
)  # fmt: skip


def _statements(t: dict[str, str]) -> dict[str, str]:
    return {
        "event": f"INSERT INTO {t['events']} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        # A recorded reading's audit row: its constant topic and absent reason written
        # here, not bound row by row (binding a None takes sqlite3 an adapter lookup).
        "reading_event": (
            f"INSERT INTO {t['events']} VALUES (?, ?, ?, '{READING_RECORDED}', ?, NULL, ?, ?)"
        ),
        "cycle": f"INSERT INTO {t['cycles']} VALUES (?, ?, ?, ?, 'open', NULL, ?, NULL, NULL)",
        "cycle_closed": (
            f"UPDATE {t['cycles']} SET status = 'closed', rule = ?, closed_position = ?,"
            " closed_at = ? WHERE id = ?"
        ),
        "team": f"INSERT INTO {t['teams']} VALUES (?, ?, ?, ?, ?)",
        "objective": f"INSERT INTO {t['objectives']} VALUES (?, ?, ?, ?, ?, ?)",
        "objective_text": f"INSERT INTO {t['objective_texts']} VALUES (?, ?, ?, ?, ?)",
        "objective_status": f"INSERT INTO {t['objective_statuses']} VALUES (?, ?, ?)",
        "alignment": f"INSERT INTO {t['alignments']} VALUES (?, ?, ?, ?, ?)",
        "key_result": (
            f"INSERT INTO {t['key_results']} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ),
        "kr_target": f"INSERT INTO {t['kr_targets']} VALUES (?, ?, ?, ?, ?, ?, ?)",
        "check_in": f"INSERT INTO {t['check_ins']} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        "kpi": f"INSERT INTO {t['kpis']} VALUES (?, ?, ?, ?, ?, ?)",
        "kpi_text": f"INSERT INTO {t['kpi_texts']} VALUES (?, ?, ?, ?, ?, ?)",
        "kpi_source": f"UPDATE {t['kpis']} SET source_plugin = ? WHERE id = ?",
        "thresholds": f"INSERT INTO {t['kpi_thresholds']} VALUES (?, ?, ?, ?, ?, ?, ?)",
        "reading": f"INSERT INTO {t['readings']} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
        "reading_superseded": (f"UPDATE {t['readings']} SET superseded_by = ? WHERE position = ?"),
    }


@cache
def _audit_fields(event_type: type) -> tuple[Getter | None, Getter | None]:
    """Getters of an event type's reason and effective time (None where it has none).

    The effective time is the first of `effective_at`, `effective_from`, `observed_at`
    that is set; which of them a type has is looked up once per type, not per event.
    """
    names = getattr(event_type, "__struct_fields__", None)
    if names is None:  # not a decoded struct: look at each event
        return _reason, _effective_time
    reason = attrgetter("reason") if "reason" in names else None
    moments = [n for n in _EFFECTIVE if n in names]
    if len(moments) == 1:
        return reason, attrgetter(moments[0])
    return reason, _effective_time if moments else None


_EFFECTIVE = ("effective_at", "effective_from", "observed_at")


def _reason(event: Any) -> Any:
    return getattr(event, "reason", None)


def _effective_time(event: Any) -> Any:
    for name in _EFFECTIVE:
        moment = getattr(event, name, None)
        if moment is not None:
            return moment
    return None


# -- handlers ------------------------------------------------------------------------------


def _cycle_defined(w: ViewWriter, position: int, aid: str, e: Cycle.Defined) -> None:
    w.add(
        "cycle",
        (aid, e.name, e.starts_on.isoformat(), e.ends_on.isoformat(), position),
    )


def _cycle_closed(w: ViewWriter, position: int, aid: str, e: Cycle.Closed) -> None:
    w.add("cycle_closed", (e.rule, position, w.recorded_at, aid))


def _team_formed(w: ViewWriter, position: int, aid: str, e: Team.Formed) -> None:
    w.add("team", (aid, position, e.name, uid(e.parent_id), e.check_in_interval_days))


def _team_changed(w: ViewWriter, position: int, aid: str, e: Team.Changed) -> None:
    w.add("team", (aid, position, e.name, uid(e.parent_id), e.check_in_interval_days))


def _objective_defined(w: ViewWriter, position: int, aid: str, e: Objective.Defined) -> None:
    w.add("objective", (aid, str(e.cycle_id), str(e.team_id), e.kind, position, ts(e.effective_at)))
    w.add("objective_text", (aid, position, e.title, e.description, e.owner))
    w.add("objective_status", (aid, position, e.status))
    w.add(
        "alignment",
        (
            aid,
            position,
            ts(e.effective_at),
            uid(e.parent_objective_id),
            uid(e.parent_key_result_id),
        ),
    )


def _objective_edited(w: ViewWriter, position: int, aid: str, e: Objective.Edited) -> None:
    w.add("objective_text", (aid, position, e.title, e.description, e.owner))


def _objective_aligned(w: ViewWriter, position: int, aid: str, e: Objective.Aligned) -> None:
    w.add(
        "alignment",
        (
            aid,
            position,
            ts(e.effective_at),
            uid(e.parent_objective_id),
            uid(e.parent_key_result_id),
        ),
    )


def _objective_status(w: ViewWriter, position: int, aid: str, e: Objective.StatusChanged) -> None:
    w.add("objective_status", (aid, position, e.status))


def _key_result_defined(w: ViewWriter, position: int, aid: str, e: KeyResult.Defined) -> None:
    kr_id = aid
    w.add(
        "key_result",
        (
            kr_id,
            str(e.objective_id),
            str(e.cycle_id),
            str(e.team_id),
            e.title,
            e.kind,
            e.unit,
            e.owner,
            uid(e.kpi_id),
            len(e.steps),
            dec(e.start),
            position,
            ts(e.effective_at),
        ),
    )
    w.add(
        "kr_target",
        (
            kr_id,
            position,
            ts(e.effective_at),
            dec(e.target),
            dec(e.band_low),
            dec(e.band_high),
            dec(e.weight),
        ),
    )


def _key_result_target(w: ViewWriter, position: int, aid: str, e: KeyResult.TargetChanged) -> None:
    w.add(
        "kr_target",
        (
            aid,
            position,
            ts(e.effective_at),
            dec(e.target),
            dec(e.band_low),
            dec(e.band_high),
            dec(e.weight),
        ),
    )


def _checked_in(w: ViewWriter, position: int, aid: str, e: KeyResult.CheckedIn) -> None:
    w.add(
        "check_in",
        (
            position,
            aid,
            dec(e.value),
            None if e.done is None else int(e.done),
            e.steps_done,
            dec(e.confidence),
            e.note,
            e.actor,
            ts(e.effective_at),
            w.recorded_at,
        ),
    )


def _kpi_defined(w: ViewWriter, position: int, aid: str, e: Kpi.Defined) -> None:
    w.add(
        "kpi",
        (
            aid,
            e.direction,
            e.source.plugin if e.source else None,
            uid(e.team_id),
            position,
            ts(e.effective_at),
        ),
    )
    w.add("kpi_text", (aid, position, e.name, e.unit, dec(e.target), e.frequency))
    _add_thresholds(w, aid, position, BEGINNING, e.thresholds)


def _kpi_changed(w: ViewWriter, position: int, aid: str, e: Kpi.Changed) -> None:
    w.add("kpi_text", (aid, position, e.name, e.unit, dec(e.target), e.frequency))


def _kpi_thresholds(w: ViewWriter, position: int, aid: str, e: Kpi.ThresholdsChanged) -> None:
    _add_thresholds(w, aid, position, ts(e.effective_from), e.thresholds)


def _add_thresholds(w: ViewWriter, kpi_id: str, position: int, start: Any, th: Any) -> None:
    w.add(
        "thresholds",
        (
            kpi_id,
            position,
            start,
            dec(th.green_low),
            dec(th.green_high),
            dec(th.amber_low),
            dec(th.amber_high),
        ),
    )


def _kpi_source(w: ViewWriter, position: int, aid: str, e: Kpi.SourceBound) -> None:
    w.add("kpi_source", (e.source.plugin if e.source else None, aid))


def current_reading(tx: Tx, t: dict[str, str], key: str, before: int, columns: str) -> Any:
    """`columns` of the current row of reading `key` as of just before position `before`.

    A reading's rows are its aggregate's events, so its current row is its last event's,
    found through the audit timeline's index by aggregate: an index on `reading_key` as
    well cost every recorded reading a second insert at a random place.
    """
    return tx.one(
        f"SELECT {columns} FROM {t['readings']} WHERE position = (SELECT max(position)"
        f" FROM {t['events']} WHERE aggregate_id = ? AND position < ?)"
        " AND superseded_by IS NULL",
        (key, before),
    )


def _reading_corrected(w: ViewWriter, position: int, aid: str, e: Reading.Corrected) -> None:
    w.flush()  # the reading being corrected may still be in the buffer
    columns = "position, kpi_id, reading_id, observed_at, source"
    current = current_reading(w.tx, w.t, aid, position, columns)
    if current is None:
        msg = f"no current reading {e.originator_id} to correct"
        raise LookupError(msg)
    previous, kpi_id, reading_id, observed_at, source = current
    w.add(
        "reading",
        (
            position,
            aid,
            kpi_id,
            reading_id,
            w.version,
            dec(e.value),
            observed_at,
            w.recorded_at,
            source,
        ),
    )
    w.add("reading_superseded", (position, previous))


HANDLERS: dict[str, Handler] = {
    Cycle.Defined.TOPIC: _cycle_defined,
    Cycle.Closed.TOPIC: _cycle_closed,
    Team.Formed.TOPIC: _team_formed,
    Team.Changed.TOPIC: _team_changed,
    Objective.Defined.TOPIC: _objective_defined,
    Objective.Edited.TOPIC: _objective_edited,
    Objective.Aligned.TOPIC: _objective_aligned,
    Objective.StatusChanged.TOPIC: _objective_status,
    KeyResult.Defined.TOPIC: _key_result_defined,
    KeyResult.TargetChanged.TOPIC: _key_result_target,
    KeyResult.CheckedIn.TOPIC: _checked_in,
    Kpi.Defined.TOPIC: _kpi_defined,
    Kpi.Changed.TOPIC: _kpi_changed,
    Kpi.ThresholdsChanged.TOPIC: _kpi_thresholds,
    Kpi.SourceBound.TOPIC: _kpi_source,
    Reading.Corrected.TOPIC: _reading_corrected,
}
