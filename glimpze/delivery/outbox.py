"""Outgoing events: written in the same transaction as the change that causes them (outbox),
read back by long polling (`GET /v1/events`) and purged after `event_retention_days`.

`Outbox.emit(tx, …)` is called inside a write job. It stores the event's exact JSON payload
(flat: `id`, `event`, `occurred_at`, then the event's fields) and nothing else: its cost does not
depend on how many webhooks take it. Each webhook takes the log itself (backlog.py): its
deliveries are the events of its spans that match its filter, and the dispatcher turns them into
rows as it sends them. So an event committed is a delivery queued for every webhook that takes
it, at once and durably, as when a row was written per webhook.

After the commit (`Writer.after_commit`) the dispatcher is woken, and the long polls of the
project that wait for one of the types the commit emitted (`_touched`): a poll for a type that
never comes costs nothing however busy the other types, projects and commits are.

A long poll reads each type it asks for as one range of `out_events(project_id, type, seq)` (all
types: `out_events(project_id, seq)`), at most `limit` rows each, merged in one statement
(`merged`), so its cost is the rows it returns, not the rows in between; the statement also reads
the newest seq in the same snapshot, and the cursor it answers moves past every row it could see
even when none matched (never past one not yet committed: a snapshot holds committed rows only).

Retention keeps every event a delivery still needs: the open rows' events and the first event of
each span that is not sent yet (`SQL_OLDEST_NEEDED`). A new event's seq continues after the newest
one ever stored, purged or not (`SQL_INSERT_EVENT`), so cursors never point past events to come.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any

import msgspec

from glimpze.clock import Clock, iso
from glimpze.errors import CursorExpired
from glimpze.ids import new_id
from glimpze.store.changes import Changes
from glimpze.store.dialect import Sql
from glimpze.store.pagination import decode_cursor, encode_cursor
from glimpze.store.sql import Store, Tx, one

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
# The types whose every payload names its feed (`feed_id`): emit stores it beside the event, so a
# webhook filtered by feed reads them as one index range per feed and type. Every other type is
# sent whatever a webhook's feed filter says (it concerns no feed).
FEED_TYPES = ("feed.event", "approval.requested", "approval.responded")
FEED_TYPES_SQL = "(" + ", ".join(f"'{t}'" for t in FEED_TYPES) + ")"
# A test event goes to the webhook it names (`target_webhook_id`) alone, whatever the filters.
TEST_EVENT = "webhook.test"
# What a filter of ["*"] takes besides the tests aimed at it, as JSON for SQL's json_each.
ALL_TYPES_JSON = msgspec.json.encode([t for t in EVENT_TYPES if t != TEST_EVENT]).decode()
STAR = '["*"]'
# The two ways into a project's events, named: SQLite's planner, without statistics or misled by
# them (one project holds every row), may walk the rowid range instead, every row in between
# (INDEXED BY is SQLite's; PostgreSQL's planner needs no such hint).
BY_TYPE = "out_events e INDEXED BY out_events_type"
BY_PROJECT = "out_events e INDEXED BY out_events_project"
BY_FEED = "out_events e INDEXED BY out_events_feed"

# The seq continues after the newest event ever stored, purged ones included: SQLite would give a
# rowid freed at the end of the table out again, behind every cursor (SQLite's two-argument max;
# on PostgreSQL a sequence never goes back). `type_seq` follows the project's last event of the
# type (an index seek): numbers without gaps, which count a span's deliveries (backlog.py);
# `feed_seq` likewise numbers a feed's events of a type (NULL for an event without a feed).
_TYPE_SEQ = """
    coalesce((SELECT e.type_seq FROM out_events e INDEXED BY out_events_type
              WHERE e.project_id = ?2 AND e.type = ?3 ORDER BY e.seq DESC LIMIT 1), 0) + 1"""
_FEED_SEQ = """
    CASE WHEN ?7 IS NOT NULL THEN
        coalesce((SELECT e.feed_seq FROM out_events e INDEXED BY out_events_feed
                  WHERE e.project_id = ?2 AND e.feed_id = ?7 AND e.type = ?3 ORDER BY e.seq DESC LIMIT 1), 0)
        + 1 END"""
SQL_INSERT_EVENT = Sql(
    sqlite=f"""
    INSERT INTO out_events (seq, id, project_id, type, occurred_at, payload, target_webhook_id, type_seq,
                            feed_id, feed_seq)
    VALUES (max((SELECT coalesce(max(seq), 0) FROM out_events),
                (SELECT coalesce(max(CAST(value AS BIGINT)), 0) FROM meta WHERE key = 'out_events_purged_seq')) + 1,
            ?1, ?2, ?3, ?4, ?5, ?6, {_TYPE_SEQ}, ?7, {_FEED_SEQ})
    RETURNING seq
