"""A picture being drawn: themes, type scales, laid-out blocks of text and shapes, and painting.

A drawing is a list of layers (a one-band coverage mask, a colour, a position) collected on a
`Canvas` and painted once at the end: in colour here (`paint`), or in grey levels for e-ink by the
displays package. Widget sizes have fixed scales (`SCALES`); any other size (a screen's cell)
gets one from `cell_scale`. Text comes from typeset.py, state icons from icons.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from glimpze.feeds.icons import icon
from glimpze.feeds.images import WIDGET_PIXELS, VipsImage, vips
from glimpze.feeds.typeset import cap_box, cap_top, clean, cut, font, ink, line_height

# A coverage mask painted in a colour with its top-left at (x, y).
Layer = tuple[VipsImage, str, int, int]


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
    # Ink on paper: black at 1 bit, and muted text a dark grey where a panel has four levels.
    "eink": Theme(
        "#FFFFFF",
        "#000000",
        "#555555",
        "#FFFFFF",
        {"success": "#000000", "warning": "#000000", "info": "#000000", "error": "#000000", "neutral": "#555555"},
    ),
}


@dataclass(frozen=True, slots=True)
class Scale:
    """Type sizes and spacing (px) of one picture size."""

    pad: int
    title: int
    body: int
    message: int
    hero_max: int
    hero_min: int
    gap: int
    body_lines: int
    title_lines: int  # a long title wraps to this many lines before it is cut


SCALES: dict[str, Scale] = {
    "small": Scale(
        pad=40, title=32, body=30, message=56, hero_max=130, hero_min=40, gap=12, body_lines=2, title_lines=2
    ),
    "medium": Scale(
        pad=48, title=36, body=34, message=64, hero_max=170, hero_min=48, gap=16, body_lines=2, title_lines=2
    ),
    "large": Scale(
        pad=64, title=46, body=42, message=96, hero_max=260, hero_min=60, gap=24, body_lines=4, title_lines=3
    ),
}
MIN_TEXT_PX = 15  # smaller text is not legible on an 800×480 e-ink panel at 1 bit


def cell_scale(width: int, height: int) -> Scale:
    """The scale of a picture of any size (a screen's cell): type grows with the square root of the
    shorter side, as the widget sizes' do, with padding kept tight since a screen has little room."""
    base = min(width, height)
    root = math.sqrt(base)
    body = max(MIN_TEXT_PX, round(1.2 * root))
    return Scale(
        pad=max(10, round(base * 0.06)),
        title=max(MIN_TEXT_PX + 2, round(1.3 * root)),
        body=body,
        message=max(body + 4, round(2.2 * root)),
        hero_max=max(body * 2, round(base * 0.36)),
        hero_min=max(body + 4, round(1.6 * root)),
        gap=max(4, round(0.5 * root)),
        body_lines=1 if base < 300 else 2 if base < 600 else 4,
        title_lines=1 if base < 300 else 2 if base < 700 else 3,
    )


@dataclass(slots=True)
class Block:
    """Something laid out: `parts` are one-band coverage masks, each painted in its colour at
    (dx, dy) from the block's top-left; `width` and `height` are what the block takes in the
    layout (text: whole lines)."""

    parts: list[Layer]
    width: int
    height: int
    px: int = 0  # the font size text was set in


class Canvas:
    """One picture being drawn: a size, a theme and layers painted once at the end."""

    def __init__(self, width: int, height: int, theme: str, scale: Scale) -> None:
        self.width, self.height = width, height
        self.scale = scale
        self.theme = THEMES[theme]
        self.pad = scale.pad
        self.content_width = width - 2 * self.pad
        self.bottom = height - self.pad  # where content ends; a caption moves it up
        self.layers: list[Layer] = []

    @classmethod
    def widget(cls, size: str, theme: str) -> Canvas:
        """A canvas of a widget size (small, medium, large)."""
        width, height = WIDGET_PIXELS[size]
        return cls(width, height, theme, SCALES[size])

    @property
    def roomy(self) -> bool:
        """Wide and tall enough for the extras (a status's icon and details, an approval's queue)."""
        return self.width >= 700 and self.height >= 440

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
        if width < px or lines < 1:  # no room for a glyph (a tiny screen's cell): nothing
            return Block([], 0, 0, px)
        text = clean(text, single_line=lines == 1)
        image = cut(text, font(px, bold), width, lines, align)
        return self._block(image, px, bold, lines, width, align, colour)

    def fit(
        self, text: str, *, colour: str, width: int, height: int, px_max: int, px_min: int, bold: bool = True
    ) -> Block:
        """`text` as large as it fits in `width` × `height` (between `px_max` and `px_min`), wrapped
        only between words, so "$12,345" shrinks rather than breaks; below `px_min` it is cut."""
        text = clean(text, single_line=True)
        if width < px_min or height < px_min:
            return Block([], 0, 0, px_min)
        px = min(px_max, int(height / 1.2))
        if px <= px_min:
            return self.text(text, px=px_min, colour=colour, bold=bold, width=width)
        image = ink(text, font(px, bold), width, "low", wrap="word")
        if image is None:
            return Block([], 0, line_height(px, bold), px)
        # The area text needs grows with the square of its size: start from that estimate.
        need_w, need_h = image.xoffset + image.width, image.yoffset + image.height
        if need_h * (px_min / px) ** 2 > height * 1.1:  # too long even at the smallest size: cut it
            lines = max(1, height // line_height(px_min, bold))
            return self.text(text, px=px_min, colour=colour, bold=bold, lines=lines, width=width)
        px = int(px * min(1.0, width / need_w, math.sqrt(height / need_h)))
        for _ in range(12):
            if px <= px_min:
                break
            image = ink(text, font(px, bold), width, "low", wrap="word")
            assert image is not None  # the text is not blank
            if image.xoffset + image.width <= width and image.yoffset + image.height <= height:
                return self._block(image, px, bold, height // line_height(px, bold), width, "low", colour)
            px = max(px_min, min(int(px * 0.92), int(px * width / (image.xoffset + image.width))))
        lines = max(1, height // line_height(px_min, bold))
        return self.text(text, px=px_min, colour=colour, bold=bold, lines=lines, width=width)

    def _block(
        self, image: VipsImage | None, px: int, bold: bool, lines: int, width: int, align: str, colour: str
    ) -> Block:
        line = line_height(px, bold)
        if image is None:
            return Block([], 0, line, px)
        used_lines = max(1, min(lines, math.ceil((image.yoffset + image.height - 0.25 * line) / line)))
        right = width if align == "centre" else image.xoffset + image.width
        return Block([(image, colour, image.xoffset, image.yoffset)], right, used_lines * line, px)

    def pill(self, label: str, accent: str, px: int, icon_kind: str | None = None) -> Block:
        """A rounded label in an accent colour, e.g. a status or an approval state, led by its icon."""
        text = _label(clean(label, True), px)
        height = round(px * 1.6)
        inset = round(px * 0.6)
        parts: list[Layer] = []
        text_x = inset
        if icon_kind is not None:
            mark = icon(icon_kind, max(MIN_TEXT_PX, round(px * 1.05)))
            parts.append((mark, self.theme.on_accent, round(px * 0.35), (height - mark.height) // 2))
            text_x = round(px * 0.35) + mark.width + round(px * 0.3)
        width = text_x + text.width + inset
        top = (height - cap_box(px, True)) // 2 - cap_top(px, True) + text.yoffset
        parts.insert(0, (rounded_mask(width, height, height // 2), self.theme.accents[accent], 0, 0))
        parts.append((text, self.theme.on_accent, text_x, top))
        return Block(parts, width, height)

    def caption(self, left: str | None, right: str | None) -> None:
        """A muted line at the bottom: `left` (a screen cell's feed name, bold) and `right` (the
        freshness stamp); the content above ends where it starts."""
        if not left and not right:
            return
        px, muted = caption_px(self.scale), self.theme.muted
        stamp = self.text(right, px=px, colour=muted) if right else None
        room = self.content_width - (stamp.width + self.scale.gap if stamp else 0)
        name = self.text(left, px=px, colour=muted, bold=True, width=room) if left and room > px else None
        height = line_height(px, bold=name is not None)
        y = self.height - max(8, self.pad // 2) - height
        if stamp is not None:
            self.put(stamp, self.width - self.pad - stamp.width, y)
        if name is not None:
            self.put(name, self.pad, y)
        self.bottom = min(self.bottom, y - self.scale.gap)

    def put(self, block: Block, x: int, y: int) -> None:
        """Place a block with its layout's top-left at (x, y)."""
        self.layers.extend((mask, colour, x + dx, y + dy) for mask, colour, dx, dy in block.parts)

    def png(self) -> bytes:
        """The canvas painted in colour, as a PNG."""
        return png_bytes(paint(self.width, self.height, self.theme.background, self.layers))


def paint(
    width: int, height: int, background: str, layers: list[Layer], pictures: list[tuple[Any, int, int]] | None = None
) -> Any:
    """Paint `pictures` (sRGB images at their top-left) on a plain background, then every layer
    through its mask (draw_mask: ~3× cheaper than compositing RGBA)."""
    image: Any = _background(width, height, background)
    for picture, x, y in pictures or ():
        image = image.insert(picture, x, y)
    for mask, colour, x, y in layers:
        image = image.draw_mask(list(rgb(colour)), mask, x, y)
    return image


def caption_px(scale: Scale) -> int:
    """The size of caption text (a freshness stamp, a screen cell's feed name)."""
    return max(MIN_TEXT_PX, round(scale.body * 0.8))


def png_bytes(image: Any) -> bytes:
    """A colour picture as PNG bytes; ValueError when its pixels cannot be computed (a bad upload)."""
    pyvips = vips()
    try:
        png: bytes = image.pngsave_buffer(compression=6)
    except pyvips.Error as exc:
        raise ValueError(str(exc)) from None
    return png


@lru_cache(maxsize=64)
def _label(text: str, px: int) -> VipsImage:
    """A pill's word, kept: there are few, drawn on every status and approval picture."""
    mask = ink(text, font(px, True), None, "low")
    assert mask is not None
    return mask


@lru_cache(maxsize=8)
def _background(width: int, height: int, colour: str) -> VipsImage:
    """A plain sRGB image in memory (draw operations paint on a copy, so it can be shared)."""
    image = vips().Image.black(width, height, bands=3).new_from_image(list(rgb(colour)))
    background: VipsImage = image.copy(interpretation="srgb").copy_memory()
    return background


@lru_cache(maxsize=64)
def rounded_mask(width: int, height: int, radius: int) -> VipsImage:
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


def rgb(colour: str) -> tuple[int, int, int]:
    """ "#RRGGBB" as (r, g, b)."""
    value = int(colour.lstrip("#"), 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF
