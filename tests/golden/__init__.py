"""Golden images: screens and widget pictures as they should look, compared with a tolerance.

Each case draws a picture from fixed inputs (a fixed `now`, a fixed time zone, fixed events); the
expected picture is `tests/golden/{case}.png`. A comparison allows small differences (a font
version that moves a glyph edge by a pixel), not a changed drawing. When a drawing changes on
purpose, look at the new pictures and regenerate them:

    .venv/bin/python -m tests.golden --update      # rewrite every golden image
    .venv/bin/python -m tests.golden               # compare only, and say which differ

`tests/test_screens.py::test_pictures_match_their_golden_images` runs the comparison.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any

from glimpze.clock import iso
from glimpze.displays.render import Panel, ScreenSpec, render_screen
from glimpze.feeds.events import ApprovalView, Event, Widget
from glimpze.feeds.images import vips
from glimpze.feeds.render import Card, render
from tests import imagefiles

FOLDER = Path(__file__).parent
NOW = 1_780_000_000.0  # Thu 28 May 2026, 20:26:40 UTC
TZ = zoneinfo.ZoneInfo("Europe/Berlin")
# A pixel counts as different past this many levels; a picture as different past these shares.
PIXEL_LEVELS = 64
MAX_DIFFERENT = 0.015
MAX_MEAN_LEVELS = 4.0

CONTENT: dict[str, dict[str, Any]] = {
    "summary": {"title": "Daily Revenue", "primary_value": "$12,345", "secondary_value": "+15% vs yesterday"},
    "status": {
        "title": "Production API",
        "status": "error",
        "message": "Database connection failed",
        "details": "Last error: Connection timeout after 30s",
    },
    "counter": {
        "title": "Active Users",
        "count": 2314,
        "unit": "users",
        "trend": "up",
        "trendValue": "+12%",
        "trendSemantic": "positive",
        "subtitle": "This week",
    },
    "approval": {"description": "Deploy v2.3.0 to production?"},
    "custom": {"large": {"image_url": "https://glimpze.example.com/media/chart.png"}},
}
NAMES = {"summary": "Revenue", "status": "API", "counter": "Signups", "approval": "Deploys", "custom": "CI chart"}
AGO = {"summary": 600, "status": 3 * 86400, "counter": 60, "approval": 3600, "custom": 40 * 86400}
# One screen per layout; across them the panels show all five schemas.
LAYOUTS = {
    "full": ["summary"],
    "halves": ["status", "counter"],
    "grid": ["summary", "status", "counter", "approval"],
    "hero": ["custom", "approval", "status"],
}


def event(schema: str, content: dict[str, Any] | None = None, ago: float | None = None, event_id: str = "") -> Event:
    """An accepted event of `schema` received `ago` seconds before NOW."""
    return Event(
        id=event_id or f"ev_{schema}",
        feed_id=f"fd_{schema}",
        status="accepted",
        schema_type=schema,
        content=CONTENT[schema] if content is None else content,
        metadata={},
        intent={},
        received_at=iso(NOW - (AGO[schema] if ago is None else ago)),
        widget_updated=True,
        push="none",
    )


def panel(schema: str, **changes: Any) -> Panel:
    """A panel of `schema` with the example content (an approval with 3 waiting, a custom feed
    with its stored image); `changes` go to `event()`."""
    approval = ApprovalView("pending", 3) if schema == "approval" else None
    image = imagefiles.widget("large", seed=3) if schema == "custom" else None
    widget = Widget(f"fd_{schema}", event(schema, **changes), approval)
    return Panel(f"fd_{schema}", NAMES[schema], schema, widget, image)


def screen(layout: str, bit_depth: int, theme: str = "eink") -> bytes:
    spec = ScreenSpec((800, 480), layout, theme)  # type: ignore[arg-type]
    return render_screen(spec, [panel(s) for s in LAYOUTS[layout]], NOW, TZ, bit_depth=bit_depth)  # type: ignore[arg-type]


def widget(schema: str, size: str, theme: str, **card: Any) -> bytes:
    content = {**CONTENT[schema], **card.pop("content", {})}
    return render(Card(NAMES[schema], schema, content, **card), size, theme)


LONG_TITLE = "Production API cluster in eu-west-1"
CASES: dict[str, Callable[[], bytes]] = {
    **{
        f"screen-{layout}-{depth}bit": (lambda layout=layout, depth=depth: screen(layout, depth))
        for layout in LAYOUTS
        for depth in (1, 2)
    },
    "screen-grid-light-2bit": lambda: screen("grid", 2, "light"),
    # The four states in shape as well as colour; a long title wraps before it is cut.
    **{
        f"widget-status-{state}-small": (
            lambda state=state: widget(
                "status",
                "small",
                "light",
                content={"status": state, "title": LONG_TITLE, "message": state.title()},
                updated="updated 14:05",
            )
        )
        for state in ("success", "warning", "error", "info")
    },
    "widget-status-large-eink": lambda: widget("status", "large", "eink", updated="updated Tue 09:12"),
    "widget-approval-large": lambda: widget("approval", "large", "light", waiting=3, updated="updated 14:05"),
    "widget-summary-small-dark": lambda: widget(
        "summary", "small", "dark", content={"title": "Monthly recurring revenue, all regions"}
    ),
}


def path(case: str) -> Path:
    return FOLDER / f"{case}.png"


def difference(actual: bytes, expected: bytes) -> str | None:
    """Why `actual` does not match `expected` within the tolerance, or None when it does."""
    pyvips = vips()
    a = pyvips.Image.new_from_buffer(actual, "")
    b = pyvips.Image.new_from_buffer(expected, "")
    if (a.width, a.height, a.bands) != (b.width, b.height, b.bands):
        return f"{a.width}×{a.height}×{a.bands} instead of {b.width}×{b.height}×{b.bands}"
    diff = (a.cast("int") - b.cast("int")).abs()
    worst = diff[0]
    for band in range(1, diff.bands):  # a pixel differs by its most different band
        worst = worst.maxpair(diff[band])
    diff = worst
    different = (diff > PIXEL_LEVELS).avg() / 255
    mean = diff.avg()
    if different > MAX_DIFFERENT or mean > MAX_MEAN_LEVELS:
        return f"{different:.2%} of pixels differ (at most {MAX_DIFFERENT:.1%}), mean {mean:.1f} levels"
    return None
