"""The administrator's inbox: each conversation's last message and whether it holds a visitor
message not read yet, how far each was read, and pushing new visitor messages to the phone.

A conversation is unread while it has a visitor message after the last one the administrator saw
(opening its page in the dashboard reads it up to there). Pushing visitor messages is a project
setting (`push_visitor_messages`, off by default); when on, each visitor message queues a push in
its own transaction, through the push queue (push.py: quiet hours suppress it, and a chatty
visitor is held to one push per conversation every `[push] feed_interval_seconds`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from glimpze.accounts.settings import ProjectSettings, Setting
from glimpze.chat.messages import Message
from glimpze.clock import Clock, iso
from glimpze.push.pushes import BODY_MAX, TITLE_MAX, Push
from glimpze.store.sql import Row, Store, Tx

PUSH_VISITOR_MESSAGES = Setting("push_visitor_messages", bool)
PREVIEW_CHARS = 140

SQL_SUMMARIES = """
    SELECT s.id,
           (SELECT m.text FROM messages m WHERE m.session_id = s.id ORDER BY m.seq DESC LIMIT 1) AS last_text,
           (SELECT m.role FROM messages m WHERE m.session_id = s.id ORDER BY m.seq DESC LIMIT 1) AS last_role,
           (SELECT m.created_at FROM messages m WHERE m.session_id = s.id ORDER BY m.seq DESC LIMIT 1) AS last_at,
           EXISTS (SELECT 1 FROM messages m WHERE m.session_id = s.id AND m.role = 'visitor'
                   AND m.seq > coalesce((SELECT read_seq FROM conversation_reads WHERE session_id = s.id), 0))
               AS unread
    FROM sessions s WHERE s.id IN (SELECT value FROM json_each(?))
"""
SQL_UNREAD_COUNT = """
    SELECT count(*) FROM sessions s WHERE s.project_id = ? AND s.status != 'closed'
      AND EXISTS (SELECT 1 FROM messages m WHERE m.session_id = s.id AND m.role = 'visitor'
                  AND m.seq > coalesce((SELECT read_seq FROM conversation_reads WHERE session_id = s.id), 0))
"""
SQL_MARK_READ = """
    INSERT INTO conversation_reads (session_id, read_seq, read_at) VALUES (?, ?, ?)
    ON CONFLICT (session_id) DO UPDATE
    SET read_seq = max(conversation_reads.read_seq, excluded.read_seq), read_at = excluded.read_at
"""
SQL_READ_SEQ = "SELECT read_seq FROM conversation_reads WHERE session_id = ?"


@dataclass(frozen=True, slots=True)
class Summary:
    """What the conversations list shows of one: its last message and whether it is unread."""

    last_text: str | None
    last_role: str | None
    last_at: str | None
    unread: bool


class Inbox:
    """See the module docstring."""

    def __init__(self, db: Store, clock: Clock, settings: ProjectSettings, push: Push) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.push = push

    async def summaries(self, session_ids: Sequence[str]) -> dict[str, Summary]:
        rows = await self.db.fetch_all(SQL_SUMMARIES, (msgspec.json.encode(list(session_ids)).decode(),))
        return {
            row["id"]: Summary(
                last_text=_preview(row["last_text"]),
                last_role=row["last_role"],
                last_at=None if row["last_at"] is None else iso(row["last_at"]),
                unread=bool(row["unread"]),
            )
            for row in rows
        }

    async def unread_count(self, project_id: str) -> int:
        """Conversations (not closed) with a visitor message the administrator has not read."""
        return int(await self.db.fetch_value(SQL_UNREAD_COUNT, (project_id,)) or 0)

    async def mark_read(self, session_id: str, seq: int) -> None:
        """The administrator has seen the conversation up to message stream number `seq`."""
        if seq <= (await self.db.fetch_value(SQL_READ_SEQ, (session_id,)) or 0):
            return  # a page read again (a live redraw) writes nothing
        now = self.clock.now()
        await self.db.write(lambda tx: tx.execute(SQL_MARK_READ, (session_id, seq, now)))

    # Pushing visitor messages

    async def pushes_messages(self, project_id: str) -> bool:
        on = await self.settings.get(project_id, PUSH_VISITOR_MESSAGES)
        return bool(on)

    async def set_push_messages(self, project_id: str, on: bool) -> None:
        now = self.clock.now()
        await self.db.write(lambda tx: self.settings.put(tx, project_id, PUSH_VISITOR_MESSAGES, on, now))

    def message_posted(self, tx: Tx, project_id: str, session: Row, message: Message) -> None:
        """Inside a message's write job: a visitor's message is pushed when the project asks for it."""
        if message.role != "visitor" or not self.settings.read(tx, project_id, PUSH_VISITOR_MESSAGES):
            return
        now = self.clock.now()
        status = self.push.message_status(project_id, session["id"], now)
        if status is None:
            return
        who = session["visitor_name"] or session["visitor_email"] or "A visitor"
        self.push.queue(
            tx,
            project_id=project_id,
            feed_id=session["id"],
            event_id=message.id,
            approval=False,
            title=f"{who} wrote"[:TITLE_MAX],
            body=message.text[:BODY_MAX],
            status=status,
            now=now,
            open_path=f"conversations/{session['id']}",
        )


def _preview(text: str | None) -> str | None:
    if text is None:
        return None
    line = " ".join(text.split())
    return line if len(line) <= PREVIEW_CHARS else line[: PREVIEW_CHARS - 1] + "…"
