"""Settings from GOALLEDGER_* variables, the storage they select, and SQLite durability."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from goalledger.core.errors import DomainError
from goalledger.core.ledger import Ledger
from goalledger.core.settings import DEFAULT_DATABASE_URL, Settings, Storage


def test_database_url_comes_from_the_environment() -> None:
    settings = Settings.from_env({"GOALLEDGER_DATABASE_URL": "postgresql://alice@db.internal/okr"})
    assert settings.database_url == "postgresql://alice@db.internal/okr"
    assert settings.storage() == Storage(
        kind="postgresql", host="db.internal", port=5432, user="alice", dbname="okr"
    )


def test_defaults_and_overrides() -> None:
    assert Settings.from_env({}) == Settings(database_url=DEFAULT_DATABASE_URL)
    assert Settings.from_env({}).storage() == Storage(kind="sqlite", path="data/goalledger.db")
    environ = {
        "GOALLEDGER_DATABASE_URL": "sqlite:///from-env.db",
        "GOALLEDGER_SQLITE_SYNCHRONOUS": "normal",
        "GOALLEDGER_POSTGRES_POOL_SIZE": "12",
    }
    settings = Settings.from_env(environ, database_url="sqlite:////srv/flag.db")
    assert settings == Settings(
        database_url="sqlite:////srv/flag.db", sqlite_synchronous="normal", postgres_pool_size=12
    )
    assert settings.storage().path == "/srv/flag.db"


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root@localhost/okr",
        "sqlite:///",
        "sqlite://relative.db",  # two slashes: not an SQLite URL we understand
        "postgresql://db.internal/",
        "",
    ],
)
def test_a_bad_database_url_is_refused_naming_the_variable(url: str) -> None:
    with pytest.raises(DomainError) as raised:
        Settings.from_env({"GOALLEDGER_DATABASE_URL": url})
    assert raised.value.field == "GOALLEDGER_DATABASE_URL"


def test_unknown_sqlite_synchronous_mode_is_refused() -> None:
    with pytest.raises(DomainError) as raised:
        Settings.from_env({"GOALLEDGER_SQLITE_SYNCHRONOUS": "off"})
    assert raised.value.field == "GOALLEDGER_SQLITE_SYNCHRONOUS"


def test_a_malformed_number_is_refused() -> None:
    with pytest.raises(DomainError, match="GOALLEDGER_POSTGRES_POOL_SIZE") as refused:
        Settings.from_env({"GOALLEDGER_POSTGRES_POOL_SIZE": "many"})
    assert refused.value.field == "GOALLEDGER_POSTGRES_POOL_SIZE"


def test_a_bad_port_names_the_url() -> None:
    with pytest.raises(DomainError) as refused:
        Settings.from_env({"GOALLEDGER_DATABASE_URL": "postgresql://h:abc/db"})
    assert refused.value.field == "GOALLEDGER_DATABASE_URL"


def test_synchronous_setting_ignores_case() -> None:
    assert Settings.from_env({"GOALLEDGER_SQLITE_SYNCHRONOUS": "NORMAL"}).sqlite_synchronous == (
        "normal"
    )


def test_repr_never_shows_the_password() -> None:
    settings = Settings(database_url="postgresql://u:hunter2@h/db")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in repr(settings.storage())


def test_environment_cannot_redirect_the_ledger(tmp_path, monkeypatch) -> None:
    """eventsourcing reads GOALLEDGER_* keys too; the URL must still decide the database."""
    from goalledger.core.ledger import Ledger

    monkeypatch.setenv("GOALLEDGER_SQLITE_DBNAME", str(tmp_path / "other.db"))
    monkeypatch.setenv("GOALLEDGER_PERSISTENCE_MODULE", "eventsourcing.popo")
    ledger = Ledger(Settings(database_url=f"sqlite:///{tmp_path}/chosen.db"))
    try:
        ledger.form_team(name="Ops", actor="t")
    finally:
        ledger.close()
    assert (tmp_path / "chosen.db").exists()
    assert not (tmp_path / "other.db").exists()


def test_describe_never_shows_the_password() -> None:
    url = "postgresql://alice:s3cr%40t-pw@db.internal:6543/okr"
    storage = Settings.from_env({"GOALLEDGER_DATABASE_URL": url}).storage()
    assert storage.password == "s3cr@t-pw"  # decoded, for the driver
    description = storage.describe()
    assert description == "PostgreSQL database okr on db.internal:6543 as alice"
    assert "s3cr" not in description


def test_describe_names_the_sqlite_file(tmp_path: Path) -> None:
    storage = Storage.parse(f"sqlite:///{tmp_path}/ledger.db")
    assert storage.describe() == f"SQLite file {tmp_path.resolve()}/ledger.db"
    assert storage.sibling_path("projections") == tmp_path / "ledger.projections.db"


@pytest.mark.parametrize(("mode", "pragma"), [("normal", 1), ("full", 2)])
def test_sqlite_synchronous_applies_to_every_pooled_connection(
    sqlite_url: str, mode: str, pragma: int
) -> None:
    ledger = Ledger(Settings(database_url=sqlite_url, sqlite_synchronous=mode))
    try:
        ledger.form_team(name="Platform", actor="a")  # a write used a connection too
        datastore = ledger.recorder.datastore  # type: ignore[attr-defined]
        with ExitStack() as held:  # hold several at once, so the pool opens new ones
            connections = [
                held.enter_context(datastore.get_connection(commit=False)) for _ in range(4)
            ]
            modes = [
                c._sqlite_conn.execute("PRAGMA synchronous").fetchone()[0] for c in connections
            ]
        assert modes == [pragma] * 4
        assert ledger.head_position() == 1
    finally:
        ledger.close()
