"""`http-json`: a KPI value read from a JSON document over HTTP, by JSON pointer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import msgspec

from goalledger.plugins.contracts import KpiRef, Observation, Secret
from goalledger.plugins.egress import get_ok
from goalledger.plugins.hookspecs import Register, hookimpl
from goalledger.plugins.payloads import check_pointer, decode_json, resolve, to_datetime, to_decimal
from goalledger.plugins.periods import period_id, period_start

USER_AGENT = "goalledger-http-json"
Seconds = Annotated[float, msgspec.Meta(gt=0, le=120)]
Bytes = Annotated[int, msgspec.Meta(gt=0, le=50_000_000)]


def check_url(url: str, field: str = "url") -> str:
    """`url` if it is an absolute http(s) URL."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{field}: must be an http:// or https:// URL")
    return url


class HttpJsonConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where the JSON lives and where the value sits in it."""

    url: str
    pointer: str = ""  # RFC 6901, e.g. /data/signups; "" is the whole document
    # Where the observation's time sits; without it, one reading per KPI period.
    observed_at_pointer: str | None = None
    token: Annotated[str | None, Secret] = None  # sent as `Authorization: Bearer …`
    timeout: Seconds = 10.0
    max_bytes: Bytes = 1_000_000

    def __post_init__(self) -> None:
        check_url(self.url)
        check_pointer(self.pointer)
        if self.observed_at_pointer is not None:
            try:
                check_pointer(self.observed_at_pointer)
            except ValueError as error:
                raise ValueError(f"observed_at_{error}") from None


class HttpJsonSource:
    """GET the URL, take the number at `pointer`.

    With `observed_at_pointer` the reading is keyed by the time found in the document;
    otherwise by the KPI's current period (e.g. `2026-03-14` for a daily KPI), so
    polling again in the same period records nothing new.
    """

    name = "http-json"
    config_type = HttpJsonConfig

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))

    def fetch(
        self, config: HttpJsonConfig, kpi: KpiRef, since: datetime | None
    ) -> list[Observation]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        response = get_ok(
            config.url, headers=headers, timeout=config.timeout, max_bytes=config.max_bytes
        )
        document = decode_json(response.body, "the response")
        value = to_decimal(resolve(document, config.pointer), f"the value at {config.pointer!r}")
        if config.observed_at_pointer is not None:
            where = f"the time at {config.observed_at_pointer!r}"
            observed_at = to_datetime(resolve(document, config.observed_at_pointer), where)
            observed_at = observed_at.astimezone(UTC)
            return [Observation(observed_at.isoformat(), value, observed_at)]
        now = self.clock()
        period = period_id(period_start(now, kpi.frequency), kpi.frequency)
        return [Observation(period, value, now)]


@hookimpl
def register_metric_sources(register: Register) -> None:
    register(HttpJsonSource())
