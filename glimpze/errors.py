"""The error catalogue: every error a client can see, with its stable code and HTTP status.

Domain code raises these; `glimpze.problems` turns them into RFC 9457 problem+json in one place.

    GlimpzeError                      500 internal_error (never raised for client faults)
    ├── BadRequest                    400 (invalid_json, invalid_request)
    ├── Unauthorized                  401 invalid_api_key | invalid_write_key | invalid_read_token | invalid_token
    │                                     | invalid_metrics_token
    ├── Forbidden                     403 plan_forbids | forbidden | origin_not_allowed
    ├── NotFound                      404 not_found
    ├── RequestTimeout                408 request_timeout (headers not complete in time; sent by the connection)
    ├── Conflict                      409 conflict | idempotency_key_in_use | session_closed | invalid_transition
    │                                     | approval_decided | action_link_used | too_many_ctas
    ├── Gone                          410 cursor_expired
    ├── PayloadTooLarge               413 payload_too_large (an upload's image: `errors` names the field)
    ├── UnsupportedMediaType          415 unsupported_media_type
    ├── ValidationFailed              422 validation_failed | schema_type_mismatch | idempotency_key_reused | …
    ├── RateLimited                   429 rate_limited
    ├── HeadersTooLarge               431 headers_too_large (sent by the connection, before the app sees it)
    └── Unavailable                   503 unavailable | too_many_connections
    (StorageError, glimpze.db: 503 storage_unavailable with Retry-After, mapped in glimpze.problems)

Conversation codes: `invalid_token` (a widget token that is malformed, tampered, expired, of an
unknown project, or bound to another Origin), `origin_not_allowed` (a browser Origin missing from
the project's widget origins), `session_closed` (a change to a closed session other than a reopen,
a note or a lead), `invalid_transition` (a status change the session transition table forbids,
e.g. PATCH to "closed" instead of POST /close).

Approval codes: `approval_decided` (an answer to an approval that was already approved or
rejected; `decision` in the body says which, when and by whom), `action_link_used` (an action
link from a notification that was already used once). `target_not_allowed` (422) also refuses
push targets, subscription endpoints and approval callback URLs (at ingest) that point at
private addresses.

CTA codes: `too_many_ctas` (an agent already holds `MAX_RULES_PER_AGENT` CTA rules).
"""

from __future__ import annotations

from typing import Any

import msgspec


class FieldError(msgspec.Struct):
    path: str
    message: str


class GlimpzeError(Exception):
    status = 500
    code = "internal_error"
    title = "Something went wrong on the server"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        title: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        if title:
            self.title = title
        self.errors = errors or []
        self.headers = headers or {}
        self.extra = extra or {}


class BadRequest(GlimpzeError):
    status = 400
    code = "invalid_request"
    title = "The request could not be read"


class Unauthorized(GlimpzeError):
    status = 401
    code = "invalid_api_key"
    title = "Missing or invalid credentials"


class Forbidden(GlimpzeError):
    status = 403
    code = "forbidden"
    title = "Not allowed"


class NotFound(GlimpzeError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(GlimpzeError):
    status = 409
    code = "conflict"
    title = "Conflicts with the current state"


class Gone(GlimpzeError):
    status = 410
    code = "gone"
    title = "No longer available"


class PayloadTooLarge(GlimpzeError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"

    @classmethod
    def over(cls, limit: int) -> PayloadTooLarge:
        """The whole body is over `limit` bytes."""
        size = f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit // 1024} KiB"
        return cls(f"The body is larger than {size}, the most this endpoint accepts.")


class UnsupportedMediaType(GlimpzeError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported content type"


class ValidationFailed(GlimpzeError):
    status = 422
    code = "validation_failed"
    title = "The request has invalid fields"

    @classmethod
    def at(cls, path: str, message: str, **kwargs: Any) -> ValidationFailed:
        """One bad field: the detail repeats the message so a human reading only `detail` knows."""
        return cls(f"{path}: {message}", errors=[FieldError(path, message)], **kwargs)


class RateLimited(GlimpzeError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"


class RequestTimeout(GlimpzeError):
    status = 408
    code = "request_timeout"
    title = "The request took too long to arrive"


class HeadersTooLarge(GlimpzeError):
    status = 431
    code = "headers_too_large"
    title = "Request header fields too large"


class Unavailable(GlimpzeError):
    status = 503
    code = "unavailable"
    title = "Temporarily unavailable"


def not_found(kind: str, ident: str) -> NotFound:
    return NotFound(f"No {kind} with id {ident!r} in this project.")
