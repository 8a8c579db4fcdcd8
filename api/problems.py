"""Errors as RFC 9457 problem details (`application/problem+json`), each naming its field.

Status codes, by what went wrong:
- 400: the request is malformed: bad JSON, a value of the wrong type, a missing or
  unknown field, a bad query parameter or cursor. Nothing reached the domain.
- 422: the request is well formed but the domain refuses it (a rule names the field),
  or an `Idempotency-Key` is reused with a different request.
- 401 / 403: no valid token / a token whose role or team does not allow this.
- 404: an id that names nothing (in the path or in the body).
- 409: a concurrent change won (no `If-Match` was sent), or a key is still in flight.
- 412: `If-Match` names a version that is no longer current.
- 503: the read models did not reach `min_position` in time, or the database is
  unreachable or busy right now (both with `Retry-After`).
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from goalledger.api.http_json import JsonResponse
from goalledger.core.errors import Conflict, DomainError, NotFound
from goalledger.core.unavailable import database_unavailable

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://goalledger.dev/problems/"
# The database connection pool retries a lost database after 1 s, then backs off.
DATABASE_RETRY_AFTER_SECONDS = 5


class FieldError(msgspec.Struct, frozen=True):
    """One offending input: the field (a dotted path) and what is wrong with it."""

    field: str
    message: str


class Problem(msgspec.Struct, frozen=True):
    """A problem details document."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] = []


class ApiError(Exception):
    """An error the API raises itself, with its status, problem type and field errors."""

    status = 400
    kind = "bad-request"

    def __init__(
        self,
        detail: str,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}


class BadRequest(ApiError):
    """The request is malformed."""


class Unauthorized(ApiError):
    """No valid bearer token."""

    status, kind = 401, "unauthorized"


class Forbidden(ApiError):
    """The token's role or team scope does not allow this."""

    status, kind = 403, "forbidden"


class PreconditionFailed(ApiError):
    """`If-Match` named a stale version."""

    status, kind = 412, "precondition-failed"


class InFlight(ApiError):
    """A request with the same idempotency key is still being processed."""

    status, kind = 409, "in-flight"


class KeyReused(ApiError):
    """An idempotency key was reused for a different request."""

    status, kind = 422, "idempotency-key-reused"


class NotReady(ApiError):
    """The read models did not reach the requested position in time."""

    status, kind = 503, "not-ready"


def problem(
    status: int,
    kind: str,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Problem]:
    """A problem+json response."""
    body = Problem(
        type=TYPE_BASE + kind,
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        errors=errors or [],
    )
    return JsonResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def on_api_error(_: Request, error: ApiError) -> Response[Problem]:
    """Errors the API raised."""
    return problem(error.status, error.kind, error.detail, error.errors, error.headers)


def on_not_found(_: Request, error: NotFound) -> Response[Problem]:
    """An id that names nothing."""
    return problem(404, "not-found", error.message, [FieldError(error.field, error.message)])


def on_domain_error(_: Request, error: DomainError) -> Response[Problem]:
    """A domain rule refused the request."""
    detail = f"{error.field}: {error.message}"
    return problem(422, "invalid", detail, [FieldError(error.field, error.message)])


def on_conflict(_: Request, error: Conflict) -> Response[Problem]:
    """A concurrent change won; nothing was recorded."""
    return problem(409, "conflict", str(error))


_QUOTED = re.compile(r"field `([^`]+)`")
_CAUSE_PATH = re.compile(r"- at `\$\.data\.?([^`]+)`")


def on_validation(request: Request, error: ValidationException) -> Response[Problem]:
    """Litestar's request validation (body, query, headers): a malformed request."""
    errors = []
    for item in error.extra if isinstance(error.extra, list) else []:
        message = str(item.get("message", "invalid")) if isinstance(item, dict) else str(item)
        key = str(item.get("key", "")) if isinstance(item, dict) else ""
        quoted = _QUOTED.search(message)
        # Litestar reports list bodies as `data`; msgspec's own message has the path.
        located = _CAUSE_PATH.search(str(error.__cause__ or ""))
        prefix = located.group(1) if located and key in ("data", "") else ""
        if quoted:  # e.g. unknown field `x`: name the field itself
            name = quoted.group(1)
            key = _join(prefix, name) if key in ("data", "") else f"{key}.{name}"
        elif prefix:
            key = _join(prefix, "")
        elif key == "data" and message == "'data'":
            key, message = "body", "a JSON request body is required"
        errors.append(FieldError(field=key or "body", message=message))
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or str(error.detail)
    return problem(400, "bad-request", detail, errors)


def _join(prefix: str, name: str) -> str:
    path = f"{prefix}.{name}" if prefix and name else prefix or name
    return f"body{path}" if path.startswith("[") else path


def on_http_exception(_: Request, error: HTTPException) -> Response[Problem]:
    """Litestar's own HTTP errors (404 route, 405 method, malformed JSON, …)."""
    status = error.status_code
    kind = HTTPStatus(status).phrase.lower().replace(" ", "-")
    headers = dict(error.headers or {})
    return problem(status, kind, str(error.detail), headers=headers)


def on_unexpected(request: Request, error: Exception) -> Response[Problem]:
    """Anything else: logged with its traceback, answered without one; but the database
    being unreachable is 503, without the traceback: try again later."""
    if database_unavailable(error):
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, error)
        return problem(
            503, "database-unavailable", "the database cannot be reached; try again later",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )  # fmt: skip
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return problem(500, "internal", "an unexpected error occurred; it has been logged")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApiError: on_api_error,
    NotFound: on_not_found,
    DomainError: on_domain_error,
    Conflict: on_conflict,
    ValidationException: on_validation,
    HTTPException: on_http_exception,
    Exception: on_unexpected,
}


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problems a route can answer with (400/401/403 always)."""
    wanted = sorted({400, 401, 403, *statuses})
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=HTTPStatus(status).phrase,
            media_type=PROBLEM_JSON,
        )
        for status in wanted
    }
