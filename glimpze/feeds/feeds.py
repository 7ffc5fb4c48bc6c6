"""Feeds: CRUD, write keys (`gzw_…`, stored hashed), read tokens, and the state the ingest path needs.

A read token (`gzr_…`) lets a device read the feed's widget (`/w/…`); unlike the write key it is
stored as is, since an API key can show it again (DESIGN §7) and devices are set up from it. So
is an approval feed's callback secret (`whsec_…`), which signs the callbacks of its approvals
(callbacks.py); a rotation keeps the old one signing beside it for a grace period.

`FeedState` caches what ingest checks on every request (key hashes, schema, plan, token
buckets). A key that does not match the cached hash re-reads the row, so a key rotated by the
CLI works at once; matches are re-read after CACHE_SECONDS (of monotonic time).

Throttled events beyond the few stored each minute are only counted, in memory: while a feed is
loaded its count there is the truth (the row's count at load plus what this process counted), and
`flush_dropped` writes that total to the row, so a flush in progress never shows a count low and
two flushes at once lose nothing.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Literal

import msgspec

from glimpze.clock import Clock, iso
from glimpze.config import Config, Plan
from glimpze.delivery.signing import new_signing_secret
from glimpze.errors import (
    Conflict,
    InvalidReadToken,
    InvalidWriteKey,
    NotFound,
    PlanForbids,
    Unauthorized,
    ValidationFailed,
    not_found,
)
from glimpze.feeds.limits import FeedBuckets, FeedUsage
from glimpze.ids import display_prefix, hash_secret, looks_like, new_id, new_secret, same
from glimpze.names import check_name
from glimpze.rotation import check_grace, previous_columns, still_good
from glimpze.store.pagination import Page, page
from glimpze.store.sql import Row, Store, Tx, one

CACHE_SECONDS = 10.0
MAX_KEY_GRACE_SECONDS = 7 * 24 * 3600

SchemaType = Literal["summary", "status", "counter", "approval", "custom"]
SCHEMA_TYPES: tuple[str, ...] = typing.get_args(SchemaType)
# A topic as ntfy spells one; `fd_` is left to feed ids, which name a feed as a topic does.
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,64}")

# A feed with its quota snapshot: the bucket levels stored with its newest accepted event.
SQL_SELECT_FEEDS = """
    SELECT feeds.rowid, feeds.id, feeds.project_id, feeds.name, feeds.schema_type, feeds.plan,
           feeds.write_key_prefix, feeds.write_key_hash, feeds.previous_key_hash, feeds.previous_key_expires_at,
           feeds.read_token, feeds.throttled_dropped, feeds.created_at, feeds.updated_at, feeds.callback_secret,
           feeds.previous_callback_secret, feeds.previous_callback_secret_expires_at, feeds.topic,
           feeds.show_updated,
           e.received_at AS buckets_at, e.minute_tokens, e.day_tokens
    FROM feeds LEFT JOIN events e ON e.seq = (
        SELECT seq FROM events WHERE feed_id = feeds.id AND status = 'accepted' ORDER BY seq DESC LIMIT 1
    )
"""
SQL_INSERT_FEED = """
    INSERT INTO feeds (id, project_id, name, schema_type, plan, write_key_hash, write_key_prefix, read_token,
                       callback_secret, topic, show_updated, created_at, updated_at)
    VALUES (:id, :project_id, :name, :schema_type, :plan, :hash, :prefix, :read_token, :callback_secret, :topic,
            :show_updated, :now, :now)
