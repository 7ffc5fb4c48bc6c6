"""Widget PNGs drawn with libvips from a widget state: every schema, three sizes, light and dark.

The images go on phone home screens, Home Assistant picture cards and e-ink frames, so they are
drawn for legibility: large type with one clear hero value, muted secondary text, colour used
only where it carries meaning (status, trend, approval state) and always with a word beside it
(a grey e-ink panel still says "Error"). Text never overflows: single lines are cut with an
ellipsis, paragraphs are wrapped and cut after a fixed number of lines, and the hero value is
shrunk to fit its width. Sizes are the @3x pixels of seed 002.

Every function here is CPU-bound (5–20 ms) and is called from a worker thread (widgets.py).
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from glimpze.feeds.images import WIDGET_PIXELS, VipsImage, vips

RENDER_VERSION = "2"  # part of every rendered image's ETag: bump when the drawing changes
FONT = "Sans"
ELLIPSIS = "…"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Theme:
    background: str
    text: str
    muted: str
    on_accent: str  # text drawn on a coloured pill
    accents: dict[str, str]


THEMES: dict[str, Theme] = {
    # Darker accents on white keep white pill text readable (WCAG AA).
    "light": Theme(
        "#FFFFFF",
        "#111827",
        "#6B7280",
        "#FFFFFF",
        {"success": "#15803D", "warning": "#B45309", "info": "#1D4ED8", "error": "#B91C1C", "neutral": "#6B7280"},
    ),
    "dark": Theme(
        "#0F1115",
        "#F3F4F6",
        "#9CA3AF",
        "#0F1115",
        {"success": "#22C55E", "warning": "#F59E0B", "info": "#60A5FA", "error": "#F87171", "neutral": "#9CA3AF"},
    ),
}


@dataclass(frozen=True, slots=True)
class Scale:
    """Type sizes and spacing (px) of one widget size."""

    pad: int
    title: int
    body: int
    message: int
    hero_max: int
    hero_min: int
    gap: int
    body_lines: int


SCALES: dict[str, Scale] = {
    "small": Scale(pad=40, title=32, body=30, message=56, hero_max=130, hero_min=40, gap=12, body_lines=2),
    "medium": Scale(pad=48, title=36, body=34, message=64, hero_max=170, hero_min=48, gap=16, body_lines=2),
    "large": Scale(pad=64, title=46, body=42, message=96, hero_max=260, hero_min=60, gap=24, body_lines=4),
}

STATUS_LABELS = {"success": "Success", "warning": "Warning", "info": "Info", "error": "Error"}
# An approval widget's state: the pill's word and colour.
APPROVAL_STATES = {
    "pending": ("Pending", "warning"),
    "approved": ("Approved", "success"),
    "rejected": ("Rejected", "error"),
    "deferred": ("Deferred", "info"),
}
TREND_ARROWS = {"up": "▲", "down": "▼", "flat": "▶"}
TREND_ACCENTS = {"positive": "success", "negative": "error", "neutral": "neutral"}


@dataclass(frozen=True, slots=True)
class Card:
    """What a widget shows: the feed's name and the content of its widget state."""

    name: str
    schema_type: str
    content: dict[str, Any] = field(default_factory=dict)
    approval_state: str = "pending"
    waiting: int = 0  # approval feeds: how many requests wait (the card shows the oldest)


def render(card: Card, size: str, theme: str) -> bytes:
    """The widget PNG of `card` at `size` (small, medium, large) in `theme` (light, dark)."""
    canvas = Canvas(size, theme)
    _DRAW[card.schema_type](canvas, card)
    return canvas.png()


def placeholder(name: str, message: str, size: str, theme: str) -> bytes:
    """An exact-size PNG for a widget with nothing to show yet: the feed's name and why."""
    canvas = Canvas(size, theme)
    s, width = canvas.scale, canvas.content_width
    title = canvas.text(name, px=round(s.title * 1.2), colour=canvas.theme.text, bold=True, lines=2, align="centre")
    note = canvas.text(message, px=s.body, colour=canvas.theme.muted, lines=2, align="centre")
    total = title.height + s.gap + note.height
    y = (canvas.height - total) // 2
    canvas.put(title, canvas.pad + (width - title.width) // 2, y)
    canvas.put(note, canvas.pad + (width - note.width) // 2, y + title.height + s.gap)
    return canvas.png()


def to_png(data: bytes) -> bytes:
    """An uploaded JPEG or WebP (already checked, exact size) re-encoded as PNG; ValueError when
    its pixels cannot be decoded (the upload checks read only the header and the structure)."""
    pyvips = vips()
    try:
        image: VipsImage = pyvips.Image.new_from_buffer(data, "", access="sequential", fail_on="error")
        return image.pngsave_buffer(compression=6)
    except pyvips.Error as exc:
        raise ValueError(str(exc)) from None


@dataclass(slots=True)
class Block:
    """Something laid out: `parts` are one-band coverage masks, each painted in its colour at
    (dx, dy) from the block's top-left; `width` and `height` are what the block takes in the
    layout (text: whole lines)."""

    parts: list[tuple[VipsImage, str, int, int]]
    width: int
    height: int
    px: int = 0  # the font size text was set in


class Canvas:
    """One widget image being drawn: a background and layers composited once at the end."""

    def __init__(self, size: str, theme: str) -> None:
        self.width, self.height = WIDGET_PIXELS[size]
        self.scale = SCALES[size]
        self.theme = THEMES[theme]
        self.pad = self.scale.pad
        self.content_width = self.width - 2 * self.pad
        self._layers: list[tuple[VipsImage, str, int, int]] = []

    def text(
        self,
        text: str,
        *,
        px: int,
        colour: str,
        bold: bool = False,
        lines: int = 1,
        width: int | None = None,
        align: str = "left",
    ) -> Block:
        """`text` in at most `lines` lines of `width` (default: the content width), cut with an ellipsis."""
        width = width or self.content_width
        text = _clean(text, single_line=lines == 1)
        image = _cut(text, _font(px, bold), width, lines, align)
        return self._block(image, px, bold, lines, width, align, colour)

    def fit(
        self, text: str, *, colour: str, width: int, height: int, px_max: int, px_min: int, bold: bool = True
    ) -> Block:
        """`text` as large as it fits in `width` × `height` (between `px_max` and `px_min`), wrapped
        only between words, so "$12,345" shrinks rather than breaks; below `px_min` it is cut."""
        text = _clean(text, single_line=True)
        px = min(px_max, int(height / 1.2))
        if px <= px_min:
            return self.text(text, px=px_min, colour=colour, bold=bold, width=width)
        image = _render(text, _font(px, bold), width, "low", wrap="word")
        if image is None:
            return Block([], 0, _line_height(px, bold), px)
        # The area text needs grows with the square of its size: start from that estimate.
        need_w, need_h = image.xoffset + image.width, image.yoffset + image.height
        if need_h * (px_min / px) ** 2 > height * 1.1:  # too long even at the smallest size: cut it
            return self.text(text, px=px_min, colour=colour, bold=bold, lines=height // _line_height(px_min, bold))
        px = int(px * min(1.0, width / need_w, math.sqrt(height / need_h)))
        for _ in range(12):
            if px <= px_min:
                break
            image = _render(text, _font(px, bold), width, "low", wrap="word")
            assert image is not None  # the text is not blank
            if image.xoffset + image.width <= width and image.yoffset + image.height <= height:
                return self._block(image, px, bold, height // _line_height(px, bold), width, "low", colour)
            px = max(px_min, min(int(px * 0.92), int(px * width / (image.xoffset + image.width))))
        lines = max(1, height // _line_height(px_min, bold))
        return self.text(text, px=px_min, colour=colour, bold=bold, lines=lines, width=width)

    def _block(
        self, image: VipsImage | None, px: int, bold: bool, lines: int, width: int, align: str, colour: str
    ) -> Block:
        line = _line_height(px, bold)
        if image is None:
            return Block([], 0, line, px)
        used_lines = max(1, min(lines, math.ceil((image.yoffset + image.height - 0.25 * line) / line)))
        right = width if align == "centre" else image.xoffset + image.width
        return Block([(image, colour, image.xoffset, image.yoffset)], right, used_lines * line, px)

    def pill(self, label: str, accent: str, px: int) -> Block:
        """A rounded label in an accent colour, e.g. a status or an approval state."""
        text = _render(_clean(label, True), _font(px, True), None, "low")
        assert text is not None
        height = round(px * 1.6)
        inset = round(px * 0.6)
        width = text.width + 2 * inset
        top = (height - _cap_box(px, True)) // 2 - _cap_top(px, True) + text.yoffset
        shape = _rounded_mask(width, height, height // 2)
        return Block(
            [(shape, self.theme.accents[accent], 0, 0), (text, self.theme.on_accent, inset, top)], width, height
        )

    def put(self, block: Block, x: int, y: int) -> None:
        """Place a block with its layout's top-left at (x, y)."""
        self._layers.extend((mask, colour, x + dx, y + dy) for mask, colour, dx, dy in block.parts)

    def png(self) -> bytes:
        """Paint every layer through its mask (draw_mask: ~3× cheaper than compositing RGBA)."""
        image = _background(self.width, self.height, self.theme.background)
        for mask, colour, x, y in self._layers:
            image = image.draw_mask(list(_rgb(colour)), mask, x, y)
        return image.pngsave_buffer(compression=6)


# Per-schema drawings


def _summary(c: Canvas, card: Card) -> None:
    s, t, content = c.scale, c.theme, card.content
    top = _header(c, content.get("title", ""))
    bottom = _footer(c, content.get("secondary_value"), t.muted)
    hero = c.fit(
        str(content.get("primary_value", "")),
        colour=t.text,
        width=c.content_width,
        height=bottom - top,
        px_max=s.hero_max,
        px_min=s.hero_min,
    )
    c.put(hero, c.pad, top + (bottom - top - hero.height) // 2)


def _status(c: Canvas, card: Card) -> None:
    s, t, content = c.scale, c.theme, card.content
    status = content.get("status", "info")
    pill = c.pill(STATUS_LABELS.get(status, status.title()), status if status in t.accents else "neutral", s.title - 4)
    c.put(pill, c.width - c.pad - pill.width, c.pad)
    title_width = c.content_width - pill.width - s.gap
    title = c.text(content.get("title", ""), px=s.title, colour=t.muted, bold=True, width=title_width)
    c.put(title, c.pad, c.pad + (pill.height - title.height) // 2)
    top = c.pad + max(pill.height, title.height) + s.gap * 2
    bottom = _footer(c, content.get("details"), t.muted)
    message = c.fit(
        content.get("message", ""),
        colour=t.text,
        width=c.content_width,
        height=bottom - top,
        px_max=s.message,
        px_min=s.body,
    )
    c.put(message, c.pad, top)


def _counter(c: Canvas, card: Card) -> None:
    s, t, content = c.scale, c.theme, card.content
    top = _header(c, content.get("title", ""))
    bottom = _footer(c, content.get("subtitle"), t.muted)
    trend = content.get("trend")
    trend_text = " ".join(x for x in (TREND_ARROWS.get(trend or ""), content.get("trendValue")) if x)
    if trend_text:
        accent = t.accents[TREND_ACCENTS.get(content.get("trendSemantic") or "neutral", "neutral")]
        row = c.text(trend_text, px=s.body + 4, colour=accent, bold=True)
        bottom -= row.height
        c.put(row, c.pad, bottom)
        bottom -= s.gap
    unit = content.get("unit")
    unit_block = c.text(unit, px=s.body + 4, colour=t.muted, width=c.content_width // 2) if unit else None
    room = c.content_width - (unit_block.width + s.gap if unit_block else 0)
    hero = c.fit(
        _count(content.get("count", 0)),
        colour=t.text,
        width=room,
        height=bottom - top,
        px_max=s.hero_max,
        px_min=s.hero_min,
    )
    y = top + (bottom - top - hero.height) // 2
    c.put(hero, c.pad, y)
    if unit_block is not None:
        # The unit sits on the count's baseline, right after it.
        baseline = y + _cap_top(hero.px, True) + _cap_box(hero.px, True)
        c.put(
            unit_block,
            c.pad + hero.width + s.gap,
            baseline - _cap_top(unit_block.px, False) - _cap_box(unit_block.px, False),
        )


def _approval(c: Canvas, card: Card) -> None:
    s, t = c.scale, c.theme
    label, accent = APPROVAL_STATES.get(card.approval_state, (card.approval_state.title(), "neutral"))
    pill = c.pill(label, accent, s.title - 4)
    c.put(pill, c.width - c.pad - pill.width, c.pad)
    name = c.text(card.name, px=s.title, colour=t.muted, bold=True, width=c.content_width - pill.width - s.gap)
    c.put(name, c.pad, c.pad + (pill.height - name.height) // 2)
    top = c.pad + max(pill.height, name.height) + s.gap * 2
    # While any request waits, the card is the oldest of them and says how many there are.
    bottom = _footer(c, f"{card.waiting} waiting" if card.waiting else None, t.muted)
    description = c.fit(
        card.content.get("description", ""),
        colour=t.text,
        width=c.content_width,
        height=bottom - top,
        px_max=s.message,
        px_min=s.body,
    )
    c.put(description, c.pad, top)


def _header(c: Canvas, title: str) -> int:
    """The muted title line at the top; returns where the content below it starts."""
    block = c.text(title, px=c.scale.title, colour=c.theme.muted, bold=True)
    c.put(block, c.pad, c.pad)
    return c.pad + block.height + c.scale.gap


def _footer(c: Canvas, text: str | None, colour: str) -> int:
    """Secondary text anchored at the bottom; returns where the content above it must end."""
    bottom = c.height - c.pad
    if not text:
        return bottom
    block = c.text(text, px=c.scale.body, colour=colour, lines=c.scale.body_lines)
    c.put(block, c.pad, bottom - block.height)
    return bottom - block.height - c.scale.gap


_DRAW = {"summary": _summary, "status": _status, "counter": _counter, "approval": _approval}


# Text


def _count(value: Any) -> str:
    """2314 → "2,314"; 3.50 → "3.5"."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _clean(text: Any, single_line: bool) -> str:
    text = _CONTROL.sub("", str(text)).encode("utf-8", "replace").decode("utf-8")
    return " ".join(text.split()) if single_line else text.strip()


def _font(px: int, bold: bool) -> str:
    return f"{FONT} {'Bold ' if bold else ''}{px}px"


def _render(text: str, font: str, width: int | None, align: str, wrap: str = "word-char") -> VipsImage | None:
    """The ink of `text` as a one-band mask (3× cheaper than Pango's RGBA), or None for blank text."""
    if not text.strip():
        return None
    options: dict[str, object] = {"font": font, "dpi": 72, "align": "centre" if align == "centre" else "low"}
    if width is not None:
        options.update(width=width, wrap=wrap)
    ink: VipsImage = vips().Image.text(html.escape(text, quote=False), **options)
    return ink


def _cut(text: str, font: str, width: int, lines: int, align: str) -> VipsImage | None:
    """Render, and if it overflows, find the longest prefix that fits with an ellipsis."""
    px = int(font.rsplit(" ", 1)[1].removesuffix("px"))
    line = _line_height(px, "Bold" in font)
    one_line = lines == 1 and align != "centre"
    wrap_width = None if one_line else width
    limit = width if one_line else lines * line + 0.15 * line

    def extent(image: VipsImage) -> int:
        return image.xoffset + image.width if one_line else image.yoffset + image.height

    def fits(image: VipsImage | None) -> bool:
        return image is None or extent(image) <= limit and image.width <= width

    # Only a prefix can show: first try one ~1.5× what fits of average text (0.5 em a glyph),
    # then one no glyph could make fit (0.22 em a glyph), before rendering all of a long text.
    image, shown = None, text
    for em in (0.33, 0.22):
        shown = text[: int(lines * width / (em * px)) + 2]
        image = _render(shown, font, wrap_width, align)
        if not fits(image):
            break
        if shown == text:
            return image
    # Text grows about linearly with its length: bisect around the proportional guess.
    assert image is not None  # `text` is not blank (blank text returned above), nor is a prefix of it
    guess = min(len(shown) - 1, int(len(shown) * limit / max(extent(image), 1)))
    low, high = int(guess * 0.85), min(len(shown) - 1, int(guess * 1.1) + 2)
    best = _render(shown[:low].rstrip() + ELLIPSIS, font, wrap_width, align)
    if not fits(best):
        low, best = 0, _render(ELLIPSIS, font, wrap_width, align)
    while low < high:
        middle = (low + high + 1) // 2
        candidate = _render(shown[:middle].rstrip() + ELLIPSIS, font, wrap_width, align)
        if fits(candidate):
            low, best = middle, candidate
        else:
            high = middle - 1
    return best


@lru_cache(maxsize=8)
def _background(width: int, height: int, colour: str) -> VipsImage:
    """A plain sRGB image in memory (draw operations paint on a copy, so it can be shared)."""
    image = vips().Image.black(width, height, bands=3).new_from_image(list(_rgb(colour)))
    background: VipsImage = image.copy(interpretation="srgb").copy_memory()
    return background


@lru_cache(maxsize=512)
def _line_height(px: int, bold: bool) -> int:
    """The distance between two lines of this font, as Pango lays them out."""
    one: VipsImage = vips().Image.text("Hg", font=_font(px, bold), dpi=72)
    two: VipsImage = vips().Image.text("Hg\nHg", font=_font(px, bold), dpi=72)
    return (two.yoffset + two.height) - (one.yoffset + one.height)


@lru_cache(maxsize=512)
def _cap_top(px: int, bold: bool) -> int:
    """How far below the layout's top a capital letter starts."""
    capital: VipsImage = vips().Image.text("H", font=_font(px, bold), dpi=72)
    return capital.yoffset


@lru_cache(maxsize=512)
def _cap_box(px: int, bold: bool) -> int:
    """The height of a capital letter (its bottom is the baseline)."""
    capital: VipsImage = vips().Image.text("H", font=_font(px, bold), dpi=72)
    return capital.height


@lru_cache(maxsize=64)
def _rounded_mask(width: int, height: int, radius: int) -> VipsImage:
    """An anti-aliased rounded rectangle (drawn at 4× and shrunk), kept for the next pill."""
    pyvips, k = vips(), 4
    w, h, r = width * k, height * k, radius * k
    mask = pyvips.Image.black(w, h)
    mask = mask.draw_rect(255, r, 0, w - 2 * r, h, fill=True)
    mask = mask.draw_rect(255, 0, r, w, h - 2 * r, fill=True)
    for cx in (r, w - r - 1):
        for cy in (r, h - r - 1):
            mask = mask.draw_circle(255, cx, cy, r, fill=True)
    shrunk: VipsImage = mask.shrink(k, k).cast("uchar").copy_memory()
    return shrunk


def _rgb(colour: str) -> tuple[int, int, int]:
    value = int(colour.lstrip("#"), 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF
