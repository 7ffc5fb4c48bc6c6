"""A webhook's deliveries that are not rows yet: spans of the outgoing-event log, and the
dispatcher's way of turning them into rows as it sends them.

Why: writing a delivery row per webhook inside the transaction of every event made ingest
O(webhooks) (issue 18: 0.18× ingest at 50 webhooks). Now `Outbox.emit` stores the event alone, and
each webhook *takes* the log: it has spans (`webhook_spans`), ranges of `out_events.seq` with the
filter in force over them. The open span (`through_seq` NULL) runs from where the webhook was
created, re-enabled or re-filtered up to the newest event; deactivating closes it at the newest
event, so "while a webhook is inactive no deliveries are created for it; deliveries already queued
wait and resume when it is re-enabled" (DESIGN §7) holds span by span, and a filter change applies
to later events only, as before. A span's `after_seq` is its cursor: the events after it that match
(`e.type` in its filter, or a `webhook.test` aimed at this webhook) are the webhook's pending
deliveries, exactly those a row per webhook would have held.

`materialise` (in the dispatcher's claim job, so "make rows + lease them" is one statement sequence
in one write job, which on PostgreSQL can run under a row lock of the webhook) reads a span's next
matching events, at most `room`, and inserts their rows, leased or not; the cursor moves past every
event read, and past everything up to the span's end when fewer than `room` matched. Each type of a
filter is one range of `out_events(project_id, type, seq)` (`["*"]`: one range of
`out_events(project_id, seq)`, skipping other webhooks' tests), read only up to `room` and merged
(outbox.merged): a job costs the rows it makes, not the backlog or the non-matching rows between.

A span also holds the webhook's feed filter (`feeds`, issue 21; NULL: every feed). The events
that name a feed (outbox.FEED_TYPES) carry it in `out_events.feed_id`, numbered per feed and type
(`feed_seq`), so a filtered span takes such a type as one range of
`out_events(project_id, feed_id, type, seq)` per feed, and counts it by two seeks per feed, as it
does per type; every other type concerns no feed and is taken as before. A change of `feed_ids`
closes the span and opens one with the new filter, as a change of `events` does.

Ids are deterministic: `dlv_` + the event's seq in 10 hex digits + the webhook's `delivery_code`
(10 hex digits), the shape random-suffixed ids had (`dlv_` + seq + 10 random hex), so a delivery is
listed, read and counted (API, dashboard, metrics, `glimpze check`) before it has a row, as
`pending` with 0 attempts, due since its event occurred. Reads that combine rows and spans do it in
one statement, one snapshot, so a delivery the dispatcher makes meanwhile is never seen twice or
missed. Counting what waits (metrics, check, the dashboard) takes two index seeks per span and
type: each event carries its number among its project's events of its type (`type_seq`, without
gaps in what a span holds, since retention never deletes what a span still holds), so a span's
count is the difference of its last and first numbers, however long the backlog (counting the
rows took seconds per scrape at 50 webhooks × 300k).

Dialect: `json_each` (SQLite's; PostgreSQL's is `jsonb_array_elements_text`) reads a filter in
SQL; everything else here is standard SQL. On PostgreSQL the cursor must not pass a sequence
number still in flight in another transaction (`seq <= the snapshot's safe horizon`), where
SQLite's single writer makes the newest committed seq that horizon.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from glimpze.delivery.outbox import (
    BY_FEED,
    BY_PROJECT,
    BY_TYPE,
    EVENT_TYPES,
    FEED_TYPES,
    SPAN_FEED_TYPES,
    SPAN_FIRSTS,
    SPAN_HI,
    SPAN_TYPES,
    STAR,
    TEST_EVENT,
    UNFILTERED_TYPE,
    merged,
    type_literal,
)
from glimpze.store.sql import Row, Tx, one

_ID = re.compile(r"dlv_([0-9a-f]{10})([0-9a-f]{10})")
_FEED_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what a feed id literal may hold (ids.new_id)

SQL_OPEN_SPAN = """
    INSERT INTO webhook_spans (webhook_id, start_seq, after_seq, through_seq, events, feeds)
    SELECT :webhook, h.seq, h.seq, NULL, :events, :feeds FROM (SELECT coalesce(max(seq), 0) AS seq FROM out_events) h
