"""The accept path: `POST /ingest/{feed_id}` and `/upload`, from a request to a stored event.

Check order (DESIGN §7): 413 body too large (the handler) → 429 too many failed logins → 401/404
write key → 415 content type → Idempotency-Key replay → 400 JSON → 422 schema (and an approval's
callback URL must be a target Glimpze may call) → 429 quota → store. A JSON body and an upload
form are two kinds of `Submission` that go through the same `submit()`; an upload only adds
reading its form (400/413 while streaming) before the replay check. A message in another
server's dialect (ntfy, Gotify: dialects.py) is one more kind, answered in its dialect's shape.

Everything an accepted event causes is written in the one transaction that stores it, in this
order (`Ingest._accept`): the event row with its quota snapshot (and a notice for the dashboard),
the feed's widget pointer, the images it brings, the Idempotency-Key answer, `feed.event` (the webhooks
take it from the event log), an approval's row and `approval.requested`, and the push decided
before. Wake-ups (long polls, the dispatcher, the push sender, live pages) follow the
commit (`Writer.after_commit`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import msgspec

from glimpze.clock import Clock
from glimpze.delivery.callbacks import check_target
from glimpze.delivery.outbox import Outbox
from glimpze.delivery.ssrf import TargetPolicy
from glimpze.errors import RateLimited, UnsupportedMediaType, not_found
from glimpze.feeds.events import Accepted, NewEvent, PushDecision, insert_event
from glimpze.feeds.feeds import Feeds, FeedState
from glimpze.feeds.idempotency import Idempotency, IdempotencyClaim, body_digest
from glimpze.feeds.limits import AuthFailureLimiter, Decision
from glimpze.feeds.media import Media, MediaFile
from glimpze.feeds.schemas import ApprovalEvent, IngestEvent, decode_event
from glimpze.feeds.uploads import Upload, check_upload_feed, multipart_boundary, receive_form
from glimpze.ids import new_id
from glimpze.ops.metrics import Registry
from glimpze.push.approvals import Approvals
from glimpze.push.buttons import Button
from glimpze.push.pushes import Push
from glimpze.store.changes import Changes
from glimpze.store.sql import IntegrityError, Store, Tx

T = TypeVar("T")
_JSON_TYPES = ("application/json", "text/plain")


@dataclass(slots=True)
class IngestAnswer:
    """What the handler sends back: a status, a JSON body and headers."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False


class Submission(Protocol):
    """One authenticated ingest request, whatever its body: what `Ingest.submit` needs of it."""

    media: list[MediaFile]  # filled by decode(): new images the event brings
    buttons: list[Button]  # the action buttons of the push it may get

    def digest(self) -> str:
        """What an Idempotency-Key is bound to."""
        ...

    async def decode(self) -> IngestEvent:
        """The event; raises BadRequest or ValidationFailed."""
        ...

    def answer(self, new: NewEvent, accepted: Accepted) -> tuple[int, bytes]:
        """The success answer's status and body (called in the write job, so `new.seq` is known)."""
        ...


@dataclass(slots=True)
class JsonSubmission:
    """A JSON event body."""

    body: bytes
    schema_type: str
    media: list[MediaFile] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)

    def digest(self) -> str:
        return body_digest(self.body)

    async def decode(self) -> IngestEvent:
        return decode_event(self.body, self.schema_type)

    def answer(self, new: NewEvent, accepted: Accepted) -> tuple[int, bytes]:
        return 202, msgspec.json.encode(accepted)


class Ingest:
    """Takes events in: authenticates, checks, throttles, and stores each with all it causes."""

    def __init__(
        self,
        db: Store,
        clock: Clock,
        metrics: Registry,
        *,
        auth_failures: AuthFailureLimiter,
        feeds: Feeds,
        idempotency: Idempotency,
        policy: TargetPolicy,
        media: Media,
        outbox: Outbox,
        approvals: Approvals,
        push: Push,
        changes: Changes,
    ) -> None:
        self.db = db
        self.clock = clock
        self.auth_failures = auth_failures
        self.feeds = feeds
        self.idempotency = idempotency
        self.policy = policy
        self.media = media
        self.outbox = outbox
        self.approvals = approvals
        self.push = push
        self.changes = changes
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

    async def _decode(self, submission: Submission) -> IngestEvent:
        """The 400/422 checks: decode, then the checks that need I/O (before any token is taken)."""
        event = await submission.decode()
        if isinstance(event, ApprovalEvent) and event.callback is not None:
            await check_target(self.policy, event.callback.url)  # a target Glimpze may call?
        return event

    async def _store(
        self, feed: FeedState, event: IngestEvent, submission: Submission, claim: IdempotencyClaim | None = None
    ) -> IngestAnswer:
        now = self.clock.now()
        decision = feed.buckets.take(self.clock.monotonic())
        if not decision.allowed:
            return await self._throttle(feed, event, submission, decision, now)
        push = self.push.decide(feed, event, now)
        new = self._new_event(feed, event, submission, now, "accepted", event.intent.update_widget, push.answer)
        new.minute_tokens, new.day_tokens = feed.buckets.minute.tokens, feed.buckets.day.tokens
        accepted = Accepted(new.id, feed.id, "accepted", new.widget_updated, push.answer)
        status, body = await self._write(lambda tx: self._accept(tx, new, push, claim, submission, accepted), feed)
        self.counted.inc(feed.id, "accepted")
        return IngestAnswer(status, body, decision.headers())

    def _accept(
        self,
        tx: Tx,
        new: NewEvent,
        push: PushDecision,
        claim: IdempotencyClaim | None,
        submission: Submission,
        accepted: Accepted,
    ) -> tuple[int, bytes]:
        """Everything an accepted event causes, in order, inside the transaction that stores it."""
        new.seq = insert_event(tx, new)  # the event, with the quota snapshot after it
        self.changes.event_stored(new)  # a notice for the dashboard's live pages (told after the commit)
        if new.widget_updated:
            self.feeds.show_on_widget(tx, new.feed.id, new.seq)
        self.media.link(tx, new)  # images it brings or points at
        status, answer = submission.answer(new, accepted)  # in the submission's own shape
        if claim is not None:
            claim.save(tx, status, answer, new.received_at)  # what a retry with its key gets back
        self.outbox.emit(
            tx, new.feed.project_id, "feed.event", feed_event(new), occurred_at=new.received_at, event_id=new.id
        )  # webhooks subscribed to feed.event take it from the log
        if new.feed.schema_type == "approval":
            self.approvals.open(tx, new)  # pending, and approval.requested
        self.push.queue_decided(tx, new, push)  # queued, held for quiet hours, or logged as dropped
        return status, answer

    async def _throttle(
        self, feed: FeedState, event: IngestEvent, submission: Submission, decision: Decision, now: float
    ) -> IngestAnswer:
        """Refused by the quota: the first few per minute are logged, the rest only counted."""
        self.counted.inc(feed.id, "throttled")
        event_id = None
        if feed.buckets.store_throttled(self.clock.monotonic()):
            new = self._new_event(feed, event, submission, now, "throttled", False, "none")
            await self._write(lambda tx: self._log_throttled(tx, new), feed)
            event_id = new.id
        per = "minute" if decision.limit_name == "minute" else "day"
        raise RateLimited(
            f"This feed's plan ({feed.plan_name}) allows {decision.limit} events per {per}. "
            f"Retry in {decision.retry_after} s; the event was logged as throttled and did not update the widget.",
            headers=decision.headers(),
            extra={"limit": decision.limit_name, "event_id": event_id},
        )

    def _log_throttled(self, tx: Tx, new: NewEvent) -> None:
        """A throttled event is only logged: its row, the images it brought, a notice."""
        new.seq = insert_event(tx, new)
        self.changes.event_stored(new)
        self.media.link(tx, new)

    def _new_event(
        self,
        feed: FeedState,
        event: IngestEvent,
        submission: Submission,
        now: float,
        status: str,
        widget: bool,
        push: str,
    ) -> NewEvent:
        callback = event.callback if isinstance(event, ApprovalEvent) else None
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
            buttons=submission.buttons,
        )

    async def _write(self, job: Callable[[Tx], T], feed: FeedState) -> T:
        try:
            return await self.db.write(job)
        except IntegrityError:
            # The feed was deleted while this request ran.
            raise not_found("feed", feed.id) from None


def feed_event(new: NewEvent) -> dict[str, str | msgspec.Raw]:
    """`feed.event`'s fields (DESIGN §4); its id is the ingested event's."""
    return {
        "feed_id": new.feed.id,
        "schema_type": new.feed.schema_type,
        "content": msgspec.Raw(new.content),
        "metadata": msgspec.Raw(new.metadata),
        "intent": msgspec.Raw(new.intent),
    }


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
