"""Security headers on every response, errors and the event stream included.

A `before_send` hook (Litestar calls it for every response, even a 404 for a path no
route matches). JSON responses get a policy that allows nothing to load or frame
them; the docs page (`/schema`, Scalar from cdn.jsdelivr.net) gets one that lets it
run. A request that carries credentials is answered `Cache-Control: no-store`, so no
shared cache keeps what a token may read.
"""

from __future__ import annotations

from litestar.types import Message, Scope

API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
CDN = "https://cdn.jsdelivr.net"
DOCS_POLICY = "; ".join(
    (
        "default-src 'none'",
        f"script-src {CDN}",
        f"style-src 'unsafe-inline' {CDN}",  # Scalar injects its styles inline
        f"img-src 'self' data: {CDN}",
        f"font-src data: {CDN} https://fonts.scalar.com",
        "connect-src 'self'",  # it fetches /schema/openapi.json
        "worker-src blob:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    )
)
DOCS_PAGES = frozenset({"/schema", "/schema/", "/schema/scalar"})


def scope_header(scope: Scope, name: bytes) -> str | None:
    """The first value of request header `name` (lowercase), as `Headers.get` gives it,
    without building a `Headers` (middlewares on every write each read one header)."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
API_HEADERS = [*ALWAYS, (b"content-security-policy", API_POLICY.encode())]
DOCS_HEADERS = [*ALWAYS, (b"content-security-policy", DOCS_POLICY.encode())]
NO_STORE = (b"cache-control", b"no-store")
OURS = frozenset(name for name, _ in [*API_HEADERS, NO_STORE])


async def security_headers(message: Message, scope: Scope) -> None:
    """Add the security headers to a response's start message, replacing any the
    response set under the same names (one pass over its headers)."""
    if message["type"] != "http.response.start":
        return
    ours = DOCS_HEADERS if scope.get("path") in DOCS_PAGES else API_HEADERS
    if _has_credentials(scope):
        ours = [*ours, NO_STORE]
    headers = message.setdefault("headers", [])
    if any(name.lower() in OURS for name, _ in headers):
        headers[:] = [(n, v) for n, v in headers if n.lower() not in OURS]
    headers.extend(ours)


def _has_credentials(scope: Scope) -> bool:
    return any(name == b"authorization" for name, _ in scope.get("headers", ()))
