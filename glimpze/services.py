"""`Services`: everything the server and the CLI share, built once from a Config, a clock and a store."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from urllib.parse import urlsplit

import httpcore

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
from glimpze.delivery.dispatcher import SQL_QUEUE_STATS, Dispatcher
from glimpze.delivery.inspector import Inspector
from glimpze.delivery.outbox import Outbox
from glimpze.delivery.ssrf import GuardedBackend, GuardedTransport, TargetPolicy
from glimpze.delivery.webhooks import Webhooks
from glimpze.displays.devices import Devices
from glimpze.displays.screens import Screens
from glimpze.displays.trmnl import Trmnl
from glimpze.feeds.dialects import Publishers
from glimpze.feeds.events import Events
from glimpze.feeds.feeds import Feeds
from glimpze.feeds.idempotency import Idempotency
from glimpze.feeds.ingest import Ingest
from glimpze.feeds.limits import AuthFailureLimiter, parse_networks
from glimpze.feeds.media import Media
from glimpze.feeds.retention import Retention
from glimpze.feeds.tiles import Tiles
from glimpze.feeds.widgets import Widgets
from glimpze.ops.metrics import Registry
from glimpze.push.action_links import ActionLinks
from glimpze.push.approvals import Approvals
from glimpze.push.buttons import Buttons
from glimpze.push.pushes import Push
from glimpze.push.quiet_hours import QuietHours
from glimpze.push.targets import PushTargets
from glimpze.push.webpush import FALLBACK_SUBJECT, WebPush
from glimpze.store.changes import Changes
from glimpze.store.database import Database, wal_path
from glimpze.store.factory import open_store

log = logging.getLogger("glimpze")


class Services:
    """One instance per process: open() before use, close() at the end."""

    def __init__(
        self, config: Config, *, clock: Clock | None = None, network: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = Registry()
        self.db = open_store(config)
        # What the dashboard's live pages hear: noted inside write jobs, told after the commit.
        self.changes = Changes()
        self.trusted_proxies = parse_networks(config.trusted_proxies)
        self.auth_failures = AuthFailureLimiter(self.clock)
        self.keys = Keys(self.db, self.clock)
        self.settings = ProjectSettings(self.db, self.clock)
        self.policy = TargetPolicy(config.webhooks.allow_targets)
        # The event pipe out
        self.outbox = Outbox(self.db, self.clock, self.changes, config.webhooks.event_retention_days)
        self.webhooks = Webhooks(self.db, config, self.clock, self.outbox, self.policy)
        self.dispatcher = Dispatcher(
            self.db,
            config,
            self.clock,
            self.outbox,
            self.changes,
            network or GuardedBackend(self.policy),
            busy=lambda: self.ingest.in_flight > 0,
            metrics=self.metrics,
        )
        self.inspector = Inspector(self.db)
        # Push and approvals
        self.quiet_hours = QuietHours(self.db, self.clock, self.settings)
        self.push_targets = PushTargets(self.db, self.clock, self.policy)
        self.webpush = WebPush(
            config.data_path,
            subject=_vapid_subject(config),
            ttl=config.push.webpush_ttl_seconds,
            timeout=config.push.timeout_seconds,
            transport=lambda: GuardedTransport(self.policy, network=network),
        )
        self.action_links = ActionLinks(self.db, config.base_url)
        self.push = Push(
            self.db,
            config,
            self.clock,
            self.push_targets,
            self.quiet_hours,
            self.webpush,
            self.action_links,
            metrics=self.metrics,
        )
        self.approvals = Approvals(self.db, config, self.clock, self.outbox, self.push, self.action_links)
        self.buttons = Buttons(
            self.db,
            self.clock,
            self.action_links,
            lambda: GuardedTransport(self.policy, max_connections=4, network=network),
            config.push.timeout_seconds,
        )
        # Feeds: events in, widgets out
        self.feeds = Feeds(self.db, config, self.clock)
        self.idempotency = Idempotency(self.db, self.clock)
        self.media = Media(config.data_path / "media", self.db, config.base_url)
        self.ingest = Ingest(
            self.db,
            self.clock,
            self.metrics,
            auth_failures=self.auth_failures,
            feeds=self.feeds,
            idempotency=self.idempotency,
            policy=self.policy,
            media=self.media,
            outbox=self.outbox,
            approvals=self.approvals,
            push=self.push,
            changes=self.changes,
        )
        self.publishers = Publishers(config, self.feeds, self.keys, self.auth_failures)  # ntfy, Gotify
        self.events = Events(self.db, self.feeds, self.approvals)
        self.widgets = Widgets(
            self.db, self.feeds, self.media, self.clock, self.auth_failures, self.events, quiet_hours=self.quiet_hours
        )
        self.retention = Retention(self.db, config, self.media)
        self.tiles = Tiles(self.db, self.clock)
        # Screens and the e-ink devices that show them
        self.screens = Screens(self.db, config, self.clock, self.events, self.quiet_hours, self.changes)
        self.devices = Devices(self.db, self.clock, self.screens, self.changes)
        self.trmnl = Trmnl(
            self.db,
            config,
            self.clock,
            devices=self.devices,
            screens=self.screens,
            default_project=self.keys.default_project_id,
            auth_failures=self.auth_failures,
            changes=self.changes,
        )
        # The visitor chat
        own_origin = normalize_origin(urlsplit(config.base_url)._replace(path="", query="", fragment="").geturl())
        self.chat_tokens = ChatTokens(self.db, self.clock, self.settings, own_origin)
        self.agents = Agents(self.db, self.clock)
        self.streams = SessionStreams(self.db, self.clock)
        self.sessions = Sessions(self.db, self.clock, self.outbox, self.streams)
        self.session_records = SessionRecords(self.db, self.clock, self.sessions)
        self.leads = Leads(self.db, self.clock, self.outbox)
        self.cta_context = CtaContext(self.db, self.clock, self.settings)
        self.ctas = CtaRules(self.db, self.clock, self.cta_context, PatternSearcher(), self.streams)
        self.inbox = Inbox(self.db, self.clock, self.settings, self.push)
        self.messages = Messages(
            self.db,
            self.clock,
            outbox=self.outbox,
            streams=self.streams,
            sessions=self.sessions,
            ctas=self.ctas,
            inbox=self.inbox,
        )
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
        m.gauge("glimpze_database_backend", "The database this process uses (always 1)", ("backend",)).set(
            self.db.backend, value=1
        )
        files = m.gauge("glimpze_database_bytes", "Size of the database files (SQLite)", ("file",))
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
            if isinstance(self.db, Database):  # PostgreSQL's files are the database server's
                for name, path in (("db", self.db.path), ("wal", wal_path(self.db.path))):
                    files.set(name, value=path.stat().st_size if path.exists() else 0)
            streams.set(value=self.streams.streams_open)
            if (memory := _resident_bytes()) is not None:
                rss.set(value=memory)

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
