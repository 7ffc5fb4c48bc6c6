"""Pictures for e-ink panels: painted in 1 bit (black and white) or 2 bits (four greys), and encoded
as the TRMNL firmware reads them.

Text and flat shapes are thresholded, never dithered. Each layer is painted anti-aliased in its
colour's grey level (`level`), and also as dark or light ink, into a three-band picture (`canvas`,
`paint`); the whole is then quantised once (`quantise`): each pixel to the nearest level, except
that a pixel on a stroke's ridge (darkest across a row or a column, for dark ink; lightest, for
light ink) goes to the ink's side. A plain 50 % cut loses a thin stroke whose ink falls across two
pixels, each under half covered; this keeps every stroke at least one pixel wide, so no glyph
breaks apart or loses a part (tests/test_screens.py checks it against 4× renderings). Images (a
custom feed's picture) are dithered to the levels with an 8×8 ordered (Bayer) matrix:
deterministic, so an unchanged screen encodes to the same bytes, and cheap in libvips.

Encodings, matched to what the firmware accepts (usetrmnl/firmware at bbb6eb5, June 2025:
`lib/trmnl/src/bmp.cpp` parseBMPHeader, `src/display.cpp` display_show_image,
`lib/esp32-waveshare-epd/src/GUI_Paint.cpp` Paint_DrawBitMap, `include/config.h`; and its
`test.bmp`):
- PNG: greyscale (colour type 0) of bit depth 1 or 2, no metadata chunks; the firmware decodes
  1-bit PNGs (PNGdec, `getBpp() == 1`) and takes a download of at most 48,062 bytes.
- BMP: "BM", a 40-byte BITMAPINFOHEADER, 1 bpp, BI_RGB, a positive height (rows bottom-up), rows
  padded to 4 bytes, two palette entries black (0,0,0,0) then white (255,255,255,0), so a set bit
  is white; pixels at offset 62. The firmware insists on exactly these (offset 62 is hard-coded)
  at 800×480, 48,000 bytes of pixels, 48,062 bytes in all; its reversed palette is also read but
  this one is its "standard".
"""

from __future__ import annotations

import math
import struct
from functools import lru_cache
from typing import Any

from glimpze.feeds.images import VipsImage, vips

LEVELS: dict[int, tuple[int, ...]] = {1: (0, 255), 2: (0, 85, 170, 255)}
RIDGE_MIN = 64  # a ridge of at least a quarter coverage is a stroke (below: anti-aliasing fringe)
RIDGE_CONTRAST = 24  # levels a ridge stands out by from one side (the other may be a plateau)
BMP_HEADER_BYTES = 14 + 40 + 8  # file header, BITMAPINFOHEADER, two palette entries
BMP_PALETTE = bytes((0, 0, 0, 0, 255, 255, 255, 0))  # index 0 black, 1 white (B, G, R, reserved)
FIRMWARE_MAX_BYTES = 48_062  # the OG firmware refuses a larger image download

# 8×8 Bayer matrix: thresholds 0–63, evenly spread so a flat grey becomes an even pattern.
_BAYER8 = (
    (0, 32, 8, 40, 2, 34, 10, 42),
    (48, 16, 56, 24, 50, 18, 58, 26),
    (12, 44, 4, 36, 14, 46, 6, 38),
    (60, 28, 52, 20, 62, 30, 54, 22),
    (3, 35, 11, 43, 1, 33, 9, 41),
    (51, 19, 59, 27, 49, 17, 57, 25),
    (15, 47, 7, 39, 13, 45, 5, 37),
    (63, 31, 55, 23, 61, 29, 53, 21),
)


def level(colour: str, bit_depth: int) -> int:
    """The grey level (0–255) nearest to `colour`'s luma (Rec. 601, as e-ink converters use)."""
    value = int(colour.lstrip("#"), 16)
    luma = 0.299 * (value >> 16) + 0.587 * ((value >> 8) & 0xFF) + 0.114 * (value & 0xFF)
    return min(LEVELS[bit_depth], key=lambda grey: abs(grey - luma))


