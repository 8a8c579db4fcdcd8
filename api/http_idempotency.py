"""`Idempotency-Key` on POST: a retried request gets the first response; nothing is
recorded twice. Keys are scoped by token and kept durably in the view store.

The key is claimed *before* the request runs, so two concurrent requests with one key
cannot both record: the second is told the first is still in flight (409). Only
successful (2xx) responses are kept; after a failure the key is released and a retry
runs afresh. The same key with a different request (method, path, query or body) is 422.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from http import HTTPStatus
from typing import Any

import anyio.to_thread
import msgspec
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from goalledger.api.auth import Authenticator, Principal, bearer_secret
from goalledger.api.http_headers import scope_header
from goalledger.api.problems import PROBLEM_JSON, TYPE_BASE, FieldError, Problem
from goalledger.projections.store import ViewStore

TABLE = "gl_idempotency"
MAX_KEY_LENGTH = 200
# A claim whose request never finished (a crashed process) is taken over after this.
STALE_CLAIM_SECONDS = 60
KEEP_SECONDS = 24 * 3600
PURGE_EVERY_SECONDS = 600
# Headers a replay repeats; the rest (date, server, …) belong to the new response.
# The app's own limit (Litestar's default); a keyed request is read whole before it runs.
MAX_BODY_BYTES = 10_000_000
REPLAYED_HEADERS = ("content-type", "location", "etag", "x-ledger-position")


class Stored(msgspec.Struct, frozen=True):
    """A kept response."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class IdempotencyStore:
    """Claims, completes and replays idempotency keys in the view store."""

    def __init__(self, store: ViewStore) -> None:
        self.store = store
        self._purged_at = 0.0

    def setup(self) -> None:
        """Create the key table if it is missing."""
        try:
            self._create()
        except Exception:  # another process created it at the same moment (PostgreSQL)
            self._create()

    def _create(self) -> None:
        with self.store.transaction() as tx:
            tx.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (token_id TEXT NOT NULL, key TEXT NOT NULL,"
                " fingerprint TEXT NOT NULL, owner TEXT NOT NULL, status INTEGER,"
                " response TEXT, created_at BIGINT NOT NULL, PRIMARY KEY (token_id, key))"
            )

    def claim(self, token_id: str, key: str, fingerprint: str) -> tuple[str, Any]:
        """("run", owner) | ("replay", Stored) | ("mismatch", None) | ("in_flight", None)."""
        self._purge()
        owner, now = uuid.uuid4().hex, int(time.time())
        with self.store.transaction() as tx:
            tx.execute(
                f"INSERT INTO {TABLE} (token_id, key, fingerprint, owner, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (token_id, key) DO NOTHING",
                (token_id, key, fingerprint, owner, now),
            )
            row = tx.one(
                f"SELECT fingerprint, owner, status, response, created_at FROM {TABLE}"
                " WHERE token_id = ? AND key = ?",
                (token_id, key),
            )
            assert row is not None
            held_fingerprint, held_owner, status, response, created_at = row
            if held_owner == owner:
                return "run", owner
            if held_fingerprint != fingerprint:
                return "mismatch", None
            if status is not None:
                return "replay", msgspec.json.decode(base64.b64decode(response), type=Stored)
            if now - created_at < STALE_CLAIM_SECONDS:
                return "in_flight", None
            tx.execute(
                f"UPDATE {TABLE} SET owner = ?, created_at = ? WHERE token_id = ? AND key = ?",
                (owner, now, token_id, key),
            )
            return "run", owner

    def complete(self, token_id: str, key: str, owner: str, stored: Stored) -> None:
        """Keep the response of a claimed key."""
        response = base64.b64encode(msgspec.json.encode(stored)).decode()
        with self.store.transaction() as tx:
            tx.execute(
                f"UPDATE {TABLE} SET status = ?, response = ?"
                " WHERE token_id = ? AND key = ? AND owner = ?",
                (stored.status, response, token_id, key, owner),
            )

    def release(self, token_id: str, key: str, owner: str) -> None:
        """Forget a claim whose request failed, so that a retry runs afresh."""
        with self.store.transaction() as tx:
            tx.execute(
                f"DELETE FROM {TABLE} WHERE token_id = ? AND key = ? AND owner = ?",
                (token_id, key, owner),
            )

    def _purge(self) -> None:
        now = time.time()
        if now - self._purged_at < PURGE_EVERY_SECONDS:
            return
        self._purged_at = now
        with self.store.transaction() as tx:
            tx.execute(f"DELETE FROM {TABLE} WHERE created_at < ?", (int(now) - KEEP_SECONDS,))


