"""Screens: one to four feeds laid out on a canvas, their read tokens, and the screen drawn as an image.

A screen (`scr_…`) is read like a feed's widget, with its own read token (`gzr_…`, stored as is
so an API key can show it again; a rotation stops the old one at once): `/s/{id}.png` for Home
Assistant picture cards, the kiosk page `/s/{id}`, and the devices whose playlists hold it.
Drawing goes through a `ScreenCache` (displays/render.py), so an unchanged screen is not drawn
again; draws run in worker threads, a few at a time.
"""

from __future__ import annotations

import asyncio
import typing
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Literal

import msgspec

from glimpze.clock import Clock, iso
from glimpze.config import Config
from glimpze.displays.playlists import drop_screen
from glimpze.displays.render import BitDepth, ImageFormat, Panel, ScreenCache, ScreenSpec
from glimpze.errors import InvalidReadToken, NotFound, ValidationFailed, not_found
from glimpze.feeds.events import Events, Widget
from glimpze.ids import looks_like, new_id, new_secret, same
from glimpze.names import check_name
from glimpze.push.quiet_hours import QuietHours
from glimpze.store.changes import Changes
from glimpze.store.pagination import Page, page
from glimpze.store.sql import Row, Store, Tx, one

Layout = Literal["full", "halves", "grid", "hero"]
Theme = Literal["light", "dark", "eink"]
LAYOUTS: tuple[str, ...] = typing.get_args(Layout)
# How many feeds each layout shows: one; two side by side; one large and two small; a 2×2 grid.
LAYOUT_FEEDS = {"full": 1, "halves": 2, "hero": 3, "grid": 4}
LAYOUT_FOR_COUNT = {count: layout for layout, count in LAYOUT_FEEDS.items()}
DEFAULT_SIZE = (800, 480)
MIN_SIDE, MAX_SIDE = 100, 2048
DRAW_CONCURRENCY = 2

SQL_SCREEN_COLUMNS = """
    seq, id, project_id, name, width, height, layout, feeds, theme, show_updated, read_token, created_at, updated_at
"""
SQL_INSERT_SCREEN = """
    INSERT INTO screens (id, project_id, name, width, height, layout, feeds, theme, show_updated, read_token,
                         created_at, updated_at)
    VALUES (:id, :project_id, :name, :width, :height, :layout, :feeds, :theme, :show_updated, :read_token, :now, :now)
"""
SQL_GET_SCREEN = f"SELECT {SQL_SCREEN_COLUMNS} FROM screens WHERE id = ?"
SQL_LIST_SCREENS = f"SELECT {SQL_SCREEN_COLUMNS} FROM screens WHERE project_id = ? AND seq > ? ORDER BY seq LIMIT ?"
SQL_PROJECT_SCREEN_IDS = "SELECT id FROM screens WHERE project_id = ?"
SQL_UPDATE_SCREEN = """
    UPDATE screens SET name = :name, width = :width, height = :height, layout = :layout, feeds = :feeds,
        theme = :theme, show_updated = :show_updated, updated_at = :now
    WHERE id = :id
"""
SQL_DELETE_SCREEN = "DELETE FROM screens WHERE project_id = ? AND id = ?"
SQL_ROTATE_SCREEN_TOKEN = "UPDATE screens SET read_token = ?, updated_at = ? WHERE project_id = ? AND id = ?"
SQL_PROJECT_FEEDS = "SELECT id, name, schema_type FROM feeds WHERE project_id = ?"


class ScreenCreate(msgspec.Struct, forbid_unknown_fields=True):
    """The body of POST /v1/screens. `layout` defaults to the one that fits the number of feeds."""

    name: str
    feeds: list[str]
    size: tuple[int, int] = DEFAULT_SIZE
    layout: Layout | None = None
    theme: Theme = "light"
    show_updated: bool = True