def quantise(painted: Any, bit_depth: int) -> Any:
    """A painted picture (`paint`: grey, dark-ink and light-ink bands) as grey levels of
    `bit_depth`: each pixel the nearest level, except across a stroke. Where dark ink shows (at
    least a quarter), a pixel no lighter than its neighbours on both sides of a row or a column
    (and darker than one of them: a two-pixel plateau counts, a flat run along the stroke does
    not) rounds down to the level below when it is at least a quarter of the way there; where
    light ink shows (white text on a pill, light text on a dark theme), a pixel no darker than both
    rounds up. So a stroke whose ink falls across two pixels, each under half covered, still comes
    out one pixel wide, and the ink tells which way: a glyph's counter stays open."""
    g, dark, light = painted[0], painted[1] >= RIDGE_MIN, painted[2] >= RIDGE_MIN
    w, h = g.width, g.height
    # Neighbours by shifting the picture a pixel each way (4× cheaper than rank filters here).
    left, right = g.embed(1, 0, w, h, extend="copy"), g.embed(-1, 0, w, h, extend="copy")
    up, down = g.embed(0, 1, w, h, extend="copy"), g.embed(0, -1, w, h, extend="copy")
    low_x, high_x, low_y, high_y = left.minpair(right), left.maxpair(right), up.minpair(down), up.maxpair(down)
    # A ridge stands out from the lighter (darker) side by RIDGE_CONTRAST: a flat run along a
    # stroke, or a faint ripple across a gap, is none.
    raised, lowered = (g.maplut(table) for table in _shifted())
    valley = ((g <= low_x) & (raised <= high_x)) | ((g <= low_y) & (raised <= high_y))
    crest = ((g >= high_x) & (lowered >= low_x)) | ((g >= high_y) & (lowered >= low_y))
    lower, upper, nearest = (g.maplut(table) for table in _rounding(bit_depth))
    rounded = (dark & valley).ifthenelse(lower, (light & crest).ifthenelse(upper, nearest))
    return rounded.copy(interpretation="b-w")


@lru_cache(maxsize=1)
def _shifted() -> tuple[Any, Any]:
    """Lookup tables adding and taking RIDGE_CONTRAST, clipped (uchar arithmetic: no float pass)."""
    pyvips = vips()
    up = [min(255, grey + RIDGE_CONTRAST) for grey in range(256)]
    down = [max(0, grey - RIDGE_CONTRAST) for grey in range(256)]
    return pyvips.Image.new_from_array([up]).cast("uchar"), pyvips.Image.new_from_array([down]).cast("uchar")


@lru_cache(maxsize=4)
def _rounding(bit_depth: int) -> tuple[Any, Any, Any]:
    """Lookup tables from a grey value to a level: rounded down on a dark ridge (unless within a
    quarter of the level above), up on a light one (unless within a quarter of the level below),
    else to the nearest."""
    pyvips = vips()
    steps = len(LEVELS[bit_depth]) - 1
    quarter = RIDGE_MIN / 255 * steps
    tables: list[list[int]] = [[], [], []]
    for grey in range(256):
        v = grey * steps / 255
        below = math.floor(v)
        nearest = math.floor(v + 0.5)
        part = v - below
        tables[0].append(below if part <= 1 - quarter else nearest)
        tables[1].append(min(steps, below + 1) if part >= quarter else nearest)
        tables[2].append(nearest)
    down, up, near = (
        pyvips.Image.new_from_array([[round(i * 255 / steps) for i in table]]).cast("uchar") for table in tables
    )
    return down, up, near


