"""Messages of a session (visitor, agent, assistant): post, list, and what a post sends out.

One write job stores the message, appends it to the visitor's stream (`message`; for an assistant
message also `done`), emits `message.created`, and brings a pending or snoozed session back to
open when the visitor writes. A closed session takes no messages (409 `session_closed`).

`typing()` shows the visitor that an agent or the assistant is composing (glimpze.streams: not
stored, expires by itself, rate-bounded); their message ends it.

CTA cards: before an assistant message's write job, the agent's CTA rules are matched against
the `ReplyDraft` (`CtaRules.prepare_cards`: slow work such as patterns runs there, off the writer);
a match returns a function that the write job calls with the `Reply` before the `done` event is
stored, filling `ctas`/`cta`, which then go out in the SSE `done` event and in the POST answer
(`PostedMessage.answer()`). A visitor's message may also be pushed to the operator
(`Inbox.message_posted`), in the same write job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import msgspec

from glimpze.chat.sessions import Name, Session, Sessions, Text, session_out
from glimpze.chat.streams import SessionStreams, TypingSignal
from glimpze.chat.transitions import session_closed
from glimpze.clock import Clock, iso
from glimpze.delivery.outbox import Outbox
from glimpze.ids import new_id
from glimpze.names import check_fields
from glimpze.store.database import from_row
from glimpze.store.pagination import Page, page

if TYPE_CHECKING:
    from glimpze.chat.ctas import CtaRules
    from glimpze.chat.inbox import Inbox
from glimpze.store.sql import Store, Tx

Role = Literal["visitor", "agent", "assistant"]

SQL_INSERT_MESSAGE = """
    INSERT INTO messages (id, session_id, seq, role, text, author, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)
"""
SQL_MESSAGE_COLUMNS = "id, session_id, seq, role, text, author, created_at"
SQL_LIST_MESSAGES = f"""
    SELECT {SQL_MESSAGE_COLUMNS} FROM messages WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?
"""


class MessageCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    role: Role
    text: Text
    author: Name | None = None

    def __post_init__(self) -> None:
        check_fields(self, "author")


class TypingCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`POST /v1/sessions/{id}/typing`: who is composing; `typing: false` stops the signal early."""

    role: Literal["agent", "assistant"] = "agent"
    author: Name | None = None
    typing: bool = True


class Message(msgspec.Struct, kw_only=True):
    id: str
    session_id: str
    seq: int  # the SSE id of its `message` event; `?after=` takes it
    role: Role
    text: str
    author: str | None
    created_at: str


class CtaCard(msgspec.Struct, kw_only=True):
    """A call-to-action card attached to an assistant reply (glimpze.ctas); `url` carries the
    signed context when its rule forwards one."""

    id: str
    label: str
    description: str | None
    url: str


class AssistantMessage(Message, kw_only=True):
    """The answer to posting an assistant message: the message and its cards."""

    ctas: list[CtaCard]  # at most three, highest priority first
    cta: CtaCard | None  # the first card, for clients that show one


class Done(msgspec.Struct):
    """The SSE `done` event: an assistant reply is complete."""

    message_id: str
    ctas: list[CtaCard] = msgspec.field(default_factory=list)
    cta: CtaCard | None = None


@dataclass(frozen=True, slots=True)
class ReplyDraft:
    """An assistant message about to be stored, for the CTA rules to prepare cards for."""

    project_id: str
    session_id: str
    text: str


@dataclass(slots=True)
class Reply:
    """An assistant message being stored, for the CTA rules to attach cards to."""

    project_id: str
    session: Session
    message: Message
    done: Done


@dataclass(slots=True)
class PostedMessage:
    message: Message
    done: Done | None = None  # assistant messages only

    def answer(self) -> Message:
        if self.done is None:
            return self.message
        fields = msgspec.structs.asdict(self.message)
        return AssistantMessage(**fields, ctas=self.done.ctas, cta=self.done.cta)


class PolledMessage(Message, kw_only=True):
    """A message in a poll: an assistant message comes with the cards its `done` event carried, so
    a widget that polls shows the same cards as one that streams; other messages have null."""

    ctas: list[CtaCard] | None = None
    cta: CtaCard | None = None


class MessagePoll(msgspec.Struct):
    """`GET /widget/v1/sessions/{id}/messages?after=`: the polling fallback of the stream."""

    data: list[PolledMessage]
    next_after: int  # pass as `after` next time
    status: str  # the session's status


