"""RFC 9457 problem+json: the one place where errors become HTTP responses.

Domain errors (`glimpze.errors`) carry their own status, code and title; Litestar's own
refusals (unknown route, wrong method, body too large, bad query parameter) become the catalogue
entry for their status; anything else is logged and answered as a plain 500 that reveals nothing.
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

from glimpze.errors import (
    BadRequest,
    FieldError,
    Forbidden,
    FrameworkError,
    GlimpzeError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    StorageUnavailable,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    ValidationFailed,
)
from glimpze.store.database import StorageError

log = logging.getLogger("glimpze.errors")

PROBLEM_JSON = "application/problem+json"

# The statuses Litestar refuses requests with, and the catalogue entry that answers each; any other
# 4xx is a FrameworkError (`error`), any other 5xx an internal error.
_FRAMEWORK: dict[int, type[GlimpzeError]] = {
    kind.status: kind
    for kind in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        PayloadTooLarge,
        UnsupportedMediaType,
        ValidationFailed,
        RateLimited,
        Unavailable,
    )
}


def error_body(exc: GlimpzeError) -> bytes:
    """The problem+json document for `exc`."""
    body: dict[str, Any] = {
        "type": f"urn:glimpze:error:{exc.code}",
        "title": exc.title,
        "status": exc.status,
        "detail": exc.detail,
        "code": exc.code,
        "errors": exc.errors,
    }
    body.update(exc.extra)
    return msgspec.json.encode(body)


def glimpze_error(request: Request[Any, Any, Any], exc: GlimpzeError) -> Response[bytes]:
    """A catalogue error, answered as it is (a server-side one logged first)."""
    if exc.status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc.detail)
    return _answer(exc)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """A refusal of Litestar's own, answered as the catalogue entry for its status."""
    if exc.status_code >= 500 and exc.status_code not in _FRAMEWORK:
        return internal_error(request, exc)  # the framework's own fault: its detail is not for clients
    return glimpze_error(request, _from_framework(request, exc))


def _from_framework(request: Request[Any, Any, Any], exc: HTTPException) -> GlimpzeError:
    headers = dict(exc.headers or {})
    if isinstance(exc, ValidationException):  # a bad path or query parameter, a 400 to Litestar
        errors = _validation_errors(exc)
        detail = "; ".join(f"{e.path}: {e.message}" for e in errors) or "A request parameter is invalid."
        return ValidationFailed(detail, errors=errors, headers=headers)
    kind = _FRAMEWORK.get(exc.status_code)
    if isinstance(exc, NotFoundException):
        detail = f"There is no route {request.url.path!r}. The API lives under /v1, ingest under /ingest/{{feed_id}}."
    elif isinstance(exc, MethodNotAllowedException):
        detail = f"{request.method} is not allowed on {request.url.path}."
    elif isinstance(exc, RequestEntityTooLarge):
        detail = PayloadTooLarge.over(request.route_handler.resolve_request_max_body_size() or 0).detail
    else:
        detail = exc.detail if isinstance(exc.detail, str) else (kind or FrameworkError).title
    return FrameworkError(exc.status_code, detail, headers=headers) if kind is None else kind(detail, headers=headers)


def storage_error(request: Request[Any, Any, Any], exc: StorageError) -> Response[bytes]:
    """A write the disk refused: logged with the reason, answered 503 `storage_unavailable`."""
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return _answer(
        StorageUnavailable(
            "The server could not write to its data directory (is the disk full?). Nothing was stored; retry later.",
            headers={"Retry-After": "30"},
        )
    )


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Any other exception: logged with its traceback, answered without a word of it."""
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return _answer(GlimpzeError("The server hit an unexpected error; it has been logged."))


def _answer(exc: GlimpzeError) -> Response[bytes]:
    return Response(error_body(exc), status_code=exc.status, media_type=PROBLEM_JSON, headers=exc.headers)


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


EXCEPTION_HANDLERS: dict[Any, Any] = {
    GlimpzeError: glimpze_error,
    HTTPException: http_error,
    StorageError: storage_error,
    Exception: internal_error,
}