class ScreenPatch(msgspec.Struct, forbid_unknown_fields=True):
    """The body of PATCH /v1/screens/{id}: the fields to change."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    feeds: list[str] | msgspec.UnsetType = msgspec.UNSET
    size: tuple[int, int] | msgspec.UnsetType = msgspec.UNSET
    layout: Layout | msgspec.UnsetType = msgspec.UNSET
    theme: Theme | msgspec.UnsetType = msgspec.UNSET
    show_updated: bool | msgspec.UnsetType = msgspec.UNSET


class Screen(msgspec.Struct, kw_only=True):
    """A screen as the API shows it, with the URLs that show it (the read token in them)."""

    id: str
    name: str
    size: list[int]  # [width, height]
    layout: str
    feeds: list[str]
    theme: str
    show_updated: bool
    read_token: str
    image_url: str
    kiosk_url: str
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class ReaderScreen:
    """A screen as its read token's holder sees it: enough to draw it."""

    id: str
    project_id: str
    name: str
    spec: ScreenSpec
    feeds: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ScreenPicture:
    """A drawn screen: the bytes and their filename (first 16 hex of their SHA-256)."""

    data: bytes
    filename: str

    @property
    def etag(self) -> str:
        return f'"{self.filename}"'


class Screens:
    """Screen CRUD, read tokens, and drawing a screen from its feeds' widget states."""

    def __init__(
        self,
        db: Store,
        config: Config,
        clock: Clock,
        events: Events,
        quiet_hours: QuietHours,
        changes: Changes,
    ) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.events = events
        self.quiet_hours = quiet_hours  # its time zone is the project's local time
        self.changes = changes
        self.cache = ScreenCache()
        self._drawing = asyncio.Semaphore(DRAW_CONCURRENCY)

    async def create(self, project_id: str, spec: ScreenCreate) -> Screen:
        feeds = await self._check_feeds(project_id, spec.feeds)
        layout = spec.layout or LAYOUT_FOR_COUNT.get(len(feeds), "grid")
        screen_id = new_id("scr_")
        params = {
            "id": screen_id,
            "project_id": project_id,
            "name": check_name(spec.name),
            **_checked_size(spec.size),
            "layout": _checked_layout(layout, len(feeds)),
            "feeds": msgspec.json.encode(feeds).decode(),
            "theme": spec.theme,
            "show_updated": int(spec.show_updated),  # 0 | 1 in an INTEGER column: the same on PostgreSQL
            "read_token": new_secret("gzr_"),
            "now": self.clock.now(),
        }

        def job(tx: Tx) -> Row:
            tx.execute(SQL_INSERT_SCREEN, params)
            self.changes.note(project_id, "screen", screen_id)
            return one(tx.execute(SQL_GET_SCREEN, (screen_id,)))

        return self._out(await self.db.write(job))

    async def page(self, project_id: str, *, after: tuple[int] | None, limit: int) -> Page[Screen]:
        """A project's screens in creation order, from the one after `after`."""
        rows = await self.db.fetch_all(SQL_LIST_SCREENS, (project_id, after[0] if after else 0, limit + 1))
        return page(rows, limit, self._out, lambda r: (r["seq"],))

    async def row(self, project_id: str, screen_id: str) -> Row:
        row = await self.db.fetch_one(SQL_GET_SCREEN, (screen_id,))
        if row is None or row["project_id"] != project_id:
            raise not_found("screen", screen_id)
        return row

    async def get(self, project_id: str, screen_id: str) -> Screen:
        return self._out(await self.row(project_id, screen_id))

    async def ids(self, project_id: str) -> set[str]:
        return {row["id"] for row in await self.db.fetch_all(SQL_PROJECT_SCREEN_IDS, (project_id,))}

    async def update(self, project_id: str, screen_id: str, patch: ScreenPatch) -> Screen:
        row = await self.row(project_id, screen_id)
        feeds = _stored_feeds(row)
        if patch.feeds is not msgspec.UNSET:
            feeds = await self._check_feeds(project_id, patch.feeds)
        layout = row["layout"]
        if patch.layout is not msgspec.UNSET:
            layout = patch.layout
        elif patch.feeds is not msgspec.UNSET:
            layout = LAYOUT_FOR_COUNT.get(len(feeds), layout)  # new feeds, no layout given: the one that fits
        size = (row["width"], row["height"]) if patch.size is msgspec.UNSET else patch.size
        params = {
            "id": screen_id,
            "name": row["name"] if patch.name is msgspec.UNSET else check_name(patch.name),
            **_checked_size(size),
            "layout": _checked_layout(layout, len(feeds)),
            "feeds": msgspec.json.encode(feeds).decode(),
            "theme": row["theme"] if patch.theme is msgspec.UNSET else patch.theme,
            "show_updated": row["show_updated"] if patch.show_updated is msgspec.UNSET else int(patch.show_updated),
            "now": self.clock.now(),
        }

        def job(tx: Tx) -> Row | None:
            if tx.execute(SQL_UPDATE_SCREEN, params).rowcount == 0:
                return None
            self.changes.note(project_id, "screen", screen_id)
            return tx.execute(SQL_GET_SCREEN, (screen_id,)).fetchone()

        updated = await self.db.write(job)
        if updated is None:
            raise not_found("screen", screen_id)
        return self._out(updated)

    async def delete(self, project_id: str, screen_id: str) -> None:
        """Delete a screen; it leaves every device's playlist in the same transaction."""
        now = self.clock.now()

        def job(tx: Tx) -> bool:
            if tx.execute(SQL_DELETE_SCREEN, (project_id, screen_id)).rowcount == 0:
                return False
            drop_screen(tx, project_id, screen_id, now)
            self.changes.note(project_id, "screen", screen_id)
            return True

        if not await self.db.write(job):
            raise not_found("screen", screen_id)

    async def rotate_read_token(self, project_id: str, screen_id: str) -> Screen:
        """A new read token; the old one stops at once (picture cards and kiosks need the new URL)."""
        token, now = new_secret("gzr_"), self.clock.now()

        def job(tx: Tx) -> Row | None:
            if tx.execute(SQL_ROTATE_SCREEN_TOKEN, (token, now, project_id, screen_id)).rowcount == 0:
                return None
            self.changes.note(project_id, "screen", screen_id)
            return tx.execute(SQL_GET_SCREEN, (screen_id,)).fetchone()

        row = await self.db.write(job)
        if row is None:
            raise not_found("screen", screen_id)
        return self._out(row)

    async def reader(self, screen_id: str, token: str | None) -> ReaderScreen:
        """The screen a read token opens; raises InvalidReadToken, or NotFound for an unknown
        screen with a token of the right shape (as feeds do)."""
        if not token:
            raise _refused("Send the screen's read token as 'Authorization: Bearer gzr_…' or '?token=gzr_…'.")
        row = await self.db.fetch_one(SQL_GET_SCREEN, (screen_id,))
        if row is None:
            if looks_like(token, "gzr_"):
                raise NotFound(f"No screen with id {screen_id!r}.")
            raise _refused("This is not a Glimpze read token (they start with 'gzr_').")
        if not same(token, row["read_token"]):
            raise _refused("The read token does not match this screen (it may have been rotated).")
        return reader_screen(row)

    async def screen_of(self, project_id: str, screen_id: str) -> ReaderScreen | None:
        """A screen of the project to draw, or None when it is gone."""
        row = await self.db.fetch_one(SQL_GET_SCREEN, (screen_id,))
        return None if row is None or row["project_id"] != project_id else reader_screen(row)

    async def panels(self, screen: ReaderScreen) -> list[Panel]:
        """What each of the screen's feeds shows now, in layout order (a deleted feed shows as such)."""
        feeds = {row["id"]: row for row in await self.db.fetch_all(SQL_PROJECT_FEEDS, (screen.project_id,))}
        panels = []
        for feed_id in screen.feeds:
            feed = feeds.get(feed_id)
            if feed is None:
                panels.append(Panel(feed_id, "Deleted feed", "status", Widget(feed_id, None)))
                continue
            widget = await self.events.widget_of(feed_id, feed["schema_type"])
            panels.append(Panel(feed_id, feed["name"], feed["schema_type"], widget))
        return panels

    async def draw(self, screen: ReaderScreen, *, bit_depth: BitDepth = 8, fmt: ImageFormat = "png") -> ScreenPicture:
        """The screen as it is now, drawn (or found in the cache) in a worker thread."""
        return await self.draw_panels(screen.project_id, screen.spec, await self.panels(screen), bit_depth, fmt)

    async def draw_panels(
        self, project_id: str, spec: ScreenSpec, panels: list[Panel], bit_depth: BitDepth, fmt: ImageFormat
    ) -> ScreenPicture:
        """`panels` drawn on a screen of `spec` (setup and status screens are drawn this way too)."""
        now, tz = self.clock.now(), self.timezone(project_id)
        async with self._drawing:
            data, filename = await asyncio.to_thread(
                self.cache.get_or_render, spec, panels, now, tz, bit_depth=bit_depth, fmt=fmt
            )
        return ScreenPicture(data, filename)

    def timezone(self, project_id: str) -> tzinfo:
        """The project's local time: its quiet hours' time zone, else the server's."""
        name = self.quiet_hours.state(project_id).timezone
        if name:
            try:
                return zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                pass
        return datetime.now().astimezone().tzinfo or zoneinfo.ZoneInfo("UTC")

    async def _check_feeds(self, project_id: str, feeds: list[str]) -> list[str]:
        if not 1 <= len(feeds) <= max(LAYOUT_FEEDS.values()):
            raise ValidationFailed.at("$.feeds", f"must list 1 to {max(LAYOUT_FEEDS.values())} feeds")
        known = {row["id"] for row in await self.db.fetch_all(SQL_PROJECT_FEEDS, (project_id,))}
        for n, feed_id in enumerate(feeds):
            if feed_id not in known:
                raise ValidationFailed.at(f"$.feeds[{n}]", f"no feed with id {feed_id!r} in this project")
            if feed_id in feeds[:n]:
                raise ValidationFailed.at(f"$.feeds[{n}]", "is already on the screen")
        return feeds

    def _out(self, row: Row) -> Screen:
        base = f"{self.config.base_url}/s/{row['id']}"
        return Screen(
            id=row["id"],
            name=row["name"],
            size=[row["width"], row["height"]],
            layout=row["layout"],
            feeds=_stored_feeds(row),
            theme=row["theme"],
            show_updated=bool(row["show_updated"]),
            read_token=row["read_token"],
            image_url=f"{base}.png?token={row['read_token']}",
            kiosk_url=f"{base}?token={row['read_token']}",
            created_at=iso(row["created_at"]),
            updated_at=iso(row["updated_at"]),
        )