def dither(image: Any, bit_depth: int) -> Any:
    """A picture as grey levels of `bit_depth`, ordered-dithered (alpha flattened onto white)."""
    if image.hasalpha():
        image = image.flatten(background=[255] * (image.bands - 1))
    grey = image.colourspace("b-w")[0].cast("float")
    steps = len(LEVELS[bit_depth]) - 1
    threshold = _bayer(image.width, image.height)
    quantised = (grey * (steps / 255) + threshold).floor().minpair(steps)
    return (quantised * (255 / steps)).cast("uchar")


def canvas(width: int, height: int, colour: str, bit_depth: int) -> Any:
    """A picture to `paint` on, plain `colour`: its grey level, and two bands that say how much
    dark ink and how much light ink shows at each pixel (none yet), which `quantise` reads."""
    return _plain(width, height, level(colour, bit_depth))


def paint(
    image: Any, layers: list[tuple[VipsImage, str, int, int]], pictures: list[tuple[Any, int, int]], bit_depth: int
) -> Any:
    """Pictures dithered onto a `canvas`, then layers painted anti-aliased in their colours' levels,
    each also as dark or light ink (a level below or above the middle); `quantise` the result once
    the picture is whole (far cheaper than thresholding each layer)."""
    for picture, x, y in pictures:
        dithered = dither(picture, bit_depth)  # already at the levels: no ink to keep
        image = image.insert(dithered.bandjoin_const([0, 0]), x, y)
    for mask, colour, x, y in layers:
        grey = level(colour, bit_depth)
        image = image.draw_mask([grey, 255, 0] if grey < 128 else [grey, 0, 255], mask, x, y)
    return image


def png(image: Any, bit_depth: int) -> bytes:
    """A grey PNG of bit depth 1 or 2 (the levels' top bits) without metadata chunks."""
    # zlib level 6: half the time of 9 on a 1-bit 800×480 screen (3.6 against 7.3 ms), 4 % larger.
    data: bytes = image.pngsave_buffer(bitdepth=bit_depth, compression=6, keep="none")
    return data


def bmp(image: Any) -> bytes:
    """A 1-bit BMP of a black-and-white picture, laid out as the TRMNL firmware reads it."""
    width, height = image.width, image.height
    row_bits = -(-width // 32) * 32  # rows are padded to 4 bytes
    padded = image.embed(0, 0, row_bits, height, extend="background", background=[255])
    raw = padded.flipver().write_to_memory()  # bottom row first
    words = struct.unpack(f">{len(raw) // 8}Q", raw)  # 8 pixels of 0 or 255 each
    pixels = bytes(map(_PACK.__getitem__, words))
    size = BMP_HEADER_BYTES + len(pixels)
    header = b"BM" + struct.pack("<IHHI", size, 0, 0, BMP_HEADER_BYTES)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 1, 0, len(pixels), 0, 0, 2, 2)
    return header + info + BMP_PALETTE + pixels


def _packed(byte: int) -> int:
    """The 8 bytes (0 or 255, leftmost pixel first) whose packed bits are `byte`, as a big-endian word."""
    return int.from_bytes(bytes(255 if byte >> (7 - i) & 1 else 0 for i in range(8)), "big")


# Every run of 8 black-or-white pixels and the byte it packs to (set bit: white, palette index 1).
_PACK = {_packed(byte): byte for byte in range(256)}


@lru_cache(maxsize=8)
def _plain(width: int, height: int, grey: int) -> Any:
    pyvips = vips()
    image = pyvips.Image.black(width, height, bands=3).new_from_image([grey, 0, 0]).cast("uchar")
    return image.copy(interpretation="multiband").copy_memory()


@lru_cache(maxsize=8)
def _bayer(width: int, height: int) -> Any:
    """The Bayer thresholds (0–1) tiled over `width` × `height`."""
    pyvips = vips()
    tile = pyvips.Image.new_from_array([[(v + 0.5) / 64 for v in row] for row in _BAYER8])
    return tile.replicate(-(-width // 8), -(-height // 8)).crop(0, 0, width, height).copy_memory()
