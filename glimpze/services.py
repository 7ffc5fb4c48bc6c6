"""`Glimpze`: the services the server and the CLI share, built from a Config, a clock and a store."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import time
from urllib.parse import urlsplit

import httpcore
import msgspec

from glimpze import __version__
from glimpze.accounts.admin import Admin
from glimpze.accounts.keys import Keys
from glimpze.accounts.settings import ProjectSettings, normalize_origin
from glimpze.chat.agents import Agents
from glimpze.chat.cta_context import CtaContext
from glimpze.chat.ctas import CtaRules
from glimpze.chat.inbox import Inbox
from glimpze.chat.leads import Leads
from glimpze.chat.messages import Messages
from glimpze.chat.patterns import PatternSearcher
from glimpze.chat.records import SessionRecords
from glimpze.chat.sessions import Sessions
from glimpze.chat.streams import SessionStreams
from glimpze.chat.tokens import ChatTokens
from glimpze.clock import Clock, SystemClock
from glimpze.config import Config
from glimpze.delivery import callbacks
from glimpze.delivery.dispatcher import SQL_QUEUE_STATS, Dispatcher
from glimpze.delivery.inspector import Inspector
from glimpze.delivery.outbox import Outbox
from glimpze.delivery.ssrf import GuardedTransport, TargetPolicy, guarded_pool
from glimpze.delivery.webhooks import Webhooks
from glimpze.feeds.feeds import Feeds
from glimpze.feeds.idempotency import Idempotency
from glimpze.feeds.ingest import Ingest, NewEvent
from glimpze.feeds.limits import AuthFailureLimiter, parse_networks
from glimpze.feeds.media import Media
from glimpze.feeds.retention import Retention
from glimpze.feeds.tiles import Tiles
from glimpze.feeds.widgets import Widgets
from glimpze.ops.metrics import Registry
from glimpze.push.action_links import ActionLinks
from glimpze.push.approvals import Approvals
from glimpze.push.pushes import Push
from glimpze.push.quiet_hours import QuietHours
from glimpze.push.targets import PushTargets
from glimpze.push.webpush import FALLBACK_SUBJECT, WebPush
from glimpze.store.database import Database, wal_path
from glimpze.web.live import Changes

log = logging.getLogger("glimpze")


class Services:
    """One instance per process: open() before use, close() at the end."""

    def __init__(
        self, config: Config, *, clock: Clock | None = None, network: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = Registry()
        self.db = Database(config.db_path, synchronous=config.synchronous)
        self.trusted_proxies = parse_networks(config.trusted_proxies)
        self.auth_failures = AuthFailureLimiter(self.clock)
        self.keys = Keys(self.db, self.clock)
        self.feeds = Feeds(self.db, config, self.clock)
        self.idempotency = Idempotency(self.db, self.clock)
        self.policy = TargetPolicy(config.webhooks.allow_targets)
        self.outbox = Outbox(self.db, self.clock, config.webhooks.event_retention_days)
        self.webhooks = Webhooks(self.db, config, self.clock, self.outbox, self.policy)
        self.media = Media(config.data_path / "media", self.db, config.base_url)
        self.ingest = Ingest(
            self.db, self.feeds, self.idempotency, self.clock, self.auth_failures, self.media, self.metrics
        )
        self.ingest.on_store.append(self.media.on_store)
        # What the dashboard's live pages hear: notes taken inside write jobs, told after the commit.
        self.changes = Changes()
        self.ingest.on_store.append(self.changes.on_store)
        self.outbox.on_emit.append(self.changes.on_emit)
        self.ingest.on_accept.append(self._emit_feed_event)
        self.widgets = Widgets(self.db, self.feeds, self.media, self.clock, self.auth_failures, self.ingest)
        self.dispatcher = Dispatcher(
            self.db,
            config,
            self.clock,
            self.outbox,
            lambda: guarded_pool(self.policy, network=network),
            busy=lambda: self.ingest.in_flight > 0,
            metrics=self.metrics,
        )
        self.dispatcher.on_outcome.append(self.changes.on_outcome)
        self.retention = Retention(self.db, config, self.media)
        self.settings = ProjectSettings(self.db, self.clock)
        # Approvals and push: approval rows, then pushes, are written by ingest hooks after feed.event.
        self.quiet_hours = QuietHours(self.db, self.clock, self.settings)
        self.push_targets = PushTargets(self.db, self.clock, self.policy)
        self.webpush = WebPush(
            config.data_path,
            subject=_vapid_subject(config),
            ttl=config.push.webpush_ttl_seconds,
            timeout=config.push.timeout_seconds,
            transport=lambda: GuardedTransport(self.policy, network=network),
        )
        self.push = Push(
            self.db, config, self.clock, self.push_targets, self.quiet_hours, self.webpush, metrics=self.metrics
        )
        self.action_links = ActionLinks(self.db, config.base_url)
        self.approvals = Approvals(self.db, config, self.clock, self.outbox, self.push, self.action_links)
        self.push.links = self.approvals.links
        self.ingest.decide_push = self.push.decide
        self.ingest.check_event = functools.partial(callbacks.check_target, self.policy)
        self.ingest.on_accept.append(self.approvals.on_accept)
        self.ingest.on_accept.append(self.push.on_accept)
        self.ingest.approval_widget = self.approvals.widget
        # Conversations
        own_origin = normalize_origin(urlsplit(config.base_url)._replace(path="", query="", fragment="").geturl())
        self.chat_tokens = ChatTokens(self.db, self.clock, self.settings, own_origin)
        self.agents = Agents(self.db, self.clock)
        self.streams = SessionStreams(self.db, self.clock)
        self.sessions = Sessions(self.db, self.clock, self.outbox, self.streams)
        self.session_records = SessionRecords(self.db, self.clock, self.sessions)
        self.messages = Messages(self.db, self.clock, self.outbox, self.streams, self.sessions)
        self.leads = Leads(self.db, self.clock, self.outbox)
        self.cta_context = CtaContext(self.db, self.clock, self.settings)
        self.ctas = CtaRules(self.db, self.clock, self.cta_context, PatternSearcher(), self.streams)
        self.messages.on_reply.append(self.ctas.on_reply)
        # The dashboard: its home screen's layout, and the administrator's inbox
        self.tiles = Tiles(self.db, self.clock)
        self.inbox = Inbox(self.db, self.clock, self.settings, self.push)
        self.messages.on_message.append(self.inbox.on_message)
        self.inspector = Inspector(self.db)
        # The dashboard's administrator
        self.admin = Admin(self.db, self.clock)
        # Set when the server begins to shut down: streams end, long polls answer.
        self.stopping = asyncio.Event()
        self._declare_gauges()

    async def open(self) -> None:
        await self.db.open()
        self.media.open()
        self.db.writer.after_commit.append(self.outbox.after_commit)
        self.db.writer.after_commit.append(self.streams.after_commit)
        self.db.writer.after_commit.append(self.push.after_commit)
        self.db.writer.after_commit.append(self.changes.after_commit)
        await self.feeds.backfill_callback_secrets()
        await self.action_links.open()
        await self.push_targets.load()
        await self.quiet_hours.load()

    def stop(self) -> None:
        """Begin shutting down: open SSE streams end and waiting long polls answer at once
        (idempotent; call on the loop)."""
        self.stopping.set()
        self.streams.wake_all()
        self.outbox.shutdown()
        self.changes.shutdown()

    def _declare_gauges(self) -> None:
        """The figures read at scrape time: the delivery queue, the data's size, the process."""
        m = self.metrics
        m.gauge("glimpze_info", "The running version (always 1)", ("version",)).set(__version__, value=1)
        m.gauge("process_start_time_seconds", "When this process started (unix time)").set(value=time.time())
        queued = m.gauge("glimpze_deliveries_queued", "Deliveries waiting to be sent, leased ones included")
        leased = m.gauge("glimpze_deliveries_leased", "Deliveries being sent right now")
        oldest = m.gauge(
            "glimpze_delivery_oldest_due_seconds",
            "How long the oldest due delivery (of an active webhook, or a callback) has waited",
        )
        files = m.gauge("glimpze_database_bytes", "Size of the database files", ("file",))
        media = m.gauge("glimpze_media_bytes", "Size of the stored images")
        streams = m.gauge("glimpze_sse_streams", "Server-Sent Event streams open now")
        rss = m.gauge("process_resident_memory_bytes", "Resident memory of this process")

        @m.collector
        async def collect() -> None:
            now = self.clock.due()  # the time deliveries fall due and leases end by (clock.py)
            row = await self.db.fetch_one(SQL_QUEUE_STATS, {"now": now})
            if row is not None:
                queued.set(value=row["open"])
                leased.set(value=row["leased"])
                oldest.set(value=0 if row["oldest_due"] is None else max(0.0, now - row["oldest_due"]))
            media.set(value=await self.db.fetch_value("SELECT coalesce(sum(bytes), 0) FROM media"))
            for name, path in (("db", self.db.path), ("wal", wal_path(self.db.path))):
                files.set(name, value=path.stat().st_size if path.exists() else 0)
            streams.set(value=self.streams.streams_open)
            if (memory := _resident_bytes()) is not None:
                rss.set(value=memory)

    def _emit_feed_event(self, conn: sqlite3.Connection, stored: NewEvent) -> None:
        """`feed.event` for every accepted event; its id is the ingested event's id."""
        self.outbox.emit(
            conn,
            stored.feed.project_id,
            "feed.event",
            {
                "feed_id": stored.feed.id,
                "schema_type": stored.feed.schema_type,
                "content": msgspec.Raw(stored.content),
                "metadata": msgspec.Raw(stored.metadata),
                "intent": msgspec.Raw(stored.intent),
            },
            occurred_at=stored.received_at,
            event_id=stored.id,
        )

    async def close(self) -> None:
        try:
            await self.flush()
        finally:
            await self.ctas.patterns.close()
            await self.db.close()

    async def flush(self) -> None:
        """Write the counters kept in memory (key use, dropped throttled events)."""
        await self.keys.flush_last_used()
        await self.feeds.flush_dropped()

    async def __aenter__(self) -> Services:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _vapid_subject(config: Config) -> str:
    """Who push services may contact about our pushes: the setting, else an https public_url."""
    if config.push.vapid_subject:
        return config.push.vapid_subject
    if config.public_url and config.public_url.startswith("https://"):
        return f"https://{urlsplit(config.public_url).hostname}"  # VAPID takes no port or path
    return FALLBACK_SUBJECT


def _resident_bytes() -> int | None:
    """This process's RSS from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