"""
SQL_COUNT_CUSTOM = "SELECT count(*) FROM feeds WHERE project_id = ? AND schema_type = 'custom' AND id != ?"
SQL_GET_FEED = SQL_SELECT_FEEDS + " WHERE feeds.id = ?"
SQL_LIST_FEEDS = SQL_SELECT_FEEDS + " WHERE feeds.project_id = ? AND feeds.rowid > ? ORDER BY feeds.rowid LIMIT ?"
SQL_UPDATE_FEED = "UPDATE feeds SET name = ?, plan = ?, topic = ?, show_updated = ?, updated_at = ? WHERE id = ?"
# Topics (ntfy): a feed's id or its topic names it within its project; a write key names its feed.
SQL_TOPIC_HOLDER = "SELECT id FROM feeds WHERE project_id = ? AND topic = ? AND id != ?"
SQL_FEED_OF_TOPIC = "SELECT id FROM feeds WHERE project_id = ? AND (id = ? OR topic = ?)"
SQL_FEED_OF_KEY = "SELECT id FROM feeds WHERE write_key_hash = ? OR previous_key_hash = ?"
SQL_DELETE_FEED = "DELETE FROM feeds WHERE project_id = ? AND id = ?"
SQL_ROTATE_FEED_KEY = f"""
    UPDATE feeds SET {previous_columns("write_key_hash", "previous_key_hash", "previous_key_expires_at")},
        write_key_hash = :hash, write_key_prefix = :prefix, updated_at = :now
    WHERE project_id = :project AND id = :id
"""
# The feed's widget now shows this event (ingest, in the event's transaction).
SQL_SHOW_ON_WIDGET = "UPDATE feeds SET widget_event_seq = ? WHERE id = ?"
SQL_SET_DROPPED = "UPDATE feeds SET throttled_dropped = ? WHERE id = ?"
SQL_ROTATE_READ_TOKEN = "UPDATE feeds SET read_token = ?, updated_at = ? WHERE project_id = ? AND id = ?"
SQL_READER_FEED = "SELECT id, project_id, name, schema_type, read_token, show_updated FROM feeds WHERE id = ?"
_KEEP_CALLBACK_SECRET = previous_columns(
    "callback_secret", "previous_callback_secret", "previous_callback_secret_expires_at"
)
SQL_ROTATE_CALLBACK_SECRET = f"""
    UPDATE feeds SET {_KEEP_CALLBACK_SECRET},
        callback_secret = :secret, updated_at = :now
    WHERE project_id = :project AND id = :id AND schema_type = 'approval'
"""
# Approval feeds created before callbacks existed get their secret at start (`backfill_callback_secrets`).
SQL_MISSING_CALLBACK_SECRETS = "SELECT id FROM feeds WHERE schema_type = 'approval' AND callback_secret IS NULL"
SQL_SET_CALLBACK_SECRET = "UPDATE feeds SET callback_secret = ? WHERE id = ? AND callback_secret IS NULL"


class Feed(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    name: str
    schema_type: str
    plan: str
    webhook_url: str
    write_key_prefix: str
    read_token: str
    created_at: str
    updated_at: str
    usage: FeedUsage
    throttled_dropped: int
    show_updated: bool  # its widget PNGs say when the feed was last updated
    callback_secret: str | None = None  # approval feeds: signs the callbacks of their approvals
    topic: str | None = None  # the name ntfy clients publish to (docs/ntfy-and-gotify.md)


class NewFeed(Feed, kw_only=True):
    write_key: str


class CallbackSecret(msgspec.Struct):
    """An approval feed's callback secret, and the previous one while it still signs."""

    callback_secret: str
    previous_callback_secret: str | None
    previous_callback_secret_expires_at: str | None


@dataclass(frozen=True, slots=True)
class ReaderFeed:
    """A feed as a widget reader (a `gzr_` token holder) sees it."""

    id: str
    name: str
    schema_type: str
    project_id: str = ""  # whose time zone the freshness stamp is in
    show_updated: bool = False


@dataclass(slots=True)
class FeedState:
    """What the ingest path needs to know about a feed, kept in memory."""

    id: str
    project_id: str
    schema_type: str
    plan_name: str
    key_hash: str
    previous_hash: str | None
    previous_expires_at: float | None
    checked_at: float  # monotonic
    buckets: FeedBuckets
    dropped_before: int  # the row's throttled_dropped when this process loaded the feed
    dropped_written: int  # the total the row holds (found at load, or committed by a flush)
    topic: str | None = None  # the name ntfy clients publish to
    name: str = ""
    number: int = 0  # the row's number (Gotify's numeric application id)

    @property
    def dropped(self) -> int:
        """Throttled events counted but not stored, ever (the row's count at load, plus ours)."""
        return self.dropped_before + self.buckets.throttled_dropped

    def accepts(self, digest: str, now: float) -> bool:
        current = same(digest, self.key_hash)
        previous = self.previous_hash is not None and same(digest, self.previous_hash)
        return current or (previous and still_good(self.previous_hash, self.previous_expires_at, now))


