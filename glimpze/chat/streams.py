"""A session's live stream: the numbered `message`/`done`/`session` events a visitor's SSE replays,
and the unnumbered `typing` signal.

Write jobs append events with `append(tx, …)`; each session numbers its own events 1, 2, 3 …
(`sessions.stream_seq`), and that number is the SSE `id`, so `Last-Event-ID` resumes exactly.
Readers wait on an `asyncio.Event` per stream; the writer's `after_commit` sets the events of the
sessions the committed batch touched, so a posted message reaches its streams right after the
commit, without polling. A job that was rolled back may cause a spurious wake-up: the stream then
reads nothing new and waits again.

`typing` (an agent or the assistant is composing) is not stored: the state lives here, in memory,
one per session, and expires by itself after `TYPING_SECONDS`; setting it wakes the session's
streams, which send it without an SSE id (so `Last-Event-ID` is untouched) and send it again to a
stream that connects while it lasts. To bound the traffic, a session raises at most one `typing`
event per `TYPING_REFRESH_SECONDS` (a caller may signal on every keystroke): a signal within that
window is answered with the standing one. A stop (or the agent's message) ends it at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import NamedTuple

import msgspec

from glimpze.clock import Clock
from glimpze.store.dialect import Sql
from glimpze.store.sql import Store, Tx, one

HEARTBEAT_SECONDS = 15.0  # an SSE comment this often keeps proxies from closing an idle stream
READ_BATCH = 100
MAX_SEQ = 2**63 - 1  # SQLite's largest INTEGER: a stream number a client sends is at most this
TYPING_SECONDS = 6.0  # a signal shows "typing…" this long unless renewed
TYPING_REFRESH_SECONDS = 2.0  # at most one `typing` event per session this often
TYPING_PRUNE_AT = 1000  # sessions with a typing state before expired ones are dropped

SQL_NEXT_SEQ = "UPDATE sessions SET stream_seq = stream_seq + 1 WHERE id = ? RETURNING stream_seq"
SQL_INSERT = """
    INSERT INTO session_stream (session_id, seq, event, data, created_at)
    VALUES (?, ?, ?, /*sqlite:*/?/*:sqlite*//*pg:convert_to(?, 'UTF8')*/, ?)
"""
SQL_READ = "SELECT seq, event, data FROM session_stream WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?"
SQL_READ_KIND = """
    SELECT seq, event, data FROM session_stream
    WHERE session_id = ? AND event = ? AND seq > ? AND seq <= ? ORDER BY seq
"""
# Whether one of the session's `done` events offered the card (its `ctas` hold the rule's id).
SQL_CARD_OFFERED = Sql(
    sqlite="""
    SELECT 1 FROM session_stream s, json_each(CAST(s.data AS TEXT), '$.ctas') card
    WHERE s.session_id = ? AND s.event = 'done' AND json_extract(card.value, '$.id') = ? LIMIT 1
""",
    postgres="""
    SELECT 1 FROM session_stream s, jsonb_array_elements(convert_from(s.data, 'UTF8')::jsonb -> 'ctas') card
    WHERE s.session_id = ? AND s.event = 'done' AND card ->> 'id' = ? LIMIT 1
""",
)


class StreamEvent(NamedTuple):
    seq: int  # 0: not numbered (typing)
    event: str  # message | done | session | typing
    data: bytes  # JSON


class TypingSignal(msgspec.Struct, kw_only=True):
    """The SSE `typing` event's data: who is composing, for how many more seconds (0: stopped)."""

    typing: bool
    role: str  # agent | assistant
    author: str | None
    expires_in: float


@dataclass(frozen=True, slots=True)
class Typing:
    """A session's typing state: raised at `at`, shown until `until` (`until == at`: a stop)."""

    role: str
    author: str | None
    at: float
    until: float

    def signal(self, now: float) -> TypingSignal:
        left = round(max(self.until - now, 0.0), 3)
        return TypingSignal(typing=left > 0, role=self.role, author=self.author, expires_in=left)

    def event(self, now: float) -> StreamEvent:
        return StreamEvent(0, "typing", msgspec.json.encode(self.signal(now)))


