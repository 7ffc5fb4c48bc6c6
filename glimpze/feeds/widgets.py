"""Widget readers: a feed's widget as JSON and as exact-size PNGs, behind the feed's read token.

`/w/{feed_id}.json` and `/w/{feed_id}/{small|medium|large}.png?theme=light|dark` are what an
e-ink frame, a Home Assistant picture card or an iOS image widget polls. A PNG is drawn from
the current widget state (render.py); a custom feed's PNG is the uploaded image itself (a JPEG
or WebP re-encoded), or a redirect to a hosted image, which the server never fetches (no SSRF).
Every answer carries an ETag, so a device polling an unchanged widget gets a 304 and nothing is
drawn; the last few drawn images are also kept for readers that do not revalidate.

A feed with `show_updated` has its PNGs say when it was last updated ("updated 14:05", in the
project's time zone: freshness.py); the stamp is part of the ETag, so it changes only when the
feed does or the day it names is no longer today. A stored custom image gets the stamp drawn on
it; a hosted one (a redirect) cannot.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from glimpze.clock import Clock
from glimpze.feeds.events import ApprovalView, Event, Events, event_out
from glimpze.feeds.feeds import Feeds, ReaderFeed
from glimpze.feeds.freshness import updated_stamp
from glimpze.feeds.images import WIDGET_PIXELS
from glimpze.feeds.limits import AuthFailureLimiter
from glimpze.feeds.media import Media
from glimpze.feeds.render import RENDER_VERSION, Card, placeholder, render, stamp_image, to_png
from glimpze.store.sql import Row, Store

if TYPE_CHECKING:
    from glimpze.push.quiet_hours import QuietHours

log = logging.getLogger("glimpze.widgets")

THEMES = ("light", "dark")
RENDER_CONCURRENCY = 2  # a Pi has 4 cores and little memory; the event loop keeps the others
CACHE_ENTRIES = 32  # rendered PNGs (~10–60 KB each) kept by ETag
NO_EVENT_YET = "Waiting for the first event"


class WidgetEvent(msgspec.Struct):
    """What a widget shows of its event. Not its metadata or callback: a read token sits in
    device URLs and dashboards, and those may hold what only the feed's owner should see."""

    id: str
    schema_type: str
    content: dict[str, Any]
    received_at: str


class WidgetDocument(msgspec.Struct, omit_defaults=True):
    """`GET /w/{feed_id}.json`: the feed and its current widget state (null before the first); an
    approval feed's also says the shown request's state and how many requests wait."""

    feed_id: str
    name: str
    schema_type: str
    event: WidgetEvent | None
    approval: ApprovalView | None = None


@dataclass(frozen=True, slots=True)
class Picture:
    """A widget image to answer with: PNG bytes, or a redirect to a hosted image."""

    etag: str
    png: bytes | None = None
    redirect: str | None = None


