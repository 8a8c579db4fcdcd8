"""A msgspec-based eventsourcing `Mapper`: typed MessagePack in, typed events out.

The default mapper goes through stdlib JSON and rebuilds UUIDs, datetimes and
Decimals by hand; decoding dominates replay. Here each event class gets a
msgspec Struct that mirrors its dataclass fields, so the stored bytes decode
straight into typed values (a Decimal comes back as the same Decimal).
Stored state is a MessagePack map of the event's fields, without
`originator_id`/`originator_version` (the row holds those) and with
`class_version` only when it is above 1, as the library's own mapper does.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import types
import typing
from decimal import Decimal
from functools import cache
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.utils import get_topic, resolve_topic

_ROW_FIELDS = frozenset({"originator_id", "originator_version"})
_encoder = msgspec.msgpack.Encoder()
_untyped_decoder = msgspec.msgpack.Decoder()


class _EventShape(msgspec.Struct, frozen=True):
    """The typed decoder and field names for one event class."""

    decoder: msgspec.msgpack.Decoder
    struct: type
    fields: tuple[str, ...]
    class_version: int


def _as_text(hint: Any) -> Any:
    """`hint` with UUID and Decimal read as their stored text (unions kept)."""
    if hint in (UUID, Decimal):
        return str
    args = typing.get_args(hint)
    if args and typing.get_origin(hint) in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, (_as_text(arg) for arg in args))
    return hint


@cache
def _shape(cls: type, textual: bool = False) -> _EventShape:
    hints = typing.get_type_hints(cls)
    struct_fields: list[Any] = []
    names = []
    for field in dataclasses.fields(cls):
        if field.name in _ROW_FIELDS:
            continue
        names.append(field.name)
        hint = hints[field.name]
        struct_fields.append((field.name, _as_text(hint) if textual else hint))
    struct_fields.append(("class_version", int, 1))
    struct = msgspec.defstruct(f"{cls.__name__}State", struct_fields, forbid_unknown_fields=False)
    return _EventShape(
        decoder=msgspec.msgpack.Decoder(struct),
        struct=struct,
        fields=tuple(names),
        class_version=getattr(cls, "class_version", 1),
    )


def encode_state(event: object) -> bytes:
    """Encode an event's own fields (not its id and version) as MessagePack."""
    state = dict(vars(event))  # a copy, then drop the row's fields: keeps the order
    state.pop("originator_id", None)
    state.pop("originator_version", None)
    class_version = getattr(type(event), "class_version", 1)
    if class_version > 1:
        state["class_version"] = class_version
    return _encoder.encode(state)


@cache
def state_struct(cls: type) -> type[msgspec.Struct]:
    """A Struct whose MessagePack is byte for byte `encode_state` of a `cls` event.

    The event's own fields in the same order (`class_version` last, only above 1), so
    bulk writers encode an event's state without building the event object.
    """
    hints = typing.get_type_hints(cls)
    fields: list[Any] = [
        (field.name, hints[field.name])
        for field in dataclasses.fields(cls)
        if field.name not in _ROW_FIELDS
    ]
    class_version = getattr(cls, "class_version", 1)
    if class_version > 1:
        fields.append(("class_version", int, class_version))
    # Encode-only and short-lived, so never part of a cycle: untracked by the collector.
    return msgspec.defstruct(f"{cls.__name__}Row", fields, kw_only=True, gc=False)


def encode_struct(state: msgspec.Struct) -> bytes:
    """Encode a `state_struct` instance (see there)."""
    return _encoder.encode(state)


def decode_struct(cls: type, data: bytes, *, textual: bool = False) -> Any:
    """Decode stored bytes into a typed Struct mirroring `cls`'s fields, upcasting old versions.

    The projector reads events in this form (`textual`: UUIDs and Decimals as their
    exact stored text, which is what read models store): attribute access like the
    event, without building the event object or parsing values it only writes back.
    """
    shape = _shape(cls, textual)
    try:
        typed = shape.decoder.decode(data)
        if typed.class_version == shape.class_version:
            return typed
    except msgspec.ValidationError:
        # An older version may lack (or spell differently) today's fields.
        pass
    raw = _untyped_decoder.decode(data)
    version = raw.pop("class_version", 1)
    while version < shape.class_version:
        getattr(cls, f"upcast_v{version}_v{version + 1}")(raw)
        version += 1
    return msgspec.convert(raw, shape.struct, strict=False)


def decode_state(cls: type, data: bytes) -> dict[str, Any]:
    """Decode stored bytes into typed field values of `cls`, upcasting old versions."""
    typed = decode_struct(cls, data)
    return {name: getattr(typed, name) for name in _shape(cls).fields}


class MsgspecMapper(Mapper[UUID]):
    """Maps domain events to stored events with msgspec instead of stdlib JSON."""

    def __init__(
        self,
        transcoder: Transcoder | None = None,
        compressor: Any = None,
        cipher: Any = None,
    ) -> None:
        super().__init__(transcoder=transcoder, compressor=compressor, cipher=cipher)  # type: ignore[arg-type]

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        """Encode one domain event for the recorder."""
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=get_topic(type(domain_event)),
            state=self.seal(encode_state(domain_event)),
        )

    def to_row(self, domain_event: Any) -> tuple[str, int, str, bytes]:
        """(aggregate id as 32 hex digits, version, topic, stored state) for the writers."""
        return (
            domain_event.originator_id.hex,
            domain_event.originator_version,
            get_topic(type(domain_event)),
            self.seal(encode_state(domain_event)),
        )

    def seal(self, state: bytes) -> bytes:
        """Encoded state as stored: compressed and encrypted when the environment says so."""
        if self.compressor:
            state = self.compressor.compress(state)
        if self.cipher:
            state = self.cipher.encrypt(state)
        return state

    def decode_fields(self, topic: str, data: bytes) -> Any:
        """A stored event's fields as a Struct, ids and decimals as text (see decode_struct)."""
        cls = resolve_topic(topic)
        try:
            if self.cipher:
                data = self.cipher.decrypt(data)
            if self.compressor:
                data = self.compressor.decompress(data)
            return decode_struct(cls, data, textual=True)
        except Exception as error:  # damaged bytes: the same error as to_domain_event's
            raise MapperDeserialisationError(f"cannot decode a {topic!r} event: {error}") from error

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        """Rebuild a typed domain event from its stored form."""
        cls = resolve_topic(stored_event.topic)
        data = stored_event.state
        try:
            if self.cipher:
                data = self.cipher.decrypt(data)
            if self.compressor:
                data = self.compressor.decompress(data)
            state = decode_state(cls, data)
        except Exception as error:
            msg = (
                f"cannot decode stored event {stored_event.topic!r} of "
                f"{stored_event.originator_id} v{stored_event.originator_version}: {error}"
            )
            raise MapperDeserialisationError(msg) from error
        originator_id = stored_event.originator_id
        state["originator_id"] = (
            originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))
        )
        state["originator_version"] = stored_event.originator_version
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event
