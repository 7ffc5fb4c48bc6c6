"""Approvals: an `approval` event is pending until someone approves, rejects or defers it.

An accepted approval event gets its row and an `approval.requested` event in the event's own
transaction (`Approvals.open`, called by `Ingest._accept`). `respond()` takes an answer from the API (`POST
/v1/approvals/{event_id}/respond`, recorded as the API key's name), the dashboard (`dashboard`)
or an action link in a notification (`push`). The first approve or reject decides; any later
answer is a 409 that says which decision was taken, when and by whom. A defer keeps the approval
pending and pushes it again after `[push] defer_seconds` (`renotify_deferred(now)`). Every
answer, in the same transaction, is logged with who gave it, emits `approval.responded`, and
queues the seed 002 callback as a delivery (callbacks.py).
"""

from __future__ import annotations

from typing import Any

import msgspec

from glimpze.clock import Clock, iso
from glimpze.config import Config
from glimpze.delivery import callbacks
from glimpze.delivery.outbox import Outbox
from glimpze.errors import ActionLinkUsed, ApprovalDecided, Conflict, not_found
from glimpze.feeds.events import SQL_EVENT_COLUMNS, SQL_WIDGET_EVENT, ApprovalView, NewEvent
from glimpze.feeds.schemas import ApprovalEvent
from glimpze.push.action_links import ActionLink, ActionLinks
from glimpze.push.pushes import Push, message_text
from glimpze.store.pagination import Page, page
from glimpze.store.sql import Row, Store, Tx, one

STATUS_OF = {"approve": "approved", "reject": "rejected", "defer": "pending"}
REMINDER_BATCH = 100

SQL_INSERT = """
    INSERT INTO approvals (event_seq, event_id, project_id, feed_id, status, created_at, updated_at)
    VALUES (?, ?, ?, ?, 'pending', ?, ?)
"""
_SELECT = """
    SELECT a.event_seq, a.event_id, a.project_id, a.feed_id, a.status, a.renotify_at, a.defers, a.decided_at,
           a.decided_by, a.created_at, e.content, e.metadata, e.callback, f.name AS feed_name,
           (SELECT action FROM approval_actions WHERE event_seq = a.event_seq ORDER BY seq DESC LIMIT 1) AS last_action
    FROM approvals a JOIN events e ON e.seq = a.event_seq JOIN feeds f ON f.id = a.feed_id
"""
SQL_GET = f"{_SELECT} WHERE a.event_id = ?"
SQL_LIST = f"""
    {_SELECT} WHERE a.project_id = :project AND a.event_seq < :before
      AND (:status IS NULL OR a.status = :status OR (:status = 'decided' AND a.status != 'pending'))
    ORDER BY a.event_seq DESC LIMIT :limit
"""
SQL_DECIDE = """
    UPDATE approvals SET status = :status, decided_at = :now, decided_by = :actor, renotify_at = NULL, updated_at = :now
    WHERE event_seq = :seq AND status = 'pending'
"""
SQL_DEFER = """
    UPDATE approvals SET renotify_at = :renotify_at, defers = defers + 1, updated_at = :now
    WHERE event_seq = :seq AND status = 'pending'
"""
SQL_INSERT_ACTION = """
    INSERT INTO approval_actions (event_seq, action, actor, at, delivery_id, link_nonce) VALUES (?, ?, ?, ?, ?, ?)
"""
SQL_ACTIONS = """
    SELECT x.action, x.actor, x.at, x.delivery_id, d.status AS delivery_status FROM approval_actions x
    LEFT JOIN deliveries d ON d.id = x.delivery_id
    WHERE x.event_seq = ? ORDER BY x.seq
"""
SQL_LINK_USED = "SELECT 1 FROM approval_actions WHERE link_nonce = ?"
SQL_DUE_REMINDERS = f"""
    {_SELECT} WHERE a.renotify_at <= :now AND a.status = 'pending' ORDER BY a.renotify_at LIMIT :limit
"""
SQL_CLEAR_REMINDER = """
    UPDATE approvals SET renotify_at = NULL WHERE event_seq = ? AND renotify_at <= ? AND status = 'pending'
"""
SQL_STATE = """
    SELECT a.status, a.renotify_at IS NOT NULL AS deferred FROM approvals a WHERE a.event_id = ?
"""
# Decided approvals in the order they were decided, newest decision first (the dashboard's history).
SQL_DECIDED = f"""
    {_SELECT} WHERE a.project_id = :project AND a.decided_at IS NOT NULL
      AND (:status IS NULL OR a.status = :status)
      AND (a.decided_at < :before_at OR (a.decided_at = :before_at AND a.event_seq < :before_seq))
    ORDER BY a.decided_at DESC, a.event_seq DESC LIMIT :limit
"""
SQL_PENDING_COUNT = "SELECT count(*) FROM approvals WHERE project_id = ? AND status = 'pending'"
# What an approval feed's widget shows (only approvals whose event updates the widget count): its
# oldest pending request and how many wait; with none pending, the latest decision.
_WIDGET_COLUMNS = ", ".join(f"e.{column.strip()}" for column in SQL_EVENT_COLUMNS.split(","))
SQL_WIDGET_PENDING = f"""
    SELECT {_WIDGET_COLUMNS}, a.status AS approval_status, a.renotify_at, count(*) OVER () AS waiting
    FROM approvals a JOIN events e ON e.seq = a.event_seq
    WHERE a.feed_id = ? AND a.status = 'pending' AND e.widget_updated/*pg: <> 0*/
    ORDER BY a.event_seq LIMIT 1
"""
SQL_WIDGET_DECIDED = f"""
    SELECT {_WIDGET_COLUMNS}, a.status AS approval_status, a.renotify_at, 0 AS waiting
    FROM approvals a JOIN events e ON e.seq = a.event_seq
    WHERE a.feed_id = ? AND a.status != 'pending' AND e.widget_updated/*pg: <> 0*/
    ORDER BY a.decided_at DESC, a.event_seq DESC LIMIT 1
"""