""",
    postgres=f"""
    INSERT INTO out_events (id, project_id, type, occurred_at, payload, target_webhook_id, type_seq,
                            feed_id, feed_seq)
    VALUES (?1, ?2, ?3, ?4, convert_to(?5, 'UTF8'), ?6, {_TYPE_SEQ}, ?7, {_FEED_SEQ})
    RETURNING seq
""",
)
SQL_PURGED_SEQ = "SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'out_events_purged_seq'"
SQL_SET_PURGED_SEQ = """
    INSERT INTO meta (key, value) VALUES ('out_events_purged_seq', :seq)
    ON CONFLICT (key) DO UPDATE SET value = max(CAST(meta.value AS BIGINT), CAST(excluded.value AS BIGINT))
"""
# Finished deliveries go with their events; an event an open delivery still needs stays, and so
# does everything after it (deliveries are created in event order). Rows are made in event order,
# so the old ones come first: the scan stops at the first young row instead of reading them all.
SQL_PURGE_DELIVERIES = """
    DELETE FROM deliveries WHERE seq IN (
        SELECT seq FROM deliveries
        WHERE seq < coalesce((SELECT seq FROM deliveries WHERE created_at >= :cutoff ORDER BY seq LIMIT 1), :end)
          AND created_at < :cutoff AND status IN ('delivered', 'dead')
        ORDER BY seq LIMIT :batch
    )
"""
# A span `s` of webhook `w` (backlog.py) ends at its last event, or the newest one while it goes
# on; its filter's types, for SQLite's json_each.
SPAN_HI = "coalesce(s.through_seq, (SELECT max(seq) FROM out_events))"
SPAN_TYPES = f"json_each(CASE WHEN s.events = '{STAR}' THEN '{ALL_TYPES_JSON}' ELSE s.events END)"
# A span's filter (`s.events`, `s.feeds`) read as index ranges: each of its types `t` on its own
# (UNFILTERED_TYPE: the span takes every feed, or the type concerns none), or, for a type that
# names a feed in a span filtered by feed, each of its feeds `f` with the type (`json_each(s.feeds)`
# has no row when the span takes every feed).
UNFILTERED_TYPE = f"t.value != '{TEST_EVENT}' AND (s.feeds IS NULL OR t.value NOT IN {FEED_TYPES_SQL})"
SPAN_FEED_TYPES = f"{SPAN_TYPES} t ON t.value IN {FEED_TYPES_SQL} JOIN json_each(s.feeds) f ON 1 = 1"
# The first event each span still has to send (its `{{column}}`; spans `{{where}}`): an index seek
# per type of its filter (and feed of a filter by feed), and one for the tests aimed at it,
# whatever lies between.
SPAN_FIRSTS = f"""
    SELECT (SELECT e.{{column}} FROM {BY_TYPE}
            WHERE e.project_id = w.project_id AND e.type = t.value AND e.seq > s.after_seq AND e.seq <= {SPAN_HI}
            ORDER BY e.seq LIMIT 1) AS first
    FROM webhook_spans s JOIN webhooks w ON w.id = s.webhook_id JOIN {SPAN_TYPES} t ON {UNFILTERED_TYPE}
    WHERE {{where}}
    UNION ALL
    SELECT (SELECT e.{{column}} FROM {BY_FEED}
            WHERE e.project_id = w.project_id AND e.feed_id = f.value AND e.type = t.value
              AND e.seq > s.after_seq AND e.seq <= {SPAN_HI}
            ORDER BY e.seq LIMIT 1) AS first
    FROM webhook_spans s JOIN webhooks w ON w.id = s.webhook_id JOIN {SPAN_FEED_TYPES}
    WHERE {{where}}
    UNION ALL
    SELECT (SELECT e.{{column}} FROM {BY_TYPE}
            WHERE e.project_id = w.project_id AND e.type = '{TEST_EVENT}' AND e.target_webhook_id = w.id
              AND e.seq > s.after_seq AND e.seq <= {SPAN_HI}
            ORDER BY e.seq LIMIT 1)
    FROM webhook_spans s JOIN webhooks w ON w.id = s.webhook_id
    WHERE {{where}}