"""
SQL_CLOSE_SPANS = """
    UPDATE webhook_spans SET through_seq = (SELECT coalesce(max(seq), 0) FROM out_events)
    WHERE webhook_id = ? AND through_seq IS NULL
"""
SQL_DROP_SENT_SPANS = (
    "DELETE FROM webhook_spans WHERE webhook_id = ? AND through_seq IS NOT NULL AND after_seq >= through_seq"
)
SQL_SPANS = """
    SELECT start_seq, after_seq, through_seq, events, feeds FROM webhook_spans WHERE webhook_id = ? ORDER BY start_seq
"""
SQL_SPAN_STARTS = "SELECT start_seq, events, feeds FROM webhook_spans WHERE webhook_id = ? ORDER BY start_seq"
SQL_ADVANCE = "UPDATE webhook_spans SET after_seq = ? WHERE webhook_id = ? AND start_seq = ?"
SQL_DROP_SPAN = "DELETE FROM webhook_spans WHERE webhook_id = ? AND start_seq = ?"
SQL_HEAD = "SELECT coalesce(max(seq), 0) FROM out_events"
SQL_MAKE_ROW = """
    INSERT INTO deliveries (id, webhook_id, event_seq, ordered, status, attempts, next_attempt_at, lease_until,
                            created_at, updated_at)
    VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)
    RETURNING seq
"""

# How many deliveries each span holds: per type of its filter (and feed of a filter by feed), the
# numbers (`type_seq`, `feed_seq`) of its last and first events (two seeks of a covering index,
# however many lie between), and the tests aimed at the webhook, counted (they are few).
_TYPE_SEQ = f"SELECT e.type_seq FROM {BY_TYPE} WHERE e.project_id = w.project_id AND e.type = t.value AND {{range}}"
_FEED_SEQ = (
    f"SELECT e.feed_seq FROM {BY_FEED} "
    "WHERE e.project_id = w.project_id AND e.feed_id = f.value AND e.type = t.value AND {range}"
)
_LAST = f"e.seq <= {SPAN_HI} ORDER BY e.seq DESC LIMIT 1"
_FIRST = "e.seq > s.after_seq ORDER BY e.seq LIMIT 1"
_WAITING_COUNTS = f"""
    SELECT s.webhook_id,
           max(0, coalesce(({_TYPE_SEQ.format(range=_LAST)}) - ({_TYPE_SEQ.format(range=_FIRST)}) + 1, 0)) AS n
    FROM webhook_spans s JOIN webhooks w ON w.id = s.webhook_id JOIN {SPAN_TYPES} t ON {UNFILTERED_TYPE}
    WHERE 1 = 1 {{where}}
    UNION ALL
    SELECT s.webhook_id,
           max(0, coalesce(({_FEED_SEQ.format(range=_LAST)}) - ({_FEED_SEQ.format(range=_FIRST)}) + 1, 0)) AS n
    FROM webhook_spans s JOIN webhooks w ON w.id = s.webhook_id JOIN {SPAN_FEED_TYPES}
    WHERE 1 = 1 {{where}}
    UNION ALL
    SELECT s.webhook_id,
           (SELECT count(*) FROM {BY_TYPE}
            WHERE e.project_id = w.project_id AND e.type = '{TEST_EVENT}' AND e.target_webhook_id = w.id
              AND e.seq > s.after_seq AND e.seq <= {SPAN_HI}) AS n
    FROM webhook_spans s JOIN webhooks w ON w.id = s.webhook_id
    WHERE 1 = 1 {{where}}
"""
# How many deliveries each of webhooks `:ids` (a JSON array) has waiting for a row.
SQL_WAITING_COUNTS = f"""
    SELECT webhook_id, sum(n) AS n
    FROM ({_WAITING_COUNTS.format(where="AND s.webhook_id IN (SELECT value FROM json_each(:ids))")}) c
    GROUP BY webhook_id
