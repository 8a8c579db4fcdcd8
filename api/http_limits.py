"""Limits on what one request or one token may cost: body size, JSON depth, write rate.

- Bodies above `max_body_bytes` are refused with 413: at once when `Content-Length`
  says so (nothing is read), otherwise as soon as a streamed (chunked) body passes it.
- JSON nested deeper than the decoder's recursion limit, or with strings that are not
  UTF-8, is a 400, not a crash.
- Each token may write (POST, PUT, PATCH, DELETE) `write_rate` times a second on
  average, in bursts of up to `write_burst`; beyond that, 429 with `Retry-After`.
  Buckets live in the app (one set for all routes) in this process: several API
  processes each grant the rate.
"""

from __future__ import annotations

import logging
import math
import time
from traceback import walk_tb
from uuid import UUID

from litestar import Request, Response
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from goalledger.api.auth import Authenticator, Principal, bearer_secret
from goalledger.api.http_headers import scope_header
from goalledger.api.problems import ApiError, FieldError, Problem, on_unexpected, problem

log = logging.getLogger(__name__)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Buckets kept before full (idle) ones are dropped: a full bucket is a fresh one.
MAX_BUCKETS = 10_000


class BodyTooLarge(ApiError):
    """The request body is larger than the configured limit."""

    status, kind = 413, "too-large"


class TooManyWrites(ApiError):
    """The token wrote faster than its rate allows."""

    status, kind = 429, "rate-limited"


class BodyLimitMiddleware:
    """Refuses request bodies above `limit` bytes, from `Content-Length` or while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    @classmethod
    def define(cls, limit: int) -> DefineMiddleware:
        """The middleware, ready for `Litestar(middleware=[...])`."""
        return DefineMiddleware(cls, limit=limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = scope_header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.limit:
            raise self._refusal(f"Content-Length is {int(declared):,} bytes")
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise self._refusal(f"more than {self.limit:,} bytes were sent")
            return message

        await self.app(scope, counted, send)

    def _refusal(self, what: str) -> BodyTooLarge:
        log.debug("request body refused: %s", what)
        detail = f"the request body is too large: {what}; the limit is {self.limit:,} bytes"
        return BodyTooLarge(detail, [FieldError("body", f"at most {self.limit:,} bytes")])


def on_recursion(request: Request, error: RecursionError) -> Response[Problem]:
    """JSON nested too deeply for the decoder is the client's error; any other is ours."""
    if "deserializing" not in str(error):
        return on_unexpected(request, error)
    detail = "the JSON body is nested too deeply"
    return problem(400, "bad-request", detail, [FieldError("body", detail)])


def on_invalid_utf8(request: Request, error: UnicodeDecodeError) -> Response[Problem]:
    """A JSON string that is not UTF-8 (Litestar lets the decoder's error through); the
    same error raised anywhere but in decoding the body is ours."""
    if not any(frame.f_code.co_name == "decode_json" for frame, _ in walk_tb(error.__traceback__)):
        return on_unexpected(request, error)
    detail = "the JSON body holds a string that is not valid UTF-8"
    return problem(400, "bad-request", detail, [FieldError("body", detail)])


class TokenBucket:
    """`rate` tokens a second up to `burst`; each write takes one."""

    __slots__ = ("burst", "level", "rate", "updated")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.level, self.updated = float(burst), now

    def take(self, now: float) -> float:
        """Take one token: 0.0 when granted, else the seconds until one is available."""
        self.level = min(self.burst, self.level + (now - self.updated) * self.rate)
        self.updated = now
        if self.level >= 1:
            self.level -= 1
            return 0.0
        return (1 - self.level) / self.rate

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled (so forgetting it changes nothing)."""
        return self.level + (now - self.updated) * self.rate >= self.burst


class WriteBudgets:
    """Every token's bucket, one set per app: Litestar builds the middleware stack once
    per route handler, so buckets kept on a middleware instance would be per route."""

    __slots__ = ("buckets", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.buckets: dict[UUID, TokenBucket] = {}

    def take(self, token_id: UUID) -> None:
        """Spend one of the token's writes, or raise `TooManyWrites` with `Retry-After`."""
        now = time.monotonic()
        bucket = self.buckets.get(token_id)
        if bucket is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self.buckets = {k: b for k, b in self.buckets.items() if not b.full(now)}
            bucket = self.buckets[token_id] = TokenBucket(self.rate, self.burst, now)
        wait = bucket.take(now)
        if wait:
            retry_after = str(max(1, math.ceil(wait)))
            log.debug("write rate exceeded by token %s; retry after %s s", token_id, retry_after)
            raise TooManyWrites(
                f"this token may write {self.rate:g} times a second (bursts of {self.burst});"
                f" retry in {retry_after} s",
                [FieldError("Authorization", "write rate exceeded for this token")],
                headers={"Retry-After": retry_after},
            )

    def refund(self, token_id: UUID) -> None:
        """Give back a write `take` granted to a request that was then handed on to the
        route unanswered (the route takes its own)."""
        bucket = self.buckets.get(token_id)
        if bucket is not None:
            bucket.level = min(float(bucket.burst), bucket.level + 1)


class WriteRateLimitMiddleware:
    """Per-token token buckets on writes; 429 with `Retry-After` when one runs dry.

    Only authenticated tokens are counted (an unknown secret is the guard's 401), so a
    caller cannot drain another token's bucket by sending its id with a wrong secret.
    """

    def __init__(self, app: ASGIApp, authenticator: Authenticator, budgets: WriteBudgets) -> None:
        self.app = app
        self.authenticator = authenticator
        self.budgets = budgets
        self.limited = budgets.rate > 0

    @classmethod
    def define(cls, authenticator: Authenticator, budgets: WriteBudgets) -> DefineMiddleware:
        """The middleware, ready for `Litestar(middleware=[...])`; every route's instance
        shares `budgets`."""
        return DefineMiddleware(cls, authenticator=authenticator, budgets=budgets)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in WRITE_METHODS and self.limited:
            principal = await self._principal(scope_header(scope, b"authorization"))
            if principal is not None:
                self.budgets.take(principal.token_id)
        await self.app(scope, receive, send)

    async def _principal(self, authorization: str | None) -> Principal | None:
        secret = bearer_secret(authorization)
        if secret is None:
            return None
        return await self.authenticator.principal(secret)
