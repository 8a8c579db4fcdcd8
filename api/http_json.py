"""JSON on the wire: decimals as exact JSON numbers, timestamps as RFC 3339 with offset."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

import msgspec
from litestar import Response
from litestar.serialization import default_serializer

T = TypeVar("T")

_ENCODERS: dict[Callable[[Any], Any], msgspec.json.Encoder] = {}
# Values the API accepts: wide enough for any business figure, narrow enough that
# scoring arithmetic can never overflow the decimal context.
MAX_ADJUSTED_EXPONENT = 30
MIN_ADJUSTED_EXPONENT = -30


def encode_json(content: Any, enc_hook: Callable[[Any], Any] = default_serializer) -> bytes:
    """Encode `content`, writing Decimals as numbers (exact digits, no float rounding)."""
    encoder = _ENCODERS.get(enc_hook)
    if encoder is None:
        encoder = msgspec.json.Encoder(enc_hook=enc_hook, decimal_format="number")
        _ENCODERS[enc_hook] = encoder
    return encoder.encode(content)


class JsonResponse(Response[T]):
    """Litestar's Response, with decimals rendered as JSON numbers rather than strings."""

    def render(self, content: Any, media_type: str, enc_hook: Any = default_serializer) -> bytes:
        if isinstance(content, bytes | str) or "json" not in media_type:
            return super().render(content, media_type, enc_hook)
        return encode_json(content, enc_hook)


def check_decimal(value: Decimal, field: str) -> None:
    """Refuse NaN, infinities and absurd magnitudes, which the domain cannot score."""
    if not value.is_finite():
        raise ValueError(f"field `{field}` must be a finite number")
    if value and not MIN_ADJUSTED_EXPONENT <= value.adjusted() <= MAX_ADJUSTED_EXPONENT:
        raise ValueError(f"field `{field}` is out of range (|value| must lie within 1e-30..1e30)")


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every request body: unknown fields are refused and decimals are finite."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            _check_value(getattr(self, name), name)


def _check_value(value: Any, field: str) -> None:
    if isinstance(value, Decimal):
        check_decimal(value, field)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(item, f"{field}[{index}]")
