"""`/widget/v1`: the visitor API a website's widget calls with a widget token (`gzt_…`).

Open or resume the visitor's session (with its agent's profile for the widget's header: team name,
avatar, reply time), post visitor messages, poll for messages, and follow the session as
Server-Sent Events (`message`, `done`, `session`; the SSE id is the session's stream number, so
`Last-Event-ID` resumes exactly; `typing`, unnumbered, while an agent or the assistant composes);
sign a card offered in the session again, for a click long after its reply. The token comes as
`Authorization: Bearer …`, or as `?token=` on the stream only (EventSource cannot send headers;
access logs mask it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import msgspec
from litestar import Response, Router, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from glimpze.chat.agents import AgentProfile
from glimpze.chat.messages import CtaCard, Message, MessageCreate, MessagePoll
from glimpze.chat.sessions import Language, Session, Text, Url, VisitorSession, visitor_view
from glimpze.chat.streams import MAX_SEQ, StreamEvent
from glimpze.chat.tokens import ChatVisitor
from glimpze.errors import ValidationFailed
from glimpze.services import Services
from glimpze.store.pagination import DEFAULT_LIMIT, check_limit
from glimpze.validation import Decoder
from glimpze.web.chat_cors import ChatCors
from glimpze.web.common import AnyRequest, App, bearer, create_once, created, read_json

TOKEN_IN_QUERY = "token_in_query"  # route opt: this route also takes ?token=

ChatCaller = NamedDependency[ChatVisitor]


class SessionOpen(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    page_url: Url | None = None
    language: Language | None = None


class VisitorMessage(msgspec.Struct, forbid_unknown_fields=True):
    text: Text


class ChatSession(VisitorSession, kw_only=True):
    """The visitor's session with what the widget's header shows of its agent (null: no agent)."""

    agent: AgentProfile | None


SESSION_OPEN: Decoder[SessionOpen] = Decoder(SessionOpen)
VISITOR_MESSAGE: Decoder[VisitorMessage] = Decoder(VisitorMessage)


async def chat_visitor(request: AnyRequest, glimpze: App) -> ChatVisitor:
    """Dependency for /widget/v1: the visitor behind the widget token."""
    token = bearer(request)
    if token is None and request.route_handler.opt.get(TOKEN_IN_QUERY):
        token = request.query_params.get("token")
    return await glimpze.chat_tokens.authenticate(token, request.headers.get("origin"))


@post(
    "/sessions",
    opt={"body": SessionOpen, "body_optional": True},
    summary="Open the visitor's session, or resume the one still open (201 new, 200 resumed)",
    responses={200: ResponseSpec(data_container=ChatSession, description="The visitor's open session, resumed")},
)
async def open_session(request: AnyRequest, glimpze: App, visitor: ChatCaller) -> Response[ChatSession]:
    data = await read_json(request, SESSION_OPEN, empty=SessionOpen())
    created, session = await glimpze.sessions.open_for_visitor(
        visitor.project_id,
        visitor.visitor,
        agent_id=visitor.agent_id,
        context=visitor.context,
        page_url=data.page_url,
        language=data.language,
    )
    return Response(await _with_agent(glimpze, visitor, session), status_code=201 if created else 200)


@get("/sessions/{session_id:str}", summary="The visitor's session")
async def get_session(session_id: FromPath[str], glimpze: App, visitor: ChatCaller) -> ChatSession:
    session = await glimpze.sessions.for_visitor(visitor.project_id, visitor.visitor.id, session_id)
    return await _with_agent(glimpze, visitor, session)


@post(
    "/sessions/{session_id:str}/messages",
    opt={"body": VisitorMessage},
    responses=created(Message),
    summary="Post a visitor message",
)
async def post_message(
    session_id: FromPath[str], request: AnyRequest, glimpze: App, visitor: ChatCaller
) -> Response[bytes]:
    data = await read_json(request, VISITOR_MESSAGE)
    await glimpze.sessions.for_visitor(visitor.project_id, visitor.visitor.id, session_id)
    message = MessageCreate(role="visitor", text=data.text, author=visitor.visitor.name)

    async def create() -> Message:
        return (await glimpze.messages.post(visitor.project_id, session_id, message)).answer()

    return await create_once(request, glimpze, f"visitor:{visitor.project_id}:{visitor.visitor.id}", create)


@get("/sessions/{session_id:str}/messages", summary="Messages after stream number `after` (the polling fallback)")
async def poll_messages(
    session_id: FromPath[str],
    glimpze: App,
    visitor: ChatCaller,
    after: Annotated[int, QueryParameter(ge=0, le=MAX_SEQ)] = 0,
    limit: FromQuery[int] = DEFAULT_LIMIT,
) -> MessagePoll:
    return await glimpze.messages.poll(
        visitor.project_id, visitor.visitor.id, session_id, after=after, limit=check_limit(limit)
    )


@get(
    "/sessions/{session_id:str}/stream",
    opt={TOKEN_IN_QUERY: True},
    media_type="text/event-stream",
    summary="Follow the session as Server-Sent Events: message, done, session, typing",
    description="The SSE id is the session's stream number: reconnect with `Last-Event-ID` (or "
    "`?last_event_id=`) to resume exactly; without either the stream starts at the session's first "
    "event. `typing` (`{typing, role, author, expires_in}`) has no id and is not replayed, except a "
    "signal still in force when the stream opens. The stream ends when the token expires or the "
    "server shuts down.",
)
async def stream(
    session_id: FromPath[str],
    request: AnyRequest,
    glimpze: App,
    visitor: ChatCaller,
    token: FromQuery[str | None] = None,
    last_event_id: Annotated[int | None, QueryParameter(ge=0, le=MAX_SEQ)] = None,
    last_event_id_header: Annotated[str | None, HeaderParameter(name="Last-Event-ID")] = None,
) -> ServerSentEvent:
    await glimpze.sessions.for_visitor(visitor.project_id, visitor.visitor.id, session_id)
    # A browser reconnecting on its own sends the header, newer than the query the page built.
    after = _event_id(last_event_id_header) if last_event_id_header is not None else last_event_id or 0
    events = glimpze.streams.follow(session_id, after, until=visitor.expires_at, stopping=glimpze.stopping)
    return ServerSentEvent(_messages(events))


@get(
    "/ctas/{cta_id:str}/url",
    summary="A card offered in the visitor's session, its URL signed now",
    description="The widget asks for this when a card is clicked more than 240 s after it was signed, so "
    "the destination's 300 s window never refuses a visitor. 404 when no reply in the session offered the "
    "card, or its rule was deleted or deactivated since.",
)
async def fresh_card_url(
    cta_id: FromPath[str],
    glimpze: App,
    visitor: ChatCaller,
    session_id: Annotated[str, QueryParameter(name="session", description="the session the card was offered in")],
) -> CtaCard:
    session = await glimpze.sessions.for_visitor(visitor.project_id, visitor.visitor.id, session_id)
    return await glimpze.ctas.fresh_card(visitor.project_id, session, cta_id)


async def _with_agent(glimpze: Services, visitor: ChatVisitor, session: Session) -> ChatSession:
    view = msgspec.structs.asdict(visitor_view(session))
    return ChatSession(**view, agent=await glimpze.agents.profile(visitor.project_id, session.agent_id))


def _event_id(header: str) -> int:
    if not header.strip().isdigit() or int(header) > MAX_SEQ:
        raise ValidationFailed.at("header.Last-Event-ID", "expected the id of an event of this stream (a number)")
    return int(header)


async def _messages(events: AsyncIterator[StreamEvent | None]) -> AsyncIterator[ServerSentEventMessage]:
    async for event in events:
        if event is None:
            yield ServerSentEventMessage(data=None, comment="ping")
        else:
            # `typing` has no number: sent without an id, it leaves the browser's Last-Event-ID alone.
            yield ServerSentEventMessage(data=event.data.decode(), event=event.event, id=event.seq or None)


router = Router(
    "/widget/v1",
    route_handlers=[open_session, get_session, post_message, poll_messages, stream, fresh_card_url],
    dependencies={"visitor": Provide(chat_visitor)},
    middleware=[ChatCors],
    security=[{"widgetToken": []}],
    tags=["widget"],
)
