"""What the webhook API shows and takes: webhooks, deliveries and their attempts as JSON shapes,
and how a row of the webhook and delivery queries becomes one (glimpze/delivery/webhooks.py runs them)."""

from __future__ import annotations

import msgspec

from glimpze.clock import iso
from glimpze.delivery import backlog
from glimpze.store.sql import Row


class Webhook(msgspec.Struct, kw_only=True):
    id: str
    url: str
    events: list[str]
    feed_ids: list[str]  # empty: every feed
    description: str
    headers: dict[str, str]
    active: bool
    ordered: bool
    timeout_seconds: float
    disabled_reason: str | None
    consecutive_failures: int
    failing_since: str | None
    created_at: str
    updated_at: str


class NewWebhook(Webhook, kw_only=True):
    secret: str


class WebhookSecret(msgspec.Struct):
    secret: str
    previous_secret: str | None
    previous_secret_expires_at: str | None


class CallbackTarget(msgspec.Struct):
    """Where an approval callback goes (for GET, `url` holds the fields)."""

    feed_id: str
    method: str
    url: str


class Delivery(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    webhook_id: str | None  # None: an approval callback
    event_id: str
    event: str
    status: str
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str
    callback: CallbackTarget | None = None


class Attempt(msgspec.Struct):
    attempt: int
    at: str
    status_code: int | None
    latency_ms: float | None
    error: str | None
    response: str | None


class DeliveryDetail(Delivery, kw_only=True):
    attempt_log: list[Attempt]


class Replayed(msgspec.Struct):
    replayed: int


class WebhookSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The body of POST /v1/webhooks."""

    url: str
    events: list[str]
    feed_ids: list[str] | None = None  # None or empty: every feed
    description: str = ""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    active: bool = True
    ordered: bool = False
    timeout_seconds: float | None = None


class WebhookPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: str | msgspec.UnsetType = msgspec.UNSET
    events: list[str] | msgspec.UnsetType = msgspec.UNSET
    feed_ids: list[str] | None | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET
    headers: dict[str, str] | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET
    ordered: bool | msgspec.UnsetType = msgspec.UNSET
    timeout_seconds: float | msgspec.UnsetType = msgspec.UNSET


def _ts(value: float | None) -> str | None:
    return None if value is None else iso(value)


def webhook_out(row: Row) -> Webhook:
    return Webhook(
        id=row["id"],
        url=row["url"],
        events=msgspec.json.decode(row["events"]),
        feed_ids=[] if row["feed_ids"] is None else msgspec.json.decode(row["feed_ids"]),
        description=row["description"],
        headers=msgspec.json.decode(row["headers"]),
        active=bool(row["active"]),
        ordered=bool(row["ordered"]),
        timeout_seconds=row["timeout_seconds"],
        disabled_reason=row["disabled_reason"],
        consecutive_failures=row["failures"],
        failing_since=_ts(row["failing_since"]),
        created_at=iso(row["created_at"]),
        updated_at=iso(row["updated_at"]),
    )


def delivery_out(row: Row, code: str | None = None) -> Delivery:
    """A delivery from a row of the delivery queries; one without a row gets its id from its
    event's seq and its webhook's `code` (the row's `delivery_code` when not given)."""
    return Delivery(
        id=row["id"] or backlog.delivery_id(row["event_seq"], code or row["delivery_code"]),
        webhook_id=row["webhook_id"],
        event_id=row["event_id"],
        event=row["event"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=_ts(row["next_attempt_at"]) if row["status"] in ("pending", "failed") else None,
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        created_at=iso(row["created_at"]),
        callback=None if row["feed_id"] is None else CallbackTarget(row["feed_id"], row["method"], row["url"]),
    )


def attempt_out(row: Row) -> Attempt:
    return Attempt(
        row["attempt"], iso(row["at"]), row["status_code"], row["latency_ms"], row["error"], row["response_head"]
    )
