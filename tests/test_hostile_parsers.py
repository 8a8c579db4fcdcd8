"""Hostile input to every parser we own that is not an HTTP body: metric-source payloads
(CSV files, JSON documents by pointer, Prometheus answers, served by real processes on
127.0.0.1), stored events, and ledger import files. Each may only fail with its
documented error: `SourceError`, `MapperDeserialisationError`, `DomainError`.

Generation is derandomized (the same inputs on every run, so CI stays stable);
`GOALLEDGER_FUZZ_EXAMPLES` raises the count for a longer local hunt. The coverage-guided
atheris runs are in test_hostile_atheris.py.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_chain import record_some
from test_golden import ROWS

from goalledger.api.bootstrap import bootstrap
from goalledger.core.errors import DomainError
from goalledger.core.mapper import MsgspecMapper
from goalledger.core.settings import Settings
from goalledger.plugins import KpiRef, SourceError
from goalledger.plugins.payloads import decode_json
from goalledger.plugins.sources_csv import CsvConfig, CsvSource
from goalledger.plugins.sources_http import HttpJsonConfig, HttpJsonSource
from goalledger.plugins.sources_prometheus import PrometheusConfig, PrometheusSource
from goalledger.plugins.testkit import local_http_server
from goalledger.projections.chain import GENESIS, links
from goalledger.projections.ledger_io import check_export, export_lines, import_ledger

EXAMPLES = int(os.environ.get("GOALLEDGER_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
NOW = datetime(2026, 3, 14, 15, 45, tzinfo=UTC)
KPIS = [
    KpiRef(UUID(int=1), name="k", unit="", direction="higher_is_better", frequency=frequency)
    for frequency in ("hourly", "daily", "weekly", "monthly")
]

# -- strategies ----------------------------------------------------------------------------

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["1e999999999", "-1e-999999999", "NaN", "Infinity", "1_000", " 7 ", "0x10"]),
)
timestamps = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),
    st.dates().map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59-05:00",
            "2026-02-30",
            "2026-03-14Z",
            "24:00",
            "",
            "2026-03-14T25:00:00Z",
            "1e20",
        ]
    ),
    numbers,
)
scalars = st.one_of(st.none(), st.booleans(), numbers, timestamps, st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
pointers = st.one_of(
    st.just(""),
    st.lists(st.sampled_from(["a", "0", "1", "~0", "~1", "", "-", "99999999999999999999", "٣"]),
             min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts)),
)  # fmt: skip


# A number and a time where the pointers /a/0 and /a/1 find them (often in range).
planted = st.tuples(numbers, timestamps).map(lambda pair: to_json({"a": list(pair)}))


def to_json(value: Any) -> bytes:
    """JSON text, with Python's non-standard NaN/Infinity kept: hostile documents."""
    return json.dumps(value, default=str).encode()


