"""Screens drawn as pictures: one to four feeds' widgets laid out on a canvas, in colour for kiosks
and picture cards, or in 1 or 2 bits for e-ink (eink.py), as PNG or the TRMNL firmware's BMP.

A screen is a `ScreenSpec` (size, layout, theme, whether panels say when they were updated) and
its `Panel`s in layout order. Layouts: `full` (one panel), `halves` (two, side by side on a
landscape screen and stacked on a portrait one), `grid` (2×2) and `hero` (a large panel and two
small ones, beside it or under it). Each panel is its feed's widget drawn to fit its cell by the
widget drawings (feeds/render.py) at the cell's own scale, with a caption: the feed's name and,
when `show_updated`, when it was last updated (feeds/freshness.py) in the project's time zone.

`ScreenCache` keeps rendered screens by a digest of everything that changes the picture (the
spec, each panel's widget state, the freshness stamps as they read at `now`, the depth and the
format), so an unchanged screen costs a hash and a lookup; the filename devices see is the first
16 hex digits of the SHA-256 of the image bytes (DESIGN §9), so it changes exactly when the
picture does.

pyvips is imported on first use (through feeds/images.py), never when this module is imported.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import tzinfo
from functools import partial
from typing import Any, Literal

import msgspec

from glimpze.clock import parse_iso
from glimpze.displays import eink
from glimpze.feeds.canvas import THEMES, Canvas, cell_scale, paint, rgb
from glimpze.feeds.events import ApprovalView, Widget
from glimpze.feeds.freshness import updated_stamp
from glimpze.feeds.render import RENDER_VERSION, Card, decode, draw, notice

Layout = Literal["full", "halves", "grid", "hero"]
ThemeName = Literal["light", "dark", "eink"]
BitDepth = Literal[1, 2, 8]
ImageFormat = Literal["png", "bmp"]

MIN_SIDE, MAX_SIDE = 100, 2048
DEFAULT_SIZE = (800, 480)
CELLS: dict[str, int] = {"full": 1, "halves": 2, "grid": 4, "hero": 3}
NO_EVENT_YET = "Waiting for the first event"
NO_IMAGE = "No stored image to show (a hosted image is never fetched)"
SCREEN_VERSION = "1"  # part of the cache key with RENDER_VERSION: bump when the layout changes

Box = tuple[int, int, int, int]  # x, y, width, height


@dataclass(frozen=True)
class ScreenSpec:
    """What a screen looks like: its size in pixels, layout, theme, and whether panels say when
    their feed was updated."""

    size: tuple[int, int]
    layout: Layout
    theme: ThemeName
    show_updated: bool = True


@dataclass(frozen=True)
class Panel:
    """A feed on a screen: its widget state, and for a custom feed the stored image to show
    (PNG, JPEG or WebP bytes, any of its sizes; without one the panel says there is none)."""

    feed_id: str
    name: str
    schema_type: str
    widget: Widget
    image: bytes | None = None


def render_screen(
    spec: ScreenSpec,
    panels: list[Panel],
    now: float,
    tz: tzinfo,
    *,
    bit_depth: BitDepth = 8,
    fmt: ImageFormat = "png",
) -> bytes:
    """The screen as image bytes: a colour PNG (bit_depth 8), a grey PNG of bit depth 1 or 2, or a
    1-bit BMP (fmt "bmp"). Raises ValueError for a spec out of range or more panels than cells."""
    _check(spec, len(panels), bit_depth, fmt)
    boxes, _ = cells(spec)
    theme = THEMES[spec.theme]
    # The cells are pasted on the divider colour: what shows between them are the dividers.
    screen = _plain(*spec.size, theme.muted, bit_depth)
    for i, (x, y, w, h) in enumerate(boxes):
        if i < len(panels):
            panel, stamp = panels[i], _stamp(spec, panels[i].widget, now, tz)
            key = _panel_digest(panel, stamp, (w, h, spec.theme, bit_depth))
            cell = _CELLS.get_or_paint(key, partial(_paint_panel, spec, (w, h), panel, stamp, bit_depth))
        else:
            cell = _plain(w, h, theme.background, bit_depth)
        screen = screen.insert(cell, x, y)
    return _encode(screen, bit_depth, fmt)


def render_message(
    spec: ScreenSpec, title: str, message: str, *, bit_depth: BitDepth = 8, fmt: ImageFormat = "png"
) -> bytes:
    """A screen that says one thing (e.g. a device waiting to be accepted), centred, in the spec's
    size and theme."""
    _check(spec, 0, bit_depth, fmt)
    canvas = _canvas(spec, spec.size)
    notice(canvas, title, message)
    return _encode(_paint(canvas, [], bit_depth), bit_depth, fmt)


def cells(spec: ScreenSpec) -> tuple[list[Box], list[Box]]:
    """The cells of the layout in panel order, and the divider lines between them."""
    width, height = spec.size
    line = max(2, round(min(width, height) / 240))
    across = width >= height  # landscape (or square): side by side
    dividers: list[Box] = []

    def split(box: Box, parts: tuple[int, ...], side_by_side: bool) -> list[Box]:
        x, y, w, h = box
        total = w if side_by_side else h
        length = total - line * (len(parts) - 1)  # what the cells share
        out, at = [], 0
        for i, part in enumerate(parts):
            size = total - at if i == len(parts) - 1 else round(length * part / sum(parts))
            out.append((x + at, y, size, h) if side_by_side else (x, y + at, w, size))
            at += size
            if i < len(parts) - 1:
                dividers.append((x + at, y, line, h) if side_by_side else (x, y + at, w, line))
                at += line
        return out

    whole: Box = (0, 0, width, height)
    if spec.layout == "full":
        boxes = [whole]
    elif spec.layout == "halves":
        boxes = split(whole, (1, 1), across)
    elif spec.layout == "grid":
        boxes = [cell for row in split(whole, (1, 1), False) for cell in split(row, (1, 1), True)]
    else:  # hero: a large cell (3/5) and two small ones beside it, or under it on a portrait screen
        large, rest = split(whole, (3, 2), across)
        boxes = [large, *split(rest, (1, 1), not across)]
    return boxes, dividers


class ScreenCache:
    """Rendered screens by a digest of their inputs (at most `max_entries` and `max_bytes`, least
    recently used first out), and by filename for the image URL. Safe to call from worker threads."""

    def __init__(self, max_entries: int = 64, max_bytes: int = 8 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._by_key: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._by_name: dict[str, bytes] = {}
        self._bytes = 0

    def get_or_render(
        self,
        spec: ScreenSpec,
        panels: list[Panel],
        now: float,
        tz: tzinfo,
        *,
        bit_depth: BitDepth = 8,
        fmt: ImageFormat = "png",
    ) -> tuple[bytes, str]:
        """(image bytes, filename): the cached picture while nothing that changes it has changed."""
        key = screen_key(spec, panels, now, tz, bit_depth, fmt)
        with self._lock:
            found = self._by_key.get(key)
            if found is not None:
                self._by_key.move_to_end(key)
                return found
        data = render_screen(spec, panels, now, tz, bit_depth=bit_depth, fmt=fmt)
        entry = (data, filename(data))
        with self._lock:
            if key not in self._by_key:
                self._by_key[key] = entry
                self._by_name[entry[1]] = data
                self._bytes += len(data)
                self._evict()
        return entry

    def image(self, name: str) -> bytes | None:
        """A cached picture by its filename (`/s/img/{filename}.png`), or None."""
        with self._lock:
            return self._by_name.get(name)

    def _evict(self) -> None:
        while self._by_key and (len(self._by_key) > self.max_entries or self._bytes > self.max_bytes):
            _, (data, name) = self._by_key.popitem(last=False)
            self._bytes -= len(data)
            if not any(other == name for _, other in self._by_key.values()):
                self._by_name.pop(name, None)


def filename(data: bytes) -> str:
    """The name devices see: the first 16 hex digits of the SHA-256 of the image bytes."""
    return hashlib.sha256(data).hexdigest()[:16]


def screen_key(spec: ScreenSpec, panels: list[Panel], now: float, tz: tzinfo, bit_depth: int, fmt: str) -> str:
    """A digest of every input that changes the picture (`now` and `tz` only through the stamps)."""
    head = msgspec.json.encode([RENDER_VERSION, SCREEN_VERSION, asdict(spec), bit_depth, fmt])
    digest = hashlib.sha256(head)
    for panel in panels:
        digest.update(_panel_digest(panel, _stamp(spec, panel.widget, now, tz)).encode())
    return digest.hexdigest()


def _panel_digest(panel: Panel, stamp: str | None, *context: object) -> str:
    """A digest of what a panel draws: its feed, widget state, image and stamp (and `context`)."""
    image = hashlib.sha256(panel.image).hexdigest() if panel.image is not None else None
    digest = hashlib.sha256(msgspec.json.encode([panel.feed_id, panel.name, panel.schema_type, image, stamp, context]))
    digest.update(msgspec.json.encode(panel.widget))
    return digest.hexdigest()


def _check(spec: ScreenSpec, panels: int, bit_depth: int, fmt: str) -> None:
    width, height = spec.size
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise ValueError(f"a screen is {MIN_SIDE}–{MAX_SIDE} px a side, not {width}×{height}")
    if spec.layout not in CELLS:
        raise ValueError(f"no layout {spec.layout!r}; layouts: {', '.join(CELLS)}")
    if spec.theme not in THEMES:
        raise ValueError(f"no theme {spec.theme!r}; themes: {', '.join(THEMES)}")
    if panels > CELLS[spec.layout]:
        raise ValueError(f"the {spec.layout} layout has {CELLS[spec.layout]} cell(s), not {panels}")
    if bit_depth not in (1, 2, 8):
        raise ValueError(f"bit depth is 1, 2 or 8, not {bit_depth}")
    if fmt not in ("png", "bmp") or (fmt == "bmp" and bit_depth != 1):
        raise ValueError("the image format is png (any depth) or bmp (1 bit)")


def _canvas(spec: ScreenSpec, size: tuple[int, int]) -> Canvas:
    return Canvas(*size, spec.theme, cell_scale(*size))


def _stamp(spec: ScreenSpec, widget: Widget, now: float, tz: tzinfo) -> str | None:
    if not spec.show_updated or widget.event is None:
        return None
    return updated_stamp(parse_iso(widget.event.received_at), now, tz)


def _paint_panel(spec: ScreenSpec, size: tuple[int, int], panel: Panel, stamp: str | None, bit_depth: int) -> Any:
    """A panel drawn and painted at its cell's size (not yet quantised: the screen is, once)."""
    canvas = _canvas(spec, size)
    picture = _draw_panel(canvas, panel, stamp)
    return _paint(canvas, [picture] if picture is not None else [], bit_depth).copy_memory()


