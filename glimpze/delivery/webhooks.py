"""Webhooks: subscriptions (URL, event filter, headers, secret) and the deliveries queued for them.

A delivery may also be an approval's callback (callbacks.py): it has no webhook, and shows its
`callback` (feed, method, URL) instead; reading and replaying one works the same.

A webhook's deliveries are rows once attempted, and before that the events its spans of the log
hold (backlog.py): creating, deactivating, re-enabling or re-filtering a webhook opens or closes
its spans in the same write job. Listing and reading show both, in one statement each, so a
delivery the dispatcher turns into a row meanwhile is never shown twice or missed; one without
a row is `pending` with no attempts, and replaying it leaves it as it is (it is due already).

Secrets (`whsec_…`) are stored so deliveries can be signed; an API key can read them back. A
rotation keeps the old secret signing too (both signatures in the headers) until its grace ends.
Sending is the dispatcher's job (dispatcher.py); this module creates, changes and replays.
"""

from __future__ import annotations

import builtins
import re
from typing import Any
from urllib.parse import urlsplit

import msgspec

from glimpze.clock import Clock, iso
from glimpze.config import Config
from glimpze.delivery import backlog
from glimpze.delivery.outbox import EVENT_TYPES, Outbox
from glimpze.delivery.signing import new_signing_secret
from glimpze.delivery.ssrf import TargetPolicy, check_url
from glimpze.delivery.webhook_shapes import (
    Attempt,
    Delivery,
    DeliveryDetail,
    NewWebhook,
    Replayed,
    Webhook,
    WebhookPatch,
    WebhookSecret,
    WebhookSpec,
    attempt_out,
    delivery_out,
    webhook_out,
)
from glimpze.errors import Conflict, FieldError, ValidationFailed, not_found
from glimpze.ids import new_id
from glimpze.names import check_name
from glimpze.rotation import check_grace, previous_columns, still_good
from glimpze.store.pagination import Page, page
from glimpze.store.sql import Row, Store, Tx, one
from glimpze.validation import failed, member_path

DEFAULT_SECRET_GRACE_SECONDS = 24 * 3600
MAX_SECRET_GRACE_SECONDS = 7 * 24 * 3600
MAX_TIMEOUT_SECONDS = 60
MAX_HEADERS = 20
MAX_FEED_IDS = 50
MAX_HEADER_VALUE_CHARS = 4096
# Headers every delivery sets itself (attempts.py, and httpcore for the framing ones).
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "user-agent",
        "transfer-encoding",
        "connection",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "webhook-delivery",
    }
)
# Headers that would change how a receiver reads the body or the connection of every delivery.
HOP_HEADERS = frozenset({"content-encoding", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "expect"})
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}")  # RFC 9110 token
# RFC 9110 field-value, without obs-text: visible ASCII, with spaces and tabs only inside.
_HEADER_VALUE = re.compile(r"(?:[\x21-\x7e](?:[\x21-\x7e \t]*[\x21-\x7e])?)?")

