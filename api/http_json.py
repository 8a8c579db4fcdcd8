"""JSON on the wire: decimals as exact JSON numbers, timestamps as RFC 3339 with offset."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

import msgspec
from litestar import Response
from litestar._openapi.schema_generation.plugins import StructSchemaPlugin  # not public in 2.25
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.plugins import OpenAPISchemaPlugin
from litestar.serialization import default_serializer
from litestar.typing import FieldDefinition

T = TypeVar("T")

_ENCODERS: dict[Callable[[Any], Any], msgspec.json.Encoder] = {}
# Values the API accepts: wide enough for any business figure, narrow enough that
# scoring arithmetic can never overflow the decimal context.
MAX_ADJUSTED_EXPONENT = 30
MIN_ADJUSTED_EXPONENT = -30
DECIMAL_PATTERN = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"


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


class DecimalSchemaPlugin(OpenAPISchemaPlugin):
    """Declares decimals as they travel: numbers on output, numbers or numeric strings on
    input (Litestar's default declares a string, which no response of ours carries)."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return field_definition.annotation is Decimal

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        return Schema(
            type=[OpenAPIType.NUMBER, OpenAPIType.STRING],
            pattern=DECIMAL_PATTERN,  # applies to the string form only
            description='A decimal: a JSON number, or a string such as "99.9" on input.',
        )


class ClosedBodySchemaPlugin(StructSchemaPlugin):
    """Bodies that refuse unknown fields (`Body`) say so: `additionalProperties: false`."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        config = getattr(field_definition.annotation, "__struct_config__", None)
        return config is not None and config.forbid_unknown_fields

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        schema.additional_properties = False
        return schema


# `Litestar(plugins=...)`: the OpenAPI document then declares what the API accepts and sends.
OPENAPI_PLUGINS = (DecimalSchemaPlugin(), ClosedBodySchemaPlugin())
