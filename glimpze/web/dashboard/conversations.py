"""Conversations: the inbox (each conversation's last message, unread ones marked), a conversation as
a chat with its notes and handoffs (and forms to reply as an agent, add a note, hand off, snooze,
change the status or close), and the leads list.

Both pages follow `/live`: a new conversation, a visitor's message or a status change redraws the
list; the open conversation redraws its messages as they come. Opening a conversation reads it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from litestar import get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from glimpze.chat.messages import MessageCreate
from glimpze.chat.records import HandoffCreate, NoteCreate
from glimpze.chat.sessions import SessionPatch
from glimpze.store.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor
from glimpze.web.common import AnyRequest, App
from glimpze.web.dashboard.web import Form, SignedIn, attempt, convert, form_of, page

STATUSES = ("open", "pending", "snoozed", "closed")
AUTHOR = "dashboard"
# The snooze picker: for how long (hours), or until a moment the person picks.
SNOOZE_CHOICES = [
    ("1", "1 hour"),
    ("4", "4 hours"),
    ("24", "1 day"),
    ("72", "3 days"),
    ("168", "1 week"),
    ("at", "Until…"),
]


def snooze_until(form: Form, now: float) -> str | None:
    """The picker's choice as an ISO time: hours from now, or the local date and time picked (with
    the browser's UTC offset in minutes, which the script fills in; UTC without it)."""
    choice = form["snooze_for"]
    if choice.isdigit():
        return (datetime.fromtimestamp(now, UTC) + timedelta(hours=int(choice))).isoformat()
    if choice != "at" or not form["snoozed_until"]:
        return form["snoozed_until"] or None
    try:
        local = datetime.fromisoformat(form["snoozed_until"])
        offset = int(form["utc_offset"] or 0)
    except ValueError:
        return form["snoozed_until"]  # the conversion names it as the bad value
    if local.tzinfo is None:
        local = local.replace(tzinfo=UTC) - timedelta(minutes=offset)
    return local.astimezone(UTC).isoformat()


@get("/conversations")
async def conversations_page(
    request: AnyRequest,
    glimpze: App,
    viewer: SignedIn,
    status: FromQuery[Literal["open", "pending", "snoozed", "closed"] | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Template:
    result = await glimpze.sessions.page(
        viewer.project_id, after=decode_cursor(cursor, int), limit=DEFAULT_LIMIT, status=status
    )
    summaries = await glimpze.inbox.summaries([s.id for s in result.data])
    return page(
        request,
        "conversations.html",
        title="Conversations",
        section="conversations",
        sessions=result.data,
        summaries=summaries,
        next_cursor=result.next_cursor,
        request_cursor=cursor,
        status_filter=status,
        statuses_options=[(s, s.capitalize()) for s in STATUSES],
    )


@get("/conversations/{session_id:str}")
async def conversation_page(
    request: AnyRequest, glimpze: App, viewer: SignedIn, session_id: FromPath[str], after: FromQuery[int] = 0
) -> Template:
    session = await glimpze.sessions.get(viewer.project_id, session_id)
    messages = await glimpze.messages.page(viewer.project_id, session_id, after=max(after, 0), limit=MAX_LIMIT)
    notes = await glimpze.session_records.notes(viewer.project_id, session_id, after=None, limit=MAX_LIMIT)
    handoffs = await glimpze.session_records.handoffs(viewer.project_id, session_id, after=None, limit=MAX_LIMIT)
    more_after = messages.data[-1].seq if messages.next_cursor else None
    if messages.data:
        await glimpze.inbox.mark_read(session_id, messages.data[-1].seq)
    return page(
        request,
        "conversation.html",
        title=session.visitor.name or session.visitor.email or session.visitor.id,
        section="conversations",
        session=session,
        messages=messages.data,
        more_after=more_after,
        notes=notes.data,
        handoffs=handoffs.data,
        statuses=[(s, s) for s in STATUSES if s != "closed"],
        snooze_choices=SNOOZE_CHOICES,
    )


@post("/conversations/{session_id:str}/notes")
async def add_note(request: AnyRequest, glimpze: App, viewer: SignedIn, session_id: FromPath[str]) -> Redirect:
    form = await form_of(request)

    async def action() -> str:
        note = convert({"text": form["text"], "author": AUTHOR}, NoteCreate)
        await glimpze.session_records.add_note(viewer.project_id, session_id, note)
        return "Added the note."

    return await attempt(request, action, then=f"/conversations/{session_id}")


@post("/conversations/{session_id:str}/reply")
async def reply(request: AnyRequest, glimpze: App, viewer: SignedIn, session_id: FromPath[str]) -> Redirect:
    form = await form_of(request)

    async def action() -> str:
        message = convert({"role": "agent", "text": form["text"], "author": form["author"] or None}, MessageCreate)
        await glimpze.messages.post(viewer.project_id, session_id, message)
        return "Sent the reply."

    return await attempt(request, action, then=f"/conversations/{session_id}")


@post("/conversations/{session_id:str}/handoff")
async def hand_off(request: AnyRequest, glimpze: App, viewer: SignedIn, session_id: FromPath[str]) -> Redirect:
    form = await form_of(request)

    async def action() -> str:
        values = {"to_team": form["to_team"], "reason": form["reason"], "to_assignee": form["to_assignee"] or None}
        await glimpze.session_records.hand_off(viewer.project_id, session_id, convert(values, HandoffCreate))
        return "Handed the conversation off."

    return await attempt(request, action, then=f"/conversations/{session_id}")


@post("/conversations/{session_id:str}/status")
async def change_status(request: AnyRequest, glimpze: App, viewer: SignedIn, session_id: FromPath[str]) -> Redirect:
    form = await form_of(request)

    async def action() -> str:
        values: dict[str, str | None] = {"status": form["status"]}
        if form["status"] == "snoozed":
            values["snoozed_until"] = snooze_until(form, glimpze.clock.now())
        session = await glimpze.sessions.update(viewer.project_id, session_id, convert(values, SessionPatch))
        return f"The conversation is {session.status} now."

    return await attempt(request, action, then=f"/conversations/{session_id}")


@post("/conversations/{session_id:str}/close")
async def close(request: AnyRequest, glimpze: App, viewer: SignedIn, session_id: FromPath[str]) -> Redirect:
    form = await form_of(request)

    async def action() -> str:
        await glimpze.sessions.close(viewer.project_id, session_id, form["resolution"] or None)
        return "Closed the conversation."

    return await attempt(request, action, then=f"/conversations/{session_id}")


@get("/leads")
async def leads_page(
    request: AnyRequest, glimpze: App, viewer: SignedIn, cursor: FromQuery[str | None] = None
) -> Template:
    result = await glimpze.leads.page(viewer.project_id, after=decode_cursor(cursor, float, int), limit=DEFAULT_LIMIT)
    custom = sorted({key for lead in result.data for key in lead.fields if key not in ("name", "email", "phone")})
    return page(
        request,
        "leads.html",
        title="Leads",
        section="leads",
        leads=result.data,
        custom_fields=custom[:6],
        next_cursor=result.next_cursor,
        request_cursor=cursor,
    )


ROUTES = [conversations_page, conversation_page, add_note, reply, hand_off, change_status, close, leads_page]
