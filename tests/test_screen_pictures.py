"""Screens drawn as pictures (glimpze/displays): layouts, golden images, e-ink PNGs and the TRMNL
firmware's BMP byte by byte, legible 1-bit text, and the cache of rendered screens."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import zlib
from array import array
from pathlib import Path
from typing import Any

import pytest

from glimpze.displays import eink
from glimpze.displays.render import (
    CELLS,
    Panel,
    ScreenCache,
    ScreenSpec,
    cells,
    filename,
    render_message,
    render_screen,
)
from glimpze.feeds.events import ApprovalView, Widget
from glimpze.feeds.images import vips
from glimpze.feeds.typeset import font, ink
from tests import golden
from tests.golden import NOW, TZ, event, panel

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = ("summary", "status", "counter", "approval", "custom")
# The first 62 bytes of the TRMNL firmware's own test image (usetrmnl/firmware, test.bmp at
# bbb6eb5): what its parseBMPHeader accepts, and where Paint_DrawBitMap reads pixels from.
FIRMWARE_BMP_HEADER = bytes.fromhex(
    "424d bebb 0000 0000 0000 3e00 0000 2800 0000 2003 0000 e001 0000 0100 0100 0000"
    "0000 80bb 0000 0000 0000 0000 0000 0200 0000 0200 0000 0000 0000 ffff ff00".replace(" ", "")
)


def read_png(data: bytes) -> tuple[int, int, int, int, list[int]]:
    """(width, height, bit depth, colour type, pixels as 0–255 greys), read without libvips or
    Pillow: every chunk's CRC, IHDR first, the IDAT stream inflated and each row unfiltered."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, []
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        assert struct.unpack(">I", data[at + 8 + length : at + 12 + length])[0] == zlib.crc32(kind + body)
        chunks.append((kind, body))
        at += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert colour == 0 and interlace == 0, "a grey, non-interlaced PNG"
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride, step = (width * depth + 7) // 8, max(1, depth // 8)
    previous, pixels = bytearray(stride), []
    for row in range(height):
        kind, line = raw[row * (stride + 1)], bytearray(raw[row * (stride + 1) + 1 : (row + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - step] if i >= step else 0
            b, c = previous[i], previous[i - step] if i >= step else 0
            predictor = [0, a, b, (a + b) // 2, _paeth(a, b, c)][kind]
            line[i] = (line[i] + predictor) & 0xFF
        bits = "".join(f"{byte:08b}" for byte in line)
        top = (1 << depth) - 1
        pixels += [int(bits[x * depth : (x + 1) * depth], 2) * 255 // top for x in range(width)]
        previous = line
    return width, height, depth, colour, pixels


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def read_bmp(data: bytes) -> tuple[int, int, list[int]]:
    """(width, height, pixels as 0 or 255) of a 1-bit BMP, rows bottom-up, padded to 4 bytes."""
    (offset,) = struct.unpack("<I", data[10:14])
    width, height = struct.unpack("<ii", data[18:26])
    palette = [data[54 + 4 * i] for i in range(2)]  # the blue of each entry: 0 black, 255 white
    stride = (width + 31) // 32 * 4
    pixels = [0] * (width * height)
    for row in range(height):
        line = data[offset + row * stride : offset + (row + 1) * stride]
        y = height - 1 - row  # bottom-up
        for x in range(width):
            pixels[y * width + x] = palette[line[x // 8] >> (7 - x % 8) & 1]
    return width, height, pixels


def vips_pixels(data: bytes) -> list[int]:
    image = vips().Image.new_from_buffer(data, "")
    return list(bytes(image.write_to_memory()))


# Golden images


@pytest.mark.parametrize("case", sorted(golden.CASES))
def test_pictures_match_their_golden_images(case: str, tmp_path: Path) -> None:
    actual = golden.CASES[case]()
    problem = golden.difference(actual, golden.path(case).read_bytes())
    if problem is not None:
        (tmp_path / f"{case}.png").write_bytes(actual)
    assert problem is None, (
        f"{case}: {problem}; the new picture is {tmp_path / case}.png. If the change is meant, "
        "regenerate with `.venv/bin/python -m tests.golden --update` and look at the result."
    )


# Every schema on every layout, in 1 and 2 bits


@pytest.mark.parametrize("layout", sorted(CELLS))
def test_every_schema_on_every_layout_is_a_real_low_bit_png(layout: str) -> None:
    for depth in (1, 2):
        for schema in SCHEMAS:
            spec = ScreenSpec((800, 480), layout, "eink")  # type: ignore[arg-type]
            data = render_screen(spec, [panel(schema)] * CELLS[layout], NOW, TZ, bit_depth=depth)  # type: ignore[arg-type]
            width, height, bits, colour, pixels = read_png(data)
            assert (width, height, bits, colour) == (800, 480, depth, 0), (layout, schema, depth)
            assert set(pixels) <= set(eink.LEVELS[depth])
            assert pixels == vips_pixels(data), "pyvips and a plain reader see the same picture"
            assert len(pixels) - pixels.count(255) > 2000, "something is drawn"


def test_one_bit_pngs_fit_the_firmware_download_and_carry_no_metadata() -> None:
    for layout in golden.LAYOUTS:
        data = golden.screen(layout, 1)
        assert len(data) <= eink.FIRMWARE_MAX_BYTES, (layout, len(data))
        chunk_kinds = set()
        at = 8
        while at < len(data):
            (length,) = struct.unpack(">I", data[at : at + 4])
            chunk_kinds.add(data[at + 4 : at + 8])
            at += 12 + length
        assert chunk_kinds <= {b"IHDR", b"IDAT", b"IEND", b"pHYs"}


def test_colour_screens_are_rgb_pngs_of_the_size() -> None:
    spec = ScreenSpec((1024, 600), "grid", "dark")
    data = render_screen(spec, [panel(s) for s in ("summary", "status", "counter", "approval")], NOW, TZ)
    image = vips().Image.new_from_buffer(data, "")
    assert (image.width, image.height, image.bands) == (1024, 600, 3)


# The TRMNL firmware's BMP


def test_the_bmp_is_laid_out_as_the_trmnl_firmware_reads_it() -> None:
    spec = ScreenSpec((800, 480), "grid", "eink")
    panels = [panel(s) for s in golden.LAYOUTS["grid"]]
    data = render_screen(spec, panels, NOW, TZ, bit_depth=1, fmt="bmp")
    assert len(data) == 48_062
    assert data[:62] == FIRMWARE_BMP_HEADER  # size, offset 62, 40-byte header, 1 bpp, BI_RGB, 2 colours
    # The firmware's parseBMPHeader reads these fields at these offsets, and wants these values.
    assert data[0:2] == b"BM"
    assert struct.unpack_from("<IIHHIII", data, 18) == (800, 480, 1, 1, 0, 48_000, 0)
    assert struct.unpack_from("<I", data, 46)[0] == 2 and struct.unpack_from("<I", data, 10)[0] == 62
    assert data[54:62] == bytes([0, 0, 0, 0, 255, 255, 255, 0])  # "standard": index 0 black, 1 white
    width, height, pixels = read_bmp(data)
    png = render_screen(spec, panels, NOW, TZ, bit_depth=1)
    assert (width, height) == (800, 480) and pixels == read_png(png)[4], "the same picture as the 1-bit PNG"
    # Bottom-up: the image's last row is the file's first; its first row (the caption-free top
    # of the cells, white paper at the left edge) the file's last.
    assert data[62:162] == _packed_row(pixels, 479) and data[-100:] == _packed_row(pixels, 0)


def _packed_row(pixels: list[int], y: int) -> bytes:
    row = pixels[y * 800 : (y + 1) * 800]
    return bytes(sum((row[x + i] == 255) << (7 - i) for i in range(8)) for x in range(0, 800, 8))


def test_bmp_rows_are_padded_to_four_bytes_at_any_width() -> None:
    for size in ((101, 100), (333, 150)):
        spec = ScreenSpec(size, "full", "eink")
        data = render_screen(spec, [panel("status")], NOW, TZ, bit_depth=1, fmt="bmp")
        stride = (size[0] + 31) // 32 * 4
        assert len(data) == 62 + stride * size[1]
        assert struct.unpack_from("<I", data, 34)[0] == stride * size[1]
        width, height, pixels = read_bmp(data)
        png = render_screen(spec, [panel("status")], NOW, TZ, bit_depth=1)
        assert (width, height) == size and pixels == read_png(png)[4]


def test_bmp_is_one_bit_only() -> None:
    spec = ScreenSpec((800, 480), "full", "eink")
    with pytest.raises(ValueError, match="bmp"):
        render_screen(spec, [panel("summary")], NOW, TZ, bit_depth=2, fmt="bmp")


# Legible 1-bit text


LEGIBILITY_SAMPLE = "I l 1 i ! j t f r g a e s 0 5 % ; , . m w v x k y z ? / ( ) [ ] { } – ~ ^ @ # & * + = < >"


def _ink_groups(binary: Any) -> list[set[int]]:
    """The 8-connected groups of set pixels of a 0/255 image, as sets of pixel indexes."""
    width, height = binary.width, binary.height
    data = bytes(binary.write_to_memory())
    seen, groups = bytearray(len(data)), []
    for start, value in enumerate(data):
        if not value or seen[start]:
            continue
        seen[start], stack, group = 1, [start], set()
        while stack:
            at = stack.pop()
            group.add(at)
            y, x = divmod(at, width)
            for yy in (y - 1, y, y + 1):
                for xx in (x - 1, x, x + 1):
                    near = yy * width + xx
                    if 0 <= yy < height and 0 <= xx < width and data[near] and not seen[near]:
                        seen[near] = 1
                        stack.append(near)
        groups.append(group)
    return groups


def _strokes_kept(threshold: Any, px: int, bold: bool, dark_on_light: bool) -> list[str]:
    """Draw the sample as anti-aliased text at `px` at every quarter-pixel offset (each a shrunk
    4× rendering, so the exact glyph is known) and threshold it with `threshold(painted)`; return
    the glyph parts that vanished or broke apart (each part of the 4× glyph must come out as ink,
    in one 8-connected piece)."""
    big = ink(LEGIBILITY_SAMPLE, font(px * 4, bold), None, "low")
    parts = [[divmod(at, big.width) for at in part] for part in _ink_groups(big >= 128)]
    text, paper = ("#000000", "#FFFFFF") if dark_on_light else ("#FFFFFF", "#000000")
    problems = []
    for phase in range(4):
        mask = big.embed(phase, phase, big.width + 8, big.height + 8).shrink(4, 4).cast("uchar")
        painted = eink.paint(eink.canvas(mask.width, mask.height, paper, 1), [(mask, text, 0, 0)], [], 1)
        result = threshold(painted.copy_memory())
        inked = (result == 0) if dark_on_light else (result == 255)
        ink_at = bytes(inked.write_to_memory())
        group_of = {at: i for i, group in enumerate(_ink_groups(inked)) for at in group}
        for part in parts:
            footprint = {(y + phase) // 4 * mask.width + (x + phase) // 4 for y, x in part}
            pieces = {group_of[at] for at in footprint if ink_at[at]}
            if len(pieces) != 1:
                y, x = divmod(min(footprint), mask.width)
                problems.append(f"phase {phase}: the part at x={x} comes out in {len(pieces)} piece(s)")
    return problems


@pytest.mark.parametrize("bold", [False, True], ids=["regular", "bold"])
def test_no_glyph_stroke_comes_out_thinner_than_a_pixel_at_one_bit(bold: bool) -> None:
    for px in (15, 18):  # the smallest text drawn (MIN_TEXT_PX), and a caption on a larger screen
        for dark_on_light in (True, False):  # black text on paper; white text on a pill or dark theme
            problems = _strokes_kept(lambda painted: eink.quantise(painted, 1), px, bold, dark_on_light)
            assert problems == [], (px, dark_on_light, problems[:5])


def test_a_plain_half_threshold_would_lose_strokes() -> None:
    """The legibility test can fail: cutting at half coverage breaks or drops thin strokes."""
    problems = []
    for bold in (False, True):
        for px in (15, 18):
            half = _strokes_kept(lambda painted: (painted[0] >= 128).ifthenelse(255, 0), px, bold, True)
            problems += half
    assert problems, "a 50 % threshold keeps every stroke too: the legibility test proves nothing"


# Layouts


def test_layouts_split_the_screen_into_cells_with_dividers() -> None:
    landscape, portrait = (800, 480), (480, 800)
    assert cells(ScreenSpec(landscape, "full", "eink")) == ([(0, 0, 800, 480)], [])
    halves, dividers = cells(ScreenSpec(landscape, "halves", "eink"))
    assert halves == [(0, 0, 399, 480), (401, 0, 399, 480)] and dividers == [(399, 0, 2, 480)]  # side by side
    assert cells(ScreenSpec(portrait, "halves", "eink"))[0] == [(0, 0, 480, 399), (0, 401, 480, 399)]  # stacked
    grid, _ = cells(ScreenSpec(landscape, "grid", "eink"))
    assert grid == [(0, 0, 399, 239), (401, 0, 399, 239), (0, 241, 399, 239), (401, 241, 399, 239)]
    hero, _ = cells(ScreenSpec(landscape, "hero", "eink"))
    assert hero[0][2] > hero[1][2] and hero[1][0] == hero[2][0]  # large at the left, two small at the right
    hero, _ = cells(ScreenSpec(portrait, "hero", "eink"))
    assert hero[0][3] > hero[1][3] and hero[1][1] == hero[2][1]  # large on top, two small under it
    for layout in CELLS:
        for size in (landscape, portrait, (100, 100), (2048, 2048), (2048, 100)):
            boxes, lines = cells(ScreenSpec(size, layout, "eink"))  # type: ignore[arg-type]
            area = sum(w * h for _, _, w, h in boxes + lines)
            assert len(boxes) == CELLS[layout] and area == size[0] * size[1], (layout, size)


@pytest.mark.parametrize(
    "spec,count,depth,fmt,message",
    [
        (ScreenSpec((99, 480), "full", "eink"), 1, 1, "png", "100–2048"),
        (ScreenSpec((800, 2049), "full", "eink"), 1, 1, "png", "100–2048"),
        (ScreenSpec((800, 480), "halves", "eink"), 3, 1, "png", "2 cell"),
        (ScreenSpec((800, 480), "full", "sepia"), 1, 1, "png", "theme"),  # type: ignore[arg-type]
        (ScreenSpec((800, 480), "full", "eink"), 1, 4, "png", "bit depth"),
    ],
)
def test_out_of_range_screens_are_refused(spec: ScreenSpec, count: int, depth: int, fmt: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_screen(spec, [panel("summary")] * count, NOW, TZ, bit_depth=depth, fmt=fmt)  # type: ignore[arg-type]


def test_the_smallest_and_largest_screens_render_at_their_size() -> None:
    for size in ((100, 100), (2048, 2048)):
        for depth in (1, 8):
            data = render_screen(
                ScreenSpec(size, "grid", "eink"), [panel(s) for s in SCHEMAS[:4]], NOW, TZ, bit_depth=depth
            )  # type: ignore[arg-type]
            image = vips().Image.new_from_buffer(data, "")
            assert (image.width, image.height) == size


def test_panels_without_an_event_an_image_or_a_full_layout_still_draw() -> None:
    waiting = Panel("fd_new", "New feed", "summary", Widget("fd_new", None))
    hosted = Panel("fd_x", "Hosted", "custom", Widget("fd_x", event("custom")))  # a URL: never fetched
    broken = Panel("fd_b", "Broken", "custom", Widget("fd_b", event("custom")), image=b"\x89PNG\r\n\x1a\nnot really")
    spec = ScreenSpec((800, 480), "grid", "eink")
    data = render_screen(spec, [waiting, hosted, broken], NOW, TZ, bit_depth=1)  # the fourth cell stays empty
    pixels = read_png(data)[4]
    assert pixels[241 * 800 + 401 : 241 * 800 + 800] == [255] * 399  # the empty cell is paper
    assert pixels.count(0) > 3000


def test_a_message_screen_says_one_thing() -> None:
    spec = ScreenSpec((800, 480), "full", "eink")
    data = render_message(spec, "Waiting for approval", "Accept this device in Glimpze's dashboard.", bit_depth=1)
    assert read_png(data)[:3] == (800, 480, 1)
    assert render_message(spec, "A", "b", bit_depth=1, fmt="bmp")[:2] == b"BM"


# The cache of rendered screens


def test_the_cache_returns_the_same_filename_until_a_feed_changes() -> None:
    cache = ScreenCache()
    spec = ScreenSpec((800, 480), "grid", "eink")
    panels = [panel(s) for s in golden.LAYOUTS["grid"]]
    first, name = cache.get_or_render(spec, panels, NOW, TZ, bit_depth=1, fmt="png")
    assert name == filename(first) and len(name) == 16
    assert cache.image(name) == first
    # Time passing on the same day draws nothing new; the stamps say when the feeds changed.
    again, same = cache.get_or_render(
        spec, [panel(s) for s in golden.LAYOUTS["grid"]], NOW + 60, TZ, bit_depth=1, fmt="png"
    )
    assert same == name and again is first
    # An event on one feed: a new picture, a new filename.
    panels[2] = panel("counter", content={**golden.CONTENT["counter"], "count": 2315}, ago=0, event_id="ev_new")
    _, changed = cache.get_or_render(spec, panels, NOW + 60, TZ, bit_depth=1, fmt="png")
    assert changed != name
    # An approval decided or another request waiting changes the picture too.
    approval = panels[3]
    panels[3] = Panel(
        approval.feed_id,
        approval.name,
        "approval",
        Widget(approval.feed_id, approval.widget.event, ApprovalView("pending", 4)),
    )
    assert cache.get_or_render(spec, panels, NOW + 60, TZ, bit_depth=1, fmt="png")[1] not in (name, changed)
    # Depth and format are part of the key.
    assert cache.get_or_render(spec, panels, NOW + 60, TZ, bit_depth=1, fmt="bmp")[0][:2] == b"BM"


def test_the_stamps_change_the_picture_only_when_the_day_they_name_does() -> None:
    cache = ScreenCache()
    spec = ScreenSpec((800, 480), "full", "eink")
    panels = [panel("summary", ago=60)]  # 20:25 UTC: 22:25 in Berlin
    _, today = cache.get_or_render(spec, panels, NOW, TZ, bit_depth=1, fmt="png")
    assert cache.get_or_render(spec, panels, NOW + 3000, TZ, bit_depth=1, fmt="png")[1] == today
    _, tomorrow = cache.get_or_render(spec, panels, NOW + 6 * 3600, TZ, bit_depth=1, fmt="png")
    assert tomorrow != today  # "updated Thu 22:25"
    quiet = ScreenSpec((800, 480), "full", "eink", show_updated=False)
    a = cache.get_or_render(quiet, panels, NOW, TZ, bit_depth=1, fmt="png")[1]
    assert cache.get_or_render(quiet, panels, NOW + 6 * 3600, TZ, bit_depth=1, fmt="png")[1] == a


def test_the_cache_is_bounded() -> None:
    cache = ScreenCache(max_entries=3)
    spec = ScreenSpec((200, 120), "full", "eink")
    names = []
    for i in range(5):
        p = panel("counter", content={**golden.CONTENT["counter"], "count": i}, event_id=f"ev_{i}")
        names.append(cache.get_or_render(spec, [p], NOW, TZ, bit_depth=1, fmt="png")[1])
    assert len(set(names)) == 5
    assert [cache.image(n) is not None for n in names] == [False, False, True, True, True]


# Lazy pyvips


def test_importing_the_screen_renderer_does_not_import_pyvips() -> None:
    script = textwrap.dedent(
        """
        import sys
        import glimpze.displays.render, glimpze.displays.eink, glimpze.feeds.render, glimpze.feeds.widgets
        print("pyvips" in sys.modules)
        """
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


def test_dithering_keeps_a_picture_s_tones() -> None:
    pyvips = vips()
    ramp = (pyvips.Image.xyz(256, 64)[0]).cast("uchar")
    for depth in (1, 2):
        dithered = eink.dither(ramp, depth)
        values = array("B", bytes(dithered.write_to_memory()))
        assert set(values) <= set(eink.LEVELS[depth])
        # Each column's mean follows the ramp: tones, not a hard cut.
        for x in (32, 128, 224):
            column = dithered.crop(x - 8, 0, 16, 64).avg()
            assert abs(column - x) < 24, (depth, x, column)
