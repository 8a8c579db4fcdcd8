"""Commands on API tokens and alert subscriptions."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from goalledger.core.errors import NotFound
from goalledger.core.ledger_base import LedgerBase, Written
from goalledger.core.model import utc_now
from goalledger.core.subscriptions import Channel, Subscription
from goalledger.core.teams import Team
from goalledger.core.tokens import Token, token_id_of


class AccessCommands(LedgerBase):
    """Who may use the API (tokens) and where alerts go (subscriptions)."""

    # -- tokens ------------------------------------------------------------------------

    def issue_token(
        self,
        *,
        name: str,
        role: str,
        team_id: UUID | None = None,
        expires_at: datetime | None = None,
        actor: str,
    ) -> tuple[Written, str]:
        """Issue a token; the secret is returned once and never stored."""
        if team_id is not None:
            self.load(team_id, Team, "team_id")
        token, secret = Token.issue(
            name=name, role=role, team_id=team_id, expires_at=expires_at, actor=actor
        )
        return self._written(token), secret

    def revoke_token(self, token_id: UUID, *, actor: str, reason: str | None = None) -> Written:
        """Revoke a token."""
        token = self.load(token_id, Token)
        token.revoke(actor=actor, reason=reason)
        return self._written(token)

    def authenticate(self, secret: str) -> Token | None:
        """The live token whose secret this is, or None."""
        token_id = token_id_of(secret)
        if token_id is None:
            return None
        try:
            token = self.load(token_id, Token)
        except NotFound:
            return None
        return token if token.accepts(secret, utc_now()) else None

    # -- subscriptions -----------------------------------------------------------------

    def subscribe(
        self, *, alert_kinds: list[str], team_ids: list[UUID], channel: Channel, actor: str
    ) -> Written:
        """Send alerts of `alert_kinds` about `team_ids` (empty: every team) to `channel`,
        whose config the caller has validated with the channel's plugin."""
        for index, team_id in enumerate(team_ids):
            self.load(team_id, Team, f"team_ids[{index}]")
        return self._written(
            Subscription.create(
                alert_kinds=alert_kinds, team_ids=team_ids, channel=channel, actor=actor
            )
        )

    def delete_subscription(
        self, subscription_id: UUID, *, actor: str, reason: str | None = None
    ) -> Written:
        """Delete a subscription: no alert is sent through it from now on."""
        subscription = self.load(subscription_id, Subscription, "subscription_id")
        subscription.delete(actor=actor, reason=reason)
        return self._written(subscription)
