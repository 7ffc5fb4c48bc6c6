"""Draws the app icons in `static/icons/` (run `python -m glimpze.web.dashboard.icons` after changing them).

The PNGs are committed: the server only serves them. The mark is three widget tiles (a small
square, another, a wide one below) on the brand colour: "any" icons have rounded corners, the
maskable and Apple ones fill the square (the platform cuts its own shape, so the tiles stay
inside the central safe zone), and the notification badge is the tiles alone in white.
"""

from __future__ import annotations

from pathlib import Path

ICONS = Path(__file__).parent / "static" / "icons"

_BACKGROUND = """<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1">
<stop offset="0" stop-color="#4f46e5"/><stop offset="1" stop-color="#312e81"/></linearGradient></defs>"""


def _tiles(size: int, scale: float, colour: str = "#ffffff") -> str:
    """The mark centred in a `size` square, `scale` of its width."""
    unit = size * scale / 10  # the mark is 10 × 10 units: two 4.5-unit tiles over one 10 × 4.5 tile
    x0 = y0 = (size - 10 * unit) / 2
    r = unit * 0.9
    tiles = [
        (x0, y0, 4.5 * unit, 4.5 * unit, 1.0),
        (x0 + 5.5 * unit, y0, 4.5 * unit, 4.5 * unit, 0.72),
        (x0, y0 + 5.5 * unit, 10 * unit, 4.5 * unit, 0.9),
    ]
    return "".join(
        f'<rect x="{x:.2f}" y="{y:.2f}" width="{w:.2f}" height="{h:.2f}" rx="{r:.2f}" fill="{colour}" '
        f'fill-opacity="{o}"/>'
        for x, y, w, h, o in tiles
    )


def icon_svg(size: int, *, maskable: bool = False, badge: bool = False) -> str:
    if badge:
        body = _tiles(size, 0.82)
    elif maskable:
        body = f'{_BACKGROUND}<rect width="{size}" height="{size}" fill="url(#g)"/>{_tiles(size, 0.46)}'
    else:
        radius = size * 0.22
        body = (
            f'{_BACKGROUND}<rect width="{size}" height="{size}" rx="{radius:.1f}" fill="url(#g)"/>{_tiles(size, 0.56)}'
        )
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}">{body}</svg>'


FILES = {
    "icon-192.png": (192, False, False),
    "icon-512.png": (512, False, False),
    "maskable-512.png": (512, True, False),
    "apple-touch-icon.png": (180, True, False),
    "favicon-32.png": (32, False, False),
    "badge-96.png": (96, False, True),
}


def main() -> None:
    import pyvips

    ICONS.mkdir(parents=True, exist_ok=True)
    for name, (size, maskable, badge) in FILES.items():
        image = pyvips.Image.svgload_buffer(icon_svg(size, maskable=maskable, badge=badge).encode())
        (ICONS / name).write_bytes(image.pngsave_buffer(compression=9, strip=True))
        print(f"wrote {ICONS / name} ({size}×{size})")


if __name__ == "__main__":
    main()
