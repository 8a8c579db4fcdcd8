"""`sql`: KPI values from a read-only SQL query on SQLite or PostgreSQL.

Three layers keep a query from writing: the config accepts one SELECT/WITH statement
only; SQLite files open with `mode=ro` and `PRAGMA query_only`; PostgreSQL sessions
run with `default_transaction_read_only` in a `READ ONLY` transaction.
"""

from __future__ import annotations

import re
import sqlite3
import time
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

import msgspec

from goalledger.plugins.contracts import KpiRef, Observation, Secret, SourceError
from goalledger.plugins.egress import EgressPolicy
from goalledger.plugins.hookspecs import Register, hookimpl
from goalledger.plugins.payloads import to_datetime, to_decimal
from goalledger.plugins.sources_http import Seconds

# String literals, quoted names and comments: where a `;` or a keyword does not count.
_NOISE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", re.S)


class SqlConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A database and a query returning `(observed_at, value[, reading_id])` rows."""

    database: str  # an SQLite file path, or postgresql://user@host:port/dbname
    password: Annotated[str | None, Secret] = None  # PostgreSQL only; never in `database`
    query: str
    timeout: Seconds = 10.0
    max_rows: Annotated[int, msgspec.Meta(gt=0, le=100_000)] = 10_000

    def __post_init__(self) -> None:
        if self.is_postgres:
            from psycopg.conninfo import conninfo_to_dict

            try:
                parts = conninfo_to_dict(self.database)
            except Exception:
                raise ValueError("database: is not a valid PostgreSQL URL") from None
            if parts.get("password"):
                raise ValueError("database: put the password in `password` (kept secret)")
        elif not self.database.strip():
            raise ValueError("database: must name an SQLite file or a PostgreSQL URL")
        check_query(self.query)

    @property
    def is_postgres(self) -> bool:
        return self.database.startswith(("postgresql://", "postgres://"))


def check_query(query: str) -> str:
    """One statement starting with SELECT or WITH (a trailing `;` is allowed)."""
    body = _NOISE.sub(" ", query).strip().rstrip(";").strip()
    first = body.split(None, 1)[0].upper() if body else ""
    if first not in ("SELECT", "WITH"):
        raise ValueError("query: must be a single SELECT (or WITH … SELECT) statement")
    if ";" in body:
        raise ValueError("query: must be a single statement")
    return query


class SqlSource:
    """Each row is a reading: column 1 the time, column 2 the value, an optional column 3
    the reading id (default: the time, so re-running the query records nothing new)."""

    name = "sql"
    config_type = SqlConfig

    def fetch(self, config: SqlConfig, kpi: KpiRef, since: datetime | None) -> list[Observation]:
        rows = postgres_rows(config) if config.is_postgres else sqlite_rows(config)
        observations: list[Observation] = []
        for number, row in enumerate(rows, start=1):
            if len(row) < 2:
                raise SourceError("the query must return (observed_at, value[, reading_id]) rows")
            observed_at = to_datetime(row[0], f"row {number}, column 1").astimezone(UTC)
            if (since is not None and observed_at <= since) or row[1] is None:
                continue
            value = to_decimal(row[1], f"row {number}, column 2")
            reading_id = (
                str(row[2])
                if len(row) > 2 and row[2] is not None
                else (
                    observed_at.date().isoformat()
                    if observed_at.time() == datetime.min.time()
                    else observed_at.isoformat()
                )
            )
            observations.append(Observation(reading_id, value, observed_at))
        return observations


def sqlite_rows(config: SqlConfig) -> list[tuple[Any, ...]]:
    """Run the query on a read-only connection to the SQLite file."""
    uri = f"file:{quote(config.database)}?mode=ro"
    deadline = time.monotonic() + config.timeout
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=config.timeout)
    except sqlite3.Error as error:
        raise SourceError(f"cannot open {config.database}: {error}") from None
    try:
        connection.execute("PRAGMA query_only = ON")
        # Abort a runaway query at the deadline (SQLite checks this every 10k steps).
        connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        cursor = connection.execute(config.query)
        rows = cursor.fetchmany(config.max_rows + 1)
    except sqlite3.Error as error:
        if time.monotonic() > deadline:
            raise SourceError(f"the query ran longer than {config.timeout:g}s") from None
        raise SourceError(f"SQLite: {error}") from None
    finally:
        connection.close()
    return _capped(rows, config.max_rows)


def postgres_rows(config: SqlConfig) -> list[tuple[Any, ...]]:
    """Run the query in a read-only PostgreSQL transaction with a statement timeout."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    parts: dict[str, Any] = conninfo_to_dict(config.database)
    host = str(parts.get("host") or "localhost")
    if not host.startswith("/"):  # a TCP host: obey the egress policy
        parts["hostaddr"] = EgressPolicy.from_env().resolve(host, int(parts.get("port") or 5432))
    millis = int(config.timeout * 1000)
    parts.update(
        password=config.password or None,
        connect_timeout=max(1, int(config.timeout)),
        options=f"-c default_transaction_read_only=on -c statement_timeout={millis}",
        application_name="goalledger-sql-source",
    )
    try:
        with psycopg.connect(**{k: v for k, v in parts.items() if v is not None}) as connection:
            connection.read_only = True
            with connection.cursor() as cursor:
                # binary=True forces the extended protocol: one statement, never a
                # `…; COMMIT; …` chain; with no parameters `%` is not a placeholder.
                cursor.execute(config.query, binary=True)
                rows = cursor.fetchmany(config.max_rows + 1)
            connection.rollback()
    except psycopg.Error as error:
        raise SourceError(f"PostgreSQL: {' '.join(str(error).split())}") from None
    return _capped([tuple(row) for row in rows], config.max_rows)


def _capped(rows: list[Any], limit: int) -> list[tuple[Any, ...]]:
    if len(rows) > limit:
        raise SourceError(f"the query returned more than {limit} rows; filter or aggregate")
    return [tuple(row) for row in rows]


@hookimpl
def register_metric_sources(register: Register) -> None:
    register(SqlSource())