"""
# The oldest event still needed: an open row's, or the first one a span has still to send.
SQL_OLDEST_NEEDED = f"""
    SELECT min(first) FROM (
        SELECT min(event_seq) AS first FROM deliveries WHERE status IN ('pending', 'failed')
        UNION ALL
        {SPAN_FIRSTS.format(column="seq", where="1 = 1")}
    ) f
"""
SQL_PURGE_BATCH = """
    SELECT seq FROM out_events WHERE occurred_at < :cutoff AND seq < :needed ORDER BY seq LIMIT :batch
"""
SQL_DELETE_EVENT = "DELETE FROM out_events WHERE seq = ?"
SQL_HEAD = "SELECT coalesce(max(seq), 0) FROM out_events"
# A poll's reading: the newest seq and the retention mark, with the rows after the cursor, in one
# snapshot (one statement). The LEFT JOIN keeps the first line when no row matched.
SQL_POLL = """
    SELECT h.head, h.purged, m.seq, m.payload
    FROM (SELECT coalesce(max(seq), 0) AS head, ({purged}) AS purged FROM out_events) h
    LEFT JOIN ({rows}) m ON 1 = 1
    ORDER BY m.seq
"""

MAX_WAIT_SECONDS = 30
PURGE_BATCH = 500

_encode = msgspec.json.Encoder().encode


def merged(branches: Sequence[str], columns: str, *, order: str = "ASC", key: str = "seq") -> str:
    """One statement reading, from each of `branches` ("FROM … WHERE …", one index range of
    out_events `e` each), the rows in `e.seq` order up to `:limit`, and keeping the first `:limit`
    of them all: nothing larger than the limits is ever sorted (an `IN` over several types would
    sort every matching row first). `columns` name `e.seq AS {key}`."""
    if len(branches) == 1:
        return f"SELECT {columns} {branches[0]} ORDER BY e.seq {order} LIMIT :limit"
    parts = " UNION ALL ".join(
        f"SELECT * FROM (SELECT {columns} {b} ORDER BY e.seq {order} LIMIT :limit) b{i}" for i, b in enumerate(branches)
    )
    return f"SELECT * FROM ({parts}) m ORDER BY {key} {order} LIMIT :limit"


def type_literal(event_type: str) -> str:
    """An event type as an SQL literal (only catalogue names, which hold no quote)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    return f"'{event_type}'"


def poll_sql(types: Sequence[str] | None) -> str:
    """SQL_POLL for these types (None: all)."""
    return _poll_sql(None if types is None else tuple(sorted(set(types))))


@functools.lru_cache(maxsize=256)
def _poll_sql(types: tuple[str, ...] | None) -> str:
    if types is None:
        branches = [f"FROM {BY_PROJECT} WHERE e.project_id = :project AND e.seq > :after"]
    else:
        branches = [
            f"FROM {BY_TYPE} WHERE e.project_id = :project AND e.type = {type_literal(t)} AND e.seq > :after"
            for t in types
        ]
    rows = merged(branches, "e.seq AS seq, e.payload AS payload")
    return SQL_POLL.format(purged=SQL_PURGED_SEQ, rows=rows)


class Polled(msgspec.Struct):
    """A long-poll answer: the events' exact payloads and where to continue."""

    data: list[msgspec.Raw]
    next_cursor: str


