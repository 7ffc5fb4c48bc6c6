"""Outgoing events: written in the same transaction as the change that causes them (outbox),
read back by long polling (`GET /v1/events`) and purged after `event_retention_days`.

`Outbox.emit(tx, …)` is called inside a write job. It stores the event's exact JSON payload
(flat: `id`, `event`, `occurred_at`, then the event's fields) and queues one delivery for each
active webhook of the project that subscribes to the type (`SQL_QUEUE_DELIVERIES`). Once the
transaction commits, waiting long polls and the dispatcher are woken (`Writer.after_commit`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from glimpze.clock import Clock, iso
from glimpze.errors import CursorExpired
from glimpze.ids import new_id
from glimpze.store.changes import Changes
from glimpze.store.database import Database
from glimpze.store.pagination import decode_cursor, encode_cursor
from glimpze.store.sql import Tx

EVENT_TYPES = (
    "session.created",
    "session.updated",
    "session.escalated",
    "session.closed",
    "message.created",
    "lead.captured",
    "approval.requested",
    "approval.responded",
    "feed.event",
    "webhook.test",
    "webhook.failing",
    "webhook.disabled",
)

SQL_INSERT_EVENT = """
    INSERT INTO out_events (id, project_id, type, occurred_at, payload, target_webhook_id) VALUES (?, ?, ?, ?, ?, ?)
    RETURNING seq
"""
# One delivery per active webhook of the project that takes the type (or the one webhook a test
# event targets). Delivery ids grow with the event's seq, so their index is appended to.
SQL_QUEUE_DELIVERIES = """
    INSERT INTO deliveries (id, webhook_id, event_seq, ordered, status, attempts, next_attempt_at, created_at,
                            updated_at)
    SELECT 'dlv_' || printf('%010x', :seq) || lower(hex(randomblob(5))), w.id, :seq, w.ordered, 'pending', 0,
           :at, :at, :at
    FROM webhooks w
    WHERE w.project_id = :project AND w.active
      AND CASE WHEN :target IS NULL
               THEN EXISTS (SELECT 1 FROM json_each(w.events) WHERE value IN (:type, '*'))
               ELSE w.id = :target END
"""
SQL_POLL = """
    SELECT seq, payload FROM out_events
    WHERE project_id = :project AND seq > :after
      AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))
    ORDER BY seq LIMIT :limit
"""
SQL_PURGED_SEQ = "SELECT value FROM meta WHERE key = 'out_events_purged_seq'"
SQL_SET_PURGED_SEQ = """
    INSERT INTO meta (key, value) VALUES ('out_events_purged_seq', :seq)
    ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)
"""
# Finished deliveries go with their events; an event an open delivery still needs stays, and so
# does everything after it (deliveries are created in event order).
SQL_PURGE_DELIVERIES = """
    DELETE FROM deliveries WHERE seq IN (
        SELECT seq FROM deliveries WHERE created_at < :cutoff AND status IN ('delivered', 'dead')
        ORDER BY seq LIMIT :batch
    )
"""
SQL_OLDEST_NEEDED = "SELECT min(event_seq) FROM deliveries WHERE status IN ('pending', 'failed')"
SQL_PURGE_BATCH = """
    SELECT seq FROM out_events WHERE occurred_at < :cutoff AND seq < :needed ORDER BY seq LIMIT :batch
"""
SQL_DELETE_EVENT = "DELETE FROM out_events WHERE seq = ?"
SQL_HEAD = "SELECT coalesce(max(seq), 0) FROM out_events"

MAX_WAIT_SECONDS = 30
PURGE_BATCH = 500

_encode = msgspec.json.Encoder().encode


class Polled(msgspec.Struct):
    """A long-poll answer: the events' exact payloads and where to continue."""

    data: list[msgspec.Raw]
    next_cursor: str


