"""Outgoing events: written in the same transaction as the change that causes them (outbox),
read back by long polling (`GET /v1/events`) and purged after `event_retention_days`.

`Outbox.emit(conn, …)` is called inside a write job. It stores the event's exact JSON payload
(flat: `id`, `event`, `occurred_at`, then the event's fields); a trigger (migrations.WEBHOOKS)
queues one delivery per active webhook of the project that subscribes to the type. Once the
transaction commits, waiting long polls and the dispatcher are woken (`Writer.after_commit`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import msgspec

from glimpze.clock import Clock, iso
from glimpze.errors import Gone
from glimpze.ids import new_id
from glimpze.store.database import Database
from glimpze.store.pagination import decode_cursor, encode_cursor

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

    def __init__(self, db: Database, clock: Clock, retention_days: int = 7) -> None:
        self.db = db
        self.clock = clock
        self.retention_seconds = retention_days * 86400
        self.stopping = asyncio.Event()
        self._emitted = False
        self._waiters: set[asyncio.Event] = set()
        # Told of every emitted event inside its transaction: (project, type, event id, fields).
        self.on_emit: list[Callable[[str, str, str, dict[str, Any]], None]] = []

    def emit(
        self,
        conn: sqlite3.Connection,
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
        conn.execute(SQL_INSERT_EVENT, (event_id, project_id, event_type, occurred_at, payload, target_webhook_id))
        self._emitted = True
        for hook in self.on_emit:
            hook(project_id, event_type, event_id, fields)
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
            raise Gone(
                "Events after this cursor are past their retention and were deleted; start again without a cursor.",
                code="cursor_expired",
                title="Cursor expired",
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

        def job(conn: sqlite3.Connection) -> tuple[int, int]:
            deliveries = conn.execute(SQL_PURGE_DELIVERIES, {"cutoff": cutoff, "batch": batch}).rowcount
            needed = conn.execute(SQL_OLDEST_NEEDED).fetchone()[0] or 2**63 - 1
            params = {"cutoff": cutoff, "needed": needed, "batch": batch}
            seqs = [row[0] for row in conn.execute(SQL_PURGE_BATCH, params)]
            conn.executemany(SQL_DELETE_EVENT, [(seq,) for seq in seqs])
            if seqs:
                conn.execute(SQL_SET_PURGED_SEQ, {"seq": max(seqs)})
            return deliveries, len(seqs)

        while True:
            deliveries, events = await self.db.write(job)
            total += events
            if deliveries < batch and events < batch:
                return total