class Approval(msgspec.Struct, kw_only=True):
    """An approval as `/v1/approvals` shows it."""

    event_id: str
    feed_id: str
    feed_name: str
    status: str  # pending | approved | rejected
    description: str
    metadata: dict[str, Any]
    callback: dict[str, Any] | None
    requested_at: str
    deferred_until: str | None  # a deferred approval is pushed again then
    defers: int
    decided_at: str | None
    decided_by: str | None  # dashboard | push | the API key's name


class ApprovalAction(msgspec.Struct, kw_only=True):
    """One answer: its action, who gave it, when, and its callback's delivery."""

    action_type: str
    by: str
    at: str
    callback_delivery_id: str | None
    callback_status: str | None  # pending | failed | delivered | dead (null once purged)


class ApprovalDetail(Approval, kw_only=True):
    actions: list[ApprovalAction]


class LinkView(msgspec.Struct, kw_only=True):
    """What an action link's page shows: the approval, the action, and whether it can still be taken."""

    state: str  # ok | done (just taken) | invalid | expired | used | decided
    action: str | None = None
    approval: Approval | None = None


def approval_out(row: Row) -> Approval:
    decode = msgspec.json.decode
    return Approval(
        event_id=row["event_id"],
        feed_id=row["feed_id"],
        feed_name=row["feed_name"],
        status=row["status"],
        description=decode(row["content"]).get("description", ""),
        metadata=decode(row["metadata"]),
        callback=None if row["callback"] is None else decode(row["callback"]),
        requested_at=iso(row["created_at"]),
        deferred_until=None if row["renotify_at"] is None else iso(row["renotify_at"]),
        defers=row["defers"],
        decided_at=None if row["decided_at"] is None else iso(row["decided_at"]),
        decided_by=row["decided_by"],
    )


def already_decided(row: Row) -> Conflict:
    when, by, status = iso(row["decided_at"]), row["decided_by"], row["status"]
    return ApprovalDecided(
        f"This approval was already {status} by {by!r} at {when}; the first approve or reject decides.",
        extra={"decision": {"status": status, "action_type": row["last_action"], "decided_by": by, "decided_at": when}},
    )


