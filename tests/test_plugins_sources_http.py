"""`http-json` and `csv` against real HTTP servers on 127.0.0.1, and the egress rules
every outbound call obeys (more in test_plugins_egress.py)."""

from __future__ import annotations

import ipaddress
import json
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest
from msgspec.structs import replace

from goalledger.plugins import KpiRef, SourceError
from goalledger.plugins.egress import EgressPolicy, EgressRefused, get_ok
from goalledger.plugins.fetch import FetchFailed
from goalledger.plugins.sources_csv import CsvConfig, CsvSource
from goalledger.plugins.sources_http import HttpJsonConfig, HttpJsonSource
from goalledger.plugins.testkit import Exchange, SourceHarness, local_http_server

pytest_plugins = ["goalledger.plugins.testing"]

NOW = datetime(2026, 3, 14, 15, 45, tzinfo=UTC)
KPI = KpiRef(UUID(int=1), name="k", unit="", direction="higher_is_better", frequency="daily")


def json_answer(document: object, status: int = 200):
    body = json.dumps(document).encode()
    return lambda exchange: (status, {"Content-Type": "application/json"}, body)


def test_source_http_json(goalledger_harness: SourceHarness) -> None:
    document = {"data": {"signups": [{"n": 17.25}, {"n": "18.5"}], "at": "2026-03-13T23:00Z"}}
    with local_http_server(json_answer(document)) as server:
        kpi_id = goalledger_harness.define_kpi(
            "http-json",
            {"url": f"{server.url}/stats?x=1", "pointer": "/data/signups/1/n", "token": "tok-123"},
        )
        first = goalledger_harness.fetch(kpi_id)
        second = goalledger_harness.fetch(kpi_id)
        stamped = goalledger_harness.define_kpi(
            "http-json",
            {"url": server.url, "pointer": "/data/signups/0/n", "observed_at_pointer": "/data/at"},
        )
        by_time = goalledger_harness.fetch(stamped)
    today = datetime.now(UTC).date().isoformat()
    assert first.recorded == [today]  # one reading per KPI period…
    assert second.recorded == [] and second.duplicates == [today]  # …so polling is idempotent
    (reading,) = goalledger_harness.readings(kpi_id)
    assert reading.value == Decimal("18.5") and reading.source == "http-json"
    request: Exchange = server.received[0]
    assert request.path == "/stats?x=1"
    assert request.headers["Authorization"] == "Bearer tok-123"
    assert by_time.recorded == ["2026-03-13T23:00:00+00:00"]
    assert goalledger_harness.readings(stamped)[0].value == Decimal("17.25")


@pytest.mark.parametrize(
    ("document", "pointer", "error"),
    [
        ({"a": 1}, "/b", "the JSON has nothing at /b"),
        ({"a": [1]}, "/a/3", "the JSON has nothing at /a/3"),
        ({"a": "lots"}, "/a", "the value at '/a' is not a number ('lots')"),
        ({"a": True}, "/a", "the value at '/a' is not a number (bool)"),
        ({"a/b": {"~": 4}}, "/a~1b/~0", None),
    ],
)
def test_http_json_pointers(document: object, pointer: str, error: str | None) -> None:
    source = HttpJsonSource(clock=lambda: NOW)
    with local_http_server(json_answer(document)) as server:
        config = HttpJsonConfig(url=server.url, pointer=pointer)
        if error is None:
            assert source.fetch(config, KPI, None)[0].value == 4
            return
        with pytest.raises(SourceError) as caught:
            source.fetch(config, KPI, None)
    assert str(caught.value) == error


def test_http_json_reading_ids_follow_the_kpi_frequency() -> None:
    source = HttpJsonSource(clock=lambda: NOW)
    with local_http_server(json_answer(3)) as server:
        ids = [
            source.fetch(HttpJsonConfig(url=server.url), replace(KPI, frequency=f), None)[0]
            for f in ("hourly", "daily", "weekly", "monthly")
        ]
    assert [o.reading_id for o in ids] == ["2026-03-14T15:00Z", "2026-03-14", "2026-W11", "2026-03"]
    assert {o.observed_at for o in ids} == {NOW}


def test_http_failures_are_clear(goalledger_harness: SourceHarness) -> None:
    with local_http_server(json_answer({"error": "down"}, status=503)) as server:
        kpi_id = goalledger_harness.define_kpi("http-json", {"url": f"{server.url}/x?key=secret"})
        with pytest.raises(FetchFailed) as caught:
            goalledger_harness.fetch(kpi_id)
    assert caught.value.health.last_error == f"{server.url}/x answered HTTP 503"
    assert "secret" not in str(caught.value)  # query strings may carry keys: never shown


def test_a_slow_server_times_out_and_a_big_answer_is_refused() -> None:
    release = threading.Event()

    def slow(exchange: Exchange):
        release.wait(5)
        return 200, {}, b"1"

    with local_http_server(slow) as server:
        with pytest.raises(SourceError, match=r"did not answer within 0.2s"):
            get_ok(server.url, timeout=0.2)
        release.set()
    with local_http_server(lambda e: (200, {}, b"9" * 2048)) as server:
        with pytest.raises(SourceError, match="answered more than 1024 bytes"):
            get_ok(server.url, max_bytes=1024)
        assert get_ok(server.url, max_bytes=2048).body == b"9" * 2048


