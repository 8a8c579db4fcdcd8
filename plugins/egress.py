"""Outbound calls for sources and channels: one place for the egress policy, timeouts
and response-size limits.

The default policy refuses everything but public addresses: cloud metadata services
(by address and by host name), link-local, multicast and unspecified addresses always;
loopback, private and other non-public ranges unless configured. Loopback is refused by
default because a goalledger process usually shares its host with services that trust
loopback callers (its own API, a database, a Prometheus, a Docker socket proxy); a
developer, a test run or `make demo` opts in with `GOALLEDGER_EGRESS_LOOPBACK=allow`.

Every address a host name resolves to is checked, and the connection goes to the
checked address (no second lookup a DNS rebind could exploit). GETs follow up to
`MAX_REDIRECTS` redirects, each target checked like the first URL (credentials are
not sent to another origin); other methods do not follow redirects. Each call has one
deadline for everything (connect, TLS, headers, body) and a cap on the body's size.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from goalledger.plugins.contracts import SourceError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata services: refused whatever the configuration says.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle…
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (legacy)
    )
)
METADATA_HOSTS = frozenset(
    (
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
        "metadata.tencentyun.com",
    )
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv4 reached through IPv6 translation
DEFAULT_MAX_BYTES = 1_000_000
DEFAULT_TIMEOUT = 10.0
MAX_REDIRECTS = 5


class EgressRefused(SourceError):
    """The egress policy does not allow a connection to this address."""


@dataclass(frozen=True)
class EgressPolicy:
    """Which addresses sources and channels may connect to.

    Cloud metadata, link-local, multicast and unspecified addresses are always refused.
    Loopback (`loopback`) and other non-public ranges (`private`: RFC 1918, fc00::/7,
    100.64/10, reserved…) are refused unless switched on; `allow` opens given networks
    and `deny` closes them (`deny` wins).
    """

    loopback: bool = False
    private: bool = False
    allow: tuple[Network, ...] = field(default=())
    deny: tuple[Network, ...] = field(default=())

    def refusal(self, address: IPAddress) -> str | None:
        """Why a connection to `address` is refused, or None when it is allowed."""
        address = _embedded_ipv4(address)
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
        if not address.is_global and not self.private:
            return "is not a public address"
        return None

    def host_refusal(self, host: str) -> str | None:
        """Why a host name is refused before any lookup, or None."""
        name = host.lower().rstrip(".")
        if name in METADATA_HOSTS:
            return "is a cloud metadata host name"
        return None

    def resolve(self, host: str, port: int) -> str:
        """The first address `host` resolves to, if every address it resolves to is allowed."""
        why = self.host_refusal(host)
        if why is not None:
            raise EgressRefused(f"connection to {host} refused: {why}")
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise SourceError(f"cannot resolve {host}: {error.strerror or error}") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
        for address in addresses:
            why = self.refusal(address)
            if why is not None:
                raise EgressRefused(f"connection to {host} ({address}) refused: {why}")
        return str(addresses[0])

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EgressPolicy:
        """`GOALLEDGER_EGRESS_LOOPBACK` / `_PRIVATE` (allow|deny, default deny) and
        `_ALLOW` / `_DENY` (comma-separated networks, e.g. `10.1.0.0/16,127.0.0.1/32`)."""
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


def _embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _switch(env: Mapping[str, str], key: str) -> bool:
    value = env.get(key, "deny").strip().lower()
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


class _Deadline:
    """A socket whose every read waits at most until `deadline` (time.monotonic)."""

    deadline: float = float("inf")

    def recv_into(self, buffer: Any, nbytes: Any = None, flags: int = 0) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed")
        self.settimeout(remaining)  # type: ignore[attr-defined]
        if nbytes:
            return super().recv_into(buffer, nbytes, flags)  # type: ignore[misc]
        return super().recv_into(buffer)  # type: ignore[misc]


class _DeadlineSocket(_Deadline, socket.socket):
    pass


class _DeadlineSSLSocket(_Deadline, ssl.SSLSocket):
    pass


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.sslsocket_class = _DeadlineSSLSocket
    return context


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to an address already checked, whatever `host` resolves to now."""

    def __init__(self, host: str, port: int, address: str, deadline: float) -> None:
        super().__init__(host, port, timeout=max(deadline - time.monotonic(), 0.001))
        self._address, self._deadline = address, deadline

    def _open(self) -> _DeadlineSocket:
        family = socket.AF_INET6 if ":" in self._address else socket.AF_INET
        sock = _DeadlineSocket(family, socket.SOCK_STREAM)
        sock.deadline = self._deadline
        try:
            sock.settimeout(max(self._deadline - time.monotonic(), 0.001))
            sock.connect((self._address, self.port))
        except BaseException:
            sock.close()
            raise
        return sock

    def connect(self) -> None:
        self.sock = self._open()


class _PinnedHTTPS(_PinnedHTTP):
    default_port = 443  # so that the Host header of https://host/ carries no port

    def connect(self) -> None:
        sock = _tls_context().wrap_socket(self._open(), server_hostname=self.host)
        sock.deadline = self._deadline  # type: ignore[attr-defined]
        self.sock = sock


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
    """One HTTP(S) request under the policy (default: from the environment), all done
    within `timeout` seconds; raises `SourceError` on any failure."""
    policy = policy or EgressPolicy.from_env()
    deadline = time.monotonic() + timeout
    headers = dict(headers or {})
    follow = method.upper() in ("GET", "HEAD")
    for _ in range(MAX_REDIRECTS + 1):
        response = _once(method, url, body, headers, deadline, timeout, max_bytes, policy)
        if not 300 <= response.status < 400:
            return response
        where = response.headers.get("location")
        target = urljoin(url, where) if where else "?"
        if not follow or not where:
            raise SourceError(f"{_safe(url)} redirected to {_safe(target)} (not followed)")
        if _origin(target) != _origin(url):  # never hand credentials to another origin
            headers = {k: v for k, v in headers.items() if k.lower() not in ("authorization",)}
        url = target
    raise SourceError(f"{_safe(url)}: more than {MAX_REDIRECTS} redirects")


def _once(
    method: str,
    url: str,
    body: bytes | None,
    headers: Mapping[str, str],
    deadline: float,
    timeout: float,
    max_bytes: int,
    policy: EgressPolicy,
) -> Response:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError(f"{_safe(url)} is not an http(s) URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise SourceError(f"{_safe(url)} has an invalid port") from None
    address = policy.resolve(parts.hostname, port)
    kind = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    connection = kind(parts.hostname, port, address, deadline)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    reply: http.client.HTTPResponse | None = None
    try:
        connection.request(method, target, body=body, headers=dict(headers))
        reply = connection.getresponse()
        declared = reply.getheader("content-length") or ""
        if declared.isdigit() and int(declared) > max_bytes:
            raise SourceError(f"{_safe(url)} answered more than {max_bytes} bytes ({declared})")
        data = reply.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise SourceError(f"{_safe(url)} answered more than {max_bytes} bytes")
        headers_read = {k.lower(): v for k, v in reply.getheaders()}
    except TimeoutError:
        raise SourceError(f"{_safe(url)} did not answer within {timeout:g}s") from None
    except (OSError, http.client.HTTPException) as error:
        raise SourceError(f"{_safe(url)}: {type(error).__name__}: {error}") from None
    finally:
        if reply is not None:
            reply.close()  # its file holds the socket open past connection.close()
        connection.close()
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


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port


def _safe(url: str) -> str:
    """`url` without credentials or query string (either may carry a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        netloc = host
    return f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else url[:80]
