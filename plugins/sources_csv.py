"""`csv`: KPI values from a CSV file or URL, one reading per dated row."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated

import msgspec

from goalledger.plugins.contracts import KpiRef, Observation, Secret, SourceError
from goalledger.plugins.egress import get_ok
from goalledger.plugins.hookspecs import Register, hookimpl
from goalledger.plugins.payloads import to_datetime, to_decimal
from goalledger.plugins.sources_http import Bytes, Seconds, check_url


class CsvConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A CSV file (`path`) or URL (`url`), and which columns hold the date and value."""

    path: str | None = None
    url: str | None = None
    date_column: str
    value_column: str
    date_format: str | None = None  # strptime format; default ISO 8601 (2026-03-14[T…])
    delimiter: Annotated[str, msgspec.Meta(min_length=1, max_length=1)] = ","
    token: Annotated[str | None, Secret] = None  # for `url`: `Authorization: Bearer …`
    timeout: Seconds = 10.0
    max_bytes: Bytes = 10_000_000
    max_readings: Annotated[int, msgspec.Meta(gt=0, le=100_000)] = 1000

    def __post_init__(self) -> None:
        if (self.path is None) == (self.url is None):
            raise ValueError("path: give exactly one of path or url")
        if self.url is not None:
            check_url(self.url)
        if not self.date_column.strip():
            raise ValueError("date_column: must not be blank")
        if not self.value_column.strip():
            raise ValueError("value_column: must not be blank")


class CsvSource:
    """Rows dated after `since` (all rows the first time), newest `max_readings` of them.

    The reading id is the row's date (`2026-03-14`, or the full UTC timestamp when the
    column holds times), so re-reading the file records nothing new; a blank value
    cell is skipped.
    """

    name = "csv"
    config_type = CsvConfig

    def fetch(self, config: CsvConfig, kpi: KpiRef, since: datetime | None) -> list[Observation]:
        text = _read(config)
        reader = csv.DictReader(io.StringIO(text), delimiter=config.delimiter)
        try:
            header = reader.fieldnames or []
        except csv.Error as error:
            raise SourceError(f"the CSV header is malformed: {error}") from None
        for column in (config.date_column, config.value_column):
            if column not in header:
                raise SourceError(f"the CSV has no column {column!r} (it has {', '.join(header)})")
        picked: dict[str, Observation] = {}
        for row in _rows(reader):
            line = reader.line_num
            raw_value = (row.get(config.value_column) or "").strip()
            raw_date = (row.get(config.date_column) or "").strip()
            if not raw_value or not raw_date:
                continue
            observed_at, reading_id = _when(raw_date, config.date_format, line)
            if since is not None and observed_at <= since:
                continue
            value = to_decimal(raw_value, f"line {line}, column {config.value_column!r}")
            picked[reading_id] = Observation(reading_id, value, observed_at)  # last row wins
        rows = sorted(picked.values(), key=lambda o: o.observed_at)
        return rows[-config.max_readings :]


def _rows(reader: csv.DictReader[str]) -> Iterator[dict[str, str]]:
    """The reader's rows; a malformed file is a SourceError naming the line."""
    try:
        yield from reader
    except csv.Error as error:
        raise SourceError(f"line {reader.line_num} of the CSV is malformed: {error}") from None


def _read(config: CsvConfig) -> str:
    if config.url is not None:
        headers = {"Accept": "text/csv", "User-Agent": "goalledger-csv"}
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        body = get_ok(
            config.url, headers=headers, timeout=config.timeout, max_bytes=config.max_bytes
        ).body
    else:
        path = Path(config.path or "")
        try:
            if path.stat().st_size > config.max_bytes:
                raise SourceError(f"{path} is larger than {config.max_bytes} bytes")
            body = path.read_bytes()
        except OSError as error:
            raise SourceError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SourceError("the CSV is not UTF-8") from None


def _when(raw: str, date_format: str | None, line: int) -> tuple[datetime, str]:
    """(observed_at, reading id) for a date cell."""
    where = f"line {line}, the date {raw[:40]!r}"
    if date_format is not None:
        try:
            moment = to_datetime(datetime.strptime(raw, date_format), where)
        except ValueError:
            raise SourceError(f"{where} does not match {date_format!r}") from None
    else:
        moment = to_datetime(raw, where)
    if moment.time() == datetime.min.time():
        return moment, moment.date().isoformat()
    return moment, moment.isoformat()


@hookimpl
def register_metric_sources(register: Register) -> None:
    register(CsvSource())
