"""`prometheus` against a server speaking the instant query API, and against a real
Prometheus (Debian's `prometheus` package) scraping a real exporter on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import pytest

from goalledger.plugins import KpiRef, SourceError
from goalledger.plugins.fetch import FetchFailed
from goalledger.plugins.periods import period_start
from goalledger.plugins.sources_prometheus import PrometheusConfig, PrometheusSource
from goalledger.plugins.testkit import Exchange, LocalServer, SourceHarness, local_http_server

pytest_plugins = ["goalledger.plugins.testing"]

NOW = datetime(2026, 3, 14, 15, 45, tzinfo=UTC)
DAILY = KpiRef(UUID(int=3), name="k", unit="", direction="higher_is_better", frequency="daily")


def promql_api(exchange: Exchange) -> tuple[int, dict[str, str], bytes]:
    """A tiny server answering like Prometheus: `up` is 1, `signups` is the evaluation time
    in days since the epoch, `two_series` returns two series, anything else is an error."""
    parts = urlsplit(exchange.path)
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    at = float(params["time"])
    query = params["query"]
    if parts.path != "/api/v1/query":
        return 404, {}, b"not found"
    if query in ("up", "signups"):
        value = "1" if query == "up" else f"{at / 86400:g}"
        result = [{"metric": {"__name__": query}, "value": [at, value]}]
    elif query == "two_series":
        result = [{"metric": {"a": str(n)}, "value": [at, "1"]} for n in (1, 2)]
    elif query == "absent":
        result = []
    else:
        body = {"status": "error", "errorType": "bad_data", "error": "parse error: unexpected"}
        return 400, {"Content-Type": "application/json"}, json.dumps(body).encode()
    body = {"status": "success", "data": {"resultType": "vector", "result": result}}
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


@pytest.fixture
def prometheus_api() -> Iterator[LocalServer]:
    with local_http_server(promql_api) as server:
        yield server


def test_source_prometheus(goalledger_harness: SourceHarness, prometheus_api: LocalServer) -> None:
    kpi_id = goalledger_harness.define_kpi(
        "prometheus", {"url": prometheus_api.url, "query": "signups", "token": "t0k"}
    )
    first = goalledger_harness.fetch(kpi_id)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert first.recorded == [yesterday]  # the last completed day, evaluated at its end
    assert goalledger_harness.fetch(kpi_id).recorded == []  # nothing new until tomorrow
    (reading,) = goalledger_harness.readings(kpi_id)
    midnight = period_start(datetime.now(UTC), "daily")
    assert reading.observed_at == midnight
    assert reading.value == Decimal(f"{midnight.timestamp() / 86400:g}")
    request = prometheus_api.received[0]
    assert request.headers["Authorization"] == "Bearer t0k"
    assert parse_qs(urlsplit(request.path).query)["time"] == [f"{midnight.timestamp():.3f}"]


def test_prometheus_catches_up_missed_periods(prometheus_api: LocalServer) -> None:
    source = PrometheusSource(clock=lambda: NOW)
    config = PrometheusConfig(url=prometheus_api.url, query="signups")
    since = datetime(2026, 3, 11, tzinfo=UTC)  # the end of 10 March was recorded
    rows = source.fetch(config, DAILY, since)
    assert [o.reading_id for o in rows] == ["2026-03-11", "2026-03-12", "2026-03-13"]
    assert [o.observed_at.day for o in rows] == [12, 13, 14]
    capped = PrometheusConfig(url=prometheus_api.url, query="signups", max_periods=2)
    assert len(source.fetch(capped, DAILY, since)) == 2
    now_mode = PrometheusConfig(url=prometheus_api.url, query="up", evaluate_at="now")
    (now,) = source.fetch(now_mode, DAILY, since)
    assert (now.reading_id, now.value, now.observed_at) == ("2026-03-14", 1, NOW)


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("two_series", "'two_series' returned 2 series; aggregate it to one (e.g. sum(…))"),
        ("absent", "'absent' returned no data at 2026-03-14T00:00:00+00:00"),
        ("rate(", "Prometheus answered HTTP 400: parse error: unexpected"),
    ],
)
def test_prometheus_problems_are_clear(prometheus_api: LocalServer, query: str, error: str) -> None:
    source = PrometheusSource(clock=lambda: NOW)
    with pytest.raises(SourceError) as caught:
        source.fetch(PrometheusConfig(url=prometheus_api.url, query=query), DAILY, None)
    assert str(caught.value) == error


def test_an_unreachable_prometheus_is_a_recorded_failure(goalledger_harness: SourceHarness) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe closes
    kpi_id = goalledger_harness.define_kpi(
        "prometheus", {"url": f"http://127.0.0.1:{port}", "query": "up", "timeout": 2}
    )
    with pytest.raises(FetchFailed) as caught:
        goalledger_harness.fetch(kpi_id)
    assert "ConnectionRefusedError" in (caught.value.health.last_error or "")


# -- a real Prometheus -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, ready: object, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                last = json.load(answer)
                if callable(ready) and ready(last):
                    return last
        except OSError as error:
            last = error
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {timeout}s: {last}")


@pytest.fixture
def real_prometheus(tmp_path: Path) -> Iterator[str]:
    """Debian's Prometheus scraping a local exporter every second; stopped afterwards."""
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("GOALLEDGER_REQUIRE_PROMETHEUS") == "1":
            pytest.fail("the prometheus binary is missing (GOALLEDGER_REQUIRE_PROMETHEUS=1)")
        pytest.skip("the prometheus binary is not installed (apt-get install prometheus)")
    metrics = b"# TYPE goalledger_test_signups gauge\ngoalledger_test_signups 42\n"
    with local_http_server(lambda e: (200, {"Content-Type": "text/plain"}, metrics)) as exporter:
        target = exporter.url.removeprefix("http://")
        config = tmp_path / "prometheus.yml"
        scrape = {"job_name": "exporter", "static_configs": [{"targets": [target]}]}
        config.write_text(  # JSON is YAML
            json.dumps({"global": {"scrape_interval": "1s"}, "scrape_configs": [scrape]})
        )
        port = free_port()
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            query = f"{url}/api/v1/query?query=goalledger_test_signups"
            wait_for(query, lambda answer: answer["data"]["result"], timeout=30)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@pytest.mark.slow
def test_source_prometheus_with_a_real_prometheus(
    goalledger_harness: SourceHarness, real_prometheus: str
) -> None:
    now_kpi = goalledger_harness.define_kpi(
        "prometheus",
        {"url": real_prometheus, "query": "sum(goalledger_test_signups)", "evaluate_at": "now"},
    )
    assert len(goalledger_harness.fetch(now_kpi).recorded) == 1
    assert goalledger_harness.readings(now_kpi)[0].value == 42
    # period_end evaluates at each period's end: time() there is that very instant.
    hourly = goalledger_harness.define_kpi(
        "prometheus", {"url": real_prometheus, "query": "time()"}, frequency="hourly"
    )
    goalledger_harness.fetch(hourly)
    (reading,) = goalledger_harness.readings(hourly)
    assert reading.observed_at == period_start(datetime.now(UTC), "hourly")
    assert reading.value == Decimal(int(reading.observed_at.timestamp()))
    bad = goalledger_harness.define_kpi("prometheus", {"url": real_prometheus, "query": "rate("})
    with pytest.raises(FetchFailed) as caught:
        goalledger_harness.fetch(bad)
    assert (caught.value.health.last_error or "").startswith("Prometheus answered HTTP 400")