class Approvals:
    """The approval lifecycle; see the module docstring."""

    def __init__(self, db: Store, config: Config, clock: Clock, outbox: Outbox, push: Push, links: ActionLinks) -> None:
        self.db = db
        self.clock = clock
        self.outbox = outbox
        self.push = push
        self.action_links = links
        self.defer_seconds = config.push.defer_seconds
        self.link_ttl = config.push.action_link_ttl_seconds

    def open(self, tx: Tx, stored: NewEvent) -> None:
        """A new approval event: its row (pending) and `approval.requested`, in the event's transaction."""
        feed, event = stored.feed, stored.event
        assert isinstance(event, ApprovalEvent)
        tx.execute(
            SQL_INSERT, (stored.seq, stored.id, feed.project_id, feed.id, stored.received_at, stored.received_at)
        )
        fields = {
            "feed_id": feed.id,
            "event_id": stored.id,
            "description": event.content.description,
            "metadata": msgspec.Raw(stored.metadata),
            "callback": None if stored.callback is None else msgspec.Raw(stored.callback),
        }
        self.outbox.emit(tx, feed.project_id, "approval.requested", fields, occurred_at=stored.received_at)

    async def respond(
        self, project_id: str, event_id: str, action: str, actor: str, *, link: ActionLink | None = None
    ) -> ApprovalDetail:
        """Take one answer (approve, reject or defer) from `actor`; raises NotFound or Conflict."""
        assert action in STATUS_OF, action
        now = self.clock.now()

        def job(tx: Tx) -> Row:
            row = tx.execute(SQL_GET, (event_id,)).fetchone()
            if row is None or row["project_id"] != project_id:
                raise not_found("approval", event_id)
            if link is not None and tx.execute(SQL_LINK_USED, (link.nonce,)).fetchone():
                raise ActionLinkUsed("This link was already used.")
            if row["status"] != "pending":
                raise already_decided(row)
            if action == "defer":
                tx.execute(SQL_DEFER, {"renotify_at": now + self.defer_seconds, "now": now, "seq": row["event_seq"]})
            else:
                params = {"status": STATUS_OF[action], "now": now, "actor": actor, "seq": row["event_seq"]}
                tx.execute(SQL_DECIDE, params)
            out_event_id = self.outbox.emit(
                tx,
                project_id,
                "approval.responded",
                {
                    "feed_id": row["feed_id"],
                    "event_id": event_id,
                    "action_type": action,
                    "status": STATUS_OF[action],
                    "responded_by": actor,
                    "metadata": msgspec.Raw(row["metadata"]),
                },
                occurred_at=now,
            )
            delivery_id = None
            if row["callback"] is not None:
                delivery_id = callbacks.queue(
                    tx,
                    out_event_id=out_event_id,
                    feed_id=row["feed_id"],
                    callback=msgspec.json.decode(row["callback"]),
                    fields=callbacks.callback_fields(row["feed_id"], action, event_id, now, row["metadata"]),
                    now=now,
                )
            nonce = None if link is None else link.nonce
            tx.execute(SQL_INSERT_ACTION, (row["event_seq"], action, actor, now, delivery_id, nonce))
            return one(tx.execute(SQL_GET, (event_id,)))

        return await self._detail(await self.db.write(job))

    async def get(self, project_id: str, event_id: str) -> ApprovalDetail:
        row = await self.db.fetch_one(SQL_GET, (event_id,))
        if row is None or row["project_id"] != project_id:
            raise not_found("approval", event_id)
        return await self._detail(row)

    async def page(
        self, project_id: str, *, status: str | None, before: tuple[int] | None, limit: int
    ) -> Page[Approval]:
        """Newest first, optionally only those with `status` (`decided`: approved or rejected)."""
        params = {"project": project_id, "before": before[0] if before else 2**63 - 1, "status": status}
        rows = await self.db.fetch_all(SQL_LIST, {**params, "limit": limit + 1})
        return page(rows, limit, approval_out, lambda r: (r["event_seq"],))

    async def decided(
        self, project_id: str, *, status: str | None, before: tuple[float, int] | None, limit: int
    ) -> Page[Approval]:
        """Approved and rejected ones (or only `status`), newest decision first."""
        after_at, after_seq = before if before else (float("inf"), 2**63 - 1)
        params = {"project": project_id, "status": status, "before_at": after_at, "before_seq": after_seq}
        rows = await self.db.fetch_all(SQL_DECIDED, {**params, "limit": limit + 1})
        return page(rows, limit, approval_out, lambda r: (r["decided_at"], r["event_seq"]))

    async def pending_count(self, project_id: str) -> int:
        return int(await self.db.fetch_value(SQL_PENDING_COUNT, (project_id,)) or 0)

    async def _detail(self, row: Row) -> ApprovalDetail:
        actions = [
            ApprovalAction(
                action_type=a["action"],
                by=a["actor"],
                at=iso(a["at"]),
                callback_delivery_id=a["delivery_id"],
                callback_status=a["delivery_status"],
            )
            for a in await self.db.fetch_all(SQL_ACTIONS, (row["event_seq"],))
        ]
        return ApprovalDetail(**msgspec.structs.asdict(approval_out(row)), actions=actions)

    # Re-notifying deferred approvals (scheduled)

    async def renotify_deferred(self, now: float) -> int:
        """Push deferred approvals whose delay is over at `now` again; returns how many."""
        rows = await self.db.fetch_all(SQL_DUE_REMINDERS, {"now": now, "limit": REMINDER_BATCH})
        if not rows:
            return 0

        def job(tx: Tx) -> int:
            pushed = 0
            for row in rows:
                if not tx.execute(SQL_CLEAR_REMINDER, (row["event_seq"], now)).rowcount:
                    continue  # answered meanwhile
                status = self.push.approval_status(row["project_id"], now)
                if status is None:
                    continue
                title, body = message_text("approval", row["feed_name"], msgspec.json.decode(row["content"]))
                self.push.queue(
                    tx,
                    project_id=row["project_id"],
                    feed_id=row["feed_id"],
                    event_id=row["event_id"],
                    approval=True,
                    title=f"Reminder: {title}",
                    body=body,
                    status=status,
                    now=now,
                )
                pushed += 1
            return pushed

        return await self.db.write(job)

    # Action links and the widget

    async def view_link(self, token: str) -> LinkView:
        """What an action link's confirmation page shows (GET: nothing changes)."""
        return (await self._open_link(token))[0]

    async def use_link(self, token: str) -> LinkView:
        """The confirmation page's POST: take the link's action, recorded as `push`."""
        view, link, project_id = await self._open_link(token)
        if link is None or project_id is None:
            return view
        try:
            detail = await self.respond(project_id, link.event_id, link.action, "push", link=link)
        except Conflict:  # answered, or the link used, between the check and the write
            return await self.view_link(token)
        approval = Approval(**{f: getattr(detail, f) for f in Approval.__struct_fields__})
        return LinkView(state="done", action=link.action, approval=approval)

    async def _open_link(self, token: str) -> tuple[LinkView, ActionLink | None, str | None]:
        """The page's view, and the link and its project when the link can be used now."""
        link = self.action_links.read(token)
        row = None if link is None else await self.db.fetch_one(SQL_GET, (link.event_id,))
        if link is None or row is None:
            return LinkView(state="invalid"), None, None
        approval = approval_out(row)
        if row["status"] != "pending":
            state = "decided"
        elif link.expires_at <= self.clock.now():
            state = "expired"
        elif await self.db.fetch_one(SQL_LINK_USED, (link.nonce,)) is not None:
            state = "used"
        else:
            return LinkView(state="ok", action=link.action, approval=approval), link, row["project_id"]
        return LinkView(state=state, action=link.action, approval=approval), None, None

    async def widget(self, feed_id: str) -> tuple[Row, ApprovalView] | None:
        """What an approval feed's widget shows (events.Events.widget_row): the oldest pending
        request and how many are waiting; with none pending, the latest decision; None before
        the first event. JSON, PNGs and the dashboard all read it here."""
        row = await self.db.fetch_one(SQL_WIDGET_PENDING, (feed_id,))
        if row is None:
            row = await self.db.fetch_one(SQL_WIDGET_DECIDED, (feed_id,))
        if row is not None:
            return row, ApprovalView(_state(row["approval_status"], row["renotify_at"] is not None), row["waiting"])
        # Its approvals are gone (retention) or were never meant for the widget: the widget event.
        row = await self.db.fetch_one(SQL_WIDGET_EVENT, (feed_id,))
        if row is None:
            return None
        found = await self.db.fetch_one(SQL_STATE, (row["id"],))
        state = "pending" if found is None else _state(found["status"], bool(found["deferred"]))
        return row, ApprovalView(state, 0)


def _state(status: str, deferred: bool) -> str:
    """pending, deferred, approved or rejected."""
    return "deferred" if status == "pending" and deferred else status