"""
# For the queue's figures: all waiting deliveries, and when the oldest of an active webhook fell
# due (its event's time: a first attempt is due at once), found with one index seek per type.
SQL_WAITING_TOTAL = f"SELECT coalesce(sum(n), 0) FROM ({_WAITING_COUNTS.format(where='')}) c"
SQL_WAITING_OLDEST = (
    f"SELECT min(first) FROM ({SPAN_FIRSTS.format(column='occurred_at', where='w.active/*pg: <> 0*/')}) f"
)
# Whether webhook `w` (of the enclosing query) has a delivery waiting for a row: an index seek per
# type of each span's filter, and feed of a filter by feed (for the dispatcher's look for work).
WAITING_EXISTS = f"""
    (EXISTS (SELECT 1 FROM webhook_spans s JOIN {SPAN_TYPES} t ON {UNFILTERED_TYPE}
             WHERE s.webhook_id = w.id AND EXISTS (
                 SELECT 1 FROM {BY_TYPE} WHERE e.project_id = w.project_id AND e.type = t.value
                     AND e.seq > s.after_seq AND e.seq <= {SPAN_HI}))
     OR EXISTS (SELECT 1 FROM webhook_spans s JOIN {SPAN_FEED_TYPES}
             WHERE s.webhook_id = w.id AND EXISTS (
                 SELECT 1 FROM {BY_FEED} WHERE e.project_id = w.project_id AND e.feed_id = f.value
                     AND e.type = t.value AND e.seq > s.after_seq AND e.seq <= {SPAN_HI}))
     OR EXISTS (SELECT 1 FROM webhook_spans s WHERE s.webhook_id = w.id AND EXISTS (
                 SELECT 1 FROM {BY_TYPE} WHERE e.project_id = w.project_id AND e.type = '{TEST_EVENT}'
                     AND e.target_webhook_id = w.id AND e.seq > s.after_seq AND e.seq <= {SPAN_HI})))
"""
# One delivery without a row, by id (its event's seq and its webhook's code), as a delivery row.
SQL_WAITING_BY_ID = f"""
    SELECT NULL AS seq, NULL AS id, w.id AS webhook_id, e.id AS event_id, e.type AS event, 'pending' AS status,
           0 AS attempts, e.occurred_at AS next_attempt_at, NULL AS last_status_code, NULL AS last_error,
           e.occurred_at AS created_at, NULL AS feed_id, NULL AS method, NULL AS url, e.seq AS event_seq,
           w.delivery_code, e.payload, w.url AS webhook_url, w.headers, NULL AS callback_payload
    FROM webhooks w JOIN webhook_spans s ON s.webhook_id = w.id
    JOIN out_events e ON e.seq = :event_seq AND e.project_id = w.project_id
        AND e.seq > s.after_seq AND e.seq <= {SPAN_HI}
    WHERE w.delivery_code = :code AND w.project_id = :project
      AND CASE WHEN e.type = '{TEST_EVENT}' THEN e.target_webhook_id = w.id
               ELSE (s.events = '{STAR}' OR e.type IN (SELECT value FROM json_each(s.events)))
                    AND (s.feeds IS NULL OR e.feed_id IS NULL OR e.feed_id IN (SELECT value FROM json_each(s.feeds)))
          END
"""
# The columns of a waiting delivery in a listing (backlog rows beside the rows of `deliveries`;
# typed NULLs, which PostgreSQL's UNION needs).
WAITING_COLUMNS = """
    e.seq AS event_seq, CAST(NULL AS BIGINT) AS seq, NULL AS id, :webhook AS webhook_id, e.id AS event_id,
    e.type AS event, 'pending' AS status, 0 AS attempts, e.occurred_at AS next_attempt_at,
    CAST(NULL AS BIGINT) AS last_status_code,
    NULL AS last_error, e.occurred_at AS created_at, NULL AS feed_id, NULL AS method, NULL AS url
"""


def new_delivery_code() -> str:
    """A webhook's part of its delivery ids: 10 hex digits."""
    return secrets.token_hex(5)


def delivery_id(event_seq: int, code: str) -> str:
    """The id of webhook `code`'s delivery of event `event_seq`, with or without a row."""
    return f"dlv_{event_seq:010x}{code}"


