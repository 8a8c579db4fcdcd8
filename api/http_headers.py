"""Security headers on every response, errors and the event stream included.

A `before_send` hook (Litestar calls it for every response, even a 404 for a path no
route matches). JSON responses get a policy that allows nothing to load or frame
them; the docs page (`/schema`, Scalar from cdn.jsdelivr.net) gets one that lets it
run. A request that carries credentials is answered `Cache-Control: no-store`, so no
shared cache keeps what a token may read.
"""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
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
ALWAYS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)


async def security_headers(message: Message, scope: Scope) -> None:
    """Add the security headers to a response's start message."""
    if message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    for name, value in ALWAYS:
        headers[name] = value
    docs = scope.get("path") in DOCS_PAGES
    headers["Content-Security-Policy"] = DOCS_POLICY if docs else API_POLICY
    if _has_credentials(scope):
        headers["Cache-Control"] = "no-store"


def _has_credentials(scope: Scope) -> bool:
    return any(name == b"authorization" for name, _ in scope.get("headers", ()))
