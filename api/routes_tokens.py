"""API tokens: issue (the secret is shown once), list (never a secret), revoke."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec
from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from goalledger.api.auth import Authenticator, Principal, TeamScope, requires
from goalledger.api.bootstrap import System
from goalledger.api.http_conventions import AwareDatetime, aggregate_response
from goalledger.api.http_json import Body, JsonResponse
from goalledger.api.http_reads import token_ids
from goalledger.api.pagination import Cursor, Limit, Page, decode_cursor, page
from goalledger.api.problems import problem_responses
from goalledger.core.tokens import Token


class TokenIn(Body):
    """A token to issue: a label, a role, an optional team scope and expiry."""

    name: str
    role: str
    team_id: UUID | None = None
    expires_at: AwareDatetime | None = None


class TokenOut(msgspec.Struct, frozen=True):
    """A token, without its secret."""

    id: UUID
    name: str
    role: str
    team_id: UUID | None
    expires_at: datetime | None
    revoked: bool
    version: int


class TokenIssued(msgspec.Struct, frozen=True):
    """A newly issued token and its secret: shown this once, never stored."""

    id: UUID
    name: str
    role: str
    team_id: UUID | None
    expires_at: datetime | None
    revoked: bool
    version: int
    secret: str


def token_out(token: Token) -> TokenOut:
    """A token aggregate as the API shows it (never its secret or its hash)."""
    return TokenOut(
        id=token.id, name=token.name, role=token.role, team_id=token.team_id,
        expires_at=token.expires_at, revoked=token.revoked, version=token.version,
    )  # fmt: skip


class TokenController(Controller):
    """Tokens (admin)."""

    path = "/v1/tokens"
    tags = ("tokens",)
    guards = (requires("administer"),)

    @post(operation_id="issueToken", sync_to_thread=True, responses=problem_responses(404, 422))
    def issue_token(
        self,
        system: NamedDependency[System],
        principal: NamedDependency[Principal],
        access: NamedDependency[TeamScope],
        data: JSONBody[TokenIn],
    ) -> JsonResponse[TokenIssued]:
        """Issue a token; the response holds its secret, which is never shown again."""
        if access.team_id is not None:  # a team admin issues tokens for its teams only
            access.check_write(data.team_id, "the token's team")
        written, secret = system.ledger.issue_token(
            name=data.name, role=data.role, team_id=data.team_id, expires_at=data.expires_at,
            actor=principal.actor,
        )  # fmt: skip
        token = system.ledger.load(written.id, Token)
        body = TokenIssued(**msgspec.structs.asdict(token_out(token)), secret=secret)
        response = aggregate_response(
            body, token.version, status_code=201, position=written.position,
            location=f"/v1/tokens/{token.id}",
        )  # fmt: skip
        response.headers["Cache-Control"] = "no-store"
        return response

    @get(operation_id="listTokens", sync_to_thread=True, responses=problem_responses(503))
    def list_tokens(
        self,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        consistency: NamedDependency[int | None],
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[TokenOut]:
        """Tokens issued, oldest first, revoked ones included; never a secret."""
        after = decode_cursor(cursor, int) or 0
        rows = token_ids(system, after, limit + 1)
        positions = {row[0]: row[1] for row in rows}
        tokens = [token_out(system.ledger.load(UUID(i), Token)) for i, _ in rows]
        result = page(tokens, limit, lambda t: positions[str(t.id)])
        if access.team_id is not None:  # a page may come out short; the cursor stays right
            result.items = [t for t in result.items if access.covers(t.team_id)]
        return result

    @delete(
        "/{token_id:uuid}", operation_id="revokeToken", sync_to_thread=True, status_code=200,
        responses=problem_responses(404, 422),
    )  # fmt: skip
    def revoke_token(
        self,
        system: NamedDependency[System],
        principal: NamedDependency[Principal],
        access: NamedDependency[TeamScope],
        authenticator: NamedDependency[Authenticator],
        token_id: FromPath[UUID],
    ) -> JsonResponse[TokenOut]:
        """Revoke a token: it authenticates nothing from now on."""
        token = system.ledger.load(token_id, Token, "token_id")
        if access.team_id is not None:
            access.check_write(token.team_id, "this token")
        written = system.ledger.revoke_token(token_id, actor=principal.actor)
        authenticator.forget(token_id)
        token = system.ledger.load(token_id, Token)
        return aggregate_response(token_out(token), token.version, position=written.position)