def parse_delivery_id(text: str) -> tuple[int, str] | None:
    """(event seq, webhook code) of a delivery id of that shape, else None."""
    found = _ID.fullmatch(text)
    return None if found is None else (int(found[1], 16), found[2])


def span_filter(events: list[str]) -> str:
    """A webhook's filter as a span stores it: `["*"]`, or its types as a JSON array."""
    return STAR if "*" in events else msgspec.json.encode(sorted(set(events))).decode()


def feed_filter(feed_ids: list[str] | None) -> str | None:
    """A webhook's feed filter as a span stores it: None (every feed), or its feeds as a JSON array."""
    if not feed_ids:
        return None
    for feed_id in feed_ids:
        if not _FEED_ID.fullmatch(feed_id):
            raise ValueError(f"not a feed id: {feed_id!r}")
    return msgspec.json.encode(sorted(set(feed_ids))).decode()


@dataclass(frozen=True, slots=True)
class Filter:
    """What a webhook takes: its event types and its feeds (None: every feed)."""

    events: list[str]
    feed_ids: list[str] | None = None

    def stored(self) -> tuple[str, str | None]:
        """The filter as a span stores it (`events`, `feeds`)."""
        return span_filter(self.events), feed_filter(self.feed_ids)


def open_span(tx: Tx, webhook_id: str, taken: Filter) -> None:
    """The webhook takes every event after the newest one (created, re-enabled, re-filtered)."""
    events, feeds = taken.stored()
    tx.execute(SQL_OPEN_SPAN, {"webhook": webhook_id, "events": events, "feeds": feeds})


def close_spans(tx: Tx, webhook_id: str) -> None:
    """The webhook takes no event after the newest one (deactivated, disabled): what its spans
    still hold waits for it to be re-enabled; a span with nothing left goes."""
    tx.execute(SQL_CLOSE_SPANS, (webhook_id,))
    tx.execute(SQL_DROP_SENT_SPANS, (webhook_id,))


def follow(tx: Tx, webhook_id: str, *, was: tuple[bool, Filter], now: tuple[bool, Filter]) -> None:
    """Keep the spans in step with a change of (active, filter): an inactive webhook takes no new
    event, a new filter (of types or of feeds) applies to the events after the change."""
    (was_active, was_taken), (active, taken) = was, now
    refiltered = was_taken.stored() != taken.stored()
    if was_active and (not active or refiltered):
        close_spans(tx, webhook_id)
    if active and (not was_active or refiltered):
        open_span(tx, webhook_id, taken)


def span_branches(
    events: str, feeds: str | None = None, *, after: str, hi: str, also: str = "", spans: str = ""
) -> list[str]:
    """The index ranges of out_events `e` (project `:project`) that hold a span's deliveries
    between `after` and `hi` (SQL expressions), as `merged` branches ("FROM … WHERE …"): one per
    type of its filter (per feed and type for a type that names a feed, when the span is filtered
    by `feeds`), and the tests aimed at webhook `:webhook`. `spans` joins more tables in front
    ("webhook_spans s, "), `also` adds conditions ("… AND ")."""
    where = f"{also}e.project_id = :project AND e.seq > {after} AND e.seq <= {hi}"
    tests = f"FROM {spans}{BY_TYPE} WHERE {where} AND e.type = '{TEST_EVENT}' AND e.target_webhook_id = :webhook"
    if events == STAR and feeds is None:
        return [
            f"FROM {spans}{BY_PROJECT} WHERE {where} AND (e.type != '{TEST_EVENT}' OR e.target_webhook_id = :webhook)"
        ]
    named = EVENT_TYPES if events == STAR else msgspec.json.decode(events, type=list[str])
    types = [t for t in named if t != TEST_EVENT]
    feed_ids = [] if feeds is None else msgspec.json.decode(feeds, type=list[str])
    branches = []
    for t in types:
        if feeds is None or t not in FEED_TYPES:
            branches.append(f"FROM {spans}{BY_TYPE} WHERE {where} AND e.type = {type_literal(t)}")
            continue
        for feed_id in feed_ids:
            if not _FEED_ID.fullmatch(feed_id):  # a literal in SQL: never anything but an id
                raise ValueError(f"not a feed id: {feed_id!r}")
            where_feed = f"{where} AND e.feed_id = '{feed_id}' AND e.type = {type_literal(t)}"
            branches.append(f"FROM {spans}{BY_FEED} WHERE {where_feed}")
    return [*branches, tests]


