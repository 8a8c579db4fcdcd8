"""Lists: `limit` and an opaque `cursor`; `{"items": [...], "next_cursor": ...}`.

A cursor is the sort key of the last item returned, as base64url JSON. It is opaque
to clients; a cursor that does not decode is a 400 naming `cursor`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Generic, TypeVar

import msgspec
from litestar.params import QueryParameter

from goalledger.api.problems import BadRequest, FieldError

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
# Ledger positions are 64-bit integers in both stores; a larger one cannot be bound.
MAX_POSITION = 2**63 - 1

Limit = Annotated[
    int,
    QueryParameter(ge=1, le=MAX_LIMIT, description="Items per page (default 50, at most 1000)."),
]
Cursor = Annotated[
    str | None,
    QueryParameter(max_length=2000, description="The `next_cursor` of the previous page."),
]


class Page(msgspec.Struct, Generic[T]):
    """One page of a list; `next_cursor` is null on the last page."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(key: Any) -> str:
    """An opaque cursor for a sort key (any JSON-able value)."""
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: type[T]) -> T | None:
    """The sort key a cursor holds, checked against `kind`; a bad cursor is a 400."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = msgspec.json.decode(raw, type=kind)
        parts = key if isinstance(key, tuple | list) else (key,)
        if any(isinstance(p, int) and not 0 <= p <= MAX_POSITION for p in parts):
            raise ValueError("position out of range")
        return key
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise BadRequest(
            "the cursor is not one this list issued",
            [FieldError("cursor", "malformed or from another list")],
        ) from None


def page(items: list[T], limit: int, key: Any) -> Page[T]:
    """A page from up to `limit + 1` items fetched: the extra one says whether more follow.

    `key(item)` is the sort key a cursor resumes after.
    """
    if len(items) > limit:
        items = items[:limit]
        return Page(items=items, next_cursor=encode_cursor(key(items[-1])))
    return Page(items=items, next_cursor=None)
