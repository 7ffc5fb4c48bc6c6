"""The ingest pipeline (`POST /ingest/{feed_id}` and `/upload`), the event log and the widget state.

Check order (DESIGN §7): 413 body too large (the handler) → 429 too many failed logins → 401/404
write key → 415 content type → Idempotency-Key replay → 400 JSON → 422 schema (with
`check_event`: an approval's callback URL must be a target Glimpze may call) → 429 quota →
store. A JSON body and an upload form are two kinds of `Submission` that go through the same
`submit()`; an upload only adds reading its form (400/413 while streaming) before the replay
check. Everything an accepted event causes (widget state, bucket levels, idempotency record,
image references from `on_store` hooks, outgoing events from `on_accept` hooks) is written in
the same transaction as the event.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from glimpze.clock import Clock, iso
from glimpze.errors import RateLimited, UnsupportedMediaType, not_found
from glimpze.feeds.feeds import Feeds, FeedState
from glimpze.feeds.idempotency import Idempotency, IdempotencyClaim, body_digest
from glimpze.feeds.limits import AuthFailureLimiter, Decision
from glimpze.feeds.media import Media
from glimpze.feeds.schemas import decode_event
from glimpze.feeds.uploads import Upload, check_upload_feed, multipart_boundary, receive_form
from glimpze.ids import new_id
from glimpze.ops.metrics import Registry
from glimpze.store.database import Database
from glimpze.store.pagination import decode_cursor, encode_cursor

# The events_widget trigger moves the feed's widget pointer; the bucket levels stored with an
# accepted event are the quota snapshot read back after a restart (feeds.SQL_GET_FEED).
SQL_INSERT_EVENT = """
    INSERT INTO events (id, feed_id, status, received_at, schema_type, content, metadata, intent, callback,
                        widget_updated, push, minute_tokens, day_tokens)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
SQL_EVENT_COLUMNS = """
    seq, id, feed_id, status, received_at, schema_type, content, metadata, intent, callback, widget_updated, push
"""
SQL_LIST_EVENTS = f"""
    SELECT {SQL_EVENT_COLUMNS} FROM events
    WHERE feed_id = :feed AND seq < :before AND (:status IS NULL OR status = :status)
    ORDER BY seq DESC LIMIT :limit
"""
SQL_WIDGET_EVENT = f"""
    SELECT {SQL_EVENT_COLUMNS} FROM events WHERE seq = (SELECT widget_event_seq FROM feeds WHERE id = ?)
"""

SQL_PROJECT_WIDGETS = """
    SELECT e.seq, e.id, e.feed_id, e.status, e.received_at, e.schema_type, e.content, e.metadata, e.intent,
           e.callback, e.widget_updated, e.push
    FROM feeds f JOIN events e ON e.seq = f.widget_event_seq WHERE f.project_id = ?
"""

_JSON_TYPES = ("application/json", "text/plain")


class Accepted(msgspec.Struct, omit_defaults=True):
    """The 202 answer to an ingest request; an upload's also holds the content (its image URLs)."""

    id: str
    feed_id: str
    status: str
    widget_updated: bool
    push: str
    content: msgspec.Raw | None = None


class Event(msgspec.Struct, kw_only=True):
    """An event as the event log and the widget state show it."""

    id: str
    feed_id: str
    status: str
    schema_type: str
    content: dict[str, Any]
    metadata: dict[str, Any]
    intent: dict[str, Any]
    callback: dict[str, Any] | None = None
    received_at: str
    widget_updated: bool
    push: str


class EventLog(msgspec.Struct):
    data: list[Event]
    next_cursor: str | None
    throttled_dropped: int


class ApprovalView(msgspec.Struct):
    """What an approval feed's widget says of its request: `state` (pending, deferred, approved,
    rejected) and how many requests are `waiting` (the widget shows the oldest of them)."""

    state: str
    waiting: int


class Widget(msgspec.Struct, omit_defaults=True):
    """A feed's widget state: the event it shows (null before the first); for an approval feed
    also the request's state and how many wait."""

    feed_id: str
    event: Event | None
    approval: ApprovalView | None = None


# approvals.Approvals.widget: an approval feed's shown event row and its view (None: no event yet).
ApprovalWidget = Callable[[str], Awaitable["tuple[sqlite3.Row, ApprovalView] | None"]]


