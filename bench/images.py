"""Image checks and widget rendering: time per image, against a full decode of the same image.

    python -m bench.images [--runs 30]

1. Header validation (`images.check_image`: magic number, structure walk with CRCs, libvips
   header read) of uploads at every widget size, the large ones ~2 MB, vs decoding all their
   pixels. Target (issue 4): under 5 ms for a 2 MB PNG.
2. Rendering a widget PNG (`render.render`) for every schema and size, vs decoding that PNG.
   Target: under 50 ms per widget PNG.
Figures are medians over --runs, in one process, after a warm-up run of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from glimpze.feeds.images import WIDGET_PIXELS, check_image, vips
from glimpze.feeds.render import Card, render
from tests import imagefiles as img

CARDS = {
    "summary": Card(
        "Revenue", "summary", {"title": "Daily Revenue", "primary_value": "$12,345", "secondary_value": "+15%"}
    ),
    "status": Card(
        "API",
        "status",
        {
            "title": "Production API",
            "status": "error",
            "message": "Database connection failed",
            "details": "Last error: Connection timeout after 30s",
        },
    ),
    "counter": Card(
        "Users",
        "counter",
        {
            "title": "Active Users",
            "count": 2314,
            "unit": "users",
            "trend": "up",
            "trendValue": "+12%",
            "trendSemantic": "positive",
            "subtitle": "This week",
        },
    ),
    "approval": Card("Deploys", "approval", {"description": "Deploy v2.3.0 to production?"}),
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


def decode(data: bytes) -> Callable[[], object]:
    """Every pixel decoded into memory: what the header check avoids."""
    pyvips = vips()
    return lambda: pyvips.Image.new_from_buffer(data, "", access="sequential", fail_on="error").copy_memory()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
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


if __name__ == "__main__":
    main()