def _draw_panel(canvas: Canvas, panel: Panel, stamp: str | None) -> tuple[Any, int, int] | None:
    """Lay a panel out on its cell's canvas; returns the picture to place, for a custom feed."""
    event = panel.widget.event
    if event is None:
        notice(canvas, panel.name, NO_EVENT_YET)
        return None
    canvas.caption(panel.name, stamp)
    if event.schema_type != "custom":
        view = panel.widget.approval or ApprovalView("pending", 0)
        draw(Card(panel.name, event.schema_type, event.content, view.state, view.waiting), canvas)
        return None
    if panel.image is None:
        notice(canvas, panel.name, NO_IMAGE)
        return None
    try:
        return _fit_picture(canvas, decode(panel.image))
    except ValueError:
        notice(canvas, panel.name, "The image could not be read")
        return None


def _fit_picture(canvas: Canvas, image: Any) -> tuple[Any, int, int]:
    """`image` scaled to fit the cell above its caption, centred, flattened onto the background."""
    margin = canvas.pad // 2
    room_w, room_h = canvas.width - 2 * margin, canvas.bottom - margin
    image = image.resize(min(room_w / image.width, room_h / image.height))
    if image.bands < 3:
        image = image.colourspace("srgb")
    if image.hasalpha():
        image = image.flatten(background=list(rgb(canvas.theme.background)))
    return image, margin + (room_w - image.width) // 2, margin + (room_h - image.height) // 2


