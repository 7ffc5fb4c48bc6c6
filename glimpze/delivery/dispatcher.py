"""The dispatcher: sends queued deliveries, records every attempt, retries on DESIGN §4's schedule.

A delivery targets a webhook, or (webhook_id NULL) the callback of an approval (callbacks.py):
the same queue, retry schedule and attempt log. Each target with due deliveries gets a lane — a
webhook, or an approval feed for its callbacks (signed with the feed's callback secret) — a task
that claims a batch of its due deliveries (leasing them), sends them at most `concurrency` at a
time (one at a time, head first, for an `ordered` webhook; one at a time in answer order for
callbacks), and records each attempt over an httpcore pool (attempts.py). Lanes are
independent, so a slow receiver only slows its own lane. The database is the queue: the
dispatcher is woken after every commit that queued something and by a scheduler tick (for
retries), and `deliver_due(now)` does one pass, which tests call directly with a fake clock.
Whether a delivery is due and when its lease ends are judged on the clock's `due()` time, which
never runs backwards (clock.py): a retry planned for "in 5 s" goes out 5 s later even if the
wall clock is stepped back meanwhile. Attempts, `updated_at` and signatures carry wall time.

Outcomes: any 2xx → delivered (a callback's 409 too: the receiver already has the answer). 410 or
`webhook-delivery: disable` → dead, and a webhook is disabled (a callback URL is only given up).
Otherwise failed and retried after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h (±10 %;
`Retry-After` on 429/503 stretches a wait up to 24 h); the 10th failed attempt is dead.
A webhook failing without a success gets `webhook.failing` once 10 attempts over at least an
hour have failed, and is disabled (`webhook.disabled`) after `disable_after_days`. Callbacks have
no such streak: each approval has its own URL.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpcore

from glimpze.clock import Clock, iso
from glimpze.config import Config
from glimpze.delivery.attempts import AttemptResult, DeliveryClaim, attempt, claim_of
from glimpze.delivery.outbox import Outbox
from glimpze.ops.metrics import Registry
from glimpze.ops.runner import Runner
from glimpze.store.changes import Changes
from glimpze.store.database import Database
from glimpze.store.sql import Tx

log = logging.getLogger("glimpze.delivery")

RETRY_DELAYS = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)  # after failed attempt 1, 2, …
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.10
MAX_RETRY_AFTER = 86400
LEASE_SECONDS = 60
LANE_BATCH = 100
BUSY_PACE = 0.05  # seconds between sends while ingest requests are in flight
RUN_INTERVAL = 0.05  # the least time between two looks for webhooks with due deliveries
FAILING_AFTER_ATTEMPTS = 10
FAILING_AFTER_SECONDS = 3600

SQL_RELEASE_LEASES = "UPDATE deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL"
# The queue at a glance (metrics, `glimpze check`): open deliveries, those being sent now, and the
# oldest time one fell due, of an active webhook or a callback (a paused webhook's queue just waits).
SQL_QUEUE_STATS = """
    SELECT count(*) AS open,
           count(CASE WHEN d.lease_until > :now THEN 1 END) AS leased,
           min(CASE WHEN d.next_attempt_at <= :now AND (d.webhook_id IS NULL OR w.active) THEN d.next_attempt_at END)
               AS oldest_due
    FROM deliveries d LEFT JOIN webhooks w ON w.id = d.webhook_id
    WHERE d.status IN ('pending', 'failed')
"""
# Sendable now: due and not leased. An ordered webhook may only send its head (oldest open delivery).
_SENDABLE = """
    d.status IN ('pending', 'failed') AND d.next_attempt_at <= :now AND (d.lease_until IS NULL OR d.lease_until <= :now)