# -- metric sources ------------------------------------------------------------------------


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hostile servers run on 127.0.0.1: let sources reach them."""
    monkeypatch.setenv("GOALLEDGER_EGRESS_LOOPBACK", "allow")


class Served:
    """What a real local server answers next (set per generated example)."""

    def __init__(self) -> None:
        self.status, self.body = 200, b""

    def __call__(self, exchange: Any) -> tuple[int, dict[str, str], bytes]:
        return self.status, {"Content-Type": "application/json"}, self.body


@pytest.mark.slow
def test_http_json_source_survives_any_document(loopback: None) -> None:
    served = Served()
    tried = []
    with local_http_server(served) as server:

        @FUZZ
        @given(
            body=st.one_of(json_values.map(to_json), planted, st.binary(max_size=200)),
            pointer=st.one_of(st.just("/a/0"), pointers),
            observed_at_pointer=st.one_of(st.none(), st.just("/a/1"), pointers),
            kpi=st.sampled_from(KPIS),
        )
        def fetch(body: bytes, pointer: str, observed_at_pointer: str | None, kpi: KpiRef):
            served.body = body
            config = HttpJsonConfig(
                url=server.url, pointer=pointer, observed_at_pointer=observed_at_pointer
            )
            try:
                observations = HttpJsonSource(clock=lambda: NOW).fetch(config, kpi, None)
            except SourceError:
                tried.append("refused")
                return
            tried.append("read")
            for observation in observations:
                assert observation.value.is_finite()
                assert observation.observed_at.tzinfo is not None

        fetch()
    print(f"http-json: {len(tried)} documents, {tried.count('read')} read")
    assert len(tried) >= EXAMPLES and "read" in tried and "refused" in tried


samples = st.lists(st.one_of(numbers, st.text(max_size=8), json_values), max_size=3)
prometheus_answers = st.one_of(
    json_values,
    st.tuples(st.sampled_from(["scalar", "string"]), numbers).map(
        lambda kind_value: {"status": "success",
                            "data": {"resultType": kind_value[0], "result": [0, kind_value[1]]}}
    ),
    st.fixed_dictionaries({
        "status": st.sampled_from(["success", "error", None]),
        "data": st.one_of(json_values, st.fixed_dictionaries({
            "resultType": st.sampled_from(["vector", "scalar", "string", "matrix", None]),
            "result": st.one_of(
                samples,
                st.lists(st.one_of(json_values, st.fixed_dictionaries({"value": samples})),
                         max_size=3),
            ),
        })),
        "error": st.one_of(st.none(), st.text(max_size=20)),
    }),
)  # fmt: skip


@pytest.mark.slow
def test_prometheus_source_survives_any_answer(loopback: None) -> None:
    served = Served()
    tried = []
    with local_http_server(served) as server:

        @FUZZ
        @given(
            answer=st.one_of(prometheus_answers.map(to_json), st.binary(max_size=100)),
            status=st.sampled_from([200, 200, 200, 400, 422, 503]),
            evaluate_at=st.sampled_from(["now", "period_end"]),
            kpi=st.sampled_from(KPIS),
        )
        def fetch(answer: bytes, status: int, evaluate_at: str, kpi: KpiRef):
            served.status, served.body = status, answer
            config = PrometheusConfig(
                url=server.url, query="up", evaluate_at=evaluate_at, max_periods=2
            )
            since = NOW - timedelta(days=40)
            try:
                observations = PrometheusSource(clock=lambda: NOW).fetch(config, kpi, since)
            except SourceError:
                tried.append("refused")
                return
            tried.append("read")
            assert all(o.value.is_finite() for o in observations)

        fetch()
    print(f"prometheus: {len(tried)} answers, {tried.count('read')} read")
    assert len(tried) >= EXAMPLES and "read" in tried and "refused" in tried


cells = st.one_of(timestamps, numbers.map(str), st.text(max_size=12))
csv_rows = st.lists(st.lists(cells, min_size=0, max_size=4), max_size=8)
date_formats = st.sampled_from(
    [None, None, "%Y-%m-%d", "%d/%m/%Y %H:%M%z", "%Y-%m-%dT%H:%M:%S%z", "%Q", "%", "%s", "%j"]
)


def csv_text(header: list[str], rows: list[list[str]], delimiter: str) -> str:
    clean = [[str(c).replace("\n", " ") for c in row] for row in [header, *rows]]
    return "\n".join(delimiter.join(row) for row in clean)


def test_csv_source_survives_any_file(tmp_path: Path) -> None:
    tried = []
    path = tmp_path / "readings.csv"

    @FUZZ
    @given(
        content=st.one_of(
            st.tuples(
                st.lists(st.sampled_from(["day", "ms", "x", "", '"day"']), max_size=4),
                csv_rows,
                st.sampled_from([",", ";", "\t", '"']),
            ),
            st.binary(max_size=300),
        ),
        date_format=date_formats,
        since=st.none() | st.datetimes(timezones=st.just(UTC)),
    )
    def fetch(content: Any, date_format: str | None, since: datetime | None):
        delimiter = ","
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            header, rows, delimiter = content
            path.write_text(csv_text(["day", "ms", *header], rows, delimiter), encoding="utf-8")
        config = CsvConfig(path=str(path), date_column="day", value_column="ms",
                           date_format=date_format, delimiter=delimiter)  # fmt: skip
        try:
            observations = CsvSource().fetch(config, KPIS[1], since)
        except SourceError:
            tried.append("refused")
            return
        tried.append("read")
        for observation in observations:
            assert observation.value.is_finite() and observation.observed_at.tzinfo is UTC

    fetch()
    print(f"csv: {len(tried)} files, {tried.count('read')} read")
    assert len(tried) >= EXAMPLES and "read" in tried and "refused" in tried


# -- stored events -------------------------------------------------------------------------

GOLDEN = [(row["topic"], base64.b64decode(row["state"])) for row in ROWS]
msgpack_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
              st.floats(), st.text(max_size=20), st.binary(max_size=20)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8,
)  # fmt: skip


@st.composite
def hostile_states(draw: st.DrawFn) -> tuple[str, bytes]:
    """A golden event's topic with its state damaged: bytes flipped or cut, a field's
    value swapped for another, a field dropped or added, or another event's state."""
    topic, state = draw(st.sampled_from(GOLDEN))
    how = draw(st.sampled_from(["flip", "cut", "swap", "drop", "add", "other", "bytes"]))
    if how == "flip" and state:
        at = draw(st.integers(0, len(state) - 1))
        state = state[:at] + bytes([draw(st.integers(0, 255))]) + state[at + 1 :]
    elif how == "cut":
        state = state[: draw(st.integers(0, len(state)))]
    elif how in ("swap", "drop", "add"):
        fields = msgspec.msgpack.decode(state)
        name = draw(st.sampled_from(sorted(fields))) if how != "add" else draw(st.text())
        if how == "drop":
            fields.pop(name)
        else:
            fields[name] = draw(msgpack_values)
        if draw(st.booleans()):
            fields["class_version"] = draw(st.integers(-3, 5))
        state = msgspec.msgpack.encode(fields)
    elif how == "other":
        state = draw(st.sampled_from(GOLDEN))[1]
    elif how == "bytes":
        state = draw(st.binary(max_size=100))
    return topic, state


