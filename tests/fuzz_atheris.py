"""Coverage-guided fuzz targets (atheris, libFuzzer) over the parsers we own.

    python tests/fuzz_atheris.py TARGET [CORPUS_DIR] [-runs=N] [-max_total_time=S] ...

Each target feeds raw bytes to one parser and lets through only that parser's
documented errors; anything else is a crash, which libFuzzer reports (exit status
non-zero, the input saved as crash-*). test_hostile_atheris.py runs each target for a
bounded time.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import atheris

with atheris.instrument_imports(include=["goalledger"]):
    import msgspec
    from eventsourcing.persistence import MapperDeserialisationError, StoredEvent
    from litestar.exceptions import SerializationException

    from goalledger.api import app as _app  # noqa: F401  (imports every route's bodies)
    from goalledger.api.http_json import Body
    from goalledger.api.problems import ApiError
    from goalledger.api.reading_bodies import decode_batch, decode_kpi_readings
    from goalledger.core.errors import DomainError
    from goalledger.core.mapper import MsgspecMapper
    from goalledger.plugins import KpiRef, SourceError
    from goalledger.plugins.payloads import decode_json, resolve, to_datetime, to_decimal
    from goalledger.plugins.sources_csv import CsvConfig, CsvSource
    from goalledger.plugins.sources_prometheus import _single_value
    from goalledger.projections.ledger_io import check_export

KPI = KpiRef(UUID(int=1), name="k", unit="", direction="higher_is_better", frequency="daily")
SCRATCH = Path(tempfile.mkdtemp(prefix="goalledger-fuzz-"))


def _bodies() -> list[type]:
    found, todo = [], [Body]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.append(sub)
            todo.append(sub)
    return sorted(found, key=lambda cls: cls.__qualname__)


BODIES = _bodies()


def body(data: bytes) -> None:
    """A request body as Litestar handles it: JSON decoded, then converted to a Struct."""
    if not data:
        return
    struct = BODIES[data[0] % len(BODIES)]
    try:
        document = msgspec.json.decode(data[1:])
    except (msgspec.DecodeError, UnicodeDecodeError):  # 400 (the latter: on_invalid_utf8)
        return
    except RecursionError as error:  # the API answers 400 (api/http_limits.on_recursion)
        assert "deserializing" in str(error)
        return
    with contextlib.suppress(msgspec.ValidationError):  # Litestar: 400 naming the field
        msgspec.convert(document, struct, strict=False, str_keys=True)


def readings(data: bytes) -> None:
    """A readings body through its own typed decoder (`POST /v1/readings` or
    `POST /v1/kpis/{id}/readings`): a reading list or a problem naming the field."""
    if not data:
        return
    decode = (decode_batch, decode_kpi_readings)[data[0] % 2]
    # ApiError: 400 naming the field; the rest as on every route (bad JSON, deep
    # nesting: api/http_limits.on_recursion, bad UTF-8: on_invalid_utf8) answer 400.
    with contextlib.suppress(ApiError, SerializationException, RecursionError, UnicodeDecodeError):
        decode(data[1:])


def payload(data: bytes) -> None:
    """A JSON document with a pointer: the http-json source's parsing."""
    pointer, _, document = data.partition(b"\n")
    try:
        tree = decode_json(document, "the response")
        found = resolve(tree, pointer.decode("utf-8", "replace"))
        to_decimal(found, "the value")
        to_datetime(found, "the time")
    except SourceError:
        pass


def prometheus(data: bytes) -> None:
    """A Prometheus instant-query answer's data."""
    try:
        answer = decode_json(data, "the answer")
        _single_value(answer.get("data") if isinstance(answer, dict) else answer, "q")
    except SourceError:
        pass


DATE_FORMATS = [None, "%Y-%m-%d", "%d/%m/%Y %H:%M%z", "%Y-%m-%dT%H:%M:%S%z", "%j"]


def csv_file(data: bytes) -> None:
    """A CSV file read by the csv source."""
    if not data:
        return
    path = SCRATCH / "readings.csv"
    path.write_bytes(data[1:])
    date_format = DATE_FORMATS[data[0] % len(DATE_FORMATS)]
    config = CsvConfig(
        path=str(path), date_column="day", value_column="ms", date_format=date_format
    )
    with contextlib.suppress(SourceError):
        CsvSource().fetch(config, KPI, None)


def _topics() -> list[str]:
    import json

    golden = Path(__file__).parent / "golden" / "events.ndjson"
    return sorted({json.loads(line)["topic"] for line in golden.read_text().splitlines()})


TOPICS = _topics()
MAPPER = MsgspecMapper()


def stored_event(data: bytes) -> None:
    """A stored event's state bytes, under one of the golden topics."""
    if not data:
        return
    topic = TOPICS[data[0] % len(TOPICS)]
    stored = StoredEvent(originator_id=UUID(int=7), originator_version=1, topic=topic,
                         state=data[1:])  # fmt: skip
    for decode in (MAPPER.to_domain_event, lambda s: MAPPER.decode_fields(s.topic, s.state)):
        with contextlib.suppress(MapperDeserialisationError):
            decode(stored)


def export_file(data: bytes) -> None:
    """A ledger export file, checked before any import."""
    path = SCRATCH / "export.ndjson"
    path.write_bytes(data)
    with contextlib.suppress(DomainError):
        check_export(path)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "body": body,
    "readings": readings,
    "payload": payload,
    "prometheus": prometheus,
    "csv": csv_file,
    "stored-event": stored_event,
    "export": export_file,
}


def main() -> None:
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
