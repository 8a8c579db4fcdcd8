"""`prometheus`: KPI values from PromQL through the instant query API (/api/v1/query)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import msgspec

from goalledger.plugins.contracts import KpiRef, Observation, Secret, SourceError
from goalledger.plugins.egress import request
from goalledger.plugins.hookspecs import Register, hookimpl
from goalledger.plugins.payloads import decode_json, to_decimal
from goalledger.plugins.periods import period_id, period_start, period_starts
from goalledger.plugins.sources_http import Bytes, Seconds, check_url


class PrometheusConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A Prometheus server and a PromQL expression that yields one number."""

    url: str  # the server's base URL, e.g. http://prometheus:9090
    query: Annotated[str, msgspec.Meta(min_length=1, max_length=10_000)]
    # period_end: one reading per completed KPI period, evaluated at its end (exact and
    # repeatable; missed periods are caught up). now: the value now, one per period.
    evaluate_at: Literal["period_end", "now"] = "period_end"
    token: Annotated[str | None, Secret] = None  # `Authorization: Bearer …`
    timeout: Seconds = 10.0
    max_bytes: Bytes = 1_000_000
    max_periods: Annotated[int, msgspec.Meta(gt=0, le=1000)] = 48

    def __post_init__(self) -> None:
        check_url(self.url)


class PrometheusSource:
    """Instant queries; the reading id is the KPI period the value stands for."""

    name = "prometheus"
    config_type = PrometheusConfig

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))

    def fetch(
        self, config: PrometheusConfig, kpi: KpiRef, since: datetime | None
    ) -> list[Observation]:
        now = self.clock()
        frequency = kpi.frequency
        if config.evaluate_at == "now":
            value = self.query(config, now)
            if value is None:
                raise SourceError(f"{config.query!r} returned no data")
            return [Observation(period_id(period_start(now, frequency), frequency), value, now)]
        # Completed periods: those whose end lies after `since` and at or before now.
        begun = None if since is None else period_start(since, frequency)
        ends = period_starts(begun, now, frequency, config.max_periods)
        observations = []
        for end in ends:
            start = _previous(end, frequency)
            value = self.query(config, end)
            if value is not None:
                observations.append(Observation(period_id(start, frequency), value, end))
        if ends and not observations:
            raise SourceError(f"{config.query!r} returned no data at {ends[-1].isoformat()}")
        return observations

    def query(self, config: PrometheusConfig, at: datetime) -> Decimal | None:
        """The query's single value at `at`, or None when it returns no series."""
        params = urlencode({"query": config.query, "time": f"{at.timestamp():.3f}"})
        headers = {"Accept": "application/json", "User-Agent": "goalledger-prometheus"}
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        url = f"{config.url.rstrip('/')}/api/v1/query?{params}"
        response = request(
            "GET", url, headers=headers, timeout=config.timeout, max_bytes=config.max_bytes
        )
        answer = decode_json(response.body, "Prometheus's answer") if response.body else None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            detail = answer.get("error") if isinstance(answer, dict) else None
            raise SourceError(f"Prometheus answered HTTP {response.status}: {detail or 'no data'}")
        return _single_value(answer.get("data"), config.query)


def _single_value(data: Any, query: str) -> Decimal | None:
    if not isinstance(data, dict):
        raise SourceError("Prometheus's answer has no data")
    kind, result = data.get("resultType"), data.get("result")
    if kind in ("scalar", "string"):
        sample = result
    elif kind == "vector" and isinstance(result, list):
        if not result:
            return None
        if len(result) > 1:
            raise SourceError(
                f"{query!r} returned {len(result)} series; aggregate it to one (e.g. sum(…))"
            )
        sample = result[0].get("value") if isinstance(result[0], dict) else None
    else:
        raise SourceError(f"{query!r} returned a {kind}; an instant vector or scalar is needed")
    if not (isinstance(sample, list) and len(sample) == 2):
        raise SourceError("Prometheus's answer has a malformed sample")
    return to_decimal(sample[1], f"the value of {query!r}")


def _previous(start: datetime, frequency: str) -> datetime:
    """The start of the period before the one starting at `start`."""
    return period_start(start - timedelta(seconds=1), frequency)


@hookimpl
def register_metric_sources(register: Register) -> None:
    register(PrometheusSource())
