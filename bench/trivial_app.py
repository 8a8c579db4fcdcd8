"""The baseline for bench/api.py: trivial Litestar routes, served by uvicorn like the API.

`GET /` answers from the event loop; `GET /sync` does the same work in the thread pool,
as the API's handlers do (`sync_to_thread=True`), so the two show what that hop costs.
"""

from __future__ import annotations

from litestar import Litestar, get


@get("/", sync_to_thread=False)
async def hello() -> dict[str, str]:
    """A constant JSON object from the event loop."""
    return {"status": "ok"}


@get("/sync", sync_to_thread=True)
def hello_from_thread() -> dict[str, str]:
    """The same object from a worker thread."""
    return {"status": "ok"}


app = Litestar(route_handlers=[hello, hello_from_thread])
