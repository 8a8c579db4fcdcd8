"""Read-model tables, their generations, and the swap that makes a rebuild live.

Every read-model table is named `g<N>_<name>`; `gl_views` records which generation
is live. Times are stored as integer microseconds since the Unix epoch (UTC) and
decimals as exact text, so both stores compare and return them identically, and
turning a datetime into a column value stays cheap on the rebuild's hot path.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from goalledger.projections.store import Tx

META_TABLE = "gl_views"
STATUS_TABLE = "gl_view_failures"
TABLES = {
    "tracking": "name TEXT PRIMARY KEY, position BIGINT NOT NULL",
    "events": (
        "position BIGINT PRIMARY KEY, aggregate_id TEXT NOT NULL, version INTEGER NOT NULL,"
        " topic TEXT NOT NULL, actor TEXT NOT NULL, reason TEXT, recorded_at BIGINT NOT NULL,"
        " effective_at BIGINT"
    ),
    "cycles": (
        "id TEXT PRIMARY KEY, name TEXT NOT NULL, starts_on TEXT NOT NULL, ends_on TEXT NOT NULL,"
        " status TEXT NOT NULL, rule TEXT, defined_position BIGINT NOT NULL,"
        " closed_position BIGINT, closed_at BIGINT"
    ),
    # Teams, objective wording and status, and KPI descriptions change over time: each
    # change is a new row, and a read takes the latest row within its position bound.
    "teams": (
        "id TEXT NOT NULL, position BIGINT NOT NULL, name TEXT NOT NULL, parent_id TEXT,"
        " check_in_interval_days INTEGER NOT NULL, PRIMARY KEY (id, position)"
    ),
    "objectives": (
        "id TEXT PRIMARY KEY, cycle_id TEXT NOT NULL, team_id TEXT NOT NULL, kind TEXT NOT NULL,"
        " defined_position BIGINT NOT NULL, effective_at BIGINT NOT NULL"
    ),
    "objective_texts": (
        "id TEXT NOT NULL, position BIGINT NOT NULL, title TEXT NOT NULL,"
        " description TEXT NOT NULL, owner TEXT NOT NULL, PRIMARY KEY (id, position)"
    ),
    "objective_statuses": (
        "id TEXT NOT NULL, position BIGINT NOT NULL, status TEXT NOT NULL,"
        " PRIMARY KEY (id, position)"
    ),
    "alignments": (
        "objective_id TEXT NOT NULL, position BIGINT NOT NULL, effective_at BIGINT NOT NULL,"
        " parent_objective_id TEXT, parent_key_result_id TEXT,"
        " PRIMARY KEY (objective_id, position)"
    ),
    "key_results": (
        "id TEXT PRIMARY KEY, objective_id TEXT NOT NULL, cycle_id TEXT NOT NULL,"
        " team_id TEXT NOT NULL, title TEXT NOT NULL, kind TEXT NOT NULL, unit TEXT NOT NULL,"
        " owner TEXT NOT NULL, kpi_id TEXT, steps_total INTEGER NOT NULL, start_value TEXT,"
        " defined_position BIGINT NOT NULL, effective_at BIGINT NOT NULL"
    ),
    "kr_targets": (
        "kr_id TEXT NOT NULL, position BIGINT NOT NULL, effective_at BIGINT NOT NULL,"
        " target TEXT, band_low TEXT, band_high TEXT, weight TEXT NOT NULL,"
        " PRIMARY KEY (kr_id, position)"
    ),
    "check_ins": (
        "position BIGINT PRIMARY KEY, kr_id TEXT NOT NULL, value TEXT, done INTEGER,"
        " steps_done INTEGER, confidence TEXT, note TEXT NOT NULL, actor TEXT NOT NULL,"
        " effective_at BIGINT NOT NULL, recorded_at BIGINT NOT NULL"
    ),
    "kpis": (
        "id TEXT PRIMARY KEY, direction TEXT NOT NULL, source_plugin TEXT, team_id TEXT,"
        " defined_position BIGINT NOT NULL, effective_at BIGINT NOT NULL"
    ),
    "kpi_texts": (
        "id TEXT NOT NULL, position BIGINT NOT NULL, name TEXT NOT NULL, unit TEXT NOT NULL,"
        " target TEXT, frequency TEXT NOT NULL, PRIMARY KEY (id, position)"
    ),
    "kpi_thresholds": (
        "kpi_id TEXT NOT NULL, position BIGINT NOT NULL, effective_from BIGINT NOT NULL,"
        " green_low TEXT, green_high TEXT, amber_low TEXT, amber_high TEXT,"
        " PRIMARY KEY (kpi_id, position)"
    ),
    "readings": (
        "position BIGINT PRIMARY KEY, reading_key TEXT NOT NULL, kpi_id TEXT NOT NULL,"
        " reading_id TEXT NOT NULL, version INTEGER NOT NULL, value TEXT NOT NULL,"
        " observed_at BIGINT NOT NULL, recorded_at BIGINT NOT NULL, source TEXT NOT NULL,"
        " superseded_by BIGINT"
    ),
    # The hash chain over the log (projections/chain.py): one link per applied event.
    "chain": "position BIGINT PRIMARY KEY, hash TEXT NOT NULL",
}
# Indexes for queries. A rebuild creates them after its bulk load (much faster than
# maintaining them row by row); PROJECTION_INDEXES are those the projector itself reads,
# which a rebuild creates as soon as a batch needs them (a reading's correction).
PROJECTION_INDEXES = ("events_aggregate",)
INDEXES = {
    "events_recorded": "events (recorded_at, position)",
    "events_aggregate": "events (aggregate_id, position)",
    "objectives_cycle": "objectives (cycle_id)",
    "key_results_objective": "key_results (objective_id)",
    "key_results_cycle": "key_results (cycle_id)",
    "check_ins_kr": "check_ins (kr_id, effective_at, position)",
    "readings_kpi": "readings (kpi_id, observed_at, position)",
}
# The first thresholds of a KPI apply to readings from any time, even back-dated ones.
BEGINNING = -(2**62)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def table(generation: int, name: str) -> str:
    """The name of read-model table `name` in `generation`."""
    return f"g{generation}_{name}"


def ensure_meta(tx: Tx) -> None:
    """Create the generation register if it is missing."""
    tx.execute(
        f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value BIGINT NOT NULL)"
    )
    ensure_status(tx)


def ensure_status(tx: Tx) -> None:
    """Create the table where a stopped projection records why it stopped."""
    tx.execute(
        f"CREATE TABLE IF NOT EXISTS {STATUS_TABLE} (generation BIGINT PRIMARY KEY,"
        " position BIGINT NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL,"
        " failed_at BIGINT NOT NULL)"
    )


def live_generation(tx: Tx) -> int | None:
    """The generation queries read from, or None before the first projection."""
    return tx.scalar(f"SELECT value FROM {META_TABLE} WHERE key = 'live'")


def create_generation(tx: Tx, generation: int, *, query_indexes: bool = True) -> None:
    """Create every read-model table of `generation`, empty, with tracking at 0.

    Without `query_indexes` (a rebuild), no index at all: the projector creates
    PROJECTION_INDEXES when it first needs them.
    """
    for name, columns in TABLES.items():
        if not tx.postgres:
            # SQLite stores an INTEGER PRIMARY KEY as the rowid itself; BIGINT would add
            # a second index that every insert must maintain.
            columns = columns.replace("BIGINT PRIMARY KEY", "INTEGER PRIMARY KEY")
        tx.execute(f"CREATE TABLE IF NOT EXISTS {table(generation, name)} ({columns})")
    if query_indexes:
        create_indexes(tx, generation)
    if tx.scalar(f"SELECT count(*) FROM {table(generation, 'tracking')}") == 0:
        tx.execute(f"INSERT INTO {table(generation, 'tracking')} VALUES ('views', 0)")


def create_indexes(tx: Tx, generation: int, only: tuple[str, ...] | None = None) -> None:
    """Create the indexes of `generation` (or just those named in `only`)."""
    for name, target in INDEXES.items():
        if only is None or name in only:
            tx.execute(f"CREATE INDEX IF NOT EXISTS g{generation}_{name} ON g{generation}_{target}")


def drop_generation(tx: Tx, generation: int) -> None:
    """Drop every table of a generation that is no longer live."""
    for name in TABLES:
        tx.execute(f"DROP TABLE IF EXISTS {table(generation, name)}")


def make_live(tx: Tx, generation: int) -> None:
    """Point queries and the live projector at `generation`."""
    if live_generation(tx) is None:
        tx.execute(f"INSERT INTO {META_TABLE} (key, value) VALUES ('live', ?)", (generation,))
    else:
        tx.execute(f"UPDATE {META_TABLE} SET value = ? WHERE key = 'live'", (generation,))


def next_generation(tx: Tx) -> int:
    """A generation number no table uses yet."""
    value = tx.scalar(f"SELECT value FROM {META_TABLE} WHERE key = 'highest'")
    following = (value or live_generation(tx) or 0) + 1
    if value is None:
        tx.execute(f"INSERT INTO {META_TABLE} (key, value) VALUES ('highest', ?)", (following,))
    else:
        tx.execute(f"UPDATE {META_TABLE} SET value = ? WHERE key = 'highest'", (following,))
    return following


# -- value encoding: exact, comparable text ----------------------------------------------


def ts(moment: datetime | None) -> int | None:
    """A timezone-aware moment as integer microseconds since the epoch (sorts like time)."""
    if moment is None:
        return None
    return (moment - EPOCH) // MICROSECOND


def from_ts(micros: int | None) -> datetime | None:
    """Inverse of `ts` (the very first thresholds' start maps to year 1)."""
    if micros is None:
        return None
    if micros == BEGINNING:
        return EARLIEST
    return EPOCH + timedelta(microseconds=micros)


def dec(number: Decimal | None) -> str | None:
    """A Decimal as exact text."""
    return None if number is None else str(number)


def from_dec(text: str | None) -> Decimal | None:
    """Inverse of `dec`."""
    return None if text is None else Decimal(text)


def uid(value: UUID | None) -> str | None:
    """A UUID as text."""
    return None if value is None else str(value)
