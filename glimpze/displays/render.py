"""STUB screen renderer — replaced at merge by the real one (branch h-render). Do not build on its looks.

It keeps the interface the real renderer has, so screens, devices and their tests run before it
lands: `render_screen(spec, panels, now, tz, *, bit_depth, fmt)` gives an image of exactly
`spec.size` in the asked format (8-bit PNG, 1-bit or 2-bit greyscale PNG, 1-bit BMP as the TRMNL
firmware reads it), and `ScreenCache.get_or_render` returns it with its filename (the first 16 hex
of the SHA-256 of the bytes), drawing only when what the screen shows changed. What it draws is
a plain list: each panel's feed name and its main value, one line each.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Literal

import msgspec

from glimpze.feeds.events import Widget
from glimpze.feeds.images import vips

BitDepth = Literal[1, 2, 8]
ImageFormat = Literal["png", "bmp"]
CACHE_ENTRIES = 64


@dataclass(frozen=True)
class ScreenSpec:
    """How a screen is drawn: its pixel size, layout, theme, and whether panels say when they changed."""

    size: tuple[int, int]
    layout: Literal["full", "halves", "grid", "hero"]
    theme: Literal["light", "dark", "eink"]
    show_updated: bool = True


@dataclass(frozen=True)
class Panel:
    """One feed on a screen: its name, schema and current widget state."""

    feed_id: str
    name: str
    schema_type: str
    widget: Widget


def render_screen(
    spec: ScreenSpec,
    panels: list[Panel],
    now: float,
    tz: tzinfo,
    *,
    bit_depth: BitDepth = 8,
    fmt: ImageFormat = "png",
) -> bytes:
    """The screen as image bytes: PNG (8-bit, or 1/2-bit greyscale) or a 1-bit BMP."""
    pyvips = vips()
    width, height = spec.size
    dark = spec.theme == "dark"
    ink, paper = (255, 0) if dark else (0, 255)
    canvas = pyvips.Image.black(width, height).new_from_image(paper)
    lines = [_line(panel, now, tz, spec.show_updated) for panel in panels] or ["(no feeds)"]
    y = 8
    for text in lines:
        mask = pyvips.Image.text(_escape(text), font="Sans 20", dpi=72, width=max(1, width - 16))
        if y + mask.height > height:
            break
        canvas = canvas.draw_mask([ink], mask, 8, y)
        y += mask.height + 6
    canvas = canvas.cast("uchar")
    if fmt == "bmp":
        return _bmp_1bit(canvas)
    if bit_depth == 1:
        return bytes(canvas.pngsave_buffer(bitdepth=1, compression=9))
    if bit_depth == 2:
        return bytes(canvas.pngsave_buffer(bitdepth=2, compression=9))
    return bytes(canvas.pngsave_buffer(compression=6))


def _line(panel: Panel, now: float, tz: tzinfo, show_updated: bool) -> str:
    event = panel.widget.event
    if event is None:
        return f"{panel.name}: waiting for the first event"
    content: dict[str, Any] = event.content
    main = next(
        (str(content[k]) for k in ("primary_value", "message", "count", "description") if content.get(k) is not None),
        "",
    )
    text = f"{panel.name}: {main}".strip()
    if panel.widget.approval is not None:
        text += f" ({panel.widget.approval.state}, {panel.widget.approval.waiting} waiting)"
    if show_updated:
        at = datetime.fromisoformat(event.received_at.replace("Z", "+00:00")).astimezone(tz)
        text += f" · updated {at:%H:%M}"
    return text


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _bmp_1bit(image: Any) -> bytes:
    """A bottom-up 1-bit BMP with a black-then-white palette: the header the TRMNL firmware checks."""
    width, height = image.width, image.height
    row_bytes = (width + 31) // 32 * 4
    pixels = bytes(image.write_to_memory()).translate(_TO_BIT)
    pad = "0" * (row_bytes * 8 - width)
    rows = [
        int(pixels[y * width : (y + 1) * width].decode() + pad, 2).to_bytes(row_bytes, "big")
        for y in range(height - 1, -1, -1)
    ]
    data = b"".join(rows)
    offset = 14 + 40 + 8
    header = struct.pack("<2sIHHI", b"BM", offset + len(data), 0, 0, offset)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 1, 0, len(data), 2835, 2835, 2, 2)
    palette = bytes([0, 0, 0, 0, 255, 255, 255, 0])
    return header + info + palette + data


_TO_BIT = bytes(ord("1") if value >= 128 else ord("0") for value in range(256))


class ScreenCache:
    """Rendered screens by what they show (STUB: the spec, the panels' widget states, the format)."""

    def __init__(self, entries: int = CACHE_ENTRIES) -> None:
        self.entries = entries
        self._images: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._lock = threading.Lock()  # called from worker threads, a few at once

    def get_or_render(
        self,
        spec: ScreenSpec,
        panels: list[Panel],
        now: float,
        tz: tzinfo,
        *,
        bit_depth: BitDepth,
        fmt: ImageFormat,
    ) -> tuple[bytes, str]:
        """The screen's bytes and filename (first 16 hex of their SHA-256), drawn only when new."""
        shown = [(p.feed_id, p.name, p.schema_type, msgspec.json.encode(p.widget)) for p in panels]
        key = hashlib.sha256(repr((spec, shown, bit_depth, fmt, str(tz))).encode()).hexdigest()
        with self._lock:
            found = self._images.get(key)
            if found is not None:
                self._images.move_to_end(key)
                return found
        data = render_screen(spec, panels, now, tz, bit_depth=bit_depth, fmt=fmt)
        result = (data, hashlib.sha256(data).hexdigest()[:16])
        with self._lock:
            self._images[key] = result
            while len(self._images) > self.entries:
                self._images.popitem(last=False)
        return result
