"""RFC 9457 problem+json: the one place where errors become HTTP responses.

Domain errors (`glimpze.errors`) carry their own status and code; Litestar's own exceptions
(unknown route, wrong method, body too large, bad query parameter) are translated to the same
shape; anything else is logged and answered as a plain 500 that reveals nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions.http_exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    RequestEntityTooLarge,
    ValidationException,
)

from glimpze.errors import FieldError, GlimpzeError, PayloadTooLarge
from glimpze.store.database import StorageError

log = logging.getLogger("glimpze.errors")

PROBLEM_JSON = "application/problem+json"

_CODES = {
    400: ("invalid_request", "The request could not be read"),
    401: ("unauthorized", "Missing or invalid credentials"),
    403: ("forbidden", "Not allowed"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("payload_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported content type"),
    422: ("validation_failed", "The request has invalid fields"),
    429: ("rate_limited", "Too many requests"),
    503: ("unavailable", "Temporarily unavailable"),
}


def problem_body(
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: list[FieldError] | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "type": f"urn:glimpze:error:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "errors": errors or [],
    }
    if extra:
        body.update(extra)
    return msgspec.json.encode(body)


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response[bytes]:
    body = problem_body(status, code, title, detail, errors, extra)
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def error_body(exc: GlimpzeError) -> bytes:
    return problem_body(exc.status, exc.code, exc.title, exc.detail, exc.errors, exc.extra)


def glimpze_error(request: Request[Any, Any, Any], exc: GlimpzeError) -> Response[bytes]:
    if exc.status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc.detail)
    return Response(error_body(exc), status_code=exc.status, media_type=PROBLEM_JSON, headers=exc.headers)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    code, title = _CODES.get(status, ("error", "Request failed"))
    headers = dict(exc.headers or {})
    if isinstance(exc, NotFoundException):
        detail = f"There is no route {request.url.path!r}. The API lives under /v1, ingest under /ingest/{{feed_id}}."
    elif isinstance(exc, MethodNotAllowedException):
        detail = f"{request.method} is not allowed on {request.url.path}."
    elif isinstance(exc, RequestEntityTooLarge):
        detail = PayloadTooLarge.over(request.route_handler.resolve_request_max_body_size() or 0).detail
    elif isinstance(exc, ValidationException):
        code, title = _CODES[422]
        return problem(422, code, title, _validation_detail(exc), _validation_errors(exc), headers)
    else:
        detail = exc.detail if isinstance(exc.detail, str) else title
    return problem(status, code, title, detail, headers=headers)


def storage_error(request: Request[Any, Any, Any], exc: StorageError) -> Response[bytes]:
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return problem(
        503,
        "storage_unavailable",
        "The server could not store this",
        "The server could not write to its data directory (is the disk full?). Nothing was stored; retry later.",
        headers={"Retry-After": "30"},
    )


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error in %s %s", request.method, request.url.path)
    return problem(
        500,
        "internal_error",
        "Something went wrong on the server",
        "The server hit an unexpected error; it has been logged.",
    )


def _validation_errors(exc: ValidationException) -> list[FieldError]:
    errors = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            source = getattr(item.get("source"), "value", item.get("source")) or "query"
            message = str(item.get("message", "invalid value")).replace("`", "")
            errors.append(
                FieldError(path=f"{source}.{item.get('key') or '?'}", message=message[:1].lower() + message[1:])
            )
    return errors


def _validation_detail(exc: ValidationException) -> str:
    errors = _validation_errors(exc)
    return "; ".join(f"{e.path}: {e.message}" for e in errors) or "A request parameter is invalid."


EXCEPTION_HANDLERS: dict[Any, Any] = {
    GlimpzeError: glimpze_error,
    HTTPException: http_error,
    StorageError: storage_error,
    Exception: internal_error,
}