class Outbox:
    """Emits outgoing events, wakes whoever waits for them after the commit, serves long polls."""

    def __init__(self, db: Database, clock: Clock, changes: Changes, retention_days: int = 7) -> None:
        self.db = db
        self.clock = clock
        self.changes = changes
        self.retention_seconds = retention_days * 86400
        self.stopping = asyncio.Event()
        self._emitted = False
        self._waiters: set[asyncio.Event] = set()

    def emit(
        self,
        tx: Tx,
        project_id: str,
        event_type: str,
        fields: dict[str, Any],
        *,
        occurred_at: float,
        event_id: str | None = None,
        target_webhook_id: str | None = None,
    ) -> str:
        """Store one outgoing event and queue its deliveries; call inside a write job.

        `target_webhook_id` sends it to that webhook alone, whatever its event filter (webhook.test).
        """
        assert event_type in EVENT_TYPES, event_type
        event_id = event_id or new_id("evt_")
        payload = _encode({"id": event_id, "event": event_type, "occurred_at": iso(occurred_at), **fields})
        params = (event_id, project_id, event_type, occurred_at, payload, target_webhook_id)
        seq = tx.execute(SQL_INSERT_EVENT, params).fetchone()[0]
        queue = {"seq": seq, "project": project_id, "type": event_type, "target": target_webhook_id, "at": occurred_at}
        tx.execute(SQL_QUEUE_DELIVERIES, queue)
        self._emitted = True
        self.changes.emitted(project_id, event_type, event_id, fields)
        return event_id

    def after_commit(self) -> None:
        """Called by the writer after every commit: wake waiters if anything was emitted."""
        if self._emitted:
            self._emitted = False
            for waiter in self._waiters:
                waiter.set()

    def shutdown(self) -> None:
        """Answer every waiting long poll now (the server is stopping)."""
        self.stopping.set()
        for waiter in self._waiters:
            waiter.set()

    def waiter(self) -> asyncio.Event:
        """An event set after the next commit that emitted something; `forget()` it when done."""
        event = asyncio.Event()
        self._waiters.add(event)
        return event

    def forget(self, waiter: asyncio.Event) -> None:
        self._waiters.discard(waiter)

    async def head(self) -> str:
        """A cursor after the newest outgoing event: polling from it waits for the next one."""
        return encode_cursor(await self.db.fetch_value(SQL_HEAD))

    async def poll(
        self, project_id: str, *, cursor: str | None, types: list[str] | None, wait: float, limit: int
    ) -> Polled:
        """Events after `cursor` (from the oldest retained without one), waiting up to `wait`
        seconds for the first; the answer always carries a cursor to continue from."""
        after = decode_cursor(cursor, int)
        after_seq = after[0] if after else 0
        if after is not None and after_seq < (await self.db.fetch_value(SQL_PURGED_SEQ) or 0):
            raise CursorExpired(
                "Events after this cursor are past their retention and were deleted; start again without a cursor."
            )
        params = {
            "project": project_id,
            "after": after_seq,
            "types": None if types is None else msgspec.json.encode(types).decode(),
            "limit": limit,
        }
        waiter = self.waiter()
        deadline = asyncio.get_running_loop().time() + min(wait, MAX_WAIT_SECONDS)
        try:
            while True:
                rows = await self.db.fetch_all(SQL_POLL, params)
                remaining = deadline - asyncio.get_running_loop().time()
                if rows or remaining <= 0 or self.stopping.is_set():
                    break
                waiter.clear()
                try:
                    await asyncio.wait_for(waiter.wait(), remaining)
                except TimeoutError:
                    pass
        finally:
            self.forget(waiter)
        last = rows[-1]["seq"] if rows else after_seq
        return Polled([msgspec.Raw(row["payload"]) for row in rows], encode_cursor(last))

    async def purge(self, now: float, batch: int = PURGE_BATCH) -> int:
        """Delete outgoing events past retention (with their finished deliveries), a batch at a time."""
        cutoff = now - self.retention_seconds
        total = 0

        def job(tx: Tx) -> tuple[int, int]:
            deliveries = tx.execute(SQL_PURGE_DELIVERIES, {"cutoff": cutoff, "batch": batch}).rowcount
            needed = tx.execute(SQL_OLDEST_NEEDED).fetchone()[0] or 2**63 - 1
            params = {"cutoff": cutoff, "needed": needed, "batch": batch}
            seqs = [row[0] for row in tx.execute(SQL_PURGE_BATCH, params)]
            tx.executemany(SQL_DELETE_EVENT, [(seq,) for seq in seqs])
            if seqs:
                tx.execute(SQL_SET_PURGED_SEQ, {"seq": max(seqs)})
            return deliveries, len(seqs)

        while True:
            deliveries, events = await self.db.write(job)
            total += events
            if deliveries < batch and events < batch:
                return total
