"""`sql` on a real SQLite file and a real PostgreSQL database: rows become readings, and
nothing the query says can write."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from goalledger.core.errors import DomainError
from goalledger.plugins import KpiRef, SourceError
from goalledger.plugins.fetch import FetchFailed
from goalledger.plugins.sources_sql import SqlConfig, SqlSource, check_query
from goalledger.plugins.testkit import SourceHarness

pytest_plugins = ["goalledger.plugins.testing"]

KPI = KpiRef(UUID(int=2), name="k", unit="", direction="higher_is_better", frequency="daily")
ROWS = [("2026-03-12", 10.5), ("2026-03-13", 11.0), ("2026-03-14T06:30:00+00:00", None)]


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "metrics.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE daily (day TEXT, signups REAL)")
        db.executemany("INSERT INTO daily VALUES (?, ?)", ROWS)
    return path


def count_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM daily").fetchone()[0]


def test_source_sql(goalledger_harness: SourceHarness, sqlite_file: Path) -> None:
    kpi_id = goalledger_harness.define_kpi(
        "sql", {"database": str(sqlite_file), "query": "SELECT day, signups FROM daily"}
    )
    first = goalledger_harness.fetch(kpi_id)
    assert first.recorded == ["2026-03-12", "2026-03-13"]  # a NULL value is no reading
    with sqlite3.connect(sqlite_file) as db:
        db.execute("INSERT INTO daily VALUES ('2026-03-15', 12.25)")
    second = goalledger_harness.fetch(kpi_id)
    assert second.recorded == ["2026-03-15"] and second.duplicates == []
    assert [r.value for r in goalledger_harness.readings(kpi_id)] == [
        Decimal("10.5"),
        Decimal("11.0"),
        Decimal("12.25"),
    ]


def test_sql_rows_may_name_their_reading_id(sqlite_file: Path) -> None:
    config = SqlConfig(
        database=str(sqlite_file),
        query="SELECT day, signups, 'day-' || day FROM daily WHERE signups IS NOT NULL",
    )
    rows = SqlSource().fetch(config, KPI, None)
    assert [(o.reading_id, o.value) for o in rows] == [
        ("day-2026-03-12", Decimal("10.5")),
        ("day-2026-03-13", Decimal("11.0")),
    ]
    assert rows[0].observed_at == datetime(2026, 3, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM daily",
        "INSERT INTO daily VALUES ('x', 1)",
        "SELECT 1, 2; DROP TABLE daily",
        "-- looks like a select\nUPDATE daily SET signups = 0",
        "PRAGMA query_only = OFF",
    ],
)
def test_a_writing_statement_is_refused_at_definition(
    goalledger_harness: SourceHarness, sqlite_file: Path, query: str
) -> None:
    with pytest.raises(DomainError) as caught:
        goalledger_harness.registry.validate_source(
            "sql", {"database": str(sqlite_file), "query": query}
        )
    assert caught.value.field == "source.config.query"
    assert check_query("SELECT ';' AS semicolon, 1 -- a ; in a comment") is not None


def test_the_sqlite_connection_itself_is_read_only(
    goalledger_harness: SourceHarness, sqlite_file: Path
) -> None:
    sneaky = "WITH x AS (SELECT 1) INSERT INTO daily SELECT '2030-01-01', 99 FROM x"
    kpi_id = goalledger_harness.define_kpi(
        "sql", {"database": str(sqlite_file), "query": sneaky}
    )  # starts with WITH: passes the syntactic check, so the connection must refuse it
    with pytest.raises(FetchFailed) as caught:
        goalledger_harness.fetch(kpi_id)
    assert caught.value.health.last_error == "SQLite: attempt to write a readonly database"
    config = SqlConfig(database=str(sqlite_file), query="SELECT 1, 1")
    config.query = "DELETE FROM daily"  # bypass the config check entirely
    with pytest.raises(SourceError, match="readonly database"):
        SqlSource().fetch(config, KPI, None)
    assert count_rows(sqlite_file) == len(ROWS)


def test_sqlite_problems_are_clear(tmp_path: Path, sqlite_file: Path) -> None:
    missing = SqlConfig(database=str(tmp_path / "nope.db"), query="SELECT 1, 1")
    with pytest.raises(SourceError, match=r"cannot open .*nope\.db"):
        SqlSource().fetch(missing, KPI, None)
    assert not (tmp_path / "nope.db").exists()  # read-only never creates a file
    endless = SqlConfig(
        database=str(sqlite_file),
        query="WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
        "SELECT '2026-03-01', max(x) FROM c",
        timeout=0.3,
    )
    with pytest.raises(SourceError, match=r"the query ran longer than 0.3s"):
        SqlSource().fetch(endless, KPI, None)
    many = SqlConfig(database=str(sqlite_file), query="SELECT day, signups FROM daily", max_rows=2)
    with pytest.raises(SourceError, match="more than 2 rows; filter or aggregate"):
        SqlSource().fetch(many, KPI, None)
    one_column = SqlConfig(database=str(sqlite_file), query="SELECT day FROM daily")
    with pytest.raises(SourceError, match=r"\(observed_at, value\[, reading_id\]\)"):
        SqlSource().fetch(one_column, KPI, None)


def test_a_postgres_password_belongs_in_the_secret_field(
    goalledger_harness: SourceHarness,
) -> None:
    with pytest.raises(DomainError) as caught:
        goalledger_harness.registry.validate_source(
            "sql", {"database": "postgresql://u:hunter2@db.example/x", "query": "SELECT 1, 1"}
        )
    assert caught.value.field == "source.config.database"
    assert "hunter2" not in caught.value.message


@pytest.fixture
def postgres_metrics(postgres_url: str) -> str:
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("CREATE TABLE daily (day date, signups numeric)")
        db.execute(
            "INSERT INTO daily VALUES ('2026-03-12', 10.5), ('2026-03-13', 11.000), "
            "('2026-03-14', NULL)"
        )
    return postgres_url


def test_source_sql_on_postgres(goalledger_harness: SourceHarness, postgres_metrics: str) -> None:
    kpi_id = goalledger_harness.define_kpi(
        "sql",
        {"database": postgres_metrics, "query": "SELECT day, signups FROM daily ORDER BY day"},
    )
    assert goalledger_harness.fetch(kpi_id).recorded == ["2026-03-12", "2026-03-13"]
    assert goalledger_harness.fetch(kpi_id).recorded == []
    assert [r.value for r in goalledger_harness.readings(kpi_id)] == [
        Decimal("10.5"),
        Decimal("11.000"),  # numeric stays exact
    ]
    session = SqlConfig(
        database=postgres_metrics,
        query="SELECT now(), (current_setting('transaction_read_only') = 'on')::int",
    )
    assert SqlSource().fetch(session, KPI, None)[0].value == 1


def test_postgres_refuses_a_writing_query(postgres_metrics: str) -> None:
    sneaky = SqlConfig(
        database=postgres_metrics,
        query="WITH gone AS (DELETE FROM daily RETURNING *) SELECT now(), count(*) FROM gone",
    )
    with pytest.raises(SourceError, match="in a read-only transaction"):
        SqlSource().fetch(sneaky, KPI, None)
    # Past the config check (which refuses `;`), a chain of statements is still refused.
    sneaky.query = "SELECT now(), 1; COMMIT; BEGIN READ WRITE; DELETE FROM daily; COMMIT"
    with pytest.raises(SourceError, match="cannot insert multiple commands"):
        SqlSource().fetch(sneaky, KPI, None)
    slow = SqlConfig(database=postgres_metrics, query="SELECT now(), pg_sleep(5)", timeout=0.5)
    with pytest.raises(SourceError, match="statement timeout"):
        SqlSource().fetch(slow, KPI, None)
    with psycopg.connect(postgres_metrics) as db:
        assert db.execute("SELECT count(*) FROM daily").fetchone() == (3,)