SQL_WEBHOOK_COLUMNS = """
    rowid, id, project_id, url, events, description, headers, active, ordered, timeout_seconds, secret,
    previous_secret, previous_secret_expires_at, failures, failing_since, warned_at, disabled_reason,
    created_at, updated_at, delivery_code, feed_ids
"""
SQL_INSERT_WEBHOOK = """
    INSERT INTO webhooks (id, project_id, url, events, description, headers, active, ordered, timeout_seconds,
                          secret, created_at, updated_at, delivery_code, feed_ids)
    VALUES (:id, :project_id, :url, :events, :description, :headers, :active, :ordered, :timeout_seconds,
            :secret, :now, :now, :delivery_code, :feed_ids)
"""
SQL_GET_WEBHOOK = f"SELECT {SQL_WEBHOOK_COLUMNS} FROM webhooks WHERE project_id = ? AND id = ?"
SQL_WEBHOOK_STATE = "SELECT active, events, feed_ids FROM webhooks WHERE project_id = ? AND id = ?"
# Which of the ids (a JSON array) name a feed of the project.
SQL_KNOWN_FEEDS = "SELECT id FROM feeds WHERE project_id = ? AND id IN (SELECT value FROM json_each(?))"
SQL_LIST_WEBHOOKS = f"""
    SELECT {SQL_WEBHOOK_COLUMNS} FROM webhooks WHERE project_id = ? AND rowid > ? ORDER BY rowid LIMIT ?
"""
SQL_UPDATE_WEBHOOK = """
    UPDATE webhooks SET url = :url, events = :events, feed_ids = :feed_ids, description = :description,
        headers = :headers,
        active = :active, ordered = :ordered, timeout_seconds = :timeout_seconds, updated_at = :now,
        disabled_reason = CASE WHEN :active <> 0 THEN NULL ELSE disabled_reason END,
        failures = CASE WHEN :reenabled <> 0 THEN 0 ELSE failures END,
        failing_since = CASE WHEN :reenabled <> 0 THEN NULL ELSE failing_since END,
        warned_at = CASE WHEN :reenabled <> 0 THEN NULL ELSE warned_at END
    WHERE project_id = :project_id AND id = :id
"""
# Open deliveries follow their webhook's ordering (deliveries_head indexes the ordered ones).
SQL_SET_ORDERED = """
    UPDATE deliveries SET ordered = ? WHERE webhook_id = ? AND status IN ('pending', 'failed') AND ordered != ?
"""
SQL_DELETE_WEBHOOK = "DELETE FROM webhooks WHERE project_id = ? AND id = ?"
SQL_ROTATE_SECRET = f"""
    UPDATE webhooks SET {previous_columns("secret", "previous_secret", "previous_secret_expires_at")},
        secret = :secret, updated_at = :now
    WHERE project_id = :project_id AND id = :id
"""
SQL_DELIVERY_COLUMNS = """
    d.seq, d.id, d.webhook_id, e.id AS event_id, e.type AS event, d.status, d.attempts, d.next_attempt_at,
    d.last_status_code, d.last_error, d.created_at, d.feed_id, d.method, d.url
"""
# A webhook's delivery rows, newest (event) first, with backlog.WAITING_COLUMNS' columns.
SQL_LIST_DELIVERIES = f"""
    SELECT d.event_seq, {SQL_DELIVERY_COLUMNS} FROM deliveries d JOIN out_events e ON e.seq = d.event_seq
    WHERE d.webhook_id = :webhook AND d.event_seq < :before AND (:status IS NULL OR d.status = :status)
    ORDER BY d.event_seq DESC LIMIT :limit
"""
# One delivery (a row, or one a span holds), with the request it makes. Webhook deliveries and
# callbacks alike belong to an outgoing event of the project.
SQL_GET_DELIVERY = f"""
    SELECT {SQL_DELIVERY_COLUMNS}, d.event_seq, w.delivery_code, e.payload, w.url AS webhook_url, w.headers,
           d.payload AS callback_payload
    FROM deliveries d JOIN out_events e ON e.seq = d.event_seq LEFT JOIN webhooks w ON w.id = d.webhook_id
    WHERE d.id = :id AND e.project_id = :project
    UNION ALL
    {backlog.SQL_WAITING_BY_ID}
"""
SQL_TEST_EVENT_SEQ = "SELECT seq FROM out_events WHERE id = ?"
SQL_ATTEMPTS = """
    SELECT attempt, at, status_code, latency_ms, error, response_head FROM delivery_attempts
    WHERE delivery_seq = ? ORDER BY attempt
"""
SQL_ATTEMPTS_OF = """
    SELECT delivery_seq, attempt, at, status_code, latency_ms, error, response_head FROM delivery_attempts
    WHERE delivery_seq IN (SELECT CAST(value AS BIGINT) FROM json_each(?)) ORDER BY delivery_seq, attempt
"""
# A replay starts a fresh retry schedule; the attempt log keeps counting.
SQL_REPLAY = """
    UPDATE deliveries SET status = 'pending', next_attempt_at = :now, schedule_base = attempts, lease_until = NULL,
        updated_at = :now
    WHERE seq IN (SELECT d.seq FROM deliveries d JOIN out_events e ON e.seq = d.event_seq
                  WHERE e.project_id = :project_id AND {where})
"""