class Outbox:
    """Emits outgoing events, wakes whoever waits for them after the commit, serves long polls."""

    def __init__(self, db: Store, clock: Clock, changes: Changes, retention_days: int = 7) -> None:
        self.db = db
        self.clock = clock
        self.changes = changes
        self.retention_seconds = retention_days * 86400
        self.stopping = asyncio.Event()
        self._touched: set[tuple[str, str]] = set()  # (project, type) emitted since the last commit
        self._waiters: set[asyncio.Event] = set()  # woken by every commit that emitted (the dispatcher)
        self._polls: dict[str, dict[asyncio.Event, frozenset[str] | None]] = {}  # by project: types wanted

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
        """Store one outgoing event (its deliveries follow from it); call inside a write job.

        `target_webhook_id` sends a `webhook.test` to that webhook alone, whatever its filter. An
        event of FEED_TYPES has its `feed_id` among `fields` (webhooks filtered by feed read it)."""
        assert event_type in EVENT_TYPES, event_type
        assert (event_type == TEST_EVENT) == (target_webhook_id is not None), event_type
        feed_id = fields["feed_id"] if event_type in FEED_TYPES else None
        assert feed_id is None or isinstance(feed_id, str), event_type
        event_id = event_id or new_id("evt_")
        payload = _encode({"id": event_id, "event": event_type, "occurred_at": iso(occurred_at), **fields})
        row = (event_id, project_id, event_type, occurred_at, payload, target_webhook_id, feed_id)
        tx.execute(SQL_INSERT_EVENT, row)
        self._touched.add((project_id, event_type))
        self.changes.emitted(project_id, event_type, event_id, fields)
        return event_id

    def after_commit(self) -> None:
        """Called by the writer after every commit: wake the dispatcher and the polls waiting for
        what it emitted. (A job that failed may have noted something too: a wake-up for nothing.)"""
        if not self._touched:
            return
        touched, self._touched = self._touched, set()
        for waiter in self._waiters:
            waiter.set()
        for project_id, event_type in touched:
            for waiter, types in self._polls.get(project_id, {}).items():
                if types is None or event_type in types:
                    waiter.set()

    def shutdown(self) -> None:
        """Answer every waiting long poll now (the server is stopping)."""
        self.stopping.set()
        for waiter in self._waiters:
            waiter.set()
        for polls in self._polls.values():
            for waiter in polls:
                waiter.set()

    def waiter(self) -> asyncio.Event:
        """An event set after the next commit that emitted anything; `forget()` it when done."""
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
        after_seq: int = after[0] if after else 0
        sql = poll_sql(types)
        wanted = None if types is None else frozenset(types)
        waiter = asyncio.Event()
        polls = self._polls.setdefault(project_id, {})
        polls[waiter] = wanted
        deadline = asyncio.get_running_loop().time() + min(wait, MAX_WAIT_SECONDS)
        try:
            while True:
                waiter.clear()  # before reading: a commit while the read runs wakes the next wait
                lines = list(await self.db.fetch_all(sql, {"project": project_id, "after": after_seq, "limit": limit}))
                if after is not None and after[0] < (lines[0]["purged"] or 0):
                    raise CursorExpired(
                        "Events after this cursor are past their retention and were deleted; "
                        "start again without a cursor."
                    )
                rows = [line for line in lines if line["seq"] is not None]
                if len(rows) < limit:  # every row up to the head was read: continue after it
                    after_seq = max(after_seq, lines[0]["head"])
                remaining = deadline - asyncio.get_running_loop().time()
                if rows or remaining <= 0 or self.stopping.is_set():
                    break
                try:
                    await asyncio.wait_for(waiter.wait(), remaining)
                except TimeoutError:
                    pass
        finally:
            polls.pop(waiter, None)
            if not polls:
                self._polls.pop(project_id, None)
        last = after_seq if len(rows) < limit else rows[-1]["seq"]
        return Polled([msgspec.Raw(row["payload"]) for row in rows], encode_cursor(last))

    async def purge(self, now: float, batch: int = PURGE_BATCH) -> int:
        """Delete outgoing events past retention (with their finished deliveries), a batch at a time."""
        cutoff = now - self.retention_seconds
        total = 0

        def job(tx: Tx) -> tuple[int, int]:
            purge = {"cutoff": cutoff, "batch": batch, "end": 2**63 - 1}
            deliveries = tx.execute(SQL_PURGE_DELIVERIES, purge).rowcount
            needed = one(tx.execute(SQL_OLDEST_NEEDED))[0] or 2**63 - 1
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
