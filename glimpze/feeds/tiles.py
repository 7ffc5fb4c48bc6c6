"""The dashboard's home screen: a tile per feed, in the order the administrator arranged them (per
project), each at a size, and dimmed ("late") when no event came within its "expected every".

Arranged tiles come first in their order; feeds never arranged follow in creation order, so a new
feed shows at the end. A tile is stale once its latest event is older than `STALE_FACTOR` times
the expected interval (a cron job every 5 minutes is late after 7½, not after 5 and a second).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec

from glimpze.clock import Clock
from glimpze.errors import ValidationFailed, not_found
from glimpze.store.sql import Row, Store, Tx

SIZES = ("small", "medium", "large")
# A widget's natural size: one value fits a small square; an approval's question needs a wide one.
DEFAULT_SIZES = {"summary": "small", "status": "small", "counter": "small", "approval": "medium", "custom": "small"}
STALE_FACTOR = 1.5
MIN_EXPECTED_SECONDS = 60
MAX_EXPECTED_SECONDS = 30 * 86400
MAX_ARRANGED = 1000

SQL_LAYOUT = "SELECT feed_id, position, size, expected_seconds FROM dashboard_tiles WHERE project_id = ?"
SQL_GET = "SELECT feed_id, position, size, expected_seconds FROM dashboard_tiles WHERE feed_id = ?"
SQL_FEEDS_OF = "SELECT id FROM feeds WHERE project_id = ? AND id IN (SELECT value FROM json_each(?))"
SQL_FEED = "SELECT project_id FROM feeds WHERE id = ?"
SQL_UNARRANGE = "UPDATE dashboard_tiles SET position = NULL, updated_at = ? WHERE project_id = ?"
SQL_PLACE = """
    INSERT INTO dashboard_tiles (feed_id, project_id, position, updated_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (feed_id) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at
"""
SQL_CONFIGURE = """
    INSERT INTO dashboard_tiles (feed_id, project_id, size, expected_seconds, updated_at) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (feed_id) DO UPDATE SET size = excluded.size, expected_seconds = excluded.expected_seconds,
        updated_at = excluded.updated_at
"""

ExpectedSeconds = Annotated[float, msgspec.Meta(ge=MIN_EXPECTED_SECONDS, le=MAX_EXPECTED_SECONDS)]


class TileSettings(msgspec.Struct, forbid_unknown_fields=True):
    """A tile's size (null: its schema's default) and how often its feed is expected to send (null: no
    expectation, never stale)."""

    size: Literal["small", "medium", "large"] | None = None
    expected_seconds: ExpectedSeconds | None = None


class TileOrder(msgspec.Struct, forbid_unknown_fields=True):
    """`{"feeds": ["fd_…", …]}`: the project's tiles in the order to show them."""

    feeds: Annotated[list[Annotated[str, msgspec.Meta(max_length=100)]], msgspec.Meta(max_length=MAX_ARRANGED)]


@dataclass(frozen=True, slots=True)
class Placement:
    """A feed's tile as stored: its place (None: not arranged), size and expected interval."""

    position: int | None = None
    size: str | None = None
    expected_seconds: float | None = None


def tile_size(placement: Placement, schema_type: str) -> str:
    return placement.size or DEFAULT_SIZES.get(schema_type, "small")


def arranged(feed_ids: Sequence[str], placements: dict[str, Placement]) -> list[str]:
    """`feed_ids` (in creation order) in tile order: the arranged ones by position, then the rest
    as they came."""

    def key(indexed: tuple[int, str]) -> tuple[bool, int, int]:
        index, feed_id = indexed
        position = placements.get(feed_id, Placement()).position
        return (position is None, position or 0, index)

    return [feed_id for _, feed_id in sorted(enumerate(feed_ids), key=key)]


def is_stale(received_at: float | None, expected_seconds: float | None, now: float) -> bool:
    """True when the latest event is late: older than STALE_FACTOR × the expected interval. A feed
    without an expectation, or without any event yet, is never stale."""
    if received_at is None or expected_seconds is None:
        return False
    return now - received_at > expected_seconds * STALE_FACTOR


class Tiles:
    """Reads and changes the home screen's layout; see the module docstring."""

    def __init__(self, db: Store, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def layout(self, project_id: str) -> dict[str, Placement]:
        rows = await self.db.fetch_all(SQL_LAYOUT, (project_id,))
        return {row["feed_id"]: _placement(row) for row in rows}

    async def placement(self, feed_id: str) -> Placement:
        row = await self.db.fetch_one(SQL_GET, (feed_id,))
        return Placement() if row is None else _placement(row)

    async def reorder(self, project_id: str, order: TileOrder) -> None:
        """Show the project's tiles in `order`; feeds it leaves out follow in creation order."""
        seen: set[str] = set()
        for i, feed_id in enumerate(order.feeds):
            if feed_id in seen:
                raise ValidationFailed.at(f"$.feeds[{i}]", f"{feed_id!r} is listed twice")
            seen.add(feed_id)
        now = self.clock.now()

        def job(tx: Tx) -> None:
            known = {row[0] for row in tx.execute(SQL_FEEDS_OF, (project_id, msgspec.json.encode(order.feeds)))}
            for i, feed_id in enumerate(order.feeds):
                if feed_id not in known:
                    raise ValidationFailed.at(f"$.feeds[{i}]", f"{feed_id!r} is not a feed of this project")
            tx.execute(SQL_UNARRANGE, (now, project_id))
            tx.executemany(SQL_PLACE, [(feed_id, project_id, i, now) for i, feed_id in enumerate(order.feeds)])

        await self.db.write(job)

    async def configure(self, project_id: str, feed_id: str, settings: TileSettings) -> None:
        """Set a feed's tile size and expected interval (keeping its place)."""
        now = self.clock.now()

        def job(tx: Tx) -> None:
            row = tx.execute(SQL_FEED, (feed_id,)).fetchone()
            if row is None or row[0] != project_id:
                raise not_found("feed", feed_id)
            params = (feed_id, project_id, settings.size, settings.expected_seconds, now)
            tx.execute(SQL_CONFIGURE, params)

        await self.db.write(job)


def _placement(row: Row) -> Placement:
    return Placement(row["position"], row["size"], row["expected_seconds"])