class IdempotencyMiddleware:
    """ASGI middleware applying `Idempotency-Key` to every POST."""

    def __init__(self, app: ASGIApp, store: IdempotencyStore, authenticator: Authenticator):
        self.app = app
        self.store = store
        self.authenticator = authenticator

    @classmethod
    def define(cls, store: IdempotencyStore, authenticator: Authenticator) -> DefineMiddleware:
        """The middleware, ready for `Litestar(middleware=[...])`."""
        return DefineMiddleware(cls, store=store, authenticator=authenticator)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        key = scope_header(scope, b"idempotency-key")
        if key is None:  # most writes: nothing to read, hash or store
            await self.app(scope, receive, send)
            return
        principal = await self._principal(scope_header(scope, b"authorization"))
        if principal is None:  # the app will answer 401
            await self.app(scope, receive, send)
            return
        if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isprintable():
            await _send_problem(
                send, 400, "bad-request", "Idempotency-Key must be 1 to 200 printable characters"
            )
            return
        body = await _read_body(receive)
        if body is None:
            await _send_problem(send, 413, "too-large", "the request body is too large")
            return
        request = [scope["method"].encode(), scope["path"].encode(), scope["query_string"], body]
        fingerprint = hashlib.sha256(b"\n".join(request)).hexdigest()
        token_id = str(principal.token_id)
        outcome, value = await anyio.to_thread.run_sync(
            self.store.claim, token_id, key, fingerprint
        )
        if outcome == "replay":
            await _replay(send, value)
        elif outcome == "mismatch":
            await _send_problem(
                send, 422, "idempotency-key-reused",
                "this Idempotency-Key was used for a different request",
            )  # fmt: skip
        elif outcome == "in_flight":
            await _send_problem(
                send, 409, "in-flight", "a request with this Idempotency-Key is still in flight"
            )
        else:
            await self._run(scope, body, send, token_id, key, value)

    async def _principal(self, authorization: str | None) -> Principal | None:
        secret = bearer_secret(authorization)
        if secret is None:
            return None
        return await self.authenticator.principal(secret)

    async def _run(
        self, scope: Scope, body: bytes, send: Send, token_id: str, key: str, owner: str
    ) -> None:
        status, kept_headers, chunks = 500, [], []
        delivered = False

        async def replay_body() -> Message:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def capture(message: Message) -> None:
            nonlocal status, kept_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                kept_headers = [
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in message.get("headers", [])
                    if name.decode("latin-1").lower() in REPLAYED_HEADERS
                ]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay_body, capture)
        except BaseException:
            await anyio.to_thread.run_sync(self.store.release, token_id, key, owner)
            raise
        if 200 <= status < 300:
            stored = Stored(status=status, headers=kept_headers, body=b"".join(chunks))
            await anyio.to_thread.run_sync(self.store.complete, token_id, key, owner, stored)
        else:
            await anyio.to_thread.run_sync(self.store.release, token_id, key, owner)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when it exceeds MAX_BODY_BYTES."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _replay(send: Send, stored: Stored) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in stored.headers]
    headers.append((b"idempotent-replayed", b"true"))
    headers.append((b"content-length", str(len(stored.body)).encode()))
    await send({"type": "http.response.start", "status": stored.status, "headers": headers})
    await send({"type": "http.response.body", "body": stored.body, "more_body": False})


async def _send_problem(send: Send, status: int, kind: str, detail: str) -> None:
    body = msgspec.json.encode(
        Problem(
            type=TYPE_BASE + kind, title=HTTPStatus(status).phrase, status=status, detail=detail,
            errors=[FieldError("Idempotency-Key", detail)],
        )
    )  # fmt: skip
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