class Feeds:
    """Feed CRUD, write-key authentication and per-feed quota state."""

    def __init__(self, db: Store, config: Config, clock: Clock) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self._states: dict[str, FeedState] = {}

    def plan(self, name: str, path: str = "$.plan") -> Plan:
        plan = self.config.plans.get(name)
        if plan is None:
            raise ValidationFailed.at(path, f"no plan named {name!r}; plans: {', '.join(sorted(self.config.plans))}")
        return plan

    async def create(
        self,
        project_id: str,
        name: str,
        schema_type: str,
        plan_name: str | None,
        topic: str | None = None,
        *,
        show_updated: bool = False,
    ) -> NewFeed:
        if schema_type not in SCHEMA_TYPES:
            raise ValidationFailed.at("$.schema_type", f"must be one of {', '.join(SCHEMA_TYPES)}")
        plan_name = plan_name or self.config.default_plan
        plan = self.plan(plan_name)
        name = check_name(name)
        topic = check_topic(topic)
        feed_id, secret, now = new_id("fd_"), new_secret("gzw_"), self.clock.now()
        params = {
            "id": feed_id,
            "project_id": project_id,
            "name": name,
            "schema_type": schema_type,
            "plan": plan_name,
            "hash": hash_secret(secret),
            "prefix": display_prefix(secret),
            "read_token": new_secret("gzr_"),
            "callback_secret": new_signing_secret() if schema_type == "approval" else None,
            "topic": topic,
            "show_updated": show_updated,
            "now": now,
        }

        def job(tx: Tx) -> Row:
            if schema_type == "custom":
                _check_custom_allowed(tx, project_id, feed_id, plan_name, plan)
            _check_topic_free(tx, project_id, feed_id, topic)
            tx.execute(SQL_INSERT_FEED, params)
            return one(tx.execute(SQL_GET_FEED, (feed_id,)))

        row = await self.db.write(job)
        feed = self._feed_out(row)
        return NewFeed(**msgspec.structs.asdict(feed), write_key=secret)

    async def page(self, project_id: str, *, after: tuple[int] | None, limit: int) -> Page[Feed]:
        """A project's feeds in creation order, from the one after `after`."""
        rows = await self.db.fetch_all(SQL_LIST_FEEDS, (project_id, after[0] if after else 0, limit + 1))
        return page(rows, limit, self._feed_out, lambda r: (r["rowid"],))

    async def row(self, project_id: str, feed_id: str) -> Row:
        row = await self.db.fetch_one(SQL_GET_FEED, (feed_id,))
        if row is None or row["project_id"] != project_id:
            raise not_found("feed", feed_id)
        return row

    async def get(self, project_id: str, feed_id: str) -> Feed:
        return self._feed_out(await self.row(project_id, feed_id))

    async def update(
        self,
        project_id: str,
        feed_id: str,
        *,
        name: str | None,
        plan_name: str | None,
        topic: str | None | msgspec.UnsetType = msgspec.UNSET,
        show_updated: bool | None = None,
    ) -> Feed:
        """Rename, change the plan, set or clear (None) the topic, show or hide the freshness stamp;
        None and UNSET leave a value as it is."""
        plan = self.plan(plan_name) if plan_name is not None else None
        name = check_name(name) if name is not None else None
        topic = check_topic(topic) if topic is not msgspec.UNSET else topic
        now = self.clock.now()

        def job(tx: Tx) -> Row:
            row = tx.execute(SQL_GET_FEED, (feed_id,)).fetchone()
            if row is None or row["project_id"] != project_id:
                raise not_found("feed", feed_id)
            if (
                plan_name is not None
                and plan is not None
                and row["schema_type"] == "custom"
                and plan_name != row["plan"]
            ):
                _check_custom_allowed(tx, project_id, feed_id, plan_name, plan)
            new_topic = row["topic"] if topic is msgspec.UNSET else topic
            _check_topic_free(tx, project_id, feed_id, new_topic)
            shown = row["show_updated"] if show_updated is None else show_updated
            params = (name or row["name"], plan_name or row["plan"], new_topic, shown, now, feed_id)
            tx.execute(SQL_UPDATE_FEED, params)
            return one(tx.execute(SQL_GET_FEED, (feed_id,)))

        row = await self.db.write(job)
        state = self._states.get(feed_id)
        if state is not None:
            state.topic, state.name = row["topic"], row["name"]
        if state is not None and plan_name is not None and plan is not None:
            state.plan_name = plan_name
            state.buckets.set_plan(plan, self.clock.monotonic())
        return self._feed_out(row)

    async def delete(self, project_id: str, feed_id: str) -> None:
        if await self.db.execute(SQL_DELETE_FEED, (project_id, feed_id)) == 0:
            raise not_found("feed", feed_id)
        self._states.pop(feed_id, None)

    async def rotate_key(self, project_id: str, feed_id: str, grace_seconds: int = 0) -> NewFeed:
        """A new write key. The old one stops at once unless `grace_seconds` keeps it a while."""
        check_grace(grace_seconds, MAX_KEY_GRACE_SECONDS)
        secret, now = new_secret("gzw_"), self.clock.now()
        params = {
            "grace": grace_seconds,
            "now": now,
            "hash": hash_secret(secret),
            "prefix": display_prefix(secret),
            "project": project_id,
            "id": feed_id,
        }

        def job(tx: Tx) -> Row | None:
            if tx.execute(SQL_ROTATE_FEED_KEY, params).rowcount == 0:
                return None
            return tx.execute(SQL_GET_FEED, (feed_id,)).fetchone()

        row = await self.db.write(job)
        if row is None:
            raise not_found("feed", feed_id)
        self._refresh(row)
        return NewFeed(**msgspec.structs.asdict(self._feed_out(row)), write_key=secret)

    async def rotate_read_token(self, project_id: str, feed_id: str) -> Feed:
        """A new read token; the old one stops at once (devices must be given the new one)."""
        token, now = new_secret("gzr_"), self.clock.now()

        def job(tx: Tx) -> Row | None:
            if tx.execute(SQL_ROTATE_READ_TOKEN, (token, now, project_id, feed_id)).rowcount == 0:
                return None
            return tx.execute(SQL_GET_FEED, (feed_id,)).fetchone()

        row = await self.db.write(job)
        if row is None:
            raise not_found("feed", feed_id)
        return self._feed_out(row)

    async def callback_secret(self, project_id: str, feed_id: str) -> CallbackSecret:
        row = await self.row(project_id, feed_id)
        if row["callback_secret"] is None:
            raise Conflict("Only approval feeds have a callback secret.")
        previous, until = row["previous_callback_secret"], row["previous_callback_secret_expires_at"]
        if not still_good(previous, until, self.clock.now()):
            return CallbackSecret(row["callback_secret"], None, None)
        return CallbackSecret(row["callback_secret"], previous, iso(until))

    async def rotate_callback_secret(self, project_id: str, feed_id: str, grace_seconds: int) -> CallbackSecret:
        """A new callback secret; the old one keeps signing beside it for `grace_seconds` (0: not at all)."""
        check_grace(grace_seconds, MAX_KEY_GRACE_SECONDS)
        row = await self.row(project_id, feed_id)
        if row["schema_type"] != "approval":
            raise Conflict("Only approval feeds have a callback secret.")
        params = {
            "grace": grace_seconds,
            "now": self.clock.now(),
            "secret": new_signing_secret(),
            "project": project_id,
            "id": feed_id,
        }
        if await self.db.execute(SQL_ROTATE_CALLBACK_SECRET, params) == 0:
            raise not_found("feed", feed_id)
        return await self.callback_secret(project_id, feed_id)

    async def backfill_callback_secrets(self) -> None:
        """Give approval feeds from before callbacks their secret (once, at start)."""
        rows = await self.db.fetch_all(SQL_MISSING_CALLBACK_SECRETS)
        if rows:
            secrets = [(new_signing_secret(), row["id"]) for row in rows]
            await self.db.write(lambda tx: tx.executemany(SQL_SET_CALLBACK_SECRET, secrets))

    async def reader(self, feed_id: str, token: str | None) -> ReaderFeed:
        """The feed a read token opens; raises Unauthorized, or NotFound for an unknown feed
        with a token of the right shape (as the write key does on ingest)."""
        if not token:
            raise _unauthorized(
                "Send the feed's read token as 'Authorization: Bearer gzr_…' or '?token=gzr_…'.", "read"
            )
        row = await self.db.fetch_one(SQL_READER_FEED, (feed_id,))
        if row is None:
            if looks_like(token, "gzr_"):
                raise NotFound(f"No feed with id {feed_id!r}.")
            raise _unauthorized("This is not a Glimpze read token (they start with 'gzr_').", "read")
        if not same(token, row["read_token"]):
            raise _unauthorized("The read token does not match this feed (it may have been rotated).", "read")
        return ReaderFeed(row["id"], row["name"], row["schema_type"], row["project_id"], bool(row["show_updated"]))

    async def of_topic(self, project_id: str, topic: str) -> str | None:
        """The id of the project's feed that `topic` names (its id, or its topic), or None."""
        found: str | None = await self.db.fetch_value(SQL_FEED_OF_TOPIC, (project_id, topic, topic))
        return found

    async def of_key(self, secret: str) -> str | None:
        """The id of the feed whose write key (or previous key, in its grace) `secret` is, or None
        (`authenticate` then checks it as usual)."""
        digest = hash_secret(secret)
        found: str | None = await self.db.fetch_value(SQL_FEED_OF_KEY, (digest, digest))
        return found

    async def authenticate(self, feed_id: str, secret: str | None) -> FeedState:
        """The feed a write key opens; raises Unauthorized or NotFound (DESIGN §7 check order)."""
        if not secret:
            raise _unauthorized("Send the feed's write key as 'Authorization: Bearer gzw_…'.")
        digest, now = hash_secret(secret), self.clock.now()
        state = self._states.get(feed_id)
        if state is None or self.clock.monotonic() - state.checked_at > CACHE_SECONDS or not state.accepts(digest, now):
            row = await self.db.fetch_one(SQL_GET_FEED, (feed_id,))
            if row is None:
                self._states.pop(feed_id, None)
                if looks_like(secret, "gzw_"):
                    raise NotFound(f"No feed with id {feed_id!r}. Check the webhook URL.")
                raise _unauthorized("This is not a Glimpze write key (they start with 'gzw_').")
            state = self._refresh(row)
        if not state.accepts(digest, now):
            raise _unauthorized("The write key does not match this feed (it may have been rotated).")
        return state

    def show_on_widget(self, tx: Tx, feed_id: str, event_seq: int) -> None:
        """Make event `event_seq` the one the feed's widget shows (inside the event's write job)."""
        tx.execute(SQL_SHOW_ON_WIDGET, (event_seq, feed_id))

    def state(self, row: Row) -> FeedState:
        """The in-memory state of a feed, loading it from its row on first use."""
        return self._states.get(row["id"]) or self._refresh(row)

    def usage(self, row: Row) -> FeedUsage:
        return self.state(row).buckets.usage(self.clock.monotonic())

    async def flush_dropped(self) -> None:
        """Write each feed's count of throttled events that were counted but not stored.

        The in-memory counts are never reset: the row gets the total, and only once it is
        committed is it marked written, so a concurrent flush writes (and waits for) it too."""
        totals = [(s, s.dropped) for s in list(self._states.values()) if s.dropped != s.dropped_written]
        if not totals:
            return
        rows = [(total, state.id) for state, total in totals]
        await self.db.write(lambda tx: tx.executemany(SQL_SET_DROPPED, rows))
        for state, total in totals:
            state.dropped_written = max(state.dropped_written, total)

    def dropped(self, row: Row) -> int:
        """A feed's count of throttled events not stored: the loaded state's, else the row's."""
        state = self._states.get(row["id"])
        return row["throttled_dropped"] if state is None else state.dropped

    def _refresh(self, row: Row) -> FeedState:
        plan = self.config.plans.get(row["plan"]) or self.config.plans[self.config.default_plan]
        old = self._states.get(row["id"])
        steady = self.clock.monotonic()
        if old is not None:
            buckets, dropped_before, dropped_written = old.buckets, old.dropped_before, old.dropped_written
            buckets.set_plan(plan, steady)
        else:
            # The stored levels were taken at the wall time `buckets_at`: refill by the wall time since.
            stored_at = row["buckets_at"]
            at = None if stored_at is None else steady - max(0.0, self.clock.now() - stored_at)
            buckets = FeedBuckets.load(plan, steady, row["minute_tokens"], row["day_tokens"], at)
            dropped_before = dropped_written = row["throttled_dropped"]
        state = FeedState(
            id=row["id"],
            project_id=row["project_id"],
            schema_type=row["schema_type"],
            plan_name=row["plan"],
            key_hash=row["write_key_hash"],
            previous_hash=row["previous_key_hash"],
            previous_expires_at=row["previous_key_expires_at"],
            checked_at=steady,
            buckets=buckets,
            dropped_before=dropped_before,
            dropped_written=dropped_written,
            topic=row["topic"],
            name=row["name"],
            number=row["rowid"],
        )
        self._states[row["id"]] = state
        return state

    def _feed_out(self, row: Row) -> Feed:
        return Feed(
            id=row["id"],
            name=row["name"],
            schema_type=row["schema_type"],
            plan=row["plan"],
            webhook_url=f"{self.config.base_url}/ingest/{row['id']}",
            write_key_prefix=row["write_key_prefix"],
            read_token=row["read_token"],
            created_at=iso(row["created_at"]),
            updated_at=iso(row["updated_at"]),
            usage=self.usage(row),
            throttled_dropped=self.dropped(row),
            show_updated=bool(row["show_updated"]),
            callback_secret=row["callback_secret"],
            topic=row["topic"],
        )


