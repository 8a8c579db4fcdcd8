"""The live event stream: Server-Sent Events, `id` = ledger position, resumable.

Events come from the audit timeline read model, in position order, so a client that
reconnects with `Last-Event-ID: <position>` misses nothing and sees nothing twice.
Comment lines (`: heartbeat`) keep idle connections (and proxies) alive. The stream
spans every team, so it needs a token that is not scoped to one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
import anyio.to_thread
import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from goalledger.api.auth import TeamScope, requires
from goalledger.api.bootstrap import System
from goalledger.api.pagination import MAX_POSITION
from goalledger.api.problems import BadRequest, FieldError, problem_responses
from goalledger.projections.history import AuditEvent, audit_events

BATCH = 500
POLL_SECONDS = 0.2

LastEventId = Annotated[
    str | None,
    HeaderParameter(name="Last-Event-ID", description="Resume after this position."),
]
After = Annotated[
    int | None, QueryParameter(ge=0, le=MAX_POSITION, description="Start after this position.")
]
Heartbeat = Annotated[
    float, QueryParameter(ge=1, le=60, description="Seconds between heartbeats when idle.")
]


def _start(last_event_id: str | None, after: int | None) -> int:
    if last_event_id is None:
        return after or 0
    text = last_event_id.strip()
    # isdigit() alone admits "²", which int() refuses.
    if not (text.isascii() and text.isdigit() and int(text) <= MAX_POSITION):
        raise BadRequest(
            "Last-Event-ID must be a ledger position",
            [FieldError("Last-Event-ID", f"not a position: {last_event_id!r}")],
        )
    return int(text)


def _batch(system: System, after: int) -> list[AuditEvent]:
    return audit_events(system.queries, after=after, limit=BATCH)


async def _events(system: System, after: int, heartbeat: float) -> AsyncIterator[object]:
    encode = msgspec.json.encode
    beat = time.monotonic()
    yield ServerSentEventMessage(comment="goalledger event stream", retry=2000, data=None)
    while True:
        found = await anyio.to_thread.run_sync(_batch, system, after)
        for event in found:
            yield ServerSentEventMessage(id=event.position, data=encode(event).decode())
        if found:
            after = found[-1].position
            beat = time.monotonic()
            continue
        if time.monotonic() - beat >= heartbeat:
            yield ServerSentEventMessage(comment="heartbeat", data=None)
            beat = time.monotonic()
        await anyio.sleep(POLL_SECONDS)


@get(
    "/v1/events/stream", operation_id="eventStream", guards=[requires("read")],
    tags=["stream"], responses=problem_responses(), media_type="text/event-stream",
)  # fmt: skip
async def event_stream(
    system: NamedDependency[System],
    access: NamedDependency[TeamScope],
    last_event_id: LastEventId = None,
    after: After = None,
    heartbeat: Heartbeat = 15.0,
) -> ServerSentEvent:
    """Server-Sent Events of every ledger event; `id` is its position (resume with it)."""
    access.check_unscoped("the event stream")
    start = _start(last_event_id, after)
    return ServerSentEvent(_events(system, start, heartbeat))
