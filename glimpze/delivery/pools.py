"""Outgoing connections of the dispatcher: one pool (http1.Pool) per lane, sized to the lane's
concurrency, every connection kept alive.

A lane sends to one webhook, so to one origin (an approval feed's callbacks usually share one
too), at most `size` requests at a time. Its pool holds at most `size` connections and keeps all of
them alive between requests: httpcore closes an idle connection whenever the pool holds more
connections than `max_keepalive_connections`, however far below `max_connections` it is, so one
shared pool of 100 connections with 20 kept alive, fed by 50 lanes × 4, opened and closed
connections endlessly (4,000+ sockets in TIME_WAIT, ~60 % of the CPU in the pool's bookkeeping;
issue 18). Pools are not shared between lanes that target the same origin: a lane's requests
never wait for another lane's connections, and a pool stays as small as the lane's concurrency
(httpcore's pool walked every connection of its pool for each request: a cost in proportion to
the pool, which a shared pool sized to many lanes made large).

A pool not used for `idle_seconds` (its lane ended and no new one opened) is closed by `sweep`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from glimpze.delivery.http1 import Pool

IDLE_SECONDS = 60.0


class Pools:
    """The lanes' connection pools, by lane."""

    def __init__(self, new_pool: Callable[[int], Pool], idle_seconds: float = IDLE_SECONDS):
        self._new_pool = new_pool
        self.idle_seconds = idle_seconds
        self._pools: dict[str, tuple[Pool, int]] = {}
        self._used: dict[str, float] = {}
        self._retired: list[Pool] = []  # replaced by a pool of another size

    def __len__(self) -> int:
        return len(self._pools)

    def get(self, lane: str, size: int) -> Pool:
        """Lane `lane`'s pool, for at most `size` requests at a time (a new pool if the size changed)."""
        self._used[lane] = time.monotonic()
        found = self._pools.get(lane)
        if found is not None:
            if found[1] == size:
                return found[0]
            self._retired.append(found[0])  # asked between two batches: none of its requests is in flight
        pool = self._new_pool(size)
        self._pools[lane] = (pool, size)
        return pool

    async def sweep(self, busy: set[str]) -> None:
        """Close the pools of lanes not in `busy` that were not used for `idle_seconds`."""
        retired, self._retired = self._retired, []
        for pool in retired:
            await pool.aclose()
        cutoff = time.monotonic() - self.idle_seconds
        for lane in [lane for lane, used in self._used.items() if used < cutoff and lane not in busy]:
            await self._close(lane)

    async def aclose(self) -> None:
        await self.sweep(set())
        for lane in list(self._pools):
            await self._close(lane)

    async def _close(self, lane: str) -> None:
        self._used.pop(lane, None)
        found = self._pools.pop(lane, None)
        if found is not None:
            await found[0].aclose()
