"""Outbound calls for sources and channels: one place for the egress policy, timeouts
and response-size limits.

Every address a host name resolves to is checked against the policy, and the
connection goes to the checked address (no second lookup a DNS rebind could
exploit). Redirects are not followed: a 3xx is an error that names its target.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from goalledger.plugins.contracts import SourceError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata services outside the link-local ranges (which are refused anyway).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("100.100.100.200", "fd00:ec2::254", "169.254.169.254")
)
DEFAULT_MAX_BYTES = 1_000_000
DEFAULT_TIMEOUT = 10.0


class EgressRefused(SourceError):
    """The egress policy does not allow a connection to this address."""


@dataclass(frozen=True)
class EgressPolicy:
    """Which addresses sources and channels may connect to.

    Link-local, multicast, unspecified and cloud-metadata addresses are always refused.
    Loopback and private ranges are allowed unless switched off; `deny` wins over
    `allow`, and `allow` lets a private network through when `private` is False.
    """

    loopback: bool = True
    private: bool = True
    allow: tuple[Network, ...] = field(default=())
    deny: tuple[Network, ...] = field(default=())

    def refusal(self, address: IPAddress) -> str | None:
        """Why a connection to `address` is refused, or None when it is allowed."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address in METADATA_ADDRESSES:
            return "is a cloud metadata address"
        if address.is_link_local or address.is_multicast or address.is_unspecified:
            return "is link-local, multicast or unspecified"
        if any(address in net for net in self.deny):
            return "is in a denied network"
        if any(address in net for net in self.allow):
            return None
        if address.is_loopback:
            return None if self.loopback else "is a loopback address"
        if address.is_private and not self.private:
            return "is in a private range"
        return None

    def resolve(self, host: str, port: int) -> str:
        """The first allowed address `host` resolves to; refuses if any address is refused."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise SourceError(f"cannot resolve {host}: {error.strerror or error}") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
        for address in addresses:
            reason = self.refusal(address)
            if reason is not None:
                raise EgressRefused(f"connection to {host} ({address}) refused: {reason}")
        return str(addresses[0])

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EgressPolicy:
        """`GOALLEDGER_EGRESS_LOOPBACK` / `_PRIVATE` (allow|deny) and `_ALLOW` / `_DENY`
        (comma-separated networks, e.g. `10.1.0.0/16`)."""
        env = os.environ if environ is None else environ
        try:
            return cls(
                loopback=_switch(env, "GOALLEDGER_EGRESS_LOOPBACK"),
                private=_switch(env, "GOALLEDGER_EGRESS_PRIVATE"),
                allow=_networks(env, "GOALLEDGER_EGRESS_ALLOW"),
                deny=_networks(env, "GOALLEDGER_EGRESS_DENY"),
            )
        except ValueError as error:
            raise SourceError(f"egress policy: {error}") from None


def _switch(env: Mapping[str, str], key: str) -> bool:
    value = env.get(key, "allow").strip().lower()
    if value not in ("allow", "deny"):
        raise ValueError(f"{key} must be allow or deny, got {value!r}")
    return value == "allow"


def _networks(env: Mapping[str, str], key: str) -> tuple[Network, ...]:
    try:
        return tuple(
            ipaddress.ip_network(n.strip()) for n in env.get(key, "").split(",") if n.strip()
        )
    except ValueError as error:
        raise ValueError(f"{key}: {error}") from None


@dataclass(frozen=True)
class Response:
    """An HTTP response whose body was read within the size limit."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    policy: EgressPolicy | None = None,
) -> Response:
    """One HTTP(S) request under the policy (default: from the environment); raises
    `SourceError` on any failure."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError(f"{_safe(url)} is not an http(s) URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise SourceError(f"{_safe(url)} has an invalid port") from None
    address = (policy or EgressPolicy.from_env()).resolve(parts.hostname, port)
    kind = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    connection = kind(parts.hostname, port, address, timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(method, target, body=body, headers=dict(headers or {}))
        reply = connection.getresponse()
        data = reply.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise SourceError(f"{_safe(url)} answered more than {max_bytes} bytes")
        headers_read = {k.lower(): v for k, v in reply.getheaders()}
    except TimeoutError:
        raise SourceError(f"{_safe(url)} did not answer within {timeout:g}s") from None
    except (OSError, http.client.HTTPException) as error:
        raise SourceError(f"{_safe(url)}: {type(error).__name__}: {error}") from None
    finally:
        connection.close()
    if 300 <= reply.status < 400:
        where = headers_read.get("location", "?")
        raise SourceError(f"{_safe(url)} redirected to {_safe(where)} (not followed)")
    return Response(status=reply.status, headers=headers_read, body=data)


def get_ok(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    policy: EgressPolicy | None = None,
) -> Response:
    """GET `url` and insist on a 2xx answer."""
    response = request(
        "GET", url, headers=headers, timeout=timeout, max_bytes=max_bytes, policy=policy
    )
    if not 200 <= response.status < 300:
        raise SourceError(f"{_safe(url)} answered HTTP {response.status}")
    return response


def _safe(url: str) -> str:
    """`url` without credentials or query string (either may carry a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        netloc = host
    return f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else url[:80]
