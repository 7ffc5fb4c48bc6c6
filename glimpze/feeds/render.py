"""Widget pictures drawn with libvips from a widget state: every schema, any size, light, dark and e-ink.

The images go on phone home screens, Home Assistant picture cards and e-ink frames, so they are
drawn for legibility: large type with one clear hero value, muted secondary text, colour used
only where it carries meaning (status, trend, approval state) and always with a word and a shape
beside it (a grey e-ink panel still says "Error" with a cross). Text never overflows: titles wrap
to the lines the size allows, single lines are cut with an ellipsis, paragraphs are wrapped and
cut after a fixed number of lines, and the hero value is shrunk to fit its width. Widget sizes are
the @3x pixels of seed 002; a screen's cells (glimpze/displays) are drawn by the same code at
their own size (canvas.py's `cell_scale`). A picture may say when it was updated (freshness.py)
in a caption at the bottom.

Every function here is CPU-bound (5–20 ms) and is called from a worker thread (widgets.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from glimpze.feeds.canvas import Block, Canvas, caption_px, cell_scale, png_bytes, rgb, rounded_mask
from glimpze.feeds.icons import APPROVAL_ICONS, STATUS_ICONS, icon
from glimpze.feeds.images import vips
from glimpze.feeds.typeset import cap_box, cap_top, line_height

RENDER_VERSION = "3"  # part of every rendered image's ETag: bump when the drawing changes

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
    updated: str | None = None  # the freshness stamp to show ("updated 14:05"), if any


def render(card: Card, size: str, theme: str) -> bytes:
    """The widget PNG of `card` at `size` (small, medium, large) in `theme` (light, dark, eink)."""
    canvas = Canvas.widget(size, theme)
    canvas.caption(None, card.updated)
    draw(card, canvas)
    return canvas.png()


def draw(card: Card, canvas: Canvas) -> None:
    """Lay `card` out on `canvas` (whose caption, if any, is already placed)."""
    _DRAW[card.schema_type](canvas, card)


def placeholder(name: str, message: str, size: str, theme: str) -> bytes:
    """An exact-size PNG for a widget with nothing to show yet: the feed's name and why."""
    canvas = Canvas.widget(size, theme)
    notice(canvas, name, message)
    return canvas.png()