def test_stored_event_decoding_fails_only_with_the_mappers_error() -> None:
    mapper = MsgspecMapper()
    outcomes = {"decoded": 0, "refused": 0}

    @FUZZ
    @given(hostile=hostile_states())
    def decode(hostile: tuple[str, bytes]):
        topic, state = hostile
        stored = StoredEvent(originator_id=uuid4(), originator_version=1, topic=topic,
                             state=state)  # fmt: skip
        for read in (mapper.to_domain_event, lambda s: mapper.decode_fields(s.topic, s.state)):
            try:
                read(stored)
            except MapperDeserialisationError:
                outcomes["refused"] += 1
            else:
                outcomes["decoded"] += 1

    decode()
    print(f"stored events: {outcomes}")
    assert sum(outcomes.values()) >= 2 * EXAMPLES
    assert outcomes["decoded"] and outcomes["refused"]


# -- import files --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def export_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real export of a small ledger (a plan, check-ins, a KPI with readings)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('source')}/goalledger.db"
    with bootstrap(Settings(database_url=url)) as system:
        record_some(system.ledger)
        system.catch_up()
        return b"".join(export_lines(system.ledger, system.store))


def rechained(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lines whose links are recomputed: a forger's file that passes the chain check."""
    rows = []
    for line in lines:
        try:
            rows.append(
                (
                    line["position"],
                    UUID(str(line["aggregate_id"])).hex,
                    line["version"],
                    line["topic"],
                    base64.b64decode(line["state"]),
                )
            )
        except (KeyError, TypeError, ValueError):
            return lines
    try:
        computed = links(GENESIS, rows)
    except Exception:  # a value the chain cannot encode: leave the file as it is
        return lines
    return [{**line, "link": link.hex()} for line, link in zip(lines, computed, strict=True)]


MUTATIONS = ["field", "drop", "duplicate", "swap", "garbage", "big", "rechain", "forge"]


@st.composite
def hostile_exports(draw: st.DrawFn, original: bytes) -> bytes:
    lines = [json.loads(line) for line in original.splitlines()]
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(MUTATIONS))
        at = draw(st.integers(0, len(lines) - 1)) if lines else 0
        if how == "field" and isinstance(lines[at] if lines else None, dict):
            key = draw(st.sampled_from([*sorted(lines[at]), "extra"]))
            lines[at] = {**lines[at], key: draw(json_values)}
        elif how == "big" and isinstance(lines[at] if lines else None, dict):
            key = draw(st.sampled_from(["position", "version"]))
            big = draw(st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 0]))
            lines[at] = {**lines[at], key: big}
        elif how == "drop" and lines:
            lines.pop(at)
        elif how == "duplicate" and lines:
            lines.insert(at, lines[at])
        elif how == "swap" and len(lines) > 1:
            lines[at], lines[-1] = lines[-1], lines[at]
        elif how == "garbage":
            lines.insert(at, draw(st.text(max_size=30)))  # a line that is no event
        elif how == "rechain":
            lines = rechained(lines)
        elif how == "forge" and isinstance(lines[at] if lines else None, dict):
            # A damaged state, the chain recomputed to match: a forger's file.
            _, state = draw(hostile_states())
            lines[at] = {**lines[at], "state": base64.b64encode(state).decode()}
            lines = rechained(lines)
    text = b"".join(
        (line.encode("utf-8", "replace") if isinstance(line, str) else to_json(line)) + b"\n"
        for line in lines
    )
    if draw(st.booleans()) and text:  # and a byte flipped somewhere
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + bytes([draw(st.integers(0, 255))]) + text[at + 1 :]
    return text


