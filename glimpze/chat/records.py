"""The append-only records of a session: internal notes, and handoffs between teams.

A note is accepted even on a closed session and emits nothing. A handoff moves the session to
`to_team` (and `to_assignee`, or nobody) and emits `session.escalated` with the handoff and the
`changes` it made; a closed session takes no handoff (409 `session_closed`).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from glimpze.chat.sessions import Name, Sessions, Text
from glimpze.chat.transitions import session_closed
from glimpze.clock import Clock, iso
from glimpze.ids import new_id
from glimpze.names import check_fields
from glimpze.store.database import from_row
from glimpze.store.pagination import Page, page
from glimpze.store.sql import Store, Tx

SQL_INSERT_NOTE = "INSERT INTO session_notes (id, session_id, author, text, created_at) VALUES (?, ?, ?, ?, ?)"
SQL_LIST_NOTES = """
    SELECT seq, id, session_id, author, text, created_at FROM session_notes
    WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?
"""
SQL_INSERT_HANDOFF = """
    INSERT INTO session_handoffs (id, session_id, from_team, from_assignee, to_team, to_assignee, reason, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
SQL_LIST_HANDOFFS = """
    SELECT seq, id, session_id, from_team, from_assignee, to_team, to_assignee, reason, created_at
    FROM session_handoffs WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?
"""

Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class NoteCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    text: Text
    author: Name | None = None

    def __post_init__(self) -> None:
        check_fields(self, "author")


class Note(msgspec.Struct, kw_only=True):
    id: str
    session_id: str
    author: str | None
    text: str
    created_at: str


class HandoffCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    to_team: Name
    reason: Reason
    to_assignee: Name | None = None

    def __post_init__(self) -> None:
        check_fields(self, "to_team", "to_assignee")


class Handoff(msgspec.Struct, kw_only=True):
    id: str
    session_id: str
    from_team: str | None
    from_assignee: str | None
    to_team: str
    to_assignee: str | None
    reason: str
    created_at: str


class SessionRecords:
    def __init__(self, db: Store, clock: Clock, sessions: Sessions) -> None:
        self.db = db
        self.clock = clock
        self.sessions = sessions

    async def add_note(self, project_id: str, session_id: str, data: NoteCreate) -> Note:
        now = self.clock.now()
        note = Note(id=new_id("note_"), session_id=session_id, author=data.author, text=data.text, created_at=iso(now))

        def job(tx: Tx) -> Note:
            self.sessions.row(tx, project_id, session_id)
            tx.execute(SQL_INSERT_NOTE, (note.id, session_id, note.author, note.text, now))
            return note

        return await self.db.write(job)

    async def notes(self, project_id: str, session_id: str, *, after: tuple[int] | None, limit: int) -> Page[Note]:
        """Oldest first."""
        await self.sessions.get(project_id, session_id)
        rows = await self.db.fetch_all(SQL_LIST_NOTES, (session_id, after[0] if after else 0, limit + 1))
        return page(rows, limit, lambda r: from_row(Note, r), lambda r: (r["seq"],))

    async def hand_off(self, project_id: str, session_id: str, data: HandoffCreate) -> Handoff:
        handoff_id, now = new_id("hnd_"), self.clock.now()

        def job(tx: Tx) -> Handoff:
            row = self.sessions.row(tx, project_id, session_id)
            if row["status"] == "closed":
                raise session_closed(session_id)
            handoff = Handoff(
                id=handoff_id,
                session_id=session_id,
                from_team=row["team"],
                from_assignee=row["assignee"],
                to_team=data.to_team,
                to_assignee=data.to_assignee,
                reason=data.reason,
                created_at=iso(now),
            )
            params = (handoff_id, session_id, row["team"], row["assignee"], data.to_team, data.to_assignee)
            tx.execute(SQL_INSERT_HANDOFF, (*params, data.reason, now))
            values = {"team": data.to_team, "assignee": data.to_assignee}
            session, changes = self.sessions.apply(tx, row, values, now)
            self.sessions.emit(tx, project_id, "session.escalated", session, now, handoff=handoff, changes=changes)
            return handoff

        return await self.db.write(job)

    async def handoffs(
        self, project_id: str, session_id: str, *, after: tuple[int] | None, limit: int
    ) -> Page[Handoff]:
        """Oldest first."""
        await self.sessions.get(project_id, session_id)
        rows = await self.db.fetch_all(SQL_LIST_HANDOFFS, (session_id, after[0] if after else 0, limit + 1))
        return page(rows, limit, lambda r: from_row(Handoff, r), lambda r: (r["seq"],))
