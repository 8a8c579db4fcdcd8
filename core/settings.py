"""Settings from `GOALLEDGER_*` environment variables, and the ledger storage they select."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

import msgspec

from goalledger.core.errors import DomainError

DEFAULT_DATABASE_URL = "sqlite:///data/goalledger.db"
SQLITE_SYNCHRONOUS = ("full", "normal")


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything configurable about a goalledger process."""

    database_url: str = DEFAULT_DATABASE_URL
    # FULL fsyncs every commit (survives power loss); NORMAL with WAL survives a killed
    # process but may lose the last commits on power loss. The trade-off is the user's.
    sqlite_synchronous: str = "full"
    postgres_pool_size: int = 5
    # Aggregates kept in memory between commands; each use still fast-forwards from the
    # store and works on a copy, so several processes and threads stay correct.
    aggregate_cache_size: int = 5000
    # Seals plugin-config secrets in the ledger (base64url, 32 bytes); previous keys,
    # comma-separated, only open values until `goalledger secrets rotate` re-seals them.
    secret_key: str = ""
    secret_keys_previous: str = ""
    # Request bodies above this many bytes are refused (413) before they are read whole;
    # a batch of 1,000 readings is about 150 kB.
    max_body_bytes: int = 2_097_152
    # Writes per second each token may make (a token bucket of `write_burst`); 0: no limit.
    write_rate: float = 5000.0
    write_burst: int = 10_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read `GOALLEDGER_DATABASE_URL` and friends; keyword overrides win."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in msgspec.structs.fields(cls):
            key = f"GOALLEDGER_{field.name.upper()}"
            if key in environ:
                values[field.name] = environ[key]
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values.get("sqlite_synchronous"), str):
            values["sqlite_synchronous"] = values["sqlite_synchronous"].lower()
        try:
            settings = msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as error:
            # msgspec names the field as `$.field`; report the variable a user sets.
            message = str(error)
            field = message.rsplit("$.", 1)[-1].strip("`'\" ") if "$." in message else ""
            variable = f"GOALLEDGER_{field.upper()}" if field else "settings"
            raise DomainError(variable, message.split(" - at ")[0]) from None
        settings.storage()  # fail early on a malformed URL
        if settings.sqlite_synchronous not in SQLITE_SYNCHRONOUS:
            raise DomainError("GOALLEDGER_SQLITE_SYNCHRONOUS", "must be full or normal")
        if settings.max_body_bytes < 1024:
            raise DomainError("GOALLEDGER_MAX_BODY_BYTES", "must be at least 1024")
        if settings.write_rate < 0:
            raise DomainError("GOALLEDGER_WRITE_RATE", "must be 0 (no limit) or more")
        if settings.write_burst < 1:
            raise DomainError("GOALLEDGER_WRITE_BURST", "must be at least 1")
        return settings

    def __repr__(self) -> str:
        return f"Settings(database={self.storage().describe()!r})"

    def storage(self) -> Storage:
        """The storage the database URL names."""
        return Storage.parse(self.database_url)


class Storage(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed database URL: an SQLite file or a PostgreSQL database."""

    kind: str  # "sqlite" or "postgresql"
    path: str = ""
    host: str = ""
    port: int = 5432
    user: str = ""
    password: str = ""
    dbname: str = ""

    @classmethod
    def parse(cls, url: str) -> Storage:
        """Parse `sqlite:///relative.db`, `sqlite:////absolute.db` or `postgresql://…`."""
        if url.startswith("sqlite:///"):
            path = url[len("sqlite:///") :]
            if not path:
                raise DomainError("GOALLEDGER_DATABASE_URL", "names no SQLite file")
            return cls(kind="sqlite", path=path)
        parts = urlsplit(url)
        if parts.scheme in ("postgresql", "postgres"):
            try:
                port = parts.port or 5432
            except ValueError:
                raise DomainError("GOALLEDGER_DATABASE_URL", "has an invalid port") from None
            dbname = parts.path.lstrip("/")
            if not dbname:
                raise DomainError("GOALLEDGER_DATABASE_URL", "names no PostgreSQL database")
            return cls(
                kind="postgresql",
                host=parts.hostname or "127.0.0.1",
                port=port,
                user=unquote(parts.username or "postgres"),
                password=unquote(parts.password or ""),
                dbname=unquote(dbname),
            )
        raise DomainError(
            "GOALLEDGER_DATABASE_URL",
            f"must start with sqlite:/// or postgresql://, got {url.split(':', 1)[0]!r}",
        )

    def __repr__(self) -> str:
        return f"Storage({self.describe()!r})"

    def sibling_path(self, suffix: str) -> Path:
        """A file beside the SQLite ledger, e.g. its projections database."""
        ledger = Path(self.path)
        return ledger.with_name(f"{ledger.stem}.{suffix}{ledger.suffix or '.db'}")

    def describe(self) -> str:
        """Where the ledger lives, without any password."""
        if self.kind == "sqlite":
            return f"SQLite file {Path(self.path).resolve()}"
        return f"PostgreSQL database {self.dbname} on {self.host}:{self.port} as {self.user}"

    def eventsourcing_env(self, settings: Settings) -> dict[str, str]:
        """The eventsourcing persistence settings for this storage."""
        if self.kind == "sqlite":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            return {
                **_cache_env(settings),
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": self.path,
                "SQLITE_LOCK_TIMEOUT": "30",
                "GOALLEDGER_SQLITE_SYNCHRONOUS": settings.sqlite_synchronous,
            }
        return {
            **_cache_env(settings),
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_POOL_SIZE": str(settings.postgres_pool_size),
            # Seconds to wait for a pooled connection. eventsourcing tries each call 10 times,
            # so while the database is unreachable a request fails (503) after ~12 s, not ~52.
            "POSTGRES_CONNECT_TIMEOUT": "1",
            "POSTGRES_LOCK_TIMEOUT": "5",
            "POSTGRES_ENABLE_DB_FUNCTIONS": "y",
        }


def _cache_env(settings: Settings) -> dict[str, str]:
    if settings.aggregate_cache_size <= 0:
        return {}
    return {
        "AGGREGATE_CACHE_MAXSIZE": str(settings.aggregate_cache_size),
        "AGGREGATE_CACHE_FASTFORWARD": "y",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "y",
    }
