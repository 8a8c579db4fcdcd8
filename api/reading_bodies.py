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
from collections.abc import Callable, Generator
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import msgspec
from litestar.dto import AbstractDTO, DTOFieldDefinition
from litestar.exceptions import SerializationException
from litestar.serialization import decode_json
from litestar.typing import FieldDefinition

from goalledger.api.http_conventions import AwareDatetime
from goalledger.api.http_json import MAX_ADJUSTED_EXPONENT, MIN_ADJUSTED_EXPONENT, check_decimal
from goalledger.api.problems import BadRequest, FieldError
from goalledger.core.ledger import ReadingInput

T = TypeVar("T")


class BatchReadingIn(ReadingInput, forbid_unknown_fields=True, frozen=True, gc=False):
    """One reading of any KPI."""

    observed_at: AwareDatetime  # type: ignore[assignment]


class ReadingIn(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """One reading of this KPI; `reading_id` makes re-sending it harmless."""

    reading_id: str
    value: Decimal
    observed_at: AwareDatetime


_BATCH = msgspec.json.Decoder(list[BatchReadingIn], strict=False)
_OF_KPI = msgspec.json.Decoder(ReadingIn | list[ReadingIn], strict=False)
_LOCATED = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.DOTALL)
_QUOTED = re.compile(r"field `([^`]+)`")


def decode_batch(body: bytes) -> list[BatchReadingIn]:
    """The readings of a batch body; `BadRequest` naming `body[i].field` if it is not one."""
    readings = _decode(_BATCH, body)
    for index, reading in enumerate(readings):
        _check_value(reading.value, index)
    return readings


def decode_kpi_readings(body: bytes) -> ReadingIn | list[ReadingIn]:
    """One reading of a KPI or a list of them; `BadRequest` naming the field if not."""
    readings = _decode(_OF_KPI, body)
    if isinstance(readings, ReadingIn):
        _check_value(readings.value, None)
    else:
        for index, reading in enumerate(readings):
            _check_value(reading.value, index)
    return readings


def _decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
        # Whether it is JSON at all first, as on every other route: Litestar's decoder
        # raises what its handlers answer for bad syntax, deep nesting or bad UTF-8.
        decode_json(body)
        if isinstance(error, msgspec.ValidationError):
            raise _refusal(error) from None
        raise SerializationException(f"JSON is malformed: {error}") from None


def _check_value(value: Decimal, index: int | None) -> None:
    """`Body`'s check of a decimal, inline for the common valid case."""
    if value.is_finite() and (
        not value or MIN_ADJUSTED_EXPONENT <= value.adjusted() <= MAX_ADJUSTED_EXPONENT
    ):
        return
    field = "value" if index is None else f"body[{index}].value"
    try:
        check_decimal(value, "value")
    except ValueError as error:
        raise BadRequest(f"{field}: {error}", [FieldError(field, str(error))]) from None


def _refusal(error: msgspec.ValidationError) -> BadRequest:
    """msgspec's `Expected … - at `$[1].value`` as a problem naming `body[1].value`
    (a field of a single object is named alone: `value`)."""
    located = _LOCATED.match(str(error))
    assert located is not None
    message, path = located.group(1), located.group(2) or ""
    if quoted := _QUOTED.search(message):  # unknown or missing field: name the field itself
        path = f"{path}.{quoted.group(1)}"
    field = path[1:] if path.startswith(".") else f"body{path}"
    return BadRequest(f"{field}: {message}", [FieldError(field, message)])


class _DecodedBodies(AbstractDTO[T]):
    """A Litestar DTO in name only: `decode_bytes` decodes the body with `decode`."""

    decode: ClassVar[Callable[[bytes], Any]]

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

    def decode_bytes(self, value: bytes) -> Any:
        return type(self).decode(value)

    @classmethod
    def generate_field_definitions(
        cls, model_type: type[Any]
    ) -> Generator[DTOFieldDefinition, None, None]:
        raise NotImplementedError  # only used to build transfer models, which it has none of
        yield

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False


class ReadingBodies(_DecodedBodies[BatchReadingIn]):
    """`dto=` for `POST /v1/readings`: the body read by `decode_batch`."""

    decode = staticmethod(decode_batch)


class KpiReadingBodies(_DecodedBodies[ReadingIn]):
    """`dto=` for `POST /v1/kpis/{id}/readings`: the body read by `decode_kpi_readings`."""

    decode = staticmethod(decode_kpi_readings)