"""
_HEAD_OF = (
    "(SELECT min(seq) FROM deliveries WHERE webhook_id = {webhook} AND ordered AND status IN ('pending', 'failed'))"
)
# The targets with something to send: webhooks, then approval feeds with due callbacks (found in
# their own partial index, which the webhook deliveries' planner must not be tempted to scan).
SQL_DUE_TARGETS = f"""
    SELECT w.id AS target, w.ordered, 0 AS callback FROM webhooks w
    WHERE w.active AND CASE WHEN w.ordered
        THEN EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = {_HEAD_OF.format(webhook="w.id")} AND {_SENDABLE})
        ELSE EXISTS (SELECT 1 FROM deliveries d WHERE d.webhook_id = w.id AND {_SENDABLE}) END
    UNION ALL
    -- a feed's callbacks go one at a time, in answer order (defer, defer, reject): an ordered lane
    SELECT DISTINCT d.feed_id, 1, 1 FROM deliveries d INDEXED BY deliveries_callbacks
    WHERE d.feed_id IS NOT NULL AND {_SENDABLE}
"""
_CLAIM = """
    SELECT d.seq, d.id, d.attempts, d.schedule_base, e.payload, e.type, w.id AS webhook_id, NULL AS feed_id,
           w.project_id, 'POST' AS method, w.url, w.headers, w.timeout_seconds, w.secret,
           w.previous_secret, w.previous_secret_expires_at
    FROM deliveries d JOIN out_events e ON e.seq = d.event_seq JOIN webhooks w ON w.id = d.webhook_id
"""
SQL_CLAIM = f"{_CLAIM} WHERE d.webhook_id = :target AND w.active AND {_SENDABLE} ORDER BY d.seq LIMIT :limit"
SQL_CLAIM_HEAD = f"{_CLAIM} WHERE d.seq = {_HEAD_OF.format(webhook=':target')} AND w.active AND {_SENDABLE}"
# A callback carries its own request (a GET has no body: X'' stands for it).
SQL_CLAIM_CALLBACKS = f"""
    SELECT d.seq, d.id, d.attempts, d.schedule_base, coalesce(d.payload, X'') AS payload, e.type,
           NULL AS webhook_id, d.feed_id, f.project_id, d.method, d.url, '{{}}' AS headers,
           :timeout AS timeout_seconds, f.callback_secret AS secret,
           f.previous_callback_secret AS previous_secret,
           f.previous_callback_secret_expires_at AS previous_secret_expires_at
    FROM deliveries d INDEXED BY deliveries_callbacks
    JOIN out_events e ON e.seq = d.event_seq JOIN feeds f ON f.id = d.feed_id
    WHERE d.feed_id = :target AND {_SENDABLE} ORDER BY d.seq LIMIT :limit
"""
SQL_LEASE = "UPDATE deliveries SET lease_until = ? WHERE seq = ?"
SQL_INSERT_ATTEMPT = """
    INSERT INTO delivery_attempts (delivery_seq, attempt, at, status_code, latency_ms, error, response_head)
    VALUES (?, ?, ?, ?, ?, ?, ?)
"""
SQL_FINISH = """
    UPDATE deliveries SET status = :status, attempts = :attempt, next_attempt_at = :next, lease_until = NULL,
        last_status_code = :code, last_error = :error, updated_at = :now
    WHERE seq = :seq
"""
SQL_SUCCEEDED = """
    UPDATE webhooks SET failures = 0, failing_since = NULL, warned_at = NULL WHERE id = ? AND failures > 0
"""
SQL_FAILED = """
    UPDATE webhooks SET failures = failures + 1, failing_since = coalesce(failing_since, :now)
    WHERE id = :id RETURNING failures, failing_since, warned_at, active, url, project_id
"""
SQL_WARNED = "UPDATE webhooks SET warned_at = ? WHERE id = ?"
SQL_DISABLE = """
    UPDATE webhooks SET active = 0, disabled_reason = :reason, updated_at = :now WHERE id = :id AND active
    RETURNING project_id, url
"""


@dataclass(frozen=True, slots=True)
class Lane:
    """Where a lane sends: a webhook, or the callbacks of an approval feed (`id` is then the feed's)."""

    id: str
    ordered: bool = False
    callback: bool = False


class Dispatcher:
    """Sends due deliveries; see the module docstring."""

    def __init__(
        self,
        db: Database,
        config: Config,
        clock: Clock,
        outbox: Outbox,
        changes: Changes,
        pool: Callable[[], httpcore.AsyncConnectionPool],
        rng: random.Random | None = None,
        busy: Callable[[], bool] = lambda: False,
        metrics: Registry | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.outbox = outbox
        self.changes = changes
        self.concurrency = config.webhooks.concurrency
        self.callback_timeout = config.webhooks.timeout_seconds
        self.disable_after = config.webhooks.disable_after_days * 86400
        self.rng = rng or random.Random()
        self.busy = busy
        self._next_busy_slot = 0.0
        self._new_pool = pool
        self._pool: httpcore.AsyncConnectionPool | None = None
        self._lanes: dict[str, asyncio.Task[int]] = {}
        self._records: set[asyncio.Future[Any]] = set()
        self._outcomes: list[tuple[DeliveryClaim, AttemptResult, float, float, float, asyncio.Future[None]]] = []
        self._writing: asyncio.Task[None] | None = None
        self._runner: Runner | None = None
        self._stopping = False
        self._stopped: asyncio.Future[None] | None = None
        self.attempts = 0
        self.outcomes = (metrics or Registry()).counter(
            "glimpze_delivery_attempts_total",
            "Delivery attempts by outcome: delivered, failed (a retry is scheduled), dead (given up), lost",
            ("outcome",),
        )

    # Running inside the server

    async def start(self) -> None:
        """Clear leases left by a previous process (one process per database), then run: a pass
        after every commit that emitted an event (the outbox's waiter), at most one per RUN_INTERVAL
        (running lanes pick up their own webhook's new deliveries as they go)."""
        self._open_pool()
        await self.db.execute(SQL_RELEASE_LEASES)
        self._runner = Runner(
            "glimpze-dispatcher", lambda: self._open_lanes(None), min_interval=RUN_INTERVAL, woken=self.outbox.waiter()
        )
        self._runner.start()

    def wake(self) -> None:
        if self._runner is not None:
            self._runner.wake()

    async def stop_runner(self) -> None:
        """Stop reacting to wake-ups; `deliver_due` still works (tests drive it with a fake clock)."""
        if self._runner is not None:
            await self._runner.stop()
        while self._lanes:
            await asyncio.gather(*self._lanes.values(), return_exceptions=True)
        await asyncio.gather(*self._records, return_exceptions=True)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming; give running sends `grace` seconds, cancel the rest, release leases.
        Idempotent: a second call (the lifespan, after the server began stopping) waits for the first."""
        if self._stopped is None:
            self._stopping = True
            self._stopped = asyncio.ensure_future(self._stop(grace))
        await asyncio.shield(self._stopped)

    async def _stop(self, grace: float) -> None:
        if self._runner is not None:
            await self._runner.stop()
        lanes = list(self._lanes.values())
        if lanes:
            _, pending = await asyncio.wait(lanes, timeout=grace)
            for lane in pending:
                lane.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(*self._records, return_exceptions=True)
        if self._runner is not None:
            self.outbox.forget(self._runner.woken)
        if self._pool is not None:
            await self._pool.aclose()
        # Claimed but not sent (or cut off): due again at the next start, no lease to wait out.
        await self.db.execute(SQL_RELEASE_LEASES)

    def _open_pool(self) -> httpcore.AsyncConnectionPool:
        if self._pool is None:
            self._pool = self._new_pool()
        return self._pool

    # One pass

    async def deliver_due(self, now: float | None = None) -> int:
        """Attempt every delivery due at `now` (default: the clock's `due()` time, as the runner
        does), and those that fall due while this runs; returns the number of attempts made.
        Waits until every attempt is recorded."""
        before = self.attempts
        self._open_pool()
        while True:
            round_start = self.attempts
            await self._open_lanes(now)
            while self._lanes:
                await asyncio.gather(*self._lanes.values(), return_exceptions=True)
            await asyncio.gather(*self._records, return_exceptions=True)
            if self.attempts == round_start:  # nothing (more) was due
                return self.attempts - before

    async def _open_lanes(self, now: float | None) -> None:
        due_at = self.clock.due() if now is None else now
        for row in await self.db.fetch_all(SQL_DUE_TARGETS, {"now": due_at}):
            target = Lane(row["target"], bool(row["ordered"]), bool(row["callback"]))
            if target.id not in self._lanes and not self._stopping:
                task = asyncio.create_task(self._lane(target, now), name=f"glimpze-lane-{target.id}")
                self._lanes[target.id] = task
                task.add_done_callback(lambda _, key=target.id: self._lanes.pop(key, None))

    async def _lane(self, target: Lane, now: float | None) -> int:
        sent = 0
        while not self._stopping:
            claims = await self._claim(target, self.clock.due() if now is None else now)
            if not claims:
                return sent
            if target.ordered:
                for claim in claims:  # one at a time, each recorded before the next is sent
                    if self._stopping:
                        break
                    await self._pace()
                    await self._record(claim, await self._send(claim))
            else:
                queue = collections.deque(claims)
                workers = min(self.concurrency, len(claims))
                await asyncio.gather(*(self._work(queue) for _ in range(workers)))
            sent += len(claims)
        return sent

    async def _work(self, queue: collections.deque[DeliveryClaim]) -> None:
        """One of a lane's `concurrency` senders; results are recorded without holding up the next send.
        Stopping, it sends nothing more: the claims left keep their lease until `stop` releases them."""
        while queue and not self._stopping:
            claim = queue.popleft()
            await self._pace()
            self._record(claim, await self._send(claim))

    async def _pace(self) -> None:
        """While ingest requests are being served, deliveries yield: one send per BUSY_PACE seconds
        across all lanes (20 a second: a few percent of a core), so a flood of events is taken in at full speed
        and its deliveries follow from the durable queue. Otherwise, no wait at all."""
        if not self.busy():
            return
        now = time.monotonic()
        slot = max(now, self._next_busy_slot)
        self._next_busy_slot = slot + BUSY_PACE
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _claim(self, target: Lane, due: float) -> list[DeliveryClaim]:
        """Lease a batch of the target's deliveries due at `due` (a `due()` time)."""
        params: dict[str, Any] = {"target": target.id, "now": due, "limit": LANE_BATCH}
        wall = self.clock.now()  # for secrets' grace periods: stored wall times
        if target.callback:
            sql, params["timeout"] = SQL_CLAIM_CALLBACKS, self.callback_timeout
        else:
            sql = SQL_CLAIM_HEAD if target.ordered else SQL_CLAIM

        def job(tx: Tx) -> list[DeliveryClaim]:
            rows = tx.execute(sql, params).fetchall()
            tx.executemany(SQL_LEASE, [(due + LEASE_SECONDS, row["seq"]) for row in rows])
            return [claim_of(row, wall) for row in rows]

        return await self.db.write(job)

    async def _send(self, claim: DeliveryClaim) -> AttemptResult:
        return await attempt(self._open_pool(), claim, self.clock.now())

    def _record(self, claim: DeliveryClaim, outcome: AttemptResult) -> asyncio.Future[None]:
        """Queue an attempt's result for the database; the future is done once it is committed.

        Results are written in batches (whatever is queued when the previous batch committed), one
        job per batch: at hundreds of deliveries a second a job per attempt costs more than the send.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        jitter = self.rng.uniform(1 - JITTER, 1 + JITTER)
        self._outcomes.append((claim, outcome, self.clock.now(), self.clock.due(), jitter, done))
        self._records.add(done)
        done.add_done_callback(self._records.discard)
        if self._writing is None:
            self._writing = asyncio.create_task(self._write_outcomes())
        return done

    async def _write_outcomes(self) -> None:
        try:
            while self._outcomes:
                batch, self._outcomes = self._outcomes, []
                try:
                    statuses = await self.db.write(functools.partial(self._store_outcomes, batch))
                except Exception:
                    # e.g. a webhook deleted meanwhile (its deliveries went with it): record one by one
                    log.exception("recording %d attempts failed; retrying one by one", len(batch))
                    statuses = []
                    for item in batch:
                        try:
                            statuses.extend(await self.db.write(functools.partial(self._store_outcomes, [item])))
                        except Exception:
                            statuses.append("lost")
                for (*_, done), status in zip(batch, statuses):
                    self.attempts += 1
                    self.outcomes.inc(status)
                    done.set_result(None)
        finally:
            self._writing = None

    def _store_outcomes(self, batch: list[Any], tx: Tx) -> list[str]:
        return [self._store_outcome(tx, *item[:5]) for item in batch]

    def _store_outcome(
        self,
        tx: Tx,
        claim: DeliveryClaim,
        outcome: AttemptResult,
        now: float,
        due: float,
        jitter: float,
    ) -> str:
        """Write one attempt and its consequences; returns the delivery's new status. `now` (wall)
        stamps the rows; a retry is planned from `due` (the clock's `due()` then)."""
        tx.execute(
            SQL_INSERT_ATTEMPT,
            (
                claim.seq,
                claim.attempt,
                now,
                outcome.status_code,
                round(outcome.latency_ms, 1),
                outcome.error,
                outcome.response_head,
            ),
        )
        webhook_id = claim.webhook_id  # None for a callback: no webhook to disable or to keep a streak for
        if outcome.disable:  # received or not, the receiver wants no more
            status, next_at = ("delivered" if outcome.delivered else "dead"), None
            reason = "the receiver answered 410 Gone"
            if outcome.status_code != 410:
                reason = "the receiver asked to stop deliveries (webhook-delivery: disable)"
            if webhook_id is not None:
                self._disable(tx, webhook_id, reason, now)
        elif outcome.delivered:
            status, next_at = "delivered", None
            if webhook_id is not None:
                tx.execute(SQL_SUCCEEDED, (webhook_id,))
        else:
            delay = retry_delay(claim.cycle_attempt, jitter, outcome.retry_after)
            status, next_at = ("dead", None) if delay is None else ("failed", due + delay)
            self._count_failure(tx, claim, now)
        tx.execute(
            SQL_FINISH,
            {
                "status": status,
                "attempt": claim.attempt,
                "next": next_at,
                "code": outcome.status_code,
                "error": outcome.error,
                "now": now,
                "seq": claim.seq,
            },
        )
        self.changes.attempted(claim.project_id, claim.id, claim.webhook_id or claim.feed_id)
        return status

    def _count_failure(self, tx: Tx, claim: DeliveryClaim, now: float) -> None:
        """Track the webhook's failure streak: warn once, then disable after `disable_after_days`."""
        if claim.webhook_id is None:
            return
        row = tx.execute(SQL_FAILED, {"now": now, "id": claim.webhook_id}).fetchone()
        if row is None or not row["active"]:
            return
        streak = now - row["failing_since"]
        if streak >= self.disable_after:
            days = self.disable_after / 86400
            self._disable(tx, claim.webhook_id, f"every delivery failed for {days:g} days", now)
        elif row["failures"] >= FAILING_AFTER_ATTEMPTS and streak >= FAILING_AFTER_SECONDS and row["warned_at"] is None:
            tx.execute(SQL_WARNED, (now, claim.webhook_id))
            self.outbox.emit(
                tx,
                row["project_id"],
                "webhook.failing",
                {
                    "webhook_id": claim.webhook_id,
                    "url": row["url"],
                    "consecutive_failures": row["failures"],
                    "failing_since": iso(row["failing_since"]),
                    "disables_at": iso(row["failing_since"] + self.disable_after),
                },
                occurred_at=now,
            )

    def _disable(self, tx: Tx, webhook_id: str, reason: str, now: float) -> None:
        row = tx.execute(SQL_DISABLE, {"reason": reason, "now": now, "id": webhook_id}).fetchone()
        if row is not None:
            log.warning("webhook %s disabled: %s", webhook_id, reason)
            self.outbox.emit(
                tx,
                row["project_id"],
                "webhook.disabled",
                {"webhook_id": webhook_id, "url": row["url"], "reason": reason},
                occurred_at=now,
            )


def retry_delay(attempt: int, jitter: float, retry_after: float | None = None) -> float | None:
    """Seconds until the next try after failed attempt number `attempt` (counted since the last
    replay), or None when that was the last one (dead). `jitter` is the factor drawn in
    [1 - JITTER, 1 + JITTER]; a receiver's Retry-After can stretch the wait, up to MAX_RETRY_AFTER."""
    if attempt >= MAX_ATTEMPTS:
        return None
    delay = RETRY_DELAYS[attempt - 1] * jitter
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay
