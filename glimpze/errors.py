"""The error catalogue: every error a client can see, declared once with its code, status and title.

Each code is one class below; its docstring is the code's meaning. Raise the class with a `detail`
that says what to do (`raise PlanForbids(f"The {plan!r} plan …")`); a 422 names its field with
`ValidationFailed.at(path, message)` (or a subclass's `.at`). `glimpze.web.problems` turns every
error into RFC 9457 problem+json in one place, `type` being `urn:glimpze:error:<code>`. A code's
name and status never change (DESIGN §3, §7): clients branch on them.

    GlimpzeError                  500 internal_error
    ├── BadRequest                400 invalid_request
    │   └── InvalidJson           400 invalid_json
    ├── Unauthorized              401 unauthorized
    │   ├── InvalidApiKey         401 invalid_api_key
    │   ├── InvalidWriteKey       401 invalid_write_key
    │   ├── InvalidReadToken      401 invalid_read_token
    │   ├── InvalidToken          401 invalid_token
    │   ├── InvalidDeviceToken    401 invalid_device_token
    │   ├── InvalidMetricsToken   401 invalid_metrics_token
    │   ├── NotSetUp              401 not_set_up
    │   └── WrongPassword         401 wrong_password
    ├── Forbidden                 403 forbidden
    │   ├── PlanForbids           403 plan_forbids
    │   └── OriginNotAllowed      403 origin_not_allowed
    ├── NotFound                  404 not_found
    │   └── InvalidSetupLink      404 invalid_setup_link
    ├── MethodNotAllowed          405 method_not_allowed
    ├── RequestTimeout            408 request_timeout
    ├── Conflict                  409 conflict
    │   ├── IdempotencyKeyInUse   409 idempotency_key_in_use
    │   ├── SessionClosed         409 session_closed
    │   ├── InvalidTransition     409 invalid_transition
    │   ├── ApprovalDecided       409 approval_decided
    │   ├── ActionLinkUsed        409 action_link_used
    │   └── TooManyCtas           409 too_many_ctas
    ├── Gone                      410 gone
    │   └── CursorExpired         410 cursor_expired
    ├── PayloadTooLarge           413 payload_too_large
    ├── UnsupportedMediaType      415 unsupported_media_type
    ├── ValidationFailed          422 validation_failed
    │   ├── SchemaTypeMismatch    422 schema_type_mismatch
    │   ├── IdempotencyKeyReused  422 idempotency_key_reused
    │   └── TargetNotAllowed      422 target_not_allowed
    ├── RateLimited               429 rate_limited
    ├── HeadersTooLarge           431 headers_too_large
    ├── Unavailable               503 unavailable
    │   ├── TooManyConnections    503 too_many_connections
    │   ├── StorageUnavailable    503 storage_unavailable
    │   └── Unhealthy             503 unhealthy
    └── FrameworkError            any error

(`python -m glimpze.errors tree` draws this tree and `python -m glimpze.errors` the table of
docs/errors.md; tests/test_errors.py fails when either is out of step with the classes.)
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar, Self

import msgspec

ANY_STATUS = 0  # FrameworkError's status: whatever the framework answered


class FieldError(msgspec.Struct):
    """One bad field of a request: its path (`$.content.count`, `query.wait`) and what is wrong."""

    path: str
    message: str


class GlimpzeError(Exception):
    """An unexpected error on the server; it is logged, and the answer reveals nothing."""

    status: int = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Something went wrong on the server"
    # Why a code that no raise names is kept (e.g. a family's code that only its subclasses answer).
    reserved: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.reserved = vars(cls).get("reserved")  # a class's own reason: a subclass is used or not on its own

    def __init__(
        self,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}
        self.extra = extra or {}


# 400


class BadRequest(GlimpzeError):
    """The request could not be read: a `Content-Length` that is not a number, a body cut short, a broken
    `multipart/form-data` form."""

    status = 400
    code = "invalid_request"
    title = "The request could not be read"


class InvalidJson(BadRequest):
    """The body is empty, not JSON, or nested deeper than 32 levels."""

    code = "invalid_json"
    title = "Invalid JSON"


# 401


class Unauthorized(GlimpzeError):
    """Credentials the web framework itself refused (Glimpze's own checks answer one of the codes below)."""

    status = 401
    code = "unauthorized"
    title = "Missing or invalid credentials"


class InvalidApiKey(Unauthorized):
    """No API key (`gzp_…`), or one that is unknown, revoked or past its rotation grace."""

    code = "invalid_api_key"


class InvalidWriteKey(Unauthorized):
    """No write key (`gzw_…`) for this feed, or a wrong one."""

    code = "invalid_write_key"


class InvalidReadToken(Unauthorized):
    """No read token (`gzr_…`) for this feed's widget, or a wrong one."""

    code = "invalid_read_token"


class InvalidToken(Unauthorized):
    """A widget token (`gzt_…`) that is malformed, altered, expired, of an unknown project, or bound to another
    `Origin`."""

    code = "invalid_token"
    title = "Invalid widget token"


class InvalidDeviceToken(Unauthorized):
    """An e-ink device's `Access-Token` that is missing or not the one Glimpze gave it (`POST /api/log`;
    `/api/display` answers in the TRMNL protocol's own shape instead)."""

    code = "invalid_device_token"
    title = "Unknown device or wrong access token"


class InvalidMetricsToken(Unauthorized):
    """`GET /metrics` without the `[metrics] token` when one is set."""

    code = "invalid_metrics_token"


class NotSetUp(Unauthorized):
    """Dashboard sign-in before a password exists: use the setup link printed at start."""

    code = "not_set_up"


class WrongPassword(Unauthorized):
    """Dashboard sign-in (or password change) with a wrong password."""

    code = "wrong_password"


# 403


class Forbidden(GlimpzeError):
    """Not allowed with this credential, e.g. metrics read with a key of a project other than the default one."""

    status = 403
    code = "forbidden"
    title = "Not allowed"


class PlanForbids(Forbidden):
    """The feed's plan does not allow this: a custom (image) feed on a plan without `custom_feeds`, or one more
    than the plan allows."""

    code = "plan_forbids"
    title = "Plan does not allow this"


class OriginNotAllowed(Forbidden):
    """A browser call to `/widget/v1` from an origin missing from the project's widget origins."""

    code = "origin_not_allowed"
    title = "Origin not allowed"


# 404, 405, 408


class NotFound(GlimpzeError):
    """No such route, or no such thing (feed, webhook, session…) in this project."""

    status = 404
    code = "not_found"
    title = "Not found"


class InvalidSetupLink(NotFound):
    """A dashboard setup link that is unknown, expired, used or replaced."""

    code = "invalid_setup_link"
    title = "Setup link not valid"


class MethodNotAllowed(GlimpzeError):
    """The path exists but not with this method."""

    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"


class RequestTimeout(GlimpzeError):
    """The request line and headers, or a body's next bytes, did not arrive in time
    (`[http] header_timeout_seconds`); sent by the connection, which is then closed."""

    status = 408
    code = "request_timeout"
    title = "The request took too long to arrive"


# 409


class Conflict(GlimpzeError):
    """Conflicts with the current state, e.g. a test send to an inactive webhook, revoking the project's last API
    key, a callback secret of a feed that is not an approval feed."""

    status = 409
    code = "conflict"
    title = "Conflicts with the current state"


class IdempotencyKeyInUse(Conflict):
    """A request with this `Idempotency-Key` is still running: retry in a moment."""

    code = "idempotency_key_in_use"
    title = "Idempotency key in use"


class SessionClosed(Conflict):
    """A change to a closed session other than reopening it, a note or a lead."""

    code = "session_closed"
    title = "Session is closed"


class InvalidTransition(Conflict):
    """A status change the session's transition table forbids, e.g. a PATCH to `closed` instead of
    `POST …/close`."""

    code = "invalid_transition"
    title = "Status change not allowed"


class ApprovalDecided(Conflict):
    """An answer to an approval that was already approved or rejected; `decision` says which, when and by whom."""

    code = "approval_decided"
    title = "Approval already decided"


class ActionLinkUsed(Conflict):
    """An Approve / Reject link from a notification that was already used."""

    code = "action_link_used"
    title = "Link already used"


class TooManyCtas(Conflict):
    """The agent already holds its 100 CTA rules."""

    code = "too_many_ctas"
    title = "Too many CTA rules"


# 410, 413, 415


class Gone(GlimpzeError):
    """No longer available (the catalogue's default for 410; Glimpze answers `cursor_expired`)."""

    status = 410
    code = "gone"
    title = "No longer available"
    reserved = "the 410 family's own code: every 410 Glimpze answers has a code of its own"


class CursorExpired(Gone):
    """A long-polling cursor older than the kept events (`[webhooks] event_retention_days`)."""

    code = "cursor_expired"
    title = "Cursor expired"


class PayloadTooLarge(GlimpzeError):
    """The body is over the endpoint's limit (64 KiB an event, 13 MiB an upload, 1 MiB elsewhere), or an uploaded
    image over 2 MiB (`errors` names the field)."""

    status = 413
    code = "payload_too_large"
    title = "Request body too large"

    @classmethod
    def over(cls, limit: int) -> Self:
        """The whole body is over `limit` bytes."""
        size = f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit // 1024} KiB"
        return cls(f"The body is larger than {size}, the most this endpoint accepts.")


class UnsupportedMediaType(GlimpzeError):
    """A `Content-Type` the endpoint does not read: JSON where JSON is expected, `multipart/form-data` for
    uploads."""

    status = 415
    code = "unsupported_media_type"
    title = "Unsupported content type"


# 422


class ValidationFailed(GlimpzeError):
    """Fields that are missing, unknown, of the wrong type or out of range; `errors` lists each with its path."""

    status = 422
    code = "validation_failed"
    title = "The request has invalid fields"

    @classmethod
    def at(cls, path: str, message: str, **kwargs: Any) -> Self:
        """One bad field: the detail repeats the message so a human reading only `detail` knows."""
        return cls(f"{path}: {message}", errors=[FieldError(path, message)], **kwargs)


class SchemaTypeMismatch(ValidationFailed):
    """An event (or an upload) whose schema is not its feed's."""

    code = "schema_type_mismatch"
    title = "Event schema does not match the feed"


class IdempotencyKeyReused(ValidationFailed):
    """An `Idempotency-Key` used before with a different body: use a new key for a new request."""

    code = "idempotency_key_reused"
    title = "Idempotency key reused"


class TargetNotAllowed(ValidationFailed):
    """A webhook URL, push target, subscription endpoint or approval `callback.url` that points at a private,
    loopback or link-local address not in `[webhooks] allow_targets`; the detail names the entry that would
    allow it."""

    code = "target_not_allowed"
    title = "Target not allowed"


# 429, 431


class RateLimited(GlimpzeError):
    """Over the feed's plan (with `Retry-After`, `RateLimit-*` headers and `limit`), or too many failed
    authentications from this address."""

    status = 429
    code = "rate_limited"
    title = "Too many requests"


class HeadersTooLarge(GlimpzeError):
    """The request line and headers are over `[http] max_header_bytes`; sent by the connection, which is then
    closed."""

    status = 431
    code = "headers_too_large"
    title = "Request header fields too large"


# 503


class Unavailable(GlimpzeError):
    """Temporarily unavailable."""

    status = 503
    code = "unavailable"
    title = "Temporarily unavailable"


class TooManyConnections(Unavailable):
    """`[http] max_connections` are open; sent by the connection with `Retry-After`, which is then closed."""

    code = "too_many_connections"


class StorageUnavailable(Unavailable):
    """The server could not write to its data directory (a full disk?); nothing was stored; `Retry-After: 30`."""

    code = "storage_unavailable"
    title = "The server could not store this"


class Unhealthy(Unavailable):
    """`GET /healthz`: the database cannot be read, or its writer has stopped."""

    code = "unhealthy"
    title = "Not healthy"


# Any other status


class FrameworkError(GlimpzeError):
    """A status the web framework answers that has no code of its own."""

    status = ANY_STATUS
    code = "error"
    title = "Request failed"

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail, headers=headers)
        self.status = status


def not_found(kind: str, ident: str) -> NotFound:
    """The 404 for an id that names nothing of `kind` in the caller's project."""
    return NotFound(f"No {kind} with id {ident!r} in this project.")


# The catalogue as data: for the docs, the tree above and tests/test_errors.py.


def catalogue() -> list[type[GlimpzeError]]:
    """Every code's class, ordered by status (a family's own code first), `FrameworkError` last."""
    declared = [
        kind
        for kind in vars(sys.modules[__name__]).values()
        if isinstance(kind, type) and issubclass(kind, GlimpzeError) and kind.__module__ == __name__
    ]
    return sorted(declared, key=lambda kind: (kind.status or 1000, len(kind.__mro__), declared.index(kind)))


def meaning(kind: type[GlimpzeError]) -> str:
    """The code's meaning: its class docstring on one line."""
    return " ".join((kind.__doc__ or "").split())


def tree() -> str:
    """The class tree with each class's status and code, as drawn in this module's docstring."""
    kinds = catalogue()
    rows: list[tuple[str, str, str]] = []

    def draw(kind: type[GlimpzeError], label: str, under: str) -> None:
        status = "any" if kind.status == ANY_STATUS else str(kind.status)
        rows.append((label + kind.__name__, status, kind.code))
        children = [child for child in kinds if child.__base__ is kind]
        for child in children:
            last = child is children[-1]
            draw(child, under + ("└── " if last else "├── "), under + ("    " if last else "│   "))

    draw(GlimpzeError, "", "")
    width = max(len(label) for label, _, _ in rows)
    return "\n".join(f"{label:<{width}}  {status} {code}" for label, status, code in rows)


def markdown_table() -> str:
    """The table of docs/errors.md: code, status, title and meaning of every code."""
    rows = ["| code | status | title | meaning |", "|---|---|---|---|"]
    for kind in catalogue():
        status = "any other" if kind.status == ANY_STATUS else str(kind.status)
        rows.append(f"| `{kind.code}` | {status} | {kind.title} | {meaning(kind)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(tree() if sys.argv[1:] == ["tree"] else markdown_table())