def _paint(canvas: Canvas, pictures: list[tuple[Any, int, int]], bit_depth: int) -> Any:
    """A canvas painted: in colour (bit_depth 8), else in grey levels, anti-aliased."""
    if bit_depth == 8:
        return paint(canvas.width, canvas.height, canvas.theme.background, canvas.layers, pictures)
    base = eink.canvas(canvas.width, canvas.height, canvas.theme.background, bit_depth)
    return eink.paint(base, canvas.layers, pictures, bit_depth)


def _plain(width: int, height: int, colour: str, bit_depth: int) -> Any:
    if bit_depth == 8:
        return paint(width, height, colour, [])
    return eink.canvas(width, height, colour, bit_depth)


def _encode(screen: Any, bit_depth: int, fmt: str) -> bytes:
    if bit_depth == 8:
        data: bytes = screen.pngsave_buffer(compression=6, keep="none")
        return data
    image = eink.quantise(screen.copy_memory(), bit_depth)
    return eink.bmp(image) if fmt == "bmp" else eink.png(image, bit_depth)


class _Cells:
    """Painted panels by digest, so a screen redrawn after one feed's event repaints that panel
    only; bounded by pixels held (least recently used out)."""

    def __init__(self, max_pixels: int) -> None:
        self.max_pixels = max_pixels
        self._lock = threading.Lock()
        self._cells: OrderedDict[str, Any] = OrderedDict()
        self._pixels = 0

    def get_or_paint(self, key: str, paint_cell: Callable[[], Any]) -> Any:
        with self._lock:
            cell = self._cells.get(key)
            if cell is not None:
                self._cells.move_to_end(key)
                return cell
        cell = paint_cell()
        with self._lock:
            if key not in self._cells:
                self._cells[key] = cell
                self._pixels += cell.width * cell.height * cell.bands
                while self._pixels > self.max_pixels and self._cells:
                    _, old = self._cells.popitem(last=False)
                    self._pixels -= old.width * old.height * old.bands
        return cell


_CELLS = _Cells(max_pixels=6 * 1024 * 1024)  # bytes of painted panels kept (uchar: a byte a band)
