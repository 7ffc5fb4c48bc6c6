"""State icons as coverage masks: a status or an approval state carried in shape as well as colour.

A grey e-ink panel shows every accent colour as about the same grey, so each state has its own
shape beside its word: success a check, warning a triangle with "!", error a cross, info an "i",
pending a clock, deferred a pause sign. Each is a filled shape with its sign knocked out, drawn
from distances (a signed-distance field per stroke, anti-aliased by its distance to the edge), so
it is sharp at any size without an SVG loader (the upload lockdown blocks those). Knocked-out
strokes are at least ~2 px wide, so they stay open after e-ink thresholding.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from glimpze.feeds.images import VipsImage, vips

MIN_STROKE_PX = 2.2  # a knocked-out stroke narrower than this closes up at 1 bit

STATUS_ICONS = {"success": "check", "warning": "warning", "error": "cross", "info": "info"}
APPROVAL_ICONS = {"pending": "clock", "approved": "check", "rejected": "cross", "deferred": "pause"}

Point = tuple[float, float]


@lru_cache(maxsize=64)
def icon(kind: str, px: int) -> VipsImage:
    """A `px`×`px` uchar mask of the icon `kind` (check, warning, cross, info, clock, pause)."""
    shape = _Shape(px)
    w = max(0.12, MIN_STROKE_PX / px)  # knock-out stroke width, in icon units
    if kind == "warning":
        body = shape.polygon([(0.5, 0.05), (0.98, 0.93), (0.02, 0.93)])
        sign = shape.segments([(0.5, 0.38), (0.5, 0.64)], w).union(shape.disc((0.5, 0.79), max(0.065, w * 0.6)))
    else:
        body = shape.disc((0.5, 0.5), 0.5)
        sign = {
            "check": lambda: shape.segments([(0.27, 0.52), (0.44, 0.68), (0.74, 0.36)], w),
            "cross": lambda: shape.segments([(0.33, 0.33), (0.67, 0.67)], w).union(
                shape.segments([(0.67, 0.33), (0.33, 0.67)], w)
            ),
            "info": lambda: shape.segments([(0.5, 0.45), (0.5, 0.76)], w).union(
                shape.disc((0.5, 0.28), max(0.075, w * 0.65))
            ),
            "clock": lambda: shape.segments([(0.5, 0.22), (0.5, 0.52), (0.71, 0.64)], w),
            "pause": lambda: shape.segments([(0.39, 0.3), (0.39, 0.7)], w).union(
                shape.segments([(0.61, 0.3), (0.61, 0.7)], w)
            ),
        }[kind]()
    mask: VipsImage = body.minus(sign).uchar()
    return mask


class _Coverage:
    """A float coverage image (0–1) and the set operations the icons need."""

    def __init__(self, image: Any) -> None:
        self.image = image

    def union(self, other: _Coverage) -> _Coverage:
        return _Coverage(self.image.maxpair(other.image))

    def minus(self, other: _Coverage) -> _Coverage:
        return _Coverage(self.image * (1 - other.image))

    def uchar(self) -> Any:
        return (self.image * 255).cast("uchar").copy_memory()


class _Shape:
    """Shapes on a `px`×`px` grid in icon units (0–1), anti-aliased by distance to their edge."""

    def __init__(self, px: int) -> None:
        pyvips = vips()
        xy = pyvips.Image.xyz(px, px).cast("float") + 0.5  # pixel centres
        self.px = px
        self.x, self.y = xy[0], xy[1]

    def _cover(self, distance: Any) -> _Coverage:
        """Coverage from a signed distance in pixels (negative inside)."""
        return _Coverage((0.5 - distance).maxpair(0).minpair(1))

    def disc(self, centre: Point, radius: float) -> _Coverage:
        cx, cy = centre[0] * self.px, centre[1] * self.px
        distance = ((self.x - cx) ** 2 + (self.y - cy) ** 2) ** 0.5
        return self._cover(distance - radius * self.px)

    def segments(self, points: list[Point], width: float) -> _Coverage:
        """A polyline of round-capped strokes `width` wide."""
        nearest: Any = None
        for (ax, ay), (bx, by) in zip(points, points[1:], strict=False):
            ax, ay, bx, by = ax * self.px, ay * self.px, bx * self.px, by * self.px
            dx, dy = bx - ax, by - ay
            t = (((self.x - ax) * dx + (self.y - ay) * dy) / (dx * dx + dy * dy)).maxpair(0).minpair(1)
            distance = ((self.x - ax - t * dx) ** 2 + (self.y - ay - t * dy) ** 2) ** 0.5
            nearest = distance if nearest is None else nearest.minpair(distance)
        return self._cover(nearest - width * self.px / 2)

    def polygon(self, points: list[Point]) -> _Coverage:
        """A convex polygon, corners clockwise on screen (y down): the largest edge distance."""
        outside: Any = None
        for (ax, ay), (bx, by) in zip(points, points[1:] + points[:1], strict=True):
            ax, ay, bx, by = ax * self.px, ay * self.px, bx * self.px, by * self.px
            length = ((bx - ax) ** 2 + (by - ay) ** 2) ** 0.5
            distance = ((self.x - ax) * (by - ay) - (self.y - ay) * (bx - ax)) / length
            outside = distance if outside is None else outside.maxpair(distance)
        return self._cover(outside)