def bit_depth_of(value: int) -> BitDepth:
    """A requested bit depth (1, 2, or anything else: 8, the full-colour picture)."""
    return 1 if value == 1 else 2 if value == 2 else 8


def reader_screen(row: Row) -> ReaderScreen:
    spec = ScreenSpec(
        size=(row["width"], row["height"]),
        layout=row["layout"],
        theme=row["theme"],
        show_updated=bool(row["show_updated"]),
    )
    return ReaderScreen(row["id"], row["project_id"], row["name"], spec, tuple(_stored_feeds(row)))


def _stored_feeds(row: Row) -> list[str]:
    return list(msgspec.json.decode(row["feeds"], type=list[str]))


def _checked_size(size: tuple[int, int]) -> dict[str, int]:
    for n, side in enumerate(size):
        if not MIN_SIDE <= side <= MAX_SIDE:
            raise ValidationFailed.at(f"$.size[{n}]", f"must be between {MIN_SIDE} and {MAX_SIDE} pixels")
    return {"width": size[0], "height": size[1]}


def _checked_layout(layout: str, feeds: int) -> str:
    wanted = LAYOUT_FEEDS[layout]
    if feeds != wanted:
        fits = LAYOUT_FOR_COUNT.get(feeds)
        hint = f"; {feeds} feed{'s' if feeds != 1 else ''} fit the {fits!r} layout" if fits else ""
        raise ValidationFailed.at("$.feeds", f"the {layout!r} layout shows {wanted} feed(s), not {feeds}{hint}")
    return layout


def _refused(detail: str) -> InvalidReadToken:
    return InvalidReadToken(detail, headers={"WWW-Authenticate": 'Bearer realm="glimpze"'})
