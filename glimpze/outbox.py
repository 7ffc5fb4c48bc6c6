"""Outgoing events: written in the same transaction as the change that causes them (outbox).

`Outbox.emit(conn, …)` is called inside a write job. It stores the event's exact JSON payload
(flat: `id`, `event`, `occurred_at`, then the event's fields); a trigger (migrations.WEBHOOKS)
queues one delivery per active webhook of the project that subscribes to the type. Once the
transaction commits, waiting long polls and the dispatcher are woken (`Writer.after_commit`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import msgspec

from glimpze.clock import iso
from glimpze.ids import new_id

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
    INSERT INTO out_events (id, project_id, type, occurred_at, payload) VALUES (?, ?, ?, ?, ?)
"""
_encode = msgspec.json.Encoder().encode


class Outbox:
    """Emits outgoing events and wakes whoever waits for them after the commit."""

    def __init__(self) -> None:
        self._emitted = False
        self._waiters: set[asyncio.Event] = set()

    def emit(
        self,
        conn: sqlite3.Connection,
        project_id: str,
        event_type: str,
        fields: dict[str, Any],
        *,
        occurred_at: float,
        event_id: str | None = None,
    ) -> str:
        """Store one outgoing event and queue its deliveries; call inside a write job."""
        assert event_type in EVENT_TYPES, event_type
        event_id = event_id or new_id("evt_")
        payload = _encode({"id": event_id, "event": event_type, "occurred_at": iso(occurred_at), **fields})
        conn.execute(SQL_INSERT_EVENT, (event_id, project_id, event_type, occurred_at, payload))
        self._emitted = True
        return event_id

    def after_commit(self) -> None:
        """Called by the writer after every commit: wake waiters if anything was emitted."""
        if self._emitted:
            self._emitted = False
            for waiter in self._waiters:
                waiter.set()

    def waiter(self) -> asyncio.Event:
        """An event set after the next commit that emitted something; `forget()` it when done."""
        event = asyncio.Event()
        self._waiters.add(event)
        return event

    def forget(self, waiter: asyncio.Event) -> None:
        self._waiters.discard(waiter)
