"""Reading batches off the wire: one typed msgspec decode straight to `ReadingInput`s.

Litestar reads a `JSONBody[list[Struct]]` in two passes: the JSON to dicts and lists,
then `msgspec.convert` of those into the Structs, whose `Body.__post_init__` then walks
every field. For a 1,000-reading batch that was most of the request's time on the
event loop. `ReadingBodies`, a Litestar DTO in name only, hands the raw bytes to one
`msgspec.json.Decoder` whose items *are* `ReadingInput`s, then checks each value as
`Body` would. The answers stay those of every other route: a body the decoder refuses
names its field as `body[i].field`; JSON that is not JSON goes through Litestar's own
decoder, so bad syntax, deep nesting and invalid UTF-8 answer exactly as elsewhere.

Numbers keep their digits: `1.10` is recorded as `1.10`, and a 25-digit value exactly
(the two-pass path went through a float).
"""

from __future__ import annotations

import re
from collections.abc import Generator
from decimal import Decimal
from typing import Any

import msgspec
from litestar.dto import AbstractDTO, DTOFieldDefinition
from litestar.exceptions import SerializationException
from litestar.serialization import decode_json
from litestar.typing import FieldDefinition

from goalledger.api.http_conventions import AwareDatetime
from goalledger.api.http_json import MAX_ADJUSTED_EXPONENT, MIN_ADJUSTED_EXPONENT, check_decimal
from goalledger.api.problems import BadRequest, FieldError
from goalledger.core.ledger import ReadingInput


class BatchReadingIn(ReadingInput, forbid_unknown_fields=True, frozen=True, gc=False):
    """One reading of any KPI."""

    observed_at: AwareDatetime  # type: ignore[assignment]


_BATCH = msgspec.json.Decoder(list[BatchReadingIn], strict=False)
_LOCATED = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.DOTALL)
_QUOTED = re.compile(r"field `([^`]+)`")


def decode_batch(body: bytes) -> list[BatchReadingIn]:
    """The readings of a batch body; `BadRequest` naming `body[i].field` if it is not one."""
    try:
        readings = _BATCH.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
        # Whether it is JSON at all first, as on every other route: Litestar's decoder
        # raises what its handlers answer for bad syntax, deep nesting or bad UTF-8.
        decode_json(body)
        if isinstance(error, msgspec.ValidationError):
            raise _refusal(error) from None
        raise SerializationException(f"JSON is malformed: {error}") from None
    for index, reading in enumerate(readings):
        value = reading.value
        if not value.is_finite() or (
            value and not MIN_ADJUSTED_EXPONENT <= value.adjusted() <= MAX_ADJUSTED_EXPONENT
        ):
            _refuse_value(value, f"body[{index}].value")
    return readings


def _refuse_value(value: Decimal, field: str) -> None:
    try:
        check_decimal(value, "value")
    except ValueError as error:
        raise BadRequest(f"{field}: {error}", [FieldError(field, str(error))]) from None


def _refusal(error: msgspec.ValidationError) -> BadRequest:
    """msgspec's `Expected … - at `$[1].value`` as a problem naming `body[1].value`."""
    located = _LOCATED.match(str(error))
    assert located is not None
    message, path = located.group(1), located.group(2) or ""
    if quoted := _QUOTED.search(message):  # unknown or missing field: name the field itself
        path = f"{path}.{quoted.group(1)}"
    field = f"body{path}"
    return BadRequest(f"{field}: {message}", [FieldError(field, message)])


class ReadingBodies(AbstractDTO[BatchReadingIn]):
    """`dto=` for the batch route: its body decoded by `decode_batch` (nothing else)."""

    @classmethod
    def create_for_field_definition(
        cls, field_definition: FieldDefinition, handler_id: str, backend_cls: Any = None
    ) -> None:
        """No transfer models to build: `decode_bytes` decodes the body itself."""

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any
    ) -> Any:
        """The body's schema, as for a route without a DTO."""
        return schema_creator.for_field_definition(field_definition)

    def decode_bytes(self, value: bytes) -> list[BatchReadingIn]:
        return decode_batch(value)

    @classmethod
    def generate_field_definitions(
        cls, model_type: type[Any]
    ) -> Generator[DTOFieldDefinition, None, None]:
        raise NotImplementedError  # only used to build transfer models, which it has none of
        yield

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False