async def _no_approval_widget(feed_id: str) -> tuple[sqlite3.Row, ApprovalView] | None:
    return None


@dataclass(slots=True)
class NewEvent:
    """An event about to be written, handed to the `on_accept` hooks inside the transaction."""

    id: str
    feed: FeedState
    event: Any  # the decoded schemas.*Event
    received_at: float
    status: str
    content: bytes
    metadata: bytes
    intent: bytes
    callback: bytes | None
    widget_updated: bool
    push: str
    media: list[Any] = field(default_factory=list)  # media.MediaFile: images an upload brings
    push_detail: str | None = None  # PushDecision.detail: what the push hook queues or logs
    minute_tokens: float | None = None
    day_tokens: float | None = None
    seq: int = 0


@dataclass(slots=True)
class IngestAnswer:
    """What the handler sends back: a status, a JSON body and headers."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False


class Submission(Protocol):
    """One authenticated ingest request, whatever its body: what `Ingest.submit` needs of it."""

    echo_content: bool  # the 202 answer repeats the stored content
    media: list[Any]  # filled by decode(): new images the event brings

    def digest(self) -> str:
        """What an Idempotency-Key is bound to."""
        ...

    async def decode(self) -> Any:
        """The schemas.*Event; raises BadRequest or ValidationFailed."""
        ...


@dataclass(slots=True)
class JsonSubmission:
    """A JSON event body."""

    body: bytes
    schema_type: str
    echo_content = False
    media: list[Any] = field(default_factory=list)

    def digest(self) -> str:
        return body_digest(self.body)

    async def decode(self) -> Any:
        return decode_event(self.body, self.schema_type)


@dataclass(frozen=True, slots=True)
class PushDecision:
    """What `decide_push` settles for an accepted event: `answer` is the ingest answer's `push`
    ("none", "queued" or "suppressed"); `detail` is handed to the `on_accept` hooks (as
    `NewEvent.push_detail`), which queue or log the push in the event's transaction."""

    answer: str
    detail: str | None = None


NO_PUSH = PushDecision("none")

AcceptHook = Callable[[sqlite3.Connection, NewEvent], None]
PushDecider = Callable[[FeedState, Any, float], PushDecision]
EventCheck = Callable[[Any], Awaitable[None]]


def _no_push(feed: FeedState, event: Any, now: float) -> PushDecision:
    return NO_PUSH


async def _no_check(event: Any) -> None:
    return None


class Ingest:
    def __init__(
        self,
        db: Database,
        feeds: Feeds,
        idempotency: Idempotency,
        clock: Clock,
        auth_failures: AuthFailureLimiter,
        media: Media,
        metrics: Registry,
    ) -> None:
        self.db = db
        self.feeds = feeds
        self.idempotency = idempotency
        self.clock = clock
        self.auth_failures = auth_failures
        self.media = media
        self.on_store: list[AcceptHook] = []  # every stored event, accepted or throttled
        self.on_accept: list[AcceptHook] = []  # accepted events only
        self.decide_push: PushDecider = _no_push
        # Schema checks that need I/O (resolving a callback's host); raises ValidationFailed.
        self.check_event: EventCheck = _no_check
        self.approval_widget: ApprovalWidget = _no_approval_widget
        self.counted = metrics.counter(
            "glimpze_ingest_events_total",
            "Events ingested by feed and status (accepted, throttled)",
            ("feed_id", "status"),
        )
        self.latency = metrics.histogram(
            "glimpze_ingest_duration_seconds", "Time to answer an ingest request (JSON events and uploads, any status)"
        )
        self.in_flight = 0  # requests being served right now; deliveries yield while any are

    async def authenticate(self, feed_id: str, secret: str | None, client: str) -> FeedState:
        """Write-key check behind the failed-authentication limiter."""
        return await self.auth_failures.guard(client, lambda: self.feeds.authenticate(feed_id, secret))

    async def ingest(
        self,
        feed_id: str,
        *,
        secret: str | None,
        client: str,
        content_type: str | None,
        body: bytes,
        idempotency_key: str | None,
    ) -> IngestAnswer:
        """A JSON event."""
        feed = await self.authenticate(feed_id, secret, client)
        check_json_content_type(content_type)
        return await self.submit(feed, JsonSubmission(body, feed.schema_type), idempotency_key)

    async def upload(
        self,
        feed_id: str,
        *,
        secret: str | None,
        client: str,
        content_type: str | None,
        chunks: AsyncIterator[bytes],
        idempotency_key: str | None,
    ) -> IngestAnswer:
        """A multipart form of images for a custom feed; `chunks` is the body as it arrives."""
        feed = await self.authenticate(feed_id, secret, client)
        boundary = multipart_boundary(content_type)
        check_upload_feed(feed)
        async with receive_form(boundary, chunks, self.media) as form:
            return await self.submit(feed, Upload(form, self.media), idempotency_key)

    async def submit(self, feed: FeedState, submission: Submission, idempotency_key: str | None) -> IngestAnswer:
        """Replay, decode, take a token, store: the part of the pipeline every body format shares."""
        self.in_flight += 1
        try:
            return await self._submit(feed, submission, idempotency_key)
        finally:
            self.in_flight -= 1

    async def _submit(self, feed: FeedState, submission: Submission, idempotency_key: str | None) -> IngestAnswer:
        if idempotency_key is None:
            return await self._store(feed, await self._decode(submission), submission)
        claim = self.idempotency.claim(feed.id, idempotency_key, submission.digest())
        with self.idempotency.hold(claim):
            stored = await self.idempotency.stored(claim)
            if stored is not None:
                decision = feed.buckets.decision(self.clock.monotonic())
                return IngestAnswer(stored.status, stored.response, decision.headers(), replayed=True)
            return await self._store(feed, await self._decode(submission), submission, claim)

    async def _decode(self, submission: Submission) -> Any:
        """The 400/422 checks: decode, then the checks that need I/O (before any token is taken)."""
        event = await submission.decode()
        await self.check_event(event)
        return event

    async def _store(
        self, feed: FeedState, event: Any, submission: Submission, claim: IdempotencyClaim | None = None
    ) -> IngestAnswer:
        now = self.clock.now()
        decision = feed.buckets.take(self.clock.monotonic())
        if not decision.allowed:
            return await self._throttle(feed, event, submission, decision, now)
        update_widget = event.intent.update_widget
        push = self.decide_push(feed, event, now)
        stored = self._stored(feed, event, submission, now, "accepted", update_widget, push.answer)
        stored.push_detail = push.detail
        content = msgspec.Raw(stored.content) if submission.echo_content else None
        answer = msgspec.json.encode(Accepted(stored.id, feed.id, "accepted", update_widget, push.answer, content))
        stored.minute_tokens, stored.day_tokens = feed.buckets.minute.tokens, feed.buckets.day.tokens
        hooks = self.on_accept

        def job(conn: sqlite3.Connection) -> None:
            self._insert(conn, stored)
            if claim is not None:
                claim.save(conn, 202, answer, now)
            for hook in hooks:
                hook(conn, stored)

        await self._write(job, feed)
        self.counted.inc(feed.id, "accepted")
        return IngestAnswer(202, answer, decision.headers())

    async def _throttle(
        self, feed: FeedState, event: Any, submission: Submission, decision: Decision, now: float
    ) -> IngestAnswer:
        """Refused by the quota: the first few per minute are logged, the rest only counted."""
        self.counted.inc(feed.id, "throttled")
        event_id = None
        if feed.buckets.store_throttled(self.clock.monotonic()):
            stored = self._stored(feed, event, submission, now, "throttled", False, "none")
            await self._write(lambda conn: self._insert(conn, stored), feed)
            event_id = stored.id
        per = "minute" if decision.limit_name == "minute" else "day"
        error = RateLimited(
            f"This feed's plan ({feed.plan_name}) allows {decision.limit} events per {per}. "
            f"Retry in {decision.retry_after} s; the event was logged as throttled and did not update the widget.",
            headers=decision.headers(),
            extra={"limit": decision.limit_name, "event_id": event_id},
        )
        raise error

    def _stored(
        self, feed: FeedState, event: Any, submission: Submission, now: float, status: str, widget: bool, push: str
    ) -> NewEvent:
        callback = getattr(event, "callback", None)
        return NewEvent(
            id=new_id("evt_"),
            feed=feed,
            event=event,
            received_at=now,
            status=status,
            content=msgspec.json.encode(event.content),
            metadata=msgspec.json.encode(event.metadata),
            intent=msgspec.json.encode(event.intent),
            callback=None if callback is None else msgspec.json.encode(callback),
            widget_updated=widget,
            push=push,
            media=submission.media,
        )

    def _insert(self, conn: sqlite3.Connection, stored: NewEvent) -> None:
        stored.seq = _insert_row(conn, stored)
        for hook in self.on_store:
            hook(conn, stored)

    async def _write(self, job: Callable[[sqlite3.Connection], Any], feed: FeedState) -> None:
        try:
            await self.db.write(job)
        except sqlite3.IntegrityError:
            # The feed was deleted while this request ran.
            raise not_found("feed", feed.id) from None

    # Reading

    async def events(
        self, project_id: str, feed_id: str, *, cursor: str | None, limit: int, status: str | None
    ) -> EventLog:
        row = await self.feeds.row(project_id, feed_id)
        after = decode_cursor(cursor, int)
        before = after[0] if after else 2**63 - 1
        rows = list(
            await self.db.fetch_all(
                SQL_LIST_EVENTS, {"feed": feed_id, "before": before, "status": status, "limit": limit + 1}
            )
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return EventLog(
            [event_out(r) for r in rows],
            encode_cursor(rows[-1]["seq"]) if more else None,
            self.feeds.dropped(row),
        )

    async def widgets(self, project_id: str) -> dict[str, Widget]:
        """Every feed's current widget state in the project (feeds without one are absent)."""
        rows = await self.db.fetch_all(SQL_PROJECT_WIDGETS, (project_id,))
        shown = {}
        for row in rows:
            if row["schema_type"] == "approval":
                shown[row["feed_id"]] = await self.widget_of(row["feed_id"], "approval")
            else:
                shown[row["feed_id"]] = Widget(row["feed_id"], event_out(row))
        return shown

    async def widget(self, project_id: str, feed_id: str) -> Widget:
        feed = await self.feeds.row(project_id, feed_id)
        return await self.widget_of(feed_id, feed["schema_type"])

    async def widget_of(self, feed_id: str, schema_type: str) -> Widget:
        row, approval = await self.widget_row(feed_id, schema_type)
        return Widget(feed_id, None if row is None else event_out(row), approval)

    async def widget_row(self, feed_id: str, schema_type: str) -> tuple[sqlite3.Row | None, ApprovalView | None]:
        """The event row a feed's widget shows, and an approval feed's view of it: the latest
        widget-updating event, except that an approval feed shows its oldest pending request."""
        if schema_type == "approval":
            found = await self.approval_widget(feed_id)
            if found is not None:
                return found
        return await self.db.fetch_one(SQL_WIDGET_EVENT, (feed_id,)), None


def _insert_row(conn: sqlite3.Connection, s: NewEvent) -> int:
    cursor = conn.execute(
        SQL_INSERT_EVENT,
        (
            s.id,
            s.feed.id,
            s.status,
            s.received_at,
            s.feed.schema_type,
            s.content,
            s.metadata,
            s.intent,
            s.callback,
            s.widget_updated,
            s.push,
            s.minute_tokens,
            s.day_tokens,
        ),
    )
    return cursor.lastrowid or 0


def event_out(row: sqlite3.Row) -> Event:
    decode = msgspec.json.decode
    return Event(
        id=row["id"],
        feed_id=row["feed_id"],
        status=row["status"],
        schema_type=row["schema_type"],
        content=decode(row["content"]),
        metadata=decode(row["metadata"]),
        intent=decode(row["intent"]),
        callback=None if row["callback"] is None else decode(row["callback"]),
        received_at=iso(row["received_at"]),
        widget_updated=bool(row["widget_updated"]),
        push=row["push"],
    )


def check_json_content_type(content_type: str | None) -> None:
    """A missing Content-Type is fine; a present one must be JSON (or text/plain, which some tools send)."""
    if content_type is None:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media in _JSON_TYPES or media.endswith("+json"):
        return
    raise UnsupportedMediaType(
        f"The body was sent as {media or 'an empty Content-Type'!r}; send JSON with 'Content-Type: application/json'.",
    )
