"""Image checks and widget rendering: time per image, against a full decode of the same image.

    python -m bench.images [--runs 30]

1. Header validation (`images.check_image`: magic number, structure walk with CRCs, libvips
   header read) of uploads at every widget size, the large ones ~2 MB, vs decoding all their
   pixels. Target (issue 4): under 5 ms for a 2 MB PNG.
2. Rendering a widget PNG (`render.render`) for every schema and size, vs decoding that PNG.
   Target: under 50 ms per widget PNG.
3. Screens (`displays.render`): a 2×2 screen at 800×480 in 1 bit, every panel new (nothing cached)
   and one panel new (a live wall: one feed changed), vs decoding the PNG drawn; the cached path
   (`ScreenCache.get_or_render` of an unchanged screen); RSS after --screens screens, each with one
   feed changed, against RSS once the first screens are drawn (pyvips and fonts loaded).
   Targets: ≤ 50 ms, ≤ 1 ms cached, ≤ 20 MB above.
Figures are medians over --runs, in one process, after a warm-up run of each; render times are
wall time and, beside it, CPU time (all threads), which a busy machine disturbs less.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from glimpze.displays.render import Panel, ScreenCache, ScreenSpec, render_screen
from glimpze.feeds.images import WIDGET_PIXELS, check_image, vips
from glimpze.feeds.render import Card, render
from tests import golden
from tests import imagefiles as img
from tests.server import rss_mb

SCHEMAS = ("summary", "status", "counter", "approval")

CARDS = {
    **{schema: Card(golden.NAMES[schema], schema, golden.CONTENT[schema]) for schema in SCHEMAS},
    # The worst case: every text field at its 1000-character limit, cut to fit.
    "status, 1000-char texts": Card(
        "Long", "status", {"title": "T" * 1000, "status": "warning", "message": "word " * 200, "details": "d " * 500}
    ),
}


def median_ms(run: Callable[[], object], runs: int) -> float:
    run()  # warm-up: fonts, loaders, caches
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def median_cpu_ms(run: Callable[[], object], runs: int) -> tuple[float, float]:
    """(wall, CPU) medians in ms; `run` is called once before as a warm-up."""
    run()
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000


def decode(data: bytes) -> Callable[[], object]:
    """Every pixel decoded into memory: what the header check avoids."""
    pyvips = vips()
    return lambda: pyvips.Image.new_from_buffer(data, "", access="sequential", fail_on="error").copy_memory()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--screens", type=int, default=1000, help="screens drawn for the RSS figure")
    args = parser.parse_args()
    pyvips = vips()
    print(
        f"{os.cpu_count()} CPUs, libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}, {args.runs} runs"
    )

    print("\nheader validation vs full decode of the same image")
    uploads: list[tuple[str, str, bytes]] = []
    for size in WIDGET_PIXELS:
        uploads += [(size, fmt, img.widget(size, fmt)) for fmt in img.FORMATS]
    large = pyvips.Image.new_from_buffer(img.noise_png(*WIDGET_PIXELS["large"], fraction=0.55), "")
    uploads += [
        ("large", "png", large.pngsave_buffer(compression=1)),
        ("large", "jpg", large.jpegsave_buffer(Q=98)),
        ("large", "webp", large.webpsave_buffer(lossless=True)),
    ]
    worst_png = 0.0
    for size, fmt, data in uploads:
        check = median_ms(lambda d=data, s=size: check_image(d, f"{s}_image", s), args.runs)
        full = median_ms(decode(data), args.runs)
        if fmt == "png" and len(data) > 1_500_000:
            worst_png = max(worst_png, check)
        print(
            f"  {size:6} {fmt:4} {len(data) / 1e6:5.2f} MB   check {check:6.2f} ms   "
            f"decode {full:6.2f} ms   ratio {check / full:5.3f}"
        )

    print("\nwidget PNG render vs full decode of the rendered PNG")
    worst_render = 0.0
    for name, card in CARDS.items():
        for size in WIDGET_PIXELS:
            png = render(card, size, "light")
            took = median_ms(lambda c=card, s=size: render(c, s, "light"), args.runs)
            full = median_ms(decode(png), args.runs)
            worst_render = max(worst_render, took) if "1000" not in name else worst_render
            print(f"  {name:24} {size:6} render {took:6.2f} ms   decode {full:6.2f} ms   ratio {took / full:5.2f}")

    print(
        f"\n~2 MB PNG header check: {worst_png:.2f} ms (target < 5)   "
        f"slowest render of an ordinary widget: {worst_render:.1f} ms (target < 50)"
    )
    screens(args.runs, args.screens)


def screens(runs: int, count: int) -> None:
    """Part 3: a 2×2 screen at 800×480 in 1 bit, drawn anew, after one feed changed, and cached."""
    spec = ScreenSpec((800, 480), "grid", "eink")
    schemas = golden.LAYOUTS["grid"]
    serial = iter(range(10**9))

    def panels(changed: range | list[int]) -> list[Panel]:
        """The grid's panels; those in `changed` with a new event (a new count or message)."""
        out = []
        for i, schema in enumerate(schemas):
            if i not in changed:
                out.append(golden.panel(schema))
                continue
            n = next(serial)
            content = {**golden.CONTENT[schema]}
            key = {"summary": "primary_value", "status": "message", "counter": "count", "approval": "description"}
            content[key[schema]] = n if schema == "counter" else f"{content[key[schema]]} #{n}"
            out.append(golden.panel(schema, content=content, event_id=f"ev_{n}"))
        return out

    def draw(changed: range | list[int]) -> Callable[[], object]:
        return lambda: render_screen(spec, panels(changed), golden.NOW, golden.TZ, bit_depth=1)

    png = render_screen(spec, panels([]), golden.NOW, golden.TZ, bit_depth=1)
    full = median_ms(decode(png), runs)
    print("\n2×2 screen, 800×480, 1 bit, vs full decode of the PNG drawn")
    for label, changed in (("every panel new", range(4)), ("one panel new", [2])):
        wall, cpu = median_cpu_ms(draw(changed), runs)
        print(
            f"  {label:16} render {wall:6.1f} ms (CPU {cpu:5.1f} ms)   decode {full:5.2f} ms   ratio {wall / full:5.1f}"
        )
    cache, same = ScreenCache(), panels([])
    wall, cpu = median_cpu_ms(
        lambda: cache.get_or_render(spec, same, golden.NOW, golden.TZ, bit_depth=1, fmt="png"), runs
    )
    print(f"  unchanged screen through ScreenCache: {wall:.3f} ms (CPU {cpu:.3f} ms)   target ≤ 1")

    for i in range(10):  # the first screens: pyvips, fonts and the caches in use
        cache.get_or_render(spec, panels([i % 4]), golden.NOW, golden.TZ, bit_depth=1, fmt="png")
    baseline = rss_mb(os.getpid())
    started = time.perf_counter()
    for i in range(count):
        cache.get_or_render(spec, panels([i % 4]), golden.NOW, golden.TZ, bit_depth=1, fmt="png")
    after = rss_mb(os.getpid())
    took = time.perf_counter() - started
    print(
        f"  RSS after {count:,} screens (one feed changed each, {took / count * 1000:.1f} ms a screen): "
        f"{after:.1f} MB, {after - baseline:+.1f} MB against {baseline:.1f} MB after the first 10 (target ≤ +20)"
    )


if __name__ == "__main__":
    main()
