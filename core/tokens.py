"""API tokens: issued and revoked as ledger events; only a hash of the secret is kept."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from goalledger.core.errors import DomainError, require
from goalledger.core.model import LedgerAggregate, aware, non_blank, utc_now

ROLES = ("viewer", "contributor", "manager", "admin", "auditor")
SECRET_PREFIX = "gl_"


def hash_secret(secret: str) -> str:
    """SHA-256 of a token secret; secrets are long and random, so no salt or stretching."""
    return hashlib.sha256(secret.encode()).hexdigest()


def token_id_of(secret: str) -> UUID | None:
    """The token id embedded in a secret (`gl_<id hex>_<random>`), or None if malformed."""
    if not secret.startswith(SECRET_PREFIX):
        return None
    head, _, rest = secret[len(SECRET_PREFIX) :].partition("_")
    if len(head) != 32 or not rest:
        return None
    try:
        return UUID(hex=head)
    except ValueError:
        return None


class Token(LedgerAggregate):
    """A bearer token with a role, optionally scoped to a team and its sub-teams."""

    TOPIC = "goalledger/token"

    class Event(LedgerAggregate.Event):
        """An event of a Token."""

    class Issued(Event, Aggregate.Created):
        """A token was issued."""

        TOPIC = "goalledger/token/issued"
        name: str
        role: str
        team_id: UUID | None
        secret_hash: str
        expires_at: datetime | None

        def apply(self, token: Token) -> None:
            token.name = self.name
            token.role = self.role
            token.team_id = self.team_id
            token.secret_hash = self.secret_hash
            token.expires_at = self.expires_at
            token.revoked = False

    Created = Issued

    class Revoked(Event):
        """A token was revoked; it authenticates nothing from then on."""

        TOPIC = "goalledger/token/revoked"
        reason: str | None

        def apply(self, token: Token) -> None:
            token.revoked = True

    # Typed state; under TYPE_CHECKING because eventsourcing turns class
    # annotations into __init__ parameters.
    if TYPE_CHECKING:
        name: str
        role: str
        team_id: UUID | None
        secret_hash: str
        expires_at: datetime | None
        revoked: bool

    @classmethod
    def issue(
        cls,
        *,
        name: str,
        role: str,
        team_id: UUID | None,
        expires_at: datetime | None = None,
        actor: str,
    ) -> tuple[Token, str]:
        """Issue a token; returns it with its secret, which is never stored."""
        require(role in ROLES, "role", f"must be one of {', '.join(ROLES)}")
        if expires_at is not None:
            aware(expires_at, "expires_at")
            require(expires_at > utc_now(), "expires_at", "must lie in the future")
        token_id = uuid4()
        secret = f"{SECRET_PREFIX}{token_id.hex}_{secrets.token_urlsafe(32)}"
        token = cls._create(
            cls.Issued,
            id=token_id,
            name=non_blank(name, "name", max_length=200),
            role=role,
            team_id=team_id,
            secret_hash=hash_secret(secret),
            expires_at=expires_at,
            actor=actor,
        )
        return token, secret

    def revoke(self, *, actor: str, reason: str | None = None) -> None:
        """Revoke the token."""
        if self.revoked:
            raise DomainError("token", "is already revoked")
        self.trigger_event(self.Revoked, actor=actor, reason=reason)

    def accepts(self, secret: str, now: datetime) -> bool:
        """Whether `secret` is this token's, and the token is neither revoked nor expired."""
        matches = hmac.compare_digest(self.secret_hash, hash_secret(secret))
        expired = self.expires_at is not None and now >= self.expires_at
        return matches and not self.revoked and not expired