@pytest.mark.slow
def test_import_refuses_hostile_files_with_domain_errors_only(
    export_file: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "hostile.ndjson"
    outcomes: dict[str, int] = {"refused": 0}
    accepted: set[bytes] = set()

    @FUZZ
    @given(text=st.one_of(hostile_exports(export_file), st.binary(max_size=300)))
    def check(text: bytes):
        path.write_bytes(text)
        try:
            check_export(path)
        except DomainError:
            outcomes["refused"] += 1
        else:
            accepted.add(text)

    check()
    print(f"import files: {outcomes['refused']} refused, {len(accepted)} distinct accepted")
    assert outcomes["refused"] + len(accepted) >= EXAMPLES // 2 and outcomes["refused"]
    # A file the check accepts imports, and every event in it decodes and projects.
    mapper = MsgspecMapper()
    for number, text in enumerate(sorted(accepted | {export_file})):
        path.write_bytes(text)
        url = f"sqlite:///{tmp_path}/import-{number}/goalledger.db"
        with bootstrap(Settings(database_url=url)) as system:
            imported = import_ledger(system.ledger, path)
            notifications = list(system.ledger.notifications())
            assert len(notifications) == imported.events
            for notification in notifications:
                mapper.to_domain_event(notification)
            assert system.catch_up() == imported.events


@pytest.mark.parametrize(
    "body",
    [b"1e" + b"6" * 70, b'{"a\xff": 1}', b'"\xff"', b"[" * 100_000],
    ids=["exponent beyond any Decimal", "invalid UTF-8 key", "invalid UTF-8 string", "deep"],
)
def test_payloads_the_fuzzers_found_are_source_errors(body: bytes) -> None:
    with pytest.raises(SourceError, match="the response"):
        decode_json(body, "the response")


def test_a_forged_export_whose_chain_holds_but_a_state_does_not_decode_is_refused(
    export_file: bytes, tmp_path: Path
) -> None:
    lines = [json.loads(line) for line in export_file.splitlines()]
    lines[2]["state"] = base64.b64encode(b"\x81\xa5title\xc0").decode()  # {"title": None}
    path = tmp_path / "forged.ndjson"
    path.write_bytes(b"".join(to_json(line) + b"\n" for line in rechained(lines)))
    with pytest.raises(DomainError) as refused:
        check_export(path)
    assert refused.value.field == "line 3"
    assert "is not a" in refused.value.message
