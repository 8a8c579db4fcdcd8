"""Key results: read, change targets (with a reason), check in, and the check-in history."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import re
from collections.abc import Awaitable
from decimal import Decimal
from uuid import UUID

import anyio.to_thread
import msgspec
from litestar import Controller, Request, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.serialization import decode_json
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from goalledger.api.auth import (
    ABILITIES,
    Authenticator,
    Principal,
    TeamScope,
    bearer_secret,
    requires,
)
from goalledger.api.bootstrap import System
from goalledger.api.http_conventions import (
    POSITION_HEADER,
    AwareDatetime,
    IfMatch,
    aggregate_response,
    etag,
    preconditions,
)
from goalledger.api.http_json import Body, JsonResponse, encode_json
from goalledger.api.http_limits import WriteBudgets
from goalledger.api.http_metrics import RouteMetrics
from goalledger.api.http_reads import CheckInOut, check_ins
from goalledger.api.pagination import Cursor, Limit, Page, decode_cursor, page
from goalledger.api.problems import problem_responses
from goalledger.core.errors import Conflict
from goalledger.core.ledger import Ledger, Written
from goalledger.core.objectives import KeyResult

log = logging.getLogger(__name__)

# Check-ins from one process are serialised by the ledger; these retries cover other
# processes writing to the same key result (a few ms apart, jittered).
CHECK_IN_ATTEMPTS = 8


class KeyResultIn(Body):
    """A key result to define; which figures it needs depends on `kind`."""

    title: str
    kind: str
    start: Decimal | None = None
    target: Decimal | None = None
    band_low: Decimal | None = None
    band_high: Decimal | None = None
    unit: str | None = None
    weight: Decimal | None = None
    owner: str | None = None
    kpi_id: UUID | None = None
    steps: list[str] | None = None
    effective_at: AwareDatetime | None = None


class KeyResultPatch(Body):
    """A new target, band or weight from `effective_at` on; `reason` is required."""

    reason: str
    target: Decimal | None = None
    band_low: Decimal | None = None
    band_high: Decimal | None = None
    weight: Decimal | None = None
    effective_at: AwareDatetime | None = None


class CheckInIn(Body):
    """A check-in: `value` (or `done`/`steps_done` for a milestone), confidence, note."""

    value: Decimal | None = None
    done: bool | None = None
    steps_done: int | None = None
    confidence: Decimal | None = None
    note: str = ""
    effective_at: AwareDatetime | None = None


class KeyResultOut(msgspec.Struct, frozen=True):
    """A key result as the ledger holds it."""

    id: UUID
    objective_id: UUID
    cycle_id: UUID
    team_id: UUID
    title: str
    kind: str
    start: Decimal | None
    target: Decimal | None
    band_low: Decimal | None
    band_high: Decimal | None
    unit: str
    weight: Decimal
    owner: str
    kpi_id: UUID | None
    steps: list[str]
    check_ins: int
    version: int


class CheckInWritten(msgspec.Struct, frozen=True):
    """Where a check-in landed."""

    key_result_id: UUID
    version: int
    position: int


def key_result_out(kr: KeyResult) -> KeyResultOut:
    """A key result aggregate as the API shows it."""
    return KeyResultOut(
        id=kr.id, objective_id=kr.objective_id, cycle_id=kr.cycle_id, team_id=kr.team_id,
        title=kr.title, kind=kr.kind, start=kr.start, target=kr.target, band_low=kr.band_low,
        band_high=kr.band_high, unit=kr.unit, weight=kr.weight, owner=kr.owner,
        kpi_id=kr.kpi_id, steps=list(kr.steps), check_ins=kr.check_ins, version=kr.version,
    )  # fmt: skip


# The check-in route as the lane takes it: a hyphenated UUID, no trailing slash.
CHECK_IN_PATH = re.compile(
    r"/v1/key-results/([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{12})/check-ins"
)
CHECK_IN_TEMPLATE = "/v1/key-results/{key_result_id}/check-ins"


class CheckInLane:
    """The check-in route's usual case, answered before Litestar routes the request.

    A check-in is the API's hottest write, and the event loop is its bottleneck:
    routing, the middleware stack each route gets, and the route's guard, parameter and
    dependency resolution and response objects cost the loop more than deciding the
    check-in does (in process, about 100 of 280 µs a check-in). The lane sits inside
    the app (`create_app`), after its send hooks (the security headers) and before its
    routing, and does what the stack and the route do, with the functions they use:
    the route's metrics series, the body limit, the guard's authentication and role
    check, the body decoded and converted as Litestar does, the token's write budget,
    `record_check_in`, the route's response, the app's wake-up of the projector.

    Anything else goes to the app with the body as received, which answers it as
    before: another path or method, no Content-Length or one over the limit, an
    Idempotency-Key, a header the route reads given twice, no or a bad token, a role
    that may not contribute, a body that does not convert, a spent write budget, any
    error (a failed token lookup included: the app's exception handlers answer it, and
    the check-in has written nothing). A write the lane took from the budget is given
    back first. A wrapper Litestar puts around its router (CORS, OpenTelemetry; none is
    configured) would not see the check-ins the lane answers.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        system: System,
        authenticator: Authenticator,
        lanes: AppendLanes,
        budgets: WriteBudgets,
        max_body: int,
    ) -> None:
        self.app = app
        self.system, self.authenticator, self.lanes = system, authenticator, lanes
        self.budgets, self.max_body = budgets, max_body
        self.metrics = RouteMetrics()
        self.allowed = ABILITIES["contribute"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            match = CHECK_IN_PATH.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        authorization = if_match = length = None
        usual = True  # no header the lane leaves to the app, none twice
        for name, value in scope["headers"]:
            if name == b"authorization":
                usual, authorization = authorization is None, value.decode("latin-1")
            elif name == b"if-match":
                usual, if_match = if_match is None, value.decode("latin-1")
            elif name == b"content-length":
                usual, length = length is None, value
            elif name == b"idempotency-key":
                usual = False  # the idempotency middleware's
            if not usual:
                break
        secret = bearer_secret(authorization)
        if not usual or secret is None or length is None or not length.isdigit():
            await self.app(scope, receive, send)
            return
        if int(length) > self.max_body:
            await self.app(scope, receive, send)  # the body limit answers 413
            return
        start = self.metrics.begin("POST", CHECK_IN_TEMPLATE)
        body, read, principal, taken = b"", False, None, False
        try:
            principal = await self.authenticator.principal(secret)
            if principal is None or principal.role not in self.allowed:
                raise _HandedOn  # the guard answers 401 or 403
            body, ended = await _read_body(receive)
            read = True
            if not ended:  # the client went away: there is no one to answer
                self.metrics.abandon("POST", CHECK_IN_TEMPLATE)
                return
            if len(body) > self.max_body:
                raise _HandedOn
            data = msgspec.convert(decode_json(body), CheckInIn, strict=False)
            if self.budgets.rate > 0:
                self.budgets.take(principal.token_id)
                taken = True
            access = TeamScope(self.system.ledger, principal)
            written = await record_check_in(
                self.system.ledger, self.lanes, access, UUID(match[1]), data, if_match
            )
        except Exception as error:  # nothing was written: the app answers it, as always
            if taken and principal is not None:
                self.budgets.refund(principal.token_id)
            self.metrics.abandon("POST", CHECK_IN_TEMPLATE)
            if not isinstance(error, _HandedOn):
                log.debug("check-in handed to the route: %r", error)
            await self.app(scope, _replay(body, receive) if read else receive, send)
            return
        except BaseException:  # cancelled: the check-in may still commit (it cannot stop)
            self.metrics.abandon("POST", CHECK_IN_TEMPLATE)
            raise
        content = encode_json(CheckInWritten(written.id, written.version, written.position))
        headers = [
            (b"etag", etag(written.version).encode()),
            (POSITION_HEADER.lower().encode(), str(written.position).encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
        ]
        try:
            await send({"type": "http.response.start", "status": 201, "headers": headers})
            await send({"type": "http.response.body", "body": content, "more_body": False})
        finally:
            self.metrics.end("POST", CHECK_IN_TEMPLATE, 201, start)
            self.system.projector.notify()


class _HandedOn(Exception):
    """The lane hands the request to the app."""


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The request body, and whether it arrived whole (False: the client went away)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` with `body` (already read) given again first."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


class KeyResultController(Controller):
    """Key results and their check-ins."""

    path = "/v1/key-results"
    tags = ("key results",)

    @get(
        "/{key_result_id:uuid}", operation_id="getKeyResult", guards=[requires("read")],
        sync_to_thread=True, responses=problem_responses(404, 503),
    )  # fmt: skip
    def get_key_result(
        self,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        consistency: NamedDependency[int | None],
        key_result_id: FromPath[UUID],
    ) -> JsonResponse[KeyResultOut]:
        """One key result."""
        kr = system.ledger.load(key_result_id, KeyResult, "key_result_id")
        access.check_read(kr.team_id, "this key result")
        return aggregate_response(key_result_out(kr), kr.version)

    @patch(
        "/{key_result_id:uuid}", operation_id="changeKeyResultTarget",
        guards=[requires("manage")], sync_to_thread=True,
        responses=problem_responses(404, 409, 412, 422),
    )  # fmt: skip
    def change_target(
        self,
        system: NamedDependency[System],
        principal: NamedDependency[Principal],
        access: NamedDependency[TeamScope],
        key_result_id: FromPath[UUID],
        data: JSONBody[KeyResultPatch],
        if_match: IfMatch = None,
    ) -> JsonResponse[KeyResultOut]:
        """Change the target, band or weight from `effective_at` on, with a reason."""
        kr = system.ledger.load(key_result_id, KeyResult, "key_result_id")
        access.check_write(kr.team_id, "this key result")
        with preconditions(if_match) as expected:
            written = system.ledger.change_key_result_target(
                key_result_id, actor=principal.actor, reason=data.reason,
                expected_version=kr.version if expected is None else expected,
                target=data.target, band_low=data.band_low, band_high=data.band_high,
                weight=data.weight, effective_at=data.effective_at,
            )  # fmt: skip
        kr = system.ledger.load(key_result_id, KeyResult)
        return aggregate_response(key_result_out(kr), kr.version, position=written.position)

    @post(
        "/{key_result_id:uuid}/check-ins", operation_id="checkIn",
        guards=[requires("contribute")], responses=problem_responses(404, 409, 412, 422),
    )  # fmt: skip
    async def check_in(
        self,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        request: Request,
        key_result_id: FromPath[UUID],
        data: JSONBody[CheckInIn],
        if_match: IfMatch = None,
    ) -> JsonResponse[CheckInWritten]:
        """Check in a key result's value (or done flag), confidence and note."""
        lanes: AppendLanes = request.app.state["append_lanes"]
        written = await record_check_in(system.ledger, lanes, access, key_result_id, data, if_match)
        body = CheckInWritten(written.id, written.version, written.position)
        return aggregate_response(body, written.version, status_code=201, position=written.position)

    @get(
        "/{key_result_id:uuid}/check-ins", operation_id="listCheckIns",
        guards=[requires("read")], sync_to_thread=True, responses=problem_responses(404, 503),
    )  # fmt: skip
    def list_check_ins(
        self,
        system: NamedDependency[System],
        access: NamedDependency[TeamScope],
        consistency: NamedDependency[int | None],
        key_result_id: FromPath[UUID],
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[CheckInOut]:
        """A key result's full check-in history, in recorded order."""
        kr = system.ledger.load(key_result_id, KeyResult, "key_result_id")
        access.check_read(kr.team_id, "this key result")
        after = decode_cursor(cursor, int) or 0
        items = check_ins(system, key_result_id, after, limit + 1)
        return page(items, limit, lambda c: c.position)


class AppendLanes:
    """Check-ins to one key result from this server's event loop, one after another.

    `Ledger.check_in` keeps threads apart with a lock per key result; the loop's
    check-ins to one key result are decided in turn here. One decided on the loop
    leaves the lane once queued (the next decides on its uncommitted state); one that
    needs a worker thread holds it until its commit, and one with If-Match first waits
    in it for the queued ones to commit, then compares the committed version. One lane
    per key result in use, dropped when no one holds or waits for
    it: lanes shared by several key results (striped locks) made check-ins to one wait
    for commits to the others (3 of the bench's 12 shared a stripe of 64: a quarter of
    its check-ins took 25-75 ms instead of under 5).
    """

    def __init__(self) -> None:
        self._lanes: dict[UUID, _Lane] = {}

    def lane(self, aggregate_id: UUID) -> _Lane:
        """The lane that keeps appends to `aggregate_id` apart (`async with` it)."""
        lane = self._lanes.get(aggregate_id)
        if lane is None:
            lane = self._lanes[aggregate_id] = _Lane(self._lanes, aggregate_id)
        return lane


class _Lane:
    """An asyncio lock that leaves its register when its last user is done (all on the
    event loop's thread, so the count needs no lock of its own)."""

    __slots__ = ("_lock", "_register", "_users", "aggregate_id")

    def __init__(self, register: dict[UUID, _Lane], aggregate_id: UUID) -> None:
        self._register, self.aggregate_id = register, aggregate_id
        self._lock = asyncio.Lock()
        self._users = 0

    async def __aenter__(self) -> None:
        self._users += 1
        try:
            await self._lock.acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *_: object) -> None:
        self._lock.release()
        self._leave()

    def _leave(self) -> None:
        self._users -= 1
        if self._users == 0:
            del self._register[self.aggregate_id]


async def record_check_in(
    ledger: Ledger,
    lanes: AppendLanes,
    access: TeamScope,
    key_result_id: UUID,
    data: CheckInIn,
    if_match: str | None,
) -> Written:
    """Check in as `access.principal`: team scope, If-Match, retries of lost races."""
    fields = msgspec.structs.asdict(data)
    if access.team_id is not None:  # unscoped tokens skip the extra load
        kr = await _load(ledger, key_result_id)
        access.check_write(kr.team_id, "this key result")
    with preconditions(if_match) as expected:
        for attempt in range(CHECK_IN_ATTEMPTS):
            try:
                async with lanes.lane(key_result_id):
                    if expected is not None:  # compared with a committed version
                        await _settled(ledger, key_result_id)
                    committed = await _decide_check_in(
                        ledger, key_result_id, access.principal.actor, expected, fields
                    )
                return await committed
            except Conflict:
                # A check-in appends; without If-Match, losing a race to another
                # process is no reason to fail: try again on the new version.
                if expected is not None or attempt == CHECK_IN_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
    raise AssertionError("unreachable: the last attempt returns or raises")


async def _decide_check_in(
    ledger: Ledger, key_result_id: UUID, actor: str, expected: int | None, fields: dict
) -> Awaitable[Written]:
    """Decide one try at the check-in; what it returns gives the check-in once committed.

    With the key result's state at hand on SQLite (cached, or left by this process's
    queued check-ins) it is decided on the event loop in microseconds and joins the
    next group commit: the lane is free for the next check-in at once, decided on this
    one's uncommitted state. Otherwise it is decided and committed in a worker thread."""
    if ledger.queues_writes and (
        ledger.cached(key_result_id) or ledger.queued_commit(key_result_id) is not None
    ):
        queued = ledger.queue_check_in(
            key_result_id, actor=actor, expected_version=expected, **fields
        )
        return asyncio.wrap_future(queued)
    written = await anyio.to_thread.run_sync(
        functools.partial(
            ledger.check_in, key_result_id, actor=actor, expected_version=expected, **fields
        )
    )
    return _ready(written)


async def _ready(written: Written) -> Written:
    return written


async def _settled(ledger: Ledger, key_result_id: UUID) -> None:
    """Wait until this process's queued check-ins to the key result have committed or
    been refused (their senders hear which)."""
    queued = ledger.queued_commit(key_result_id)
    if queued is not None:
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(queued)


async def _load(ledger: Ledger, key_result_id: UUID) -> KeyResult:
    if ledger.cached(key_result_id):
        return ledger.load(key_result_id, KeyResult, "key_result_id")
    return await anyio.to_thread.run_sync(ledger.load, key_result_id, KeyResult, "key_result_id")
