"""`Runner`: a background task that does one pass of work each time it is woken.

The dispatcher and the push sender each keep one. The database is the queue, so a runner holds no
work of its own: a wake-up (after a commit that queued something, or the scheduler's tick) only
says "look again". Wake-ups that arrive during a pass coalesce into one more pass; `min_interval`
spaces passes out under a stream of wake-ups. A pass that raises is logged and the runner goes on.
Tests stop the runner and call the pass themselves with a fake `now`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("glimpze")


class Runner:
    """Runs `one_pass()` at start and after each `wake()`, until `stop()`."""

    def __init__(
        self,
        name: str,
        one_pass: Callable[[], Awaitable[object]],
        *,
        min_interval: float = 0.0,
        woken: asyncio.Event | None = None,
    ) -> None:
        """`woken` may be an event someone else sets (the outbox's waiter after a commit)."""
        self.name = name
        self.one_pass = one_pass
        self.min_interval = min_interval
        self.woken = woken or asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        self.woken.set()  # a first pass for what a previous process left
        self._task = asyncio.create_task(self._run(), name=self.name)

    def wake(self) -> None:
        self.woken.set()

    async def stop(self) -> None:
        """Stop reacting to wake-ups (a pass in progress is cancelled)."""
        if self._task is not None:
            # Cancelled again until it ends: on Python 3.11 a cancellation that meets a wait_for
            # finishing at the same moment is lost (psycopg's waits are such), and the pass would
            # go back to waiting for a wake-up.
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait([self._task], timeout=0.1)
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await self.woken.wait()
            self.woken.clear()
            try:
                await self.one_pass()
            except Exception:
                log.exception("%s: a pass failed", self.name)
            if self.min_interval:
                await asyncio.sleep(self.min_interval)