async def delivery_row(db: Store, project_id: str, delivery_id: str) -> Row:
    """A delivery with the request it makes (SQL_GET_DELIVERY), with or without a row yet."""
    seq, code = backlog.parse_delivery_id(delivery_id) or (-1, "")
    params = {"id": delivery_id, "project": project_id, "event_seq": seq, "code": code}
    row = await db.fetch_one(SQL_GET_DELIVERY, params)
    if row is None:
        raise not_found("delivery", delivery_id)
    return row


class Webhooks:
    """Webhook subscriptions of a project, and their deliveries."""

    def __init__(self, db: Store, config: Config, clock: Clock, outbox: Outbox, policy: TargetPolicy) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.outbox = outbox
        self.policy = policy

    async def create(self, project_id: str, spec: WebhookSpec) -> NewWebhook:
        url = await self._check_url(spec.url)
        events = _check_events(spec.events)
        feed_ids = await self._check_feeds(project_id, spec.feed_ids, [])
        headers = _check_headers(spec.headers)
        timeout = _check_timeout(spec.timeout_seconds, self.config.webhooks.timeout_seconds)
        webhook_id, secret, now = new_id("wh_"), new_signing_secret(), self.clock.now()
        params = {
            "id": webhook_id,
            "project_id": project_id,
            "url": url,
            "events": msgspec.json.encode(events),
            "feed_ids": backlog.feed_filter(feed_ids),
            "description": _check_description(spec.description),
            "headers": msgspec.json.encode(headers),
            "active": spec.active,
            "ordered": spec.ordered,
            "timeout_seconds": timeout,
            "secret": secret,
            "now": now,
            "delivery_code": backlog.new_delivery_code(),
        }

        def job(tx: Tx) -> Row:
            tx.execute(SQL_INSERT_WEBHOOK, params)
            if spec.active:
                backlog.open_span(tx, webhook_id, backlog.Filter(events, feed_ids))  # the events from now on
            return one(tx.execute(SQL_GET_WEBHOOK, (project_id, webhook_id)))

        row = await self.db.write(job)
        return NewWebhook(**msgspec.structs.asdict(webhook_out(row)), secret=secret)

    async def list(self, project_id: str, *, after: tuple[int] | None, limit: int) -> Page[Webhook]:
        rows = await self.db.fetch_all(SQL_LIST_WEBHOOKS, (project_id, after[0] if after else 0, limit + 1))
        return page(list(rows), limit, webhook_out, lambda r: (r["rowid"],))

    async def row(self, project_id: str, webhook_id: str) -> Row:
        row = await self.db.fetch_one(SQL_GET_WEBHOOK, (project_id, webhook_id))
        if row is None:
            raise not_found("webhook", webhook_id)
        return row

    async def get(self, project_id: str, webhook_id: str) -> Webhook:
        return webhook_out(await self.row(project_id, webhook_id))

    async def update(self, project_id: str, webhook_id: str, patch: WebhookPatch) -> Webhook:
        current = webhook_out(await self.row(project_id, webhook_id))
        url = await self._check_url(patch.url) if patch.url is not msgspec.UNSET else current.url
        events = _check_events(patch.events) if patch.events is not msgspec.UNSET else current.events
        feed_ids = (
            await self._check_feeds(project_id, patch.feed_ids, current.feed_ids)
            if patch.feed_ids is not msgspec.UNSET
            else current.feed_ids
        )
        headers = _check_headers(patch.headers) if patch.headers is not msgspec.UNSET else current.headers
        active = patch.active if patch.active is not msgspec.UNSET else current.active
        params = {
            "id": webhook_id,
            "project_id": project_id,
            "url": url,
            "events": msgspec.json.encode(events),
            "feed_ids": backlog.feed_filter(feed_ids),
            "description": _check_description(patch.description)
            if patch.description is not msgspec.UNSET
            else current.description,
            "headers": msgspec.json.encode(headers),
            "active": active,
            "ordered": patch.ordered if patch.ordered is not msgspec.UNSET else current.ordered,
            "timeout_seconds": _check_timeout(patch.timeout_seconds, None)
            if patch.timeout_seconds is not msgspec.UNSET
            else current.timeout_seconds,
            "now": self.clock.now(),
        }

        def job(tx: Tx) -> Row | None:
            before = tx.execute(SQL_WEBHOOK_STATE, (project_id, webhook_id)).fetchone()
            if before is None:
                return None
            tx.execute(SQL_UPDATE_WEBHOOK, {**params, "reenabled": active and not before["active"]})
            tx.execute(SQL_SET_ORDERED, (params["ordered"], webhook_id, params["ordered"]))
            was = backlog.Filter(
                msgspec.json.decode(before["events"], type=list[str]),
                None if before["feed_ids"] is None else msgspec.json.decode(before["feed_ids"], type=list[str]),
            )
            taken = backlog.Filter(events, feed_ids)
            backlog.follow(tx, webhook_id, was=(bool(before["active"]), was), now=(active, taken))
            row: Row | None = tx.execute(SQL_GET_WEBHOOK, (project_id, webhook_id)).fetchone()
            return row

        row = await self.db.write(job)
        if row is None:
            raise not_found("webhook", webhook_id)
        return webhook_out(row)

    async def delete(self, project_id: str, webhook_id: str) -> None:
        if await self.db.execute(SQL_DELETE_WEBHOOK, (project_id, webhook_id)) == 0:
            raise not_found("webhook", webhook_id)

    async def secret(self, project_id: str, webhook_id: str) -> WebhookSecret:
        row = await self.row(project_id, webhook_id)
        previous, until = row["previous_secret"], row["previous_secret_expires_at"]
        if not still_good(previous, until, self.clock.now()):
            return WebhookSecret(row["secret"], None, None)
        return WebhookSecret(row["secret"], previous, iso(until))

    async def rotate_secret(self, project_id: str, webhook_id: str, grace_seconds: int) -> WebhookSecret:
        """A new secret; the old one keeps signing beside it for `grace_seconds` (0: not at all)."""
        check_grace(grace_seconds, MAX_SECRET_GRACE_SECONDS)
        params = {
            "grace": grace_seconds,
            "now": self.clock.now(),
            "secret": new_signing_secret(),
            "project_id": project_id,
            "id": webhook_id,
        }
        if await self.db.execute(SQL_ROTATE_SECRET, params) == 0:
            raise not_found("webhook", webhook_id)
        return await self.secret(project_id, webhook_id)

    async def test(self, project_id: str, webhook_id: str) -> Delivery:
        """Queue a `webhook.test` event for this webhook alone."""
        row = await self.row(project_id, webhook_id)
        if not row["active"]:
            raise Conflict('This webhook is inactive; set "active": true first, then send the test.')
        now = self.clock.now()
        fields = {"webhook_id": webhook_id, "message": "This is a test event from Glimpze."}

        def job(tx: Tx) -> tuple[str, int]:
            event_id = self.outbox.emit(
                tx, project_id, "webhook.test", fields, occurred_at=now, target_webhook_id=webhook_id
            )
            return event_id, one(tx.execute(SQL_TEST_EVENT_SEQ, (event_id,)))[0]

        event_id, seq = await self.db.write(job)
        when = iso(now)
        dlv = backlog.delivery_id(seq, row["delivery_code"])
        return Delivery(
            id=dlv,
            webhook_id=webhook_id,
            event_id=event_id,
            event="webhook.test",
            status="pending",
            attempts=0,
            next_attempt_at=when,
            last_status_code=None,
            last_error=None,
            created_at=when,
        )

    async def deliveries(
        self, project_id: str, webhook_id: str, *, status: str | None, before: tuple[int] | None, limit: int
    ) -> Page[Delivery]:
        rows, code = await self._delivery_rows(project_id, webhook_id, status, before, limit)
        return page(rows, limit, lambda r: delivery_out(r, code), lambda r: (r["event_seq"],))

    async def delivery_log(
        self, project_id: str, webhook_id: str, *, status: str | None, before: tuple[int] | None, limit: int
    ) -> Page[DeliveryDetail]:
        """`deliveries()` with each one's attempt log (status codes, latencies), in two reads."""
        rows, code = await self._delivery_rows(project_id, webhook_id, status, before, limit)
        seqs = msgspec.json.encode([row["seq"] for row in rows[:limit] if row["seq"] is not None]).decode()
        attempts: dict[int, builtins.list[Attempt]] = {}
        for a in await self.db.fetch_all(SQL_ATTEMPTS_OF, (seqs,)):
            attempts.setdefault(a["delivery_seq"], []).append(attempt_out(a))

        def out(row: Row) -> DeliveryDetail:
            listed = delivery_out(row, code)
            return DeliveryDetail(**msgspec.structs.asdict(listed), attempt_log=attempts.get(row["seq"], []))

        return page(rows, limit, out, lambda r: (r["event_seq"],))

    async def _delivery_rows(
        self, project_id: str, webhook_id: str, status: str | None, before: tuple[int] | None, limit: int
    ) -> tuple[builtins.list[Row], str]:
        """Rows (and spans' events) of a webhook's deliveries newest first, and its delivery code.

        The spans' starts and filters are read first (they never change); the listing reads their
        cursors itself. A span opened in between (a re-enable) is read again."""
        hook = await self.row(project_id, webhook_id)
        params = {
            "webhook": webhook_id,
            "project": project_id,
            "before": before[0] if before else 2**63 - 1,
            "status": status,
            "limit": limit + 1,
        }
        waiting = status in (None, "pending")
        spans = list(await self.db.fetch_all(backlog.SQL_SPAN_STARTS, (webhook_id,))) if waiting else []
        code: str = hook["delivery_code"]
        while True:
            sql = backlog.listing_sql(spans, materialised=SQL_LIST_DELIVERIES)
            rows: builtins.list[Row] = list(await self.db.fetch_all(sql, params))
            if not waiting:
                return rows, code
            now = list(await self.db.fetch_all(backlog.SQL_SPAN_STARTS, (webhook_id,)))
            if {s["start_seq"] for s in now} <= {s["start_seq"] for s in spans}:
                return rows, code
            spans = now

    async def delivery(self, project_id: str, delivery_id: str) -> DeliveryDetail:
        row = await delivery_row(self.db, project_id, delivery_id)
        log = (
            [] if row["seq"] is None else [attempt_out(a) for a in await self.db.fetch_all(SQL_ATTEMPTS, (row["seq"],))]
        )
        return DeliveryDetail(**msgspec.structs.asdict(delivery_out(row)), attempt_log=log)

    async def replay(self, project_id: str, delivery_id: str) -> DeliveryDetail:
        """Send one delivery again, re-signed with a fresh timestamp, on a fresh retry schedule.
        One without a row yet is pending and due already: it is left as it is."""
        now = self.clock.now()
        sql = SQL_REPLAY.format(where="d.id = :delivery")
        await self.db.execute(sql, {"now": now, "project_id": project_id, "delivery": delivery_id})
        return await self.delivery(project_id, delivery_id)

    async def replay_many(self, project_id: str, webhook_id: str, *, since: float | None, status: str) -> Replayed:
        """Replay a webhook's deliveries created since `since` that are failed, dead, or not delivered."""
        await self.row(project_id, webhook_id)
        statuses = {"failed": ["failed"], "dead": ["dead"], "all": ["failed", "dead", "delivered"]}[status]
        where = (
            "d.webhook_id = :webhook AND d.created_at >= :since "
            "AND d.status IN (SELECT value FROM json_each(:statuses))"
        )
        params: dict[str, Any] = {
            "now": self.clock.now(),
            "project_id": project_id,
            "webhook": webhook_id,
            "since": since or 0.0,
            "statuses": msgspec.json.encode(statuses).decode(),
        }
        return Replayed(await self.db.execute(SQL_REPLAY.format(where=where), params))

    async def _check_feeds(
        self, project_id: str, feed_ids: builtins.list[str] | None, kept: builtins.list[str]
    ) -> builtins.list[str]:
        """The feeds a webhook is filtered by (empty: every feed), each a feed of the project, or
        one the webhook already names (a feed deleted since stays, matching nothing), else a 422
        naming every unknown one."""
        if not feed_ids:
            return []
        if len(feed_ids) > MAX_FEED_IDS:
            raise ValidationFailed.at("$.feed_ids", f"at most {MAX_FEED_IDS} feeds; leave it empty for every feed")
        wanted = msgspec.json.encode(feed_ids).decode()
        known = {row["id"] for row in await self.db.fetch_all(SQL_KNOWN_FEEDS, (project_id, wanted))} | set(kept)
        errors = [
            FieldError(f"$.feed_ids[{i}]", f"unknown feed {feed_id!r}: not a feed of this project")
            for i, feed_id in enumerate(feed_ids)
            if feed_id not in known
        ]
        if errors:
            raise failed(errors)
        return sorted(set(feed_ids))

    async def _check_url(self, url: str) -> str:
        try:
            parts = urlsplit(url.strip())
        except ValueError as exc:  # an unclosed [IPv6 address
            raise ValidationFailed.at("$.url", f"is not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2048:
            raise ValidationFailed.at("$.url", "must be an absolute http:// or https:// URL (at most 2048 characters)")
        if parts.username or parts.password:
            raise ValidationFailed.at("$.url", "must not carry credentials; use a custom header instead")
        await check_url(self.policy, url, "$.url")
        return url.strip()


def _check_events(events: list[str]) -> list[str]:
    if not events:
        raise ValidationFailed.at("$.events", 'must name at least one event type, or ["*"] for all')
    for i, event in enumerate(events):
        if event != "*" and event not in EVENT_TYPES:
            raise ValidationFailed.at(
                f"$.events[{i}]", f"unknown event type {event!r}; known: {', '.join(EVENT_TYPES)}"
            )
    return sorted(set(events))


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    """Custom headers that every delivery can send as they are (RFC 9110 names and values), else
    a 422 naming the header: httpcore would refuse them at each attempt, long after the save."""
    if len(headers) > MAX_HEADERS:
        raise ValidationFailed.at("$.headers", f"at most {MAX_HEADERS} custom headers")
    seen: set[str] = set()
    for name, value in headers.items():
        path = member_path("$.headers", name)
        if not _HEADER_NAME.fullmatch(name):
            raise ValidationFailed.at(
                path, "is not a header name: use letters, digits and !#$%&'*+-.^_`|~ (at most 100 characters)"
            )
        if name.lower() in RESERVED_HEADERS or name.lower().startswith("x-glimpze-"):
            raise ValidationFailed.at(path, "is set by Glimpze itself and cannot be overridden")
        if name.lower() in HOP_HEADERS:
            raise ValidationFailed.at(path, "would change how receivers read every delivery; it cannot be set")
        if name.lower() in seen:
            raise ValidationFailed.at(path, "is given twice (header names ignore case)")
        seen.add(name.lower())
        if len(value) > MAX_HEADER_VALUE_CHARS:
            raise ValidationFailed.at(path, f"the value is longer than {MAX_HEADER_VALUE_CHARS} characters")
        if not _HEADER_VALUE.fullmatch(value):
            raise ValidationFailed.at(path, _value_problem(value))
    return headers


def _value_problem(value: str) -> str:
    if value != value.strip(" \t"):
        return "the value must not start or end with a space or a tab"
    bad = next(c for c in value if not (" " <= c <= "~" or c == "\t"))
    return (
        f"the value holds U+{ord(bad):04X}, which a header cannot carry: use visible ASCII characters, "
        "spaces and tabs (encode anything else, e.g. percent-encoding or base64)"
    )


def _check_timeout(value: float | None, default: float | None) -> float:
    if value is None:
        assert default is not None
        return default
    if not 1 <= value <= MAX_TIMEOUT_SECONDS:
        raise ValidationFailed.at("$.timeout_seconds", f"must be between 1 and {MAX_TIMEOUT_SECONDS}")
    return value


def _check_description(text: str) -> str:
    """A webhook's only label: optional, else a name (visible, no control characters)."""
    return check_name(text, "$.description", max_chars=500, optional=True)
