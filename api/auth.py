"""Bearer tokens, roles and team scopes.

Roles: `viewer` < `contributor` < `manager` < `admin`; `auditor` reads everything
(the audit trail included) and writes nothing. A team-scoped token acts only on its
team and the teams under it: org-wide things (cycles, KPIs without a team, the audit
trail) it may read but not change.

Team ancestry is resolved from the ledger rather than the teams read model, so a team
formed a moment ago is in scope at once (the read model may lag a few milliseconds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

import anyio.to_thread
import msgspec
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from goalledger.api.problems import Forbidden, Unauthorized
from goalledger.core.errors import NotFound
from goalledger.core.ledger import Ledger
from goalledger.core.teams import Team
from goalledger.core.tokens import Token, hash_secret

# How long an authenticated token is trusted without asking the ledger again: a
# revocation made in another process takes effect within this many seconds (one made
# through this process's API at once); an expiring token is never trusted past its end.
TOKEN_CACHE_SECONDS = 1.0
MAX_TEAM_DEPTH = 64
# Which roles may do what. Each route names one of these abilities.
ABILITIES: dict[str, frozenset[str]] = {
    "read": frozenset({"viewer", "contributor", "manager", "admin", "auditor"}),
    "contribute": frozenset({"contributor", "manager", "admin"}),
    "manage": frozenset({"manager", "admin"}),
    "administer": frozenset({"admin"}),
    "audit": frozenset({"auditor", "admin"}),
}


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: an authenticated token's id, name, role and team scope."""

    token_id: UUID
    name: str
    role: str
    team_id: UUID | None

    @property
    def actor(self) -> str:
        """The actor recorded on the events this principal causes (ids are unique, names not)."""
        return f"token:{self.token_id}"


class Authenticator:
    """Checks bearer secrets against the ledger, trusting an answer for a second."""

    def __init__(self, ledger: Ledger, ttl: float = TOKEN_CACHE_SECONDS) -> None:
        self.ledger = ledger
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def cached(self, secret: str) -> tuple[bool, Principal | None]:
        """(hit, principal) from the cache, without touching the ledger."""
        entry = self._cache.get(hash_secret(secret))
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def authenticate(self, secret: str) -> Principal | None:
        """The principal whose secret this is, or None (unknown, revoked, expired)."""
        hit, principal = self.cached(secret)
        if hit:
            return principal
        token: Token | None = self.ledger.authenticate(secret)
        trusted_for, principal = self.ttl, None
        if token is not None:
            principal = Principal(token.id, token.name, token.role, token.team_id)
            if token.expires_at is not None:  # an expiring token is not trusted past its end
                left = (token.expires_at - datetime.now(UTC)).total_seconds()
                trusted_for = min(trusted_for, left)
        with self._lock:
            if len(self._cache) > 10_000:  # bound memory against floods of bad secrets
                self._cache.clear()
            self._cache[hash_secret(secret)] = (time.monotonic() + trusted_for, principal)
        return principal

    async def principal(self, secret: str) -> Principal | None:
        """`authenticate` for async code: the cache inline, the ledger in a worker thread."""
        hit, principal = self.cached(secret)
        if hit:
            return principal
        return await anyio.to_thread.run_sync(self.authenticate, secret)

    def forget(self, token_id: UUID) -> None:
        """Drop a token from the cache (it was just revoked in this process)."""
        with self._lock:
            for key, (_, principal) in list(self._cache.items()):
                if principal is not None and principal.token_id == token_id:
                    del self._cache[key]


def bearer_secret(authorization: str | None) -> str | None:
    """The secret of an `Authorization: Bearer <secret>` header, or None."""
    if not authorization:
        return None
    scheme, _, secret = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


async def authenticate_connection(
    authenticator: Authenticator, connection: ASGIConnection
) -> Principal:
    """The caller, or `Unauthorized`."""
    secret = bearer_secret(connection.headers.get("authorization"))
    if secret is None:
        raise Unauthorized(
            "an 'Authorization: Bearer <token>' header is required",
            headers={"WWW-Authenticate": 'Bearer realm="goalledger"'},
        )
    principal = await authenticator.principal(secret)
    if principal is None:
        raise Unauthorized(
            "the token is unknown, revoked or expired",
            headers={"WWW-Authenticate": 'Bearer realm="goalledger", error="invalid_token"'},
        )
    return principal


def requires(ability: str) -> Callable[[ASGIConnection, BaseRouteHandler], object]:
    """A guard: the caller must hold a role with `ability` (see ABILITIES)."""
    allowed = ABILITIES[ability]

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        authenticator: Authenticator = connection.app.state["authenticator"]
        principal = await authenticate_connection(authenticator, connection)
        if principal.role not in allowed:
            raise Forbidden(f"role {principal.role} may not {ability} here")
        connection.state["principal"] = principal

    guard.__name__ = f"requires_{ability}"
    return guard


def current_principal(connection: ASGIConnection) -> Principal:
    """The principal the route's guard authenticated."""
    return connection.state["principal"]


class TeamScope:
    """Team-scope checks for one principal, resolved against the ledger."""

    def __init__(self, ledger: Ledger, principal: Principal) -> None:
        self.ledger = ledger
        self.principal = principal

    @property
    def team_id(self) -> UUID | None:
        """The team the principal is scoped to (None: the whole organisation)."""
        return self.principal.team_id

    def covers(self, team_id: UUID | None) -> bool:
        """Whether `team_id` is the principal's team or under it (org-wide: unscoped only)."""
        if self.principal.team_id is None:
            return True
        if team_id is None:
            return False
        current: UUID | None = team_id
        for _ in range(MAX_TEAM_DEPTH):
            if current is None:
                return False
            if current == self.principal.team_id:
                return True
            try:
                current = self.ledger.load(current, Team).parent_id
            except NotFound:
                return False
        return False

    def check_read(self, team_id: UUID | None, what: str) -> None:
        """Reading: org-wide things are readable by all; team things only in scope."""
        if team_id is not None and not self.covers(team_id):
            raise Forbidden(f"this token is scoped to team {self.team_id}; {what} is outside it")

    def check_write(self, team_id: UUID | None, what: str) -> None:
        """Writing: only within scope; org-wide things need an unscoped token."""
        if not self.covers(team_id):
            raise Forbidden(f"this token is scoped to team {self.team_id}; {what} is outside it")

    def check_unscoped(self, what: str) -> None:
        """Org-wide operations need a token that is not scoped to a team."""
        if self.principal.team_id is not None:
            raise Forbidden(f"{what} needs a token that is not scoped to a team")
