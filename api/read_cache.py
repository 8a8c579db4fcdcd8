"""Encoded answers of projected reads, kept while the read models stay at one position.

A read route computes its answer from the read models, which change only when the
projector commits a batch (and with it the tracking position). So an answer, encoded
once, is reused for the same request until that position moves or READ_CACHE_SECONDS
pass (answers for "now" age; this bounds how old their `at` can be).

Routes opt in with `opt=cached_read(...)`. On a miss the route computes and keeps its
answer (`answer`); hits are sent by `ReadCacheMiddleware` before Litestar builds a
request, resolves dependencies or hops to a thread (it asks the authenticator, whose
in-memory answers last a second). It serves only a caller whose token authenticates
and whose role the route's ability admits; anything else (no token, unknown or revoked
token, other role, odd query) goes down the full route, which answers exactly as
without a cache.

Correctness rules:
- the key is the path, the raw query string without `min_position`, and the caller's
  team scope; a hit therefore needs the same query that a computed (so validated)
  answer had;
- `min_position` above the current position is never answered from the cache: the
  route waits for the projector as usual;
- an entry is tagged with the position read *before* its query ran, so it can only be
  older than what the query saw, and is dropped as soon as the position moves;
- the current position is read on each request: on SQLite through `PRAGMA
  data_version` on a connection of our own (it changes whenever any connection, in
  any process, commits), re-reading the tracking row only then; on PostgreSQL with
  one query, in a worker thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qsl
from uuid import UUID

import anyio.to_thread
from litestar import Request
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from goalledger.api.auth import ABILITIES, Authenticator, Principal, bearer_secret
from goalledger.api.http_json import JsonResponse, encode_json
from goalledger.api.pagination import MAX_POSITION
from goalledger.projections import schema
from goalledger.projections.store import SQLiteViewStore, ViewStore

READ_CACHE_SECONDS = 1.0
MAX_ENTRIES = 4096
MAX_BYTES = 64 * 1024 * 1024  # distinct queries must not grow memory without bound
OPT = "read_cache"
FLIGHT = "goalledger.read_cache.flight"
BODY_HEADERS = (b"content-length", b"transfer-encoding")
Key = tuple[str, str, UUID | None]


class ReadPolicy(NamedTuple):
    """Who may share a route's cached answers.

    `scoped`: whether team-scoped callers may (only where the route resolves their
    scope from the read models; where it asks the ledger, the answer could change
    before the position moves). `unless`: query parameters that make a scoped caller's
    request uncacheable (they bring the ledger in).
    """

    ability: str
    scoped: bool
    unless: tuple[str, ...]


def cached_read(
    ability: str = "read", *, scoped: bool = False, unless: tuple[str, ...] = ()
) -> dict[str, ReadPolicy]:
    """A route's `opt`: cache its answers (the route's guard must require `ability`)."""
    return {OPT: ReadPolicy(ability, scoped, unless)}


# -- where the read models are ---------------------------------------------------------------


def _tracking_position(scalar: Callable[[str], Any]) -> int | None:
    """The live generation's tracking position (None before anything was projected)."""
    generation = scalar(f"SELECT value FROM {schema.META_TABLE} WHERE key = 'live'")
    if generation is None:
        return None
    position = scalar(
        f"SELECT position FROM {schema.table(int(generation), 'tracking')} WHERE name = 'views'"
    )
    return None if position is None else int(position)


class SQLitePosition:
    """The read models' position in an SQLite file, re-read only after some commit."""

    blocking = False  # microseconds: fine on the event loop

    def __init__(self, path: str) -> None:
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._version: int | None = None
        self._position: int | None = None

    def __call__(self) -> int | None:
        with self._lock:
            # data_version first: a commit landing between the two reads changes it again,
            # so the next call reads the position anew.
            version = self._connection.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:
                self._position = self._read()
                self._version = version
            return self._position

    def _read(self) -> int | None:
        def scalar(sql: str) -> Any:
            row = self._connection.execute(sql).fetchone()
            return None if row is None else row[0]

        try:
            self._connection.execute("BEGIN")  # both reads from one snapshot
            return _tracking_position(scalar)
        except sqlite3.OperationalError:  # no read models yet
            return None
        finally:
            self._connection.rollback()