@pytest.mark.parametrize(
    ("address", "policy", "why"),
    [
        ("169.254.169.254", EgressPolicy(), "is a cloud metadata address"),
        ("100.100.100.200", EgressPolicy(), "is a cloud metadata address"),
        ("fd00:ec2::254", EgressPolicy(), "is a cloud metadata address"),
        ("169.254.10.1", EgressPolicy(), "is link-local, multicast or unspecified"),
        ("fe80::1", EgressPolicy(), "is link-local, multicast or unspecified"),
        ("0.0.0.0", EgressPolicy(), "is link-local, multicast or unspecified"),
        ("224.0.0.1", EgressPolicy(), "is link-local, multicast or unspecified"),
        ("::ffff:169.254.169.254", EgressPolicy(), "is a cloud metadata address"),
        ("127.0.0.1", EgressPolicy(loopback=False), "is a loopback address"),
        ("10.1.2.3", EgressPolicy(private=False), "is in a private range"),
        ("127.0.0.1", EgressPolicy(deny=(ipaddress.ip_network("127.0.0.0/8"),)), "denied"),
    ],
)
def test_egress_refusals(address: str, policy: EgressPolicy, why: str) -> None:
    assert why in (policy.refusal(ipaddress.ip_address(address)) or "")
    with pytest.raises(EgressRefused, match="refused"):
        policy.resolve(address, 80)  # an IP literal "resolves" without any network


def test_egress_allowances_and_the_environment() -> None:
    private = EgressPolicy(private=False, allow=(ipaddress.ip_network("10.1.0.0/16"),))
    assert private.refusal(ipaddress.ip_address("10.1.2.3")) is None
    assert private.refusal(ipaddress.ip_address("10.2.0.1")) == "is in a private range"
    assert EgressPolicy().refusal(ipaddress.ip_address("93.184.216.34")) is None
    policy = EgressPolicy.from_env(
        {"GOALLEDGER_EGRESS_LOOPBACK": "deny", "GOALLEDGER_EGRESS_ALLOW": "10.0.0.0/8"}
    )
    assert not policy.loopback and policy.allow == (ipaddress.ip_network("10.0.0.0/8"),)
    with pytest.raises(SourceError, match="GOALLEDGER_EGRESS_PRIVATE must be allow or deny"):
        EgressPolicy.from_env({"GOALLEDGER_EGRESS_PRIVATE": "maybe"})


def test_sources_obey_the_egress_policy_from_the_environment(
    goalledger_harness: SourceHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    with local_http_server(json_answer(1)) as server:
        kpi_id = goalledger_harness.define_kpi("http-json", {"url": server.url})
        monkeypatch.setenv("GOALLEDGER_EGRESS_LOOPBACK", "deny")
        with pytest.raises(FetchFailed) as caught:
            goalledger_harness.fetch(kpi_id)
    assert caught.value.health.last_error == (
        "connection to 127.0.0.1 (127.0.0.1) refused: is a loopback address"
    )
    assert server.received == []


CSV = """date,signups,note
2026-03-10,100,
2026-03-11,,holiday
2026-03-12,"1,5",
2026-03-13,130.5,fine
"""


def test_source_csv(goalledger_harness: SourceHarness, tmp_path: Path) -> None:
    path = tmp_path / "signups.csv"
    path.write_text(CSV.replace('"1,5"', "120"))
    kpi_id = goalledger_harness.define_kpi(
        "csv", {"path": str(path), "date_column": "date", "value_column": "signups"}
    )
    first = goalledger_harness.fetch(kpi_id)
    assert first.recorded == ["2026-03-10", "2026-03-12", "2026-03-13"]  # blank value skipped
    path.write_text(path.read_text() + "2026-03-14,140\n")
    second = goalledger_harness.fetch(kpi_id)
    assert second.recorded == ["2026-03-14"]  # only rows after the newest seen
    assert second.duplicates == []
    readings = goalledger_harness.readings(kpi_id)
    assert [(r.reading_id, r.value) for r in readings][-2:] == [
        ("2026-03-13", Decimal("130.5")),
        ("2026-03-14", Decimal("140")),
    ]
    assert readings[0].observed_at == datetime(2026, 3, 10, tzinfo=UTC)


def test_csv_from_a_url_with_its_own_date_format() -> None:
    text = b"day;value\n14/03/2026 10:30;7\n13/03/2026 10:30;6\n"
    with local_http_server(lambda e: (200, {"Content-Type": "text/csv"}, text)) as server:
        config = CsvConfig(
            url=f"{server.url}/kpi.csv",
            date_column="day",
            value_column="value",
            date_format="%d/%m/%Y %H:%M",
            delimiter=";",
            token="t",
        )
        rows = CsvSource().fetch(config, KPI, datetime(2026, 3, 13, 12, tzinfo=UTC))
    assert [(o.reading_id, o.value) for o in rows] == [("2026-03-14T10:30:00+00:00", 7)]
    assert server.received[0].headers["Authorization"] == "Bearer t"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("when,signups\n2026-03-10,1\n", "the CSV has no column 'date' (it has when, signups)"),
        ("date,signups\nyesterday,1\n", "line 2, the date 'yesterday' is not a timestamp"),
        ("date,signups\n2026-03-10,many\n", "line 2, column 'signups' is not a number ('many')"),
    ],
)
def test_csv_problems_name_the_line(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "k.csv"
    path.write_text(text)
    config = CsvConfig(path=str(path), date_column="date", value_column="signups")
    with pytest.raises(SourceError) as caught:
        CsvSource().fetch(config, KPI, None)
    assert str(caught.value).startswith(error)


def test_csv_config_needs_exactly_one_place(goalledger_harness: SourceHarness) -> None:
    from goalledger.core.errors import DomainError

    with pytest.raises(DomainError) as caught:
        goalledger_harness.registry.validate_source(
            "csv", {"date_column": "d", "value_column": "v"}
        )
    assert caught.value.field == "source.config.path"
