"""Approval callbacks: seed 002's answer to `callback.url`, queued as a delivery of the webhook engine.

Each action on an approval (approve, reject, defer) sends one callback (DESIGN §7). Its body is
exactly seed 002's, with no webhook envelope:

    {"feed_id", "action_type", "event_id", "timestamp", "metadata"}

With `method: GET` (n8n's Wait node resumes on GET) the same fields go into the query string,
after the URL's own query, with `metadata` as JSON text; the signature then covers
`"{t}.{full URL}"` instead of a body. The request is fixed when the action is taken and queued
as a delivery row in the same transaction (`queue`), so the dispatcher sends, signs (with the
feed's callback secret), retries and logs it like any webhook delivery (delivery.py); a 409 from
the callback URL (an n8n resume URL that already resumed) counts as delivered.

`check_target` runs at ingest, with the schema checks: a callback URL that points where Glimpze
may not connect (a private or metadata address, unless `[webhooks] allow_targets` allows it) is
a 422 naming `$.callback.url` with the hint a webhook gets, not a callback that fails for three
days after someone answers. The SSRF guard checks it again at every connection.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import msgspec

from glimpze.delivery.ssrf import TargetPolicy, check_url
from glimpze.store.sql import Tx, one

# Ids like a webhook delivery's (backlog.delivery_id): they grow with the event's seq.
SQL_QUEUE = """
    INSERT INTO deliveries (id, webhook_id, event_seq, ordered, status, attempts, next_attempt_at, created_at,
                            updated_at, feed_id, method, url, payload)
    VALUES (:id, NULL, :event_seq, 0, 'pending', 0, :now, :now, :now, :feed_id, :method, :url,
            /*sqlite:*/:payload/*:sqlite*//*pg:convert_to(:payload, 'UTF8')*/)
    RETURNING id
"""
SQL_OUT_EVENT_SEQ = "SELECT seq FROM out_events WHERE id = ?"

_encode = msgspec.json.Encoder().encode


def seed_timestamp(ts: float) -> str:
    """Seed 002's timestamp format: `2026-02-08T12:34:56Z` (UTC, whole seconds)."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def check_target(policy: TargetPolicy, url: str) -> None:
    """Refuse an approval whose callback URL is not a target Glimpze may call (at ingest: a 422)."""
    await check_url(policy, url, "$.callback.url")


def callback_fields(feed_id: str, action: str, event_id: str, at: float, metadata: bytes) -> dict[str, Any]:
    """The five fields of seed 002's callback body, in its order; `metadata` is the event's JSON."""
    return {
        "feed_id": feed_id,
        "action_type": action,
        "event_id": event_id,
        "timestamp": seed_timestamp(at),
        "metadata": msgspec.Raw(metadata),
    }


def callback_request(url: str, method: str, fields: dict[str, Any]) -> tuple[str, bytes | None]:
    """The URL to call and the body to send: for GET the fields join the URL's own query string
    (which is kept exactly as given) and there is no body."""
    if method != "GET":
        return url, _encode(fields)
    pairs = [(k, v if isinstance(v, str) else bytes(v).decode()) for k, v in fields.items()]
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(pairs)}" if parts.query else urlencode(pairs)
    return urlunsplit(parts._replace(query=query, fragment="")), None


def queue(
    tx: Tx,
    *,
    out_event_id: str,
    feed_id: str,
    callback: dict[str, Any],
    fields: dict[str, Any],
    now: float,
) -> str:
    """Queue the callback of one action as a delivery (inside the action's write job); returns its id.

    It belongs to the action's `approval.responded` outgoing event, which stays while it is open."""
    method = callback.get("method", "POST")
    url, payload = callback_request(callback["url"], method, fields)
    event_seq = one(tx.execute(SQL_OUT_EVENT_SEQ, (out_event_id,)))[0]
    params = {
        "id": f"dlv_{event_seq:010x}{secrets.token_hex(5)}",  # grows with the event's seq, as webhooks' do
        "event_seq": event_seq,
        "now": now,
        "feed_id": feed_id,
        "method": method,
        "url": url,
        "payload": payload,
    }
    delivery_id: str = one(tx.execute(SQL_QUEUE, params))[0]
    return delivery_id