ReplyFill = Callable[[Tx, Reply], None]  # runs inside the write job


class Messages:
    def __init__(
        self,
        db: Store,
        clock: Clock,
        *,
        outbox: Outbox,
        streams: SessionStreams,
        sessions: Sessions,
        ctas: CtaRules,
        inbox: Inbox,
    ) -> None:
        self.db = db
        self.clock = clock
        self.outbox = outbox
        self.streams = streams
        self.sessions = sessions
        self.ctas = ctas
        self.inbox = inbox

    async def post(self, project_id: str, session_id: str, data: MessageCreate) -> PostedMessage:
        fill: ReplyFill | None = None
        if data.role == "assistant":
            fill = await self.ctas.prepare_cards(ReplyDraft(project_id, session_id, data.text))
        now, message_id = self.clock.now(), new_id("msg_")

        def job(tx: Tx) -> PostedMessage:
            row = self.sessions.row(tx, project_id, session_id)
            if row["status"] == "closed":
                raise session_closed(session_id)
            seq = self.streams.next_seq(tx, session_id)
            message = Message(
                id=message_id,
                session_id=session_id,
                seq=seq,
                role=data.role,
                text=data.text,
                author=data.author,
                created_at=iso(now),
            )
            tx.execute(SQL_INSERT_MESSAGE, (message_id, session_id, seq, data.role, data.text, data.author, now))
            self.streams.record(tx, session_id, seq, "message", msgspec.json.encode(message), now)
            posted = PostedMessage(message)
            if data.role == "assistant":
                posted.done = Done(message_id)
                reply = Reply(project_id, session_out(row), message, posted.done)
                if fill is not None:
                    fill(tx, reply)
                self.streams.append(tx, session_id, "done", msgspec.json.encode(posted.done), now)
            fields = msgspec.structs.asdict(message)
            del fields["id"]
            self.outbox.emit(
                tx,
                project_id,
                "message.created",
                {"message_id": message_id, "agent_id": row["agent_id"], **fields},
                occurred_at=now,
            )
            if data.role == "visitor":
                self.sessions.reopen_for_visitor(tx, row, now)
            self.inbox.message_posted(tx, project_id, row, message)
            return posted

        posted = await self.db.write(job)
        if data.role != "visitor":
            self.streams.end_typing(session_id)
        return posted

    async def typing(self, project_id: str, session_id: str, data: TypingCreate) -> TypingSignal:
        """Raise or stop the session's typing signal on the visitor's stream."""
        session = await self.sessions.get(project_id, session_id)
        if session.status == "closed":
            raise session_closed(session_id)
        state = self.streams.set_typing(session_id, data.role, data.author, data.typing)
        return state.signal(self.clock.now())

    async def page(self, project_id: str, session_id: str, *, after: int, limit: int) -> Page[Message]:
        """Oldest first, from the message after stream number `after`."""
        await self.sessions.get(project_id, session_id)
        rows = await self.db.fetch_all(SQL_LIST_MESSAGES, (session_id, after, limit + 1))
        return page(rows, limit, lambda r: from_row(Message, r), lambda r: (r["seq"],))

    async def poll(self, project_id: str, visitor_id: str, session_id: str, *, after: int, limit: int) -> MessagePoll:
        session = await self.sessions.for_visitor(project_id, visitor_id, session_id)
        rows = await self.db.fetch_all(SQL_LIST_MESSAGES, (session_id, after, limit))
        messages = [from_row(Message, row) for row in rows]
        if not messages:
            return MessagePoll([], after, session.status)
        dones: dict[str, Done] = {}
        if any(message.role == "assistant" for message in messages):
            # A reply's `done` follows its message in the same write job, so it is numbered next.
            events = await self.streams.read_kind(session_id, "done", after, messages[-1].seq + 1)
            dones = {done.message_id: done for done in (DONE_DECODER.decode(event.data) for event in events)}
        data = [_polled(message, dones.get(message.id)) for message in messages]
        return MessagePoll(data, messages[-1].seq, session.status)


DONE_DECODER = msgspec.json.Decoder(Done)


def _polled(message: Message, done: Done | None) -> PolledMessage:
    polled = PolledMessage(**msgspec.structs.asdict(message))
    if message.role == "assistant":
        # A missing `done` is not expected (the reply's job always stores one): no cards then.
        polled.ctas, polled.cta = (done.ctas, done.cta) if done else ([], None)
    return polled