class Widgets:
    """Reads widget state for `gzr_` token holders and draws it."""

    def __init__(
        self,
        db: Store,
        feeds: Feeds,
        media: Media,
        clock: Clock,
        auth_failures: AuthFailureLimiter,
        events: Events,
        *,
        quiet_hours: QuietHours,
    ) -> None:
        self.db = db
        self.feeds = feeds
        self.media = media
        self.clock = clock
        self.auth_failures = auth_failures
        self.events = events  # what a widget shows: the event log's widget state
        self.quiet_hours = quiet_hours  # the project's time zone, for the freshness stamp
        self._drawing = asyncio.Semaphore(RENDER_CONCURRENCY)
        self._cache: OrderedDict[str, bytes] = OrderedDict()

    async def open(self, feed_id: str, token: str | None, client: str) -> ReaderFeed:
        """The feed a read token opens, behind the failed-authentication limiter."""
        return await self.auth_failures.guard(client, lambda: self.feeds.reader(feed_id, token))

    async def document(self, feed: ReaderFeed) -> WidgetDocument:
        """The feed and its current widget state, for `/w/{feed_id}.json`."""
        row, approval = await self.events.widget_row(feed.id, feed.schema_type)
        if row is None:
            return WidgetDocument(feed.id, feed.name, feed.schema_type, None)
        event = event_out(row)
        shown = WidgetEvent(event.id, event.schema_type, event.content, event.received_at)
        return WidgetDocument(feed.id, feed.name, feed.schema_type, shown, approval)

    def card(self, feed: ReaderFeed, event: Event, approval: ApprovalView | None, updated: str | None = None) -> Card:
        """What the PNG of `event` draws (an approval's state and how many wait included)."""
        view = approval or ApprovalView("pending", 0)
        return Card(feed.name, event.schema_type, event.content, view.state, view.waiting, updated)

    def stamp(self, feed: ReaderFeed, row: Row) -> str | None:
        """The freshness stamp of a feed's widget showing event `row`, when the feed shows one."""
        if not feed.show_updated:
            return None
        return updated_stamp(row["received_at"], self.clock.now(), self.quiet_hours.time_zone(feed.project_id))

    async def picture(self, feed: ReaderFeed, size: str, theme: str, known: frozenset[str] = frozenset()) -> Picture:
        """The widget at `size` in `theme`; `png` is None when its ETag is one of the `known`
        ones the client has (If-None-Match), so nothing is drawn."""
        assert size in WIDGET_PIXELS and theme in THEMES
        row, approval = await self.events.widget_row(feed.id, feed.schema_type)
        if row is None:
            return await self._placeholder(feed, NO_EVENT_YET, size, theme, known)
        event = event_out(row)
        stamp = self.stamp(feed, row)
        if event.schema_type == "custom":
            return await self._custom(feed, row["seq"], event, size, theme, known, stamp)
        card = self.card(feed, event, approval, stamp)
        etag = _etag(RENDER_VERSION, "card", event.id, repr(card), size, theme)
        return await self._draw(etag, lambda: render(card, size, theme), known)

    async def _custom(
        self,
        feed: ReaderFeed,
        seq: int,
        event: Event,
        size: str,
        theme: str,
        known: frozenset[str],
        stamp: str | None,
    ) -> Picture:
        image = event.content.get(size)
        if not image:
            return await self._placeholder(feed, f"No {size} image in the latest update", size, theme, known)
        dark = theme == "dark" and bool(image.get("image_url_dark"))  # no dark variant: the light one
        slot = f"{size}_dark" if dark else size
        url = image["image_url_dark"] if dark else image["image_url"]
        stored = (await self.media.event_images(seq)).get(slot)
        if stored is None:
            return Picture(etag=_etag("redirect", url), redirect=url)
        etag = (
            _etag("media", stored.sha256)
            if stamp is None
            else _etag("media", stored.sha256, RENDER_VERSION, stamp, theme)
        )
        if _known(known, etag):
            return Picture(etag)
        try:
            data = await asyncio.to_thread(self.media.path(stored.name).read_bytes)
            if stamp is not None:
                data = await self._cached(etag, lambda: stamp_image(data, stamp, theme))
            elif stored.ext != "png":
                data = await self._cached(etag, lambda: to_png(data))
        except (OSError, ValueError):
            log.warning("stored image %s of feed %s cannot be read", stored.name, feed.id, exc_info=True)
            return await self._placeholder(feed, "The image could not be read", size, theme, known)
        return Picture(etag, data)

    async def _placeholder(
        self, feed: ReaderFeed, message: str, size: str, theme: str, known: frozenset[str]
    ) -> Picture:
        etag = _etag(RENDER_VERSION, "placeholder", feed.name, message, size, theme)
        return await self._draw(etag, lambda: placeholder(feed.name, message, size, theme), known)

    async def _draw(self, etag: str, draw: Callable[[], bytes], known: frozenset[str]) -> Picture:
        if _known(known, etag):
            return Picture(etag)
        return Picture(etag, await self._cached(etag, draw))

    async def _cached(self, etag: str, draw: Callable[[], bytes]) -> bytes:
        """Draw in a worker thread (at most RENDER_CONCURRENCY at once), remembering the result."""
        data = self._cache.get(etag)
        if data is not None:
            self._cache.move_to_end(etag)
            return data
        async with self._drawing:
            data = await asyncio.to_thread(draw)
        self._cache[etag] = data
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return data


def _etag(*parts: str) -> str:
    return '"' + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32] + '"'


def _known(known: frozenset[str], etag: str) -> bool:
    return etag in known or "*" in known