class SessionStreams:
    """Appends stream events inside write jobs and wakes the streams that wait for them."""

    def __init__(self, db: Store, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._touched: set[str] = set()
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._typing: dict[str, Typing] = {}

    def next_seq(self, tx: Tx, session_id: str) -> int:
        """Reserve the session's next stream number (inside a write job)."""
        self._touched.add(session_id)
        return int(one(tx.execute(SQL_NEXT_SEQ, (session_id,)))[0])

    def record(self, tx: Tx, session_id: str, seq: int, event: str, data: bytes, now: float) -> None:
        """Store an event under a number from `next_seq`."""
        tx.execute(SQL_INSERT, (session_id, seq, event, data, now))

    def append(self, tx: Tx, session_id: str, event: str, data: bytes, now: float) -> int:
        seq = self.next_seq(tx, session_id)
        self.record(tx, session_id, seq, event, data, now)
        return seq

    def after_commit(self) -> None:
        """Called by the writer after every commit: wake the streams of the sessions it touched."""
        if not self._touched:
            return
        touched, self._touched = self._touched, set()
        for session_id in touched:
            self._wake(session_id)

    def wake_all(self) -> None:
        """Wake every stream (shutdown: they see `stopping` and end)."""
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.set()

    def set_typing(self, session_id: str, role: str, author: str | None, active: bool) -> Typing:
        """Raise (or stop) the session's typing signal; within the refresh window a repeated signal
        changes nothing and the standing state is returned."""
        now, current = self.clock.now(), self._typing.get(session_id)
        shown = current is not None and current.until > now
        if active and shown and current is not None and now - current.at < TYPING_REFRESH_SECONDS:
            return current
        if not active and not shown:
            return Typing(role, author, now, now)
        state = Typing(role, author, now, now + TYPING_SECONDS if active else now)
        if len(self._typing) >= TYPING_PRUNE_AT:
            self._typing = {sid: t for sid, t in self._typing.items() if t.until > now}
        self._typing[session_id] = state
        self._wake(session_id)
        return state

    def end_typing(self, session_id: str) -> None:
        """The composer's message arrived: the signal ends with it (the message event says so)."""
        self._typing.pop(session_id, None)

    def _wake(self, session_id: str) -> None:
        for waiter in self._waiters.get(session_id, ()):
            waiter.set()

    async def read(self, session_id: str, after: int, limit: int = READ_BATCH) -> list[StreamEvent]:
        rows = await self.db.fetch_all(SQL_READ, (session_id, after, limit))
        return [StreamEvent(row["seq"], row["event"], row["data"]) for row in rows]

    async def read_kind(self, session_id: str, event: str, after: int, upto: int) -> list[StreamEvent]:
        """The session's `event` events numbered after `after` up to `upto`, in order."""
        rows = await self.db.fetch_all(SQL_READ_KIND, (session_id, event, after, upto))
        return [StreamEvent(row["seq"], row["event"], row["data"]) for row in rows]

    def card_offered(self, tx: Tx, session_id: str, cta_id: str) -> bool:
        """Whether an assistant reply in the session came with the card of rule `cta_id`."""
        return tx.execute(SQL_CARD_OFFERED, (session_id, cta_id)).fetchone() is not None

    async def follow(
        self, session_id: str, after: int, *, until: float, stopping: asyncio.Event
    ) -> AsyncIterator[StreamEvent | None]:
        """The session's events after `after`, then each new one as it is committed, until the
        clock reaches `until` (the token's expiry) or `stopping` is set. None is a heartbeat; the
        first item is one, once the stream listens (it also gets the response through proxies).
        A typing signal comes as it changes (and at once when one is standing)."""
        waiter = asyncio.Event()
        self._waiters.setdefault(session_id, set()).add(waiter)
        typing: Typing | None = None  # the state this stream last sent
        try:
            yield None
            while not stopping.is_set() and self.clock.now() < until:
                waiter.clear()  # before reading: a commit from here on wakes the wait below
                events = await self.read(session_id, after)
                for event in events:
                    yield event
                    after = event.seq
                if len(events) == READ_BATCH:
                    continue
                current, now = self._typing.get(session_id), self.clock.now()
                if current is not typing:
                    if current is not None and (current.until > now or (typing and typing.until > now)):
                        yield current.event(now)  # a new signal, or a stop of the one this stream showed
                    typing = current
                timeout = min(HEARTBEAT_SECONDS, until - self.clock.now())
                try:
                    await asyncio.wait_for(waiter.wait(), max(timeout, 0))
                except TimeoutError:
                    if timeout >= HEARTBEAT_SECONDS:
                        yield None
        finally:
            waiters = self._waiters.get(session_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[session_id]

    @property
    def streams_open(self) -> int:
        return sum(len(w) for w in self._waiters.values())