class QueryPosition:
    """The read models' position, asked of the store each time (PostgreSQL)."""

    blocking = True  # a round trip: run it in a worker thread

    def __init__(self, store: ViewStore) -> None:
        self.store = store

    def __call__(self) -> int | None:
        try:
            with self.store.read() as tx:
                return _tracking_position(tx.scalar)
        except Exception:  # no read models yet, or the database is unreachable
            return None


# -- the cache ---------------------------------------------------------------------------------


class Entry(NamedTuple):
    position: int
    expires: float  # time.monotonic()
    body: bytes


class Flight(NamedTuple):
    """An answer being computed by one request, which others with its key may await."""

    key: Key
    position: int
    answer: asyncio.Future[bytes | None]


class ReadCache:
    """Encoded read answers by request, valid at one read-model position for a short while."""

    def __init__(
        self,
        position: SQLitePosition | QueryPosition,
        ttl: float = READ_CACHE_SECONDS,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._position = position
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: dict[Key, Entry] = {}
        self._bytes = 0
        self._flights: dict[Key, Flight] = {}

    @classmethod
    def for_store(cls, store: ViewStore, ttl: float = READ_CACHE_SECONDS) -> ReadCache:
        """A cache whose position comes from `store` (SQLite: cheaply; PostgreSQL: a query)."""
        if isinstance(store, SQLiteViewStore):
            return cls(SQLitePosition(store.path), ttl)
        return cls(QueryPosition(store), ttl)

    async def position(self) -> int | None:
        """The position the read models reflect now (None: unknown, so nothing is cached)."""
        if self._position.blocking:
            return await anyio.to_thread.run_sync(self._position)
        return self._position()

    async def lookup(
        self, key: Key, min_position: int | None
    ) -> tuple[bytes | None, Flight | None]:
        """(the cached answer, None), or (None, a flight the caller must compute and finish)
        or (None, None): compute it without keeping it."""
        position = await self.position()
        if position is None or (min_position is not None and position < min_position):
            return None, None  # the route waits for the projector; rare, so not kept
        entry = self._entries.get(key)
        fresh = entry is not None and entry.position == position
        if fresh and time.monotonic() < entry.expires:
            return entry.body, None
        flight = self._flights.get(key)
        if flight is not None and flight.position == position:
            if fresh:
                # Same position, only older than the TTL: serve it while the flight renews it.
                return entry.body, None
            return await asyncio.shield(flight.answer), None  # None: it failed; go alone
        flight = Flight(key, position, asyncio.get_running_loop().create_future())
        self._flights[key] = flight
        return None, flight

    async def compute(self, flight: Flight, compute: Callable[[], Any]) -> bytes:
        """Compute (in a worker thread) and encode a flight's answer, and keep it."""
        position = await self.position()  # read before the query: never newer than its answer
        body = await anyio.to_thread.run_sync(_encoded, compute)
        if position is not None:
            self._keep(flight.key, Entry(position, time.monotonic() + self.ttl, body))
        if not flight.answer.done():
            flight.answer.set_result(body)
        return body

    def finish(self, flight: Flight) -> None:
        """End a flight, answered or not (its waiters then compute their own answers)."""
        if not flight.answer.done():
            flight.answer.set_result(None)
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    def _keep(self, key: Key, entry: Entry) -> None:
        if len(entry.body) > self.max_bytes // 16:
            return  # a very large answer is computed each time rather than crowd out the rest
        old = self._entries.pop(key, None)
        self._bytes -= len(old.body) if old is not None else 0
        if len(self._entries) >= self.max_entries or self._bytes + len(entry.body) > self.max_bytes:
            now = time.monotonic()
            self._entries = {k: e for k, e in self._entries.items() if e.expires > now}
            if len(self._entries) >= self.max_entries // 2:
                self._entries.clear()
            self._bytes = sum(len(e.body) for e in self._entries.values())
            if self._bytes + len(entry.body) > self.max_bytes:
                self._entries.clear()
                self._bytes = 0
        self._entries[key] = entry
        self._bytes += len(entry.body)


def _encoded(compute: Callable[[], Any]) -> bytes:
    return encode_json(compute())


def _request_key(
    scope: Scope, principal: Principal, policy: ReadPolicy
) -> tuple[Key | None, int | None]:
    """(key, min_position) of a request; no key when the cache must not answer it."""
    query = scope["query_string"].decode("latin-1")
    pairs = parse_qsl(query, keep_blank_values=True)
    if principal.team_id is not None and (
        not policy.scoped or any(name in policy.unless for name, _ in pairs)
    ):
        return None, None
    wanted = [value for name, value in pairs if name == "min_position"]
    min_position = None
    if wanted:
        # Anything but one plain number goes down the route, which names the field.
        if len(wanted) > 1 or not (wanted[0].isascii() and wanted[0].isdigit()):
            return None, None
        min_position = int(wanted[0])
        if min_position > MAX_POSITION:
            return None, None
    rest = "&".join(p for p in query.split("&") if not p.startswith("min_position="))
    return (scope["path"], rest, principal.team_id), min_position


async def answer(request: Request, compute: Callable[[], Any]) -> JsonResponse[Any]:
    """A cached read route's answer: `compute()` in a worker thread, kept when it may be."""
    flight: Flight | None = request.scope.get("state", {}).get(FLIGHT)
    cache: ReadCache | None = request.app.state.get(OPT)
    if flight is None or cache is None:
        return JsonResponse(await anyio.to_thread.run_sync(_encoded, compute))
    return JsonResponse(await cache.compute(flight, compute))


# -- hits --------------------------------------------------------------------------------------


class ReadCacheMiddleware:
    """Sends cached answers of opted-in routes to callers the full route would admit."""

    def __init__(self, app: ASGIApp, cache: ReadCache, authenticator: Authenticator) -> None:
        self.app = app
        self.cache = cache
        self.authenticator = authenticator

    @classmethod
    def define(cls, cache: ReadCache, authenticator: Authenticator) -> DefineMiddleware:
        """The middleware, ready for `Litestar(middleware=[...])`."""
        return DefineMiddleware(cls, cache=cache, authenticator=authenticator)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, flight = None, None
        if scope["type"] == "http" and scope["method"] == "GET":
            policy = scope["route_handler"].opt.get(OPT)
            if policy is not None:
                body, flight = await self._cached(scope, policy)
        if body is not None:
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        if flight is None:
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})[FLIGHT] = flight  # the route computes and keeps it
        try:
            await self.app(scope, receive, send)
        finally:
            self.cache.finish(flight)

    async def _cached(self, scope: Scope, policy: ReadPolicy) -> tuple[bytes | None, Flight | None]:
        principal = await self._principal(scope)
        if principal is None or principal.role not in ABILITIES[policy.ability]:
            return None, None
        key, min_position = _request_key(scope, principal, policy)
        if key is None:
            return None, None
        return await self.cache.lookup(key, min_position)

    async def _principal(self, scope: Scope) -> Principal | None:
        """The caller (None: no usable bearer token, and the route answers 401)."""
        authorization = []
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization.append(value)
            elif name in BODY_HEADERS and value.strip() not in (b"", b"0"):
                return None  # a GET with a body: the body-limit middleware judges it
        secret = bearer_secret(authorization[0].decode("latin-1")) if authorization else None
        if secret is None or len(authorization) != 1:
            return None
        # Once a second a token's cache entry lapses: ask the ledger here too, so that the
        # requests arriving meanwhile share one computed answer rather than each compute
        # their own.
        return await self.authenticator.principal(secret)
