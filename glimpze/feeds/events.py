"""The event log: an event as it is stored (`NewEvent`) and shown (`Event`), a feed's log, and the
state each feed's widget shows.

Ingest writes events (ingest.py); everything else reads them here. A feed's widget shows its latest
widget-updating event (`feeds.widget_event_seq`, set by ingest in the event's transaction), except
that an approval feed shows its oldest pending request and how many wait (approvals.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from glimpze.clock import iso
from glimpze.feeds.feeds import Feeds, FeedState
from glimpze.feeds.media import MediaFile
from glimpze.feeds.schemas import IngestEvent
from glimpze.push.buttons import Button
from glimpze.store.pagination import decode_cursor, encode_cursor
from glimpze.store.sql import Row, Store, Tx, one

if TYPE_CHECKING:
    from glimpze.push.approvals import Approvals

# The bucket levels stored with an accepted event are the quota snapshot read back after a
# restart (feeds.SQL_GET_FEED).
SQL_INSERT_EVENT = """
    INSERT INTO events (id, feed_id, status, received_at, schema_type, content, metadata, intent, callback,
                        widget_updated, push, minute_tokens, day_tokens)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    RETURNING seq
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


@dataclass(slots=True)
class NewEvent:
    """An event being stored: what ingest hands to each step of the accept path, in its transaction."""

    id: str
    feed: FeedState
    event: IngestEvent
    received_at: float
    status: str  # accepted | throttled
    content: bytes  # the JSON of content, metadata, intent and callback, as stored and sent on
    metadata: bytes
    intent: bytes
    callback: bytes | None
    widget_updated: bool
    push: str  # the ingest answer's `push`: none | queued | suppressed
    media: list[MediaFile] = field(default_factory=list)  # images an upload brings
    buttons: list[Button] = field(default_factory=list)  # the action buttons of its push
    minute_tokens: float | None = None
    day_tokens: float | None = None
    seq: int = 0  # set once the row is written


class Accepted(msgspec.Struct, omit_defaults=True):
    """The 202 answer to an ingest request; an upload's also holds the content (its image URLs)."""

    id: str
    feed_id: str
    status: str
    widget_updated: bool
    push: str
    content: msgspec.Raw | None = None


@dataclass(frozen=True, slots=True)
class PushDecision:
    """What push.decide settles for an event before it is stored: `answer` is the ingest answer's
    `push` (none, queued or suppressed); `status` is the push row to write with the event (queued,
    held, suppressed or coalesced), None when there is none."""

    answer: str
    status: str | None = None


NO_PUSH = PushDecision("none")


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


class EventPage(msgspec.Struct):
    """A page of a feed's event log, newest first."""

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


def insert_event(tx: Tx, s: NewEvent) -> int:
    """Write the event's row; returns its seq (arrival order)."""
    params = (s.id, s.feed.id, s.status, s.received_at, s.feed.schema_type, s.content, s.metadata, s.intent)
    row = one(
        tx.execute(SQL_INSERT_EVENT, (*params, s.callback, s.widget_updated, s.push, s.minute_tokens, s.day_tokens))
    )
    return int(row[0])


def event_out(row: Row) -> Event:
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


class Events:
    """Reads the event log and what each feed's widget shows."""

    def __init__(self, db: Store, feeds: Feeds, approvals: Approvals) -> None:
        self.db = db
        self.feeds = feeds
        self.approvals = approvals

    async def page(
        self, project_id: str, feed_id: str, *, cursor: str | None, limit: int, status: str | None
    ) -> EventPage:
        """A feed's event log, newest first (only `status` events when given)."""
        row = await self.feeds.row(project_id, feed_id)
        after = decode_cursor(cursor, int)
        before = after[0] if after else 2**63 - 1
        params = {"feed": feed_id, "before": before, "status": status, "limit": limit + 1}
        rows = list(await self.db.fetch_all(SQL_LIST_EVENTS, params))
        more = len(rows) > limit
        rows = rows[:limit]
        return EventPage(
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

    async def widget_row(self, feed_id: str, schema_type: str) -> tuple[Row | None, ApprovalView | None]:
        """The event row a feed's widget shows, and an approval feed's view of it: the latest
        widget-updating event, except that an approval feed shows its oldest pending request."""
        if schema_type == "approval":
            found = await self.approvals.widget(feed_id)
            if found is not None:
                return found
        return await self.db.fetch_one(SQL_WIDGET_EVENT, (feed_id,)), None
