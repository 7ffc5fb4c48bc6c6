"""History retention: events older than their feed plan's `history_days` are deleted in small batches.

Never deleted: a feed's current widget state, and the event of a pending approval (DESIGN §7,
Limits); a decided approval goes with its event. Each batch is its own short
transaction, so ingest keeps flowing while a large backlog is purged. Purged events take their
image references with them (ON DELETE CASCADE); images no kept event references are then
deleted, with any orphan files (`Media.collect`).
"""

from __future__ import annotations

import logging

import msgspec

from glimpze.config import Config
from glimpze.feeds.media import Media
from glimpze.store.sql import Store

log = logging.getLogger("glimpze.retention")

BATCH = 500

# A pending approval's event stays however old it is: it is what the answer refers to.
# An event that is not its feed's widget state (NULL-safe: SQLite's IS NOT, PostgreSQL's IS DISTINCT FROM).
_NOT_WIDGET = "e.seq /*sqlite:*/IS NOT/*:sqlite*//*pg:IS DISTINCT FROM*/ f.widget_event_seq"
_KEPT = "NOT EXISTS (SELECT 1 FROM approvals a WHERE a.event_seq = e.seq AND a.status = 'pending')"
SQL_PURGE_EVENTS = f"""
    DELETE FROM events WHERE seq IN (
        SELECT e.seq FROM events e JOIN feeds f ON f.id = e.feed_id
        WHERE f.plan = :plan AND e.received_at < :cutoff AND {_NOT_WIDGET} AND {_KEPT}
        LIMIT :batch
    )
"""
SQL_PURGE_UNKNOWN_PLAN = f"""
    DELETE FROM events WHERE seq IN (
        SELECT e.seq FROM events e JOIN feeds f ON f.id = e.feed_id
        WHERE f.plan NOT IN (SELECT value FROM json_each(:plans))
          AND e.received_at < :cutoff AND {_NOT_WIDGET} AND {_KEPT}
        LIMIT :batch
    )
"""


class Retention:
    def __init__(self, db: Store, config: Config, media: Media) -> None:
        self.db = db
        self.config = config
        self.media = media

    async def purge_expired(self, now: float, batch: int = BATCH) -> int:
        """Delete expired events, `batch` rows per transaction, then the images only they used;
        returns how many events went."""
        total = 0
        plans = self.config.plans
        work = [
            (SQL_PURGE_EVENTS, {"plan": name, "cutoff": now - plan.history_days * 86400})
            for name, plan in plans.items()
        ]
        # A feed whose plan was removed from glimpze.toml keeps the default plan's history.
        default = plans[self.config.default_plan]
        work.append(
            (
                SQL_PURGE_UNKNOWN_PLAN,
                {"plans": msgspec.json.encode(list(plans)).decode(), "cutoff": now - default.history_days * 86400},
            )
        )
        for sql, params in work:
            while True:
                deleted = await self.db.execute(sql, {**params, "batch": batch})
                total += deleted
                if deleted < batch:
                    break
        if total:
            log.info("retention purged %d expired events", total)
        await self.media.collect(now)
        return total
