"""Shared fixtures: a real ledger on SQLite and on PostgreSQL.

PostgreSQL tests create their own database on 127.0.0.1:5432 and drop it after.
Without a reachable server they skip, unless GOALLEDGER_REQUIRE_POSTGRES=1 (CI sets
it), in which case they fail: CI must never pass by skipping them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from goalledger.core.ledger import Ledger
from goalledger.core.settings import Settings

# The egress policy refuses loopback by default; these tests run real servers on
# 127.0.0.1, so they allow it explicitly (in the environment, so server and worker
# subprocesses inherit it). Tests of the default build their policy without it.
os.environ["GOALLEDGER_EGRESS_LOOPBACK"] = "allow"

# Plugin-config secrets are stored encrypted, and refused where no key is set: the suite
# runs with this test key (in the environment too, for server subprocesses). The tests
# of running without a key (tests/test_secrets*.py) take it away.
TEST_SECRET_KEY = "dGVzdC1zZWNyZXQta2V5LW9mLTMyLWJ5dGVzLS0tLS0="
os.environ.setdefault("GOALLEDGER_SECRET_KEY", TEST_SECRET_KEY)

POSTGRES_ADMIN = os.environ.get(
    "GOALLEDGER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
STORES = ("sqlite", "postgres")


def _postgres_unavailable() -> str | None:
    try:
        with psycopg.connect(POSTGRES_ADMIN, connect_timeout=3):
            return None
    except psycopg.Error as error:
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN}: {str(error).strip()}"


def require_postgres() -> None:
    """Skip (or, where PostgreSQL is required, fail) when no server is reachable."""
    reason = _postgres_unavailable()
    if reason is None:
        return
    if os.environ.get("GOALLEDGER_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason} (GOALLEDGER_REQUIRE_POSTGRES=1)")
    pytest.skip(reason)


def _admin_url_for(dbname: str) -> str:
    return POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{dbname}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped after the test."""
    require_postgres()
    dbname = f"goalledger_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        yield _admin_url_for(dbname)
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A ledger file in a fresh directory (not yet created: first use creates it)."""
    return f"sqlite:///{tmp_path}/data/goalledger.db"


@pytest.fixture(params=STORES)
def database_url(request) -> str:
    """The same test on an SQLite file and on a PostgreSQL database."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return request.getfixturevalue(fixture)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, secret_key=TEST_SECRET_KEY)


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    """A ledger on each store; closed after the test."""
    app = Ledger(settings)
    try:
        yield app
    finally:
        app.close()