@dataclass(slots=True)
class Made:
    """A delivery row just made from the log."""

    seq: int
    id: str
    event_seq: int
    event_type: str
    payload: bytes


def materialise(
    tx: Tx, webhook: Row, *, room: int, lease_until: float | None, now: float, max_spans: int = 4
) -> list[Made]:
    """Make rows for up to `room` of `webhook`'s next deliveries, in event order, leased until
    `lease_until` (None: not leased); call inside a write job. `webhook` has id, project_id,
    ordered and delivery_code. Spans are taken oldest first, at most `max_spans` per call."""
    made: list[Made] = []
    head: int | None = None
    params: dict[str, Any] = {"project": webhook["project_id"], "webhook": webhook["id"]}
    for span in tx.execute(SQL_SPANS, (webhook["id"],)).fetchall()[:max_spans]:
        if room <= 0:
            break
        if span["through_seq"] is None:
            head = one(tx.execute(SQL_HEAD))[0] if head is None else head
        hi = head if span["through_seq"] is None else span["through_seq"]
        after = span["after_seq"]
        if after < hi:
            rows = tx.execute(
                _next_events(span["events"], span["feeds"]), {**params, "after": after, "hi": hi, "limit": room}
            ).fetchall()
            for row in rows:
                dlv = delivery_id(row["seq"], webhook["delivery_code"])
                values = (dlv, webhook["id"], row["seq"], webhook["ordered"], row["occurred_at"], lease_until)
                seq = one(tx.execute(SQL_MAKE_ROW, (*values, row["occurred_at"], now)))[0]
                made.append(Made(seq, dlv, row["seq"], row["type"], row["payload"]))
            # All matches up to the end were read unless `room` ran out first.
            after = rows[-1]["seq"] if len(rows) == room else hi
            room -= len(rows)
            tx.execute(SQL_ADVANCE, (after, webhook["id"], span["start_seq"]))
        if span["through_seq"] is not None and after >= hi:
            tx.execute(SQL_DROP_SPAN, (webhook["id"], span["start_seq"]))
    return made


@functools.lru_cache(maxsize=256)
def _next_events(events: str, feeds: str | None) -> str:
    """The statement reading a span's next events (`:after` < seq <= `:hi`, at most `:limit`)."""
    branches = span_branches(events, feeds, after=":after", hi=":hi")
    return merged(branches, "e.seq AS seq, e.type AS type, e.occurred_at AS occurred_at, e.payload AS payload")


def listing_sql(spans: Sequence[Row], *, materialised: str | None) -> str:
    """A webhook's deliveries newest first before `:before`, at most `:limit`, in one statement:
    those waiting in `spans` (as read just before: start and filter, which never change; the
    cursor is read by the statement itself) and the rows `materialised` selects (None: no rows),
    which must have WAITING_COLUMNS' columns in their order and `ORDER BY event_seq DESC LIMIT`."""
    parts = [] if materialised is None else [f"SELECT * FROM ({materialised}) m"]
    for span in spans:
        also = f"s.webhook_id = :webhook AND s.start_seq = {int(span['start_seq'])} AND e.seq < :before AND "
        branches = span_branches(
            span["events"], span["feeds"], after="s.after_seq", hi=SPAN_HI, also=also, spans="webhook_spans s, "
        )
        listed = merged(branches, WAITING_COLUMNS, order="DESC", key="event_seq")
        parts.append(f"SELECT * FROM ({listed}) l{len(parts)}")
    if not parts:
        return "SELECT NULL AS event_seq WHERE 1 = 0"
    return f"SELECT * FROM ({' UNION ALL '.join(parts)}) a ORDER BY event_seq DESC LIMIT :limit"