def _check_custom_allowed(tx: Tx, project_id: str, feed_id: str, plan_name: str, plan: Plan) -> None:
    """DESIGN §7: a custom feed needs a plan with custom_feeds ≥ 1 and room left in the project."""
    if plan.custom_feeds < 1:
        raise PlanForbids(
            f"The {plan_name!r} plan does not include custom (image) feeds; choose a plan that does, such as 'pro'."
        )
    held = one(tx.execute(SQL_COUNT_CUSTOM, (project_id, feed_id)))[0]
    if held >= plan.custom_feeds:
        raise PlanForbids(
            f"The {plan_name!r} plan allows {plan.custom_feeds} custom feed(s) per project and this project "
            f"already has {held}."
        )


def check_topic(topic: str | None, path: str = "$.topic") -> str | None:
    """A topic as given (None: no topic); raises ValidationFailed naming `path`."""
    if topic is None:
        return None
    if not _TOPIC.fullmatch(topic):
        raise ValidationFailed.at(path, "must be 1 to 64 letters, digits, '-' or '_' (as ntfy topics are)")
    if topic.startswith("fd_"):
        raise ValidationFailed.at(path, "must not start with 'fd_': a feed's id already names it as a topic")
    return topic


def _check_topic_free(tx: Tx, project_id: str, feed_id: str, topic: str | None) -> None:
    """A topic names one feed of a project (inside the write job that sets it)."""
    if topic is None:
        return
    holder = tx.execute(SQL_TOPIC_HOLDER, (project_id, topic, feed_id)).fetchone()
    if holder is not None:
        raise Conflict(f"The topic {topic!r} already names feed {holder[0]!r}; choose another, or clear that one's.")


def _unauthorized(detail: str, kind: str = "write") -> Unauthorized:
    refusal = InvalidWriteKey if kind == "write" else InvalidReadToken
    return refusal(detail, headers={"WWW-Authenticate": 'Bearer realm="glimpze"'})