def notice(canvas: Canvas, title: str, message: str) -> None:
    """A title and a muted message, centred: a widget or screen with nothing else to show."""
    s, width = canvas.scale, canvas.content_width
    heading = canvas.text(title, px=round(s.title * 1.2), colour=canvas.theme.text, bold=True, lines=2, align="centre")
    note = canvas.text(message, px=s.body, colour=canvas.theme.muted, lines=3, align="centre")
    total = heading.height + s.gap + note.height
    y = (canvas.bottom + canvas.pad - total) // 2
    canvas.put(heading, canvas.pad + (width - heading.width) // 2, y)
    canvas.put(note, canvas.pad + (width - note.width) // 2, y + heading.height + s.gap)


def to_png(data: bytes) -> bytes:
    """An uploaded JPEG or WebP (already checked, exact size) re-encoded as PNG; ValueError when
    its pixels cannot be decoded (the upload checks read only the header and the structure)."""
    return png_bytes(decode(data))


def stamp_image(data: bytes, text: str, theme: str) -> bytes:
    """An uploaded image (checked, exact widget size) as a PNG with `text` in a label at its
    bottom right, in the theme's colours; ValueError when its pixels cannot be decoded."""
    image = decode(data)
    if image.bands < 3:
        image = image.colourspace("srgb")
    canvas = Canvas(image.width, image.height, theme, cell_scale(image.width, image.height))
    label = canvas.text(text, px=caption_px(canvas.scale), colour=canvas.theme.muted)
    inset = max(4, label.px // 3)
    box_w, box_h = label.width + 2 * inset, label.height + inset
    box = Block([(rounded_mask(box_w, box_h, max(2, inset)), canvas.theme.background, 0, 0)], box_w, box_h)
    x, y = image.width - box_w - canvas.pad // 2, image.height - box_h - canvas.pad // 2
    canvas.put(box, x, y)
    canvas.put(label, x + inset, y + inset // 2)
    alpha = [255] if image.bands == 4 else []
    for mask, colour, lx, ly in canvas.layers:
        image = image.draw_mask([*rgb(colour), *alpha], mask, lx, ly)
    return png_bytes(image)


def decode(data: bytes) -> Any:
    """Every pixel of a checked upload (PNG, JPEG or WebP); ValueError when they cannot be read."""
    pyvips = vips()
    try:
        return pyvips.Image.new_from_buffer(data, "", access="sequential", fail_on="error").copy_memory()
    except pyvips.Error as exc:
        raise ValueError(str(exc)) from None


# Per-schema drawings


def _summary(c: Canvas, card: Card) -> None:
    s, t, content = c.scale, c.theme, card.content
    top = _header(c, content.get("title", ""))
    bottom = _footer(c, content.get("secondary_value"), top + line_height(s.hero_min, True))
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
    accent = status if status in t.accents else "neutral"
    kind = STATUS_ICONS.get(status, "info")
    label = STATUS_LABELS.get(status, status.title())
    top = _titled(c, content.get("title", ""), c.pill(label, accent, s.title - 4, kind))
    if c.roomy:
        # Room for the state in shape at the size of the message, and the details under it.
        mark = round(s.message * 1.25)
        c.put(Block([(icon(kind, mark), t.accents[accent], 0, 0)], mark, mark), c.pad, top)
        x, width = c.pad + mark + 2 * s.gap, c.content_width - mark - 2 * s.gap
        details = content.get("details")
        below = c.text(details, px=s.body, colour=t.muted, lines=2 * s.body_lines, width=width) if details else None
        room = c.bottom - top - (below.height + 2 * s.gap if below else 0)
        message = c.fit(
            content.get("message", ""), colour=t.text, width=width, height=room, px_max=s.message, px_min=s.body
        )
        c.put(message, x, top)
        if below is not None:
            c.put(below, x, top + message.height + 2 * s.gap)
        return
    bottom = _footer(c, content.get("details"), top + line_height(s.body, True))
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
    need = top + line_height(s.hero_min, True)  # the count comes first: what has no room left goes
    bottom = _footer(c, content.get("subtitle"), need)
    trend = content.get("trend")
    trend_text = " ".join(x for x in (TREND_ARROWS.get(trend or ""), content.get("trendValue")) if x)
    if trend_text:
        accent = t.accents[TREND_ACCENTS.get(content.get("trendSemantic") or "neutral", "neutral")]
        row = c.text(trend_text, px=s.body + 4, colour=accent, bold=True)
        if bottom - row.height - s.gap >= need:
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
        _on_baseline(c, unit_block, c.pad + hero.width + s.gap, y, hero.px)


def _approval(c: Canvas, card: Card) -> None:
    s, t = c.scale, c.theme
    label, accent = APPROVAL_STATES.get(card.approval_state, (card.approval_state.title(), "neutral"))
    kind = APPROVAL_ICONS.get(card.approval_state, "info")
    top = _titled(c, card.name, c.pill(label, accent, s.title - 4, kind))
    # While any request waits, the card is the oldest of them and says how many there are.
    if c.roomy and card.waiting:
        count = c.text(str(card.waiting), px=s.message, colour=t.text, bold=True)
        note = "waiting, the oldest shown" if card.waiting > 1 else "waiting"
        words = c.text(note, px=s.body + 4, colour=t.muted, width=c.content_width - count.width - s.gap)
        bottom = c.bottom - count.height
        c.put(count, c.pad, bottom)
        _on_baseline(c, words, c.pad + count.width + s.gap, bottom, count.px)
        bottom -= 2 * s.gap
    else:
        bottom = _footer(c, f"{card.waiting} waiting" if card.waiting else None, top + line_height(s.body, True))
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
    """The muted title at the top (wrapped to the scale's lines); returns where the content below starts."""
    block = c.text(title, px=c.scale.title, colour=c.theme.muted, bold=True, lines=c.scale.title_lines)
    c.put(block, c.pad, c.pad)
    return c.pad + block.height + c.scale.gap


def _titled(c: Canvas, title: str, pill: Block) -> int:
    """A pill at the top right and the muted title beside it (wrapped), its first line centred on
    the pill; returns where the content below starts."""
    s = c.scale
    c.put(pill, c.width - c.pad - pill.width, c.pad)
    width = c.content_width - pill.width - s.gap
    block = c.text(title, px=s.title, colour=c.theme.muted, bold=True, width=width, lines=s.title_lines)
    y = c.pad + (pill.height - line_height(s.title, True)) // 2
    c.put(block, c.pad, y)
    return max(c.pad + pill.height, y + block.height) + s.gap * 2


def _footer(c: Canvas, text: str | None, need: int) -> int:
    """Muted secondary text anchored at the bottom, unless the content above would then end before
    `need` (a small screen cell: the main value comes first); returns where that content must end."""
    if not text:
        return c.bottom
    block = c.text(text, px=c.scale.body, colour=c.theme.muted, lines=c.scale.body_lines)
    if c.bottom - block.height - c.scale.gap < need:
        return c.bottom
    c.put(block, c.pad, c.bottom - block.height)
    return c.bottom - block.height - c.scale.gap


def _on_baseline(c: Canvas, block: Block, x: int, y: int, hero_px: int) -> None:
    """Place regular text `block` at `x` on the baseline of bold text of `hero_px` laid out at `y`."""
    baseline = y + cap_top(hero_px, True) + cap_box(hero_px, True)
    c.put(block, x, baseline - cap_top(block.px, False) - cap_box(block.px, False))


_DRAW = {"summary": _summary, "status": _status, "counter": _counter, "approval": _approval}


def _count(value: Any) -> str:
    """2314 → "2,314"; 3.50 → "3.5"."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")
