"""Change notices for the dashboard's live pages: what changed (a kind and ids), never the data.

Write jobs note what they touch, inside the transaction: an event stored (`event_stored`, by
ingest, throttled ones too), an outgoing event emitted (`emitted`, by the outbox: approvals,
conversations, webhooks) and a delivery attempt recorded (`attempted`, by the dispatcher). The notes
wait until the writer's commit (`after_commit`) and then go to every subscriber of the project
(the dashboard's `/live` stream), which re-reads what changed. A job that is rolled back may
leave a spurious note behind; that costs a page one needless read, never a wrong picture, since
the stored rows are the truth.

Notices are not stored: a subscriber that falls behind (its queue is full) or reconnects gets
`resync` and re-reads everything it shows. That is what lets the same notices later come from
other processes: `after_commit` hands each batch to `fan_out`, which delivers in this process
today; a PostgreSQL deployment would NOTIFY there and call `deliver` from its LISTEN connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from glimpze.feeds.events import NewEvent

QUEUE_SIZE = 256  # notices a subscriber may lag behind before it is told to re-read everything


class Change(msgspec.Struct, frozen=True, omit_defaults=True):
    """One thing that changed: `kind` (event, tile, approval, session, message, delivery, webhook,
    outgoing), its `id`, and `of`: the feed, session or webhook it belongs to."""

    kind: str
    id: str
    of: str | None = None


RESYNC = Change("resync", "")

# What an outgoing event tells the pages: (kind, the field holding its id, the field of its owner).
_OUTGOING = {
    "feed.event": None,  # told by the stored event itself (event_stored)
    "approval.requested": ("approval", "event_id", "feed_id"),
    "approval.responded": ("approval", "event_id", "feed_id"),
    "session.created": ("session", "session_id", None),
    "session.updated": ("session", "session_id", None),
    "session.escalated": ("session", "session_id", None),
    "session.closed": ("session", "session_id", None),
    "message.created": ("message", "message_id", "session_id"),
    "webhook.failing": ("webhook", "webhook_id", None),
    "webhook.disabled": ("webhook", "webhook_id", None),
}


class Listener:
    """One listener's queue of notices for a project; iterate it, and `close()` it when done."""

    def __init__(self, hub: Changes, project_id: str) -> None:
        self.hub = hub
        self.project_id = project_id
        self.queue: asyncio.Queue[Change | None] = asyncio.Queue(QUEUE_SIZE)

    def put(self, change: Change | None) -> None:
        try:
            self.queue.put_nowait(change)
        except asyncio.QueueFull:
            # Too far behind: drop what is queued and say so; the page re-reads everything.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)

    async def next(self, timeout: float) -> Change | None:
        """The next notice, `RESYNC` after an overflow, or None after `timeout` seconds or at shutdown."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        self.hub.unsubscribe(self)


class Changes:
    """Collects notices inside write jobs and hands them to subscribers after the commit."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, Change], None] = {}  # ordered, without repeats
        self._subscribers: dict[str, set[Listener]] = {}
        self.stopping = False
        # Where a committed batch goes; see the module docstring.
        self.fan_out: Callable[[list[tuple[str, Change]]], None] = self.deliver

    def note(self, project_id: str, kind: str, id: str, of: str | None = None) -> None:
        """Record a change inside a write job; it is told once the transaction commits."""
        self._pending[(project_id, Change(kind, id, of))] = None

    def after_commit(self) -> None:
        """Called by the writer after every commit."""
        if self._pending:
            batch, self._pending = list(self._pending), {}
            self.fan_out(batch)

    def deliver(self, batch: list[tuple[str, Change]]) -> None:
        """Give committed notices to this process's subscribers."""
        for project_id, change in batch:
            for subscription in self._subscribers.get(project_id, ()):
                subscription.put(change)

    def subscribe(self, project_id: str) -> Listener:
        subscription = Listener(self, project_id)
        self._subscribers.setdefault(project_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Listener) -> None:
        subscribers = self._subscribers.get(subscription.project_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.project_id]

    @property
    def listening(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    def shutdown(self) -> None:
        """End every subscription now (the server is stopping)."""
        self.stopping = True
        for subscribers in list(self._subscribers.values()):
            for subscription in list(subscribers):
                subscription.put(None)

    # What the write jobs note

    def event_stored(self, stored: NewEvent) -> None:
        """An event was stored (accepted or throttled); an accepted one that updates the widget
        changes its feed's tile."""
        feed = stored.feed
        self.note(feed.project_id, "event", stored.id, feed.id)
        if stored.widget_updated:
            self.note(feed.project_id, "tile", feed.id)

    def emitted(self, project_id: str, event_type: str, event_id: str, fields: Mapping[str, object]) -> None:
        """An outgoing event was emitted (deliveries may have been queued for it)."""
        self.note(project_id, "outgoing", event_id, event_type)
        told = _OUTGOING.get(event_type)
        if told is None:
            return
        kind, id_field, of_field = told
        self.note(project_id, kind, str(fields[id_field]), None if of_field is None else str(fields[of_field]))
        if kind == "approval":  # an answer changes what the approval feed's widget shows
            self.note(project_id, "tile", str(fields["feed_id"]))

    def attempted(self, project_id: str, delivery_id: str, owner: str | None) -> None:
        """An attempt of a delivery (of webhook or feed `owner`) was recorded."""
        self.note(project_id, "delivery", delivery_id, owner)
        if owner is not None and owner.startswith("wh_"):
            self.note(project_id, "webhook", owner)
