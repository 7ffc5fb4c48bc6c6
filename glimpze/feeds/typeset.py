"""Text for the drawings: Pango through libvips, as one-band coverage masks, cut to fit with an ellipsis.

Pango lays text out (`pyvips.Image.text`, 72 dpi so a size in px is a size in pixels); the mask's
`xoffset`/`yoffset` say where its ink sits in the layout. Nothing here overflows: a line is cut with
an ellipsis at the longest prefix that fits, found by a bisection that renders a handful of
candidates rather than every prefix.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from typing import Any

from glimpze.feeds.images import VipsImage, vips

FONT = "Sans"
ELLIPSIS = "…"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean(text: Any, single_line: bool) -> str:
    """`text` without control characters or invalid UTF-8; one line of single spaces when `single_line`."""
    text = _CONTROL.sub("", str(text)).encode("utf-8", "replace").decode("utf-8")
    return " ".join(text.split()) if single_line else text.strip()


def font(px: int, bold: bool) -> str:
    """A Pango font description of `px` pixels."""
    return f"{FONT} {'Bold ' if bold else ''}{px}px"


# Names, captions, labels and stamps come back on every picture of a feed or screen: their masks
# are kept instead of laid out by Pango again (~0.4-1 ms a text on a screen). Up to ~50 KiB each
# (a wrapped message): 512 of them held +28 MB after 1,000 screens of new values, 96 a few MB.
@lru_cache(maxsize=96)
def ink(text: str, font: str, width: int | None, align: str, wrap: str = "word-char") -> VipsImage | None:
    """The ink of `text` as a one-band mask (3× cheaper than Pango's RGBA), or None for blank text.
    The mask is shared: draw operations copy what they paint on, never their mask."""
    if not text.strip():
        return None
    options: dict[str, object] = {"font": font, "dpi": 72, "align": "centre" if align == "centre" else "low"}
    if width is not None:
        options.update(width=width, wrap=wrap)
    mask: VipsImage = vips().Image.text(html.escape(text, quote=False), **options)
    return mask


def cut(text: str, font: str, width: int, lines: int, align: str) -> VipsImage | None:
    """Render, and if it overflows `lines` lines of `width`, the longest prefix that fits with an ellipsis."""
    px = int(font.rsplit(" ", 1)[1].removesuffix("px"))
    line = line_height(px, "Bold" in font)
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
        image = ink(shown, font, wrap_width, align)
        if not fits(image):
            break
        if shown == text:
            return image
    # Text grows about linearly with its length: bisect around the proportional guess.
    assert image is not None  # `text` is not blank (blank text returned above), nor is a prefix of it
    guess = min(len(shown) - 1, int(len(shown) * limit / max(extent(image), 1)))
    low, high = int(guess * 0.85), min(len(shown) - 1, int(guess * 1.1) + 2)
    best = ink(shown[:low].rstrip() + ELLIPSIS, font, wrap_width, align)
    if not fits(best):
        low, best = 0, ink(ELLIPSIS, font, wrap_width, align)
    while low < high:
        middle = (low + high + 1) // 2
        candidate = ink(shown[:middle].rstrip() + ELLIPSIS, font, wrap_width, align)
        if fits(candidate):
            low, best = middle, candidate
        else:
            high = middle - 1
    return best


@lru_cache(maxsize=512)
def line_height(px: int, bold: bool) -> int:
    """The distance between two lines of this font, as Pango lays them out."""
    one: VipsImage = vips().Image.text("Hg", font=font(px, bold), dpi=72)
    two: VipsImage = vips().Image.text("Hg\nHg", font=font(px, bold), dpi=72)
    return (two.yoffset + two.height) - (one.yoffset + one.height)


@lru_cache(maxsize=512)
def cap_top(px: int, bold: bool) -> int:
    """How far below the layout's top a capital letter starts."""
    capital: VipsImage = vips().Image.text("H", font=font(px, bold), dpi=72)
    return capital.yoffset


@lru_cache(maxsize=512)
def cap_box(px: int, bold: bool) -> int:
    """The height of a capital letter (its bottom is the baseline)."""
    capital: VipsImage = vips().Image.text("H", font=font(px, bold), dpi=72)
    return capital.height
