"""Periodic work, run in-process by APScheduler. Each job is a plain function of `now` that tests
call directly; the scheduler only decides when. Nothing depends on a tick for correctness."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from glimpze.services import Services

log = logging.getLogger("glimpze.scheduler")


def build_scheduler(glimpze: Services) -> AsyncIOScheduler:
    """The scheduler with every periodic job of the server; start it inside the running loop."""
    scheduler = AsyncIOScheduler(job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30})
    clock = glimpze.clock

    def every(seconds: float, name: str, job: Callable[[float], Awaitable[object]]) -> None:
        async def run() -> None:
            try:
                await job(clock.now())
            except Exception:
                log.exception("scheduled job %s failed", name)

        scheduler.add_job(run, "interval", seconds=seconds, id=name, name=name)

    async def flush(now: float) -> None:
        await glimpze.flush()

    async def prune(now: float) -> None:
        glimpze.auth_failures.prune()

    async def tick(now: float) -> None:
        glimpze.dispatcher.wake()  # retries fall due with time, not with a commit

    every(1, "dispatcher-tick", tick)
    every(10, "flush-counters", flush)
    every(60, "prune-auth-failures", prune)
    every(600, "purge-expired-events", glimpze.retention.purge_expired)
    every(600, "purge-outgoing-events", glimpze.outbox.purge)
    every(3600, "purge-idempotency-keys", glimpze.idempotency.purge)
    every(30, "wake-snoozed-sessions", glimpze.sessions.wake_snoozed)
    every(3600, "purge-dashboard-sessions", glimpze.admin.purge_expired)

    async def push_tick(now: float) -> None:
        glimpze.push.wake()  # a safety net: every commit that queues a push wakes the runner itself

    every(5, "push-tick", push_tick)
    every(30, "release-quiet-hours", glimpze.push.release_quiet_hours)
    every(30, "renotify-deferred-approvals", glimpze.approvals.renotify_deferred)
    every(3600, "purge-push-log", glimpze.push.purge)
    return scheduler
