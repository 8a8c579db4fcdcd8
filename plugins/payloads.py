"""Reading source payloads: RFC 6901 JSON pointers, numbers and timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from goalledger.plugins.contracts import SourceError

# Decimal for every JSON number with a fraction: exact values in, exact values out.
_DECODER = msgspec.json.Decoder(float_hook=Decimal)


def decode_json(body: bytes, what: str) -> Any:
    """Decode a JSON payload, or a SourceError saying `what` was not JSON."""
    try:
        return _DECODER.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as error:  # invalid UTF-8 is the latter
        raise SourceError(f"{what} is not valid JSON: {error}") from None
    except InvalidOperation:  # a number such as 1e99999999999999999999 has no Decimal
        raise SourceError(f"{what} holds a number out of any range") from None
    except RecursionError:
        raise SourceError(f"{what} is JSON nested too deeply") from None


def check_pointer(pointer: str) -> str:
    """`pointer` if it is a syntactically valid JSON pointer (`""` or `/a/0/b`)."""
    if pointer and not pointer.startswith("/"):
        raise ValueError("pointer: must be empty or start with '/' (RFC 6901), e.g. /data/value")
    return pointer


def resolve(document: Any, pointer: str) -> Any:
    """The value `pointer` names in `document`; SourceError naming where it stops."""
    node = document
    walked = ""
    for raw in pointer.split("/")[1:] if pointer else []:
        token = raw.replace("~1", "/").replace("~0", "~")
        walked += f"/{raw}"
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise SourceError(f"the JSON has nothing at {walked}")
    return node


def to_decimal(value: Any, where: str) -> Decimal:
    """A finite Decimal from a JSON number or numeric string."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, float, str)):
        raise SourceError(f"{where} is not a number ({type(value).__name__})")
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise SourceError(f"{where} is not a number ({str(value)[:40]!r})") from None
    if not number.is_finite():
        raise SourceError(f"{where} is not a finite number")
    return number


def to_datetime(value: Any, where: str) -> datetime:
    """A UTC datetime from an RFC 3339 string, a date, or epoch seconds."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        try:
            moment = datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):  # NaN, or beyond the years 1..9999
            raise SourceError(f"{where} is not a timestamp in range ({value})") from None
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise SourceError(f"{where} is not a timestamp ({value[:40]!r})") from None
    elif hasattr(value, "isoformat") and hasattr(value, "year"):  # a date
        moment = datetime(value.year, value.month, value.day)
    else:
        raise SourceError(f"{where} is not a timestamp ({type(value).__name__})")
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+05:00 has no UTC moment
        raise SourceError(f"{where} lies outside the years 1..9999 in UTC") from None
