"""The conventions every route shares: dependencies, read-your-writes, ETags and If-Match."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import anyio.to_thread
import msgspec
from litestar import Request
from litestar.di import NamedDependency, Provide
from litestar.params import HeaderParameter, QueryParameter

from goalledger.api.auth import Principal, TeamScope, current_principal
from goalledger.api.bootstrap import System
from goalledger.api.http_json import JsonResponse
from goalledger.api.pagination import MAX_POSITION
from goalledger.api.problems import BadRequest, FieldError, NotReady, PreconditionFailed
from goalledger.core.errors import Conflict
from goalledger.core.ledger import Written

# The longest a read waits for the projector to reach `min_position`.
READ_WAIT_SECONDS = 5.0
POSITION_HEADER = "X-Ledger-Position"

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match",
        description='The version the change is based on, as its ETag (`"3"`); stale → 412.',
    ),
]
MinPosition = Annotated[
    int | None,
    QueryParameter(
        ge=0,
        le=MAX_POSITION,
        description="Wait (up to 5 s) until the read models reflect this ledger position.",
    ),
]
AsOf = Annotated[
    AwareDatetime | None,
    QueryParameter(description="Effective time: the state of the world at this moment."),
]
KnownAt = Annotated[
    AwareDatetime | None,
    QueryParameter(description="Recorded time: only what the ledger had recorded by then."),
]


# Litestar resolves dependencies of the same depth concurrently, in an anyio task group
# per request (about 40 µs, a tenth of a check-in's time in the server). Ours are cheap
# and need no concurrency, so each one depends on the one before it: system, principal,
# access, consistency are each alone at their depth and resolved one after another.


def provide_principal(request: Request, system: NamedDependency[System]) -> Principal:
    """The caller (its route's guard authenticated it)."""
    return current_principal(request)


def provide_access(
    system: NamedDependency[System], principal: NamedDependency[Principal]
) -> TeamScope:
    """Team-scope checks for the caller."""
    return TeamScope(system.ledger, principal)


async def provide_consistency(
    system: NamedDependency[System],
    access: NamedDependency[TeamScope],
    min_position: MinPosition = None,
) -> int | None:
    """Read-your-writes: wait until projections reach `min_position`, else 503."""
    if min_position is None:
        return None
    reached = await anyio.to_thread.run_sync(
        system.projector.wait_for, min_position, READ_WAIT_SECONDS
    )
    if not reached:
        raise NotReady(
            f"the read models have not reached position {min_position} yet",
            [FieldError("min_position", "not reached within 5 seconds")],
            headers={"Retry-After": "1"},
        )
    return min_position


def dependencies(system: System) -> dict[str, Provide]:
    """The app-wide dependencies, by the name handlers ask for them."""
    return {
        "system": Provide(lambda: system, sync_to_thread=False),
        "principal": Provide(provide_principal, sync_to_thread=False),
        "access": Provide(provide_access, sync_to_thread=False),
        "consistency": Provide(provide_consistency),
    }


def expected_version(if_match: str | None) -> int | None:
    """The version an `If-Match` header names (`"3"`, `W/"3"`, `3`); `*` or absent: None."""
    if if_match is None or if_match.strip() == "*":
        return None
    text = if_match.strip().removeprefix("W/").strip('"')
    if not (text.isascii() and text.isdigit()):  # isdigit() alone admits "²"
        raise BadRequest(
            'If-Match must be an ETag this API issued, such as "3"',
            [FieldError("If-Match", f"not a version: {if_match!r}")],
        )
    return int(text)


@contextmanager
def preconditions(if_match: str | None) -> Iterator[int | None]:
    """Yield the expected version; a conflict under `If-Match` becomes 412."""
    version = expected_version(if_match)
    try:
        yield version
    except Conflict as error:
        if version is None:
            raise
        raise PreconditionFailed(
            f"the resource changed: {error}", [FieldError("If-Match", "stale version")]
        ) from None


def etag(version: int) -> str:
    """An aggregate's version as an ETag."""
    return f'"{version}"'


def aggregate_response(
    content: Any,
    version: int,
    *,
    status_code: int = 200,
    position: int | None = None,
    location: str | None = None,
) -> JsonResponse[Any]:
    """A response about one aggregate: ETag, and for writes the position and Location."""
    headers = {"ETag": etag(version)}
    if position is not None:
        headers[POSITION_HEADER] = str(position)
    if location is not None:
        headers["Location"] = location
    return JsonResponse(content, status_code=status_code, headers=headers)


def written_response(
    content: Any, position: int | None, *, status_code: int = 201
) -> JsonResponse[Any]:
    """A response to a write that is not about one aggregate (readings, say)."""
    headers = {} if position is None else {POSITION_HEADER: str(position)}
    return JsonResponse(content, status_code=status_code, headers=headers)


def written_out(written: Written) -> dict[str, Any]:
    """Where a command's events landed, as JSON."""
    return {"id": written.id, "version": written.version, "position": written.position}
