"""`/v1/sessions`: sessions, their messages, notes and handoffs, and closing them."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Response, Router, get, patch, post
from litestar.params import FromPath, FromQuery

from glimpze.chat.messages import AssistantMessage, Message, MessageCreate, TypingCreate
from glimpze.chat.records import Handoff, HandoffCreate, Note, NoteCreate
from glimpze.chat.sessions import Session, SessionCreate, SessionPatch
from glimpze.chat.streams import TYPING_REFRESH_SECONDS, TYPING_SECONDS, TypingSignal
from glimpze.chat.transitions import Status
from glimpze.store.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor
from glimpze.validation import Decoder
from glimpze.web.common import AnyRequest, App, Caller, create_once, created, read_json


class SessionClose(msgspec.Struct, forbid_unknown_fields=True):
    resolution: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)] | None = None


SESSION_CREATE: Decoder[SessionCreate] = Decoder(SessionCreate)
SESSION_PATCH: Decoder[SessionPatch] = Decoder(SessionPatch)
SESSION_CLOSE: Decoder[SessionClose] = Decoder(SessionClose)
MESSAGE_CREATE: Decoder[MessageCreate] = Decoder(MessageCreate)
TYPING_CREATE: Decoder[TypingCreate] = Decoder(TypingCreate)
NOTE_CREATE: Decoder[NoteCreate] = Decoder(NoteCreate)
HANDOFF_CREATE: Decoder[HandoffCreate] = Decoder(HandoffCreate)


@post(
    "/",
    opt={"body": SessionCreate},
    responses=created(Session),
    summary="Create a session (Idempotency-Key accepted)",
)
async def create_session(request: AnyRequest, glimpze: App, principal: Caller) -> Response[bytes]:
    data = await read_json(request, SESSION_CREATE)
    return await create_once(
        request, glimpze, principal.key_id, lambda: glimpze.sessions.create(principal.project_id, data)
    )


@get("/", summary="List sessions, newest first, filtered by status, label, team, assignee or agent")
async def list_sessions(
    glimpze: App,
    principal: Caller,
    limit: FromQuery[int] = DEFAULT_LIMIT,
    cursor: FromQuery[str | None] = None,
    status: FromQuery[Status | None] = None,
    label: FromQuery[str | None] = None,
    team: FromQuery[str | None] = None,
    assignee: FromQuery[str | None] = None,
    agent_id: FromQuery[str | None] = None,
) -> Page[Session]:
    return await glimpze.sessions.page(
        principal.project_id,
        after=decode_cursor(cursor, int),
        limit=check_limit(limit),
        status=status,
        label=label,
        team=team,
        assignee=assignee,
        agent_id=agent_id,
    )


@get("/{session_id:str}", summary="Read a session")
async def get_session(session_id: FromPath[str], glimpze: App, principal: Caller) -> Session:
    return await glimpze.sessions.get(principal.project_id, session_id)


@patch(
    "/{session_id:str}",
    opt={"body": SessionPatch},
    summary="Change status, snooze, priority, team, assignee or labels (a closed session: only a reopen)",
)
async def update_session(session_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller) -> Session:
    data = await read_json(request, SESSION_PATCH)
    return await glimpze.sessions.update(principal.project_id, session_id, data)


@post(
    "/{session_id:str}/close",
    status_code=200,
    opt={"body": SessionClose, "body_optional": True},
    summary="Close (resolve) a session",
)
async def close_session(session_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller) -> Session:
    data = await read_json(request, SESSION_CLOSE, empty=SessionClose())
    return await glimpze.sessions.close(principal.project_id, session_id, data.resolution)


@post(
    "/{session_id:str}/messages",
    opt={"body": MessageCreate},
    responses=created(Message | AssistantMessage),
    summary="Post a message; an assistant message's answer also carries its CTA cards",
)
async def post_message(
    session_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller
) -> Response[bytes]:
    data = await read_json(request, MESSAGE_CREATE)

    async def create() -> Message:
        return (await glimpze.messages.post(principal.project_id, session_id, data)).answer()

    return await create_once(request, glimpze, principal.key_id, create)


@get("/{session_id:str}/messages", summary="List a session's messages, oldest first")
async def list_messages(
    session_id: FromPath[str],
    glimpze: App,
    principal: Caller,
    limit: FromQuery[int] = DEFAULT_LIMIT,
    cursor: FromQuery[str | None] = None,
) -> Page[Message]:
    after = decode_cursor(cursor, int)
    return await glimpze.messages.page(
        principal.project_id, session_id, after=after[0] if after else 0, limit=check_limit(limit)
    )


@post(
    "/{session_id:str}/typing",
    status_code=200,
    opt={"body": TypingCreate, "body_optional": True},
    summary="Show the visitor that an agent or the assistant is typing (an SSE `typing` event; not stored)",
    description=f'Call it while a reply is composed (every keystroke is fine): the widget shows "typing…" for '
    f"{TYPING_SECONDS:g} s after the latest event; at most one event per {TYPING_REFRESH_SECONDS:g} s per session. "
    "`typing: false` stops it; the message ends it. Body optional: `role` (agent|assistant), `author`, `typing`.",
)
async def typing(session_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller) -> TypingSignal:
    """`POST /v1/sessions/{id}/typing`: tell the visitor someone is composing a reply.

    For the dashboard's reply box or an assistant's backend. Call it while a reply is being written
    (on each keystroke is fine); the visitor's widget gets an SSE `typing` event and shows "typing…"
    (or "Sam is typing…" with `author`) until `TYPING_SECONDS` (6 s) after the latest event.

    - Rate-bounded: a session raises at most one event per `TYPING_REFRESH_SECONDS` (2 s); calls
      in between send nothing and answer the standing signal. Call at least every 4 s to keep it up.
    - Body, all optional: `{"role": "agent" | "assistant" (default agent), "author": "Sam",
      "typing": false}`; `typing: false` stops the signal at once (the box was emptied).
    - Posting the message (`POST …/messages`) ends the signal too; nothing is stored.
    - 200 `{"typing": bool, "role", "author", "expires_in": seconds left}`; 404 for an unknown
      session, 409 `session_closed` for a closed one.
    """
    data = await read_json(request, TYPING_CREATE, empty=TypingCreate())
    return await glimpze.messages.typing(principal.project_id, session_id, data)


@post(
    "/{session_id:str}/notes",
    opt={"body": NoteCreate},
    responses=created(Note),
    summary="Add an internal note (also on closed sessions)",
)
async def add_note(session_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller) -> Response[bytes]:
    data = await read_json(request, NOTE_CREATE)
    records = glimpze.session_records
    return await create_once(
        request, glimpze, principal.key_id, lambda: records.add_note(principal.project_id, session_id, data)
    )


@get("/{session_id:str}/notes", summary="List a session's notes, oldest first")
async def list_notes(
    session_id: FromPath[str],
    glimpze: App,
    principal: Caller,
    limit: FromQuery[int] = DEFAULT_LIMIT,
    cursor: FromQuery[str | None] = None,
) -> Page[Note]:
    return await glimpze.session_records.notes(
        principal.project_id, session_id, after=decode_cursor(cursor, int), limit=check_limit(limit)
    )


@post(
    "/{session_id:str}/handoffs",
    opt={"body": HandoffCreate},
    responses=created(Handoff),
    summary="Hand the session to another team (emits session.escalated)",
)
async def hand_off(session_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller) -> Response[bytes]:
    data = await read_json(request, HANDOFF_CREATE)
    records = glimpze.session_records
    return await create_once(
        request, glimpze, principal.key_id, lambda: records.hand_off(principal.project_id, session_id, data)
    )


@get("/{session_id:str}/handoffs", summary="List a session's handoffs, oldest first")
async def list_handoffs(
    session_id: FromPath[str],
    glimpze: App,
    principal: Caller,
    limit: FromQuery[int] = DEFAULT_LIMIT,
    cursor: FromQuery[str | None] = None,
) -> Page[Handoff]:
    return await glimpze.session_records.handoffs(
        principal.project_id, session_id, after=decode_cursor(cursor, int), limit=check_limit(limit)
    )


router = Router(
    "/sessions",
    route_handlers=[
        create_session,
        list_sessions,
        get_session,
        update_session,
        close_session,
        post_message,
        list_messages,
        typing,
        add_note,
        list_notes,
        hand_off,
        list_handoffs,
    ],
    tags=["sessions"],
)
