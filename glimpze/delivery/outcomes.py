"""What an attempt's result means, written to the database: the attempt log, the delivery's new
status and next try, the webhook's failure streak, `webhook.failing` and disabling.

Outcomes: any 2xx → delivered (a callback's 409 too: the receiver already has the answer). 410 or
`webhook-delivery: disable` → dead, and a webhook is disabled (a callback URL is only given up).
Otherwise failed and retried after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h (±10 %;
`Retry-After` on 429/503 stretches a wait up to 24 h); the 10th failed attempt is dead.
A webhook failing without a success gets `webhook.failing` once 10 attempts over at least an
hour have failed, and is disabled (`webhook.disabled`) after `disable_after_days`. Callbacks have
no such streak: each approval has its own URL.

Results are written in batches (whatever is queued when the previous batch committed), one write
job per batch: at hundreds of deliveries a second a job per attempt costs more than the send.
A retry is planned on the clock's `due()` time, which never runs backwards (clock.py); the rows
are stamped with wall time.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from typing import Any

from glimpze.clock import Clock, iso
from glimpze.delivery.attempts import AttemptResult, DeliveryClaim
from glimpze.delivery.backlog import close_spans
from glimpze.delivery.outbox import Outbox
from glimpze.ops.metrics import Registry
from glimpze.store.changes import Changes
from glimpze.store.sql import Store, Tx

log = logging.getLogger("glimpze.delivery")

RETRY_DELAYS = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)  # after failed attempt 1, 2, …
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.10
MAX_RETRY_AFTER = 86400
FAILING_AFTER_ATTEMPTS = 10
FAILING_AFTER_SECONDS = 3600

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
    UPDATE webhooks SET active = 0, disabled_reason = :reason, updated_at = :now WHERE id = :id AND active/*pg: <> 0*/
    RETURNING project_id, url
"""

Recorded = tuple[DeliveryClaim, AttemptResult, float, float, float, "asyncio.Future[None]"]


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


class Outcomes:
    """Records attempts' results in batches; `record()` returns a future done once committed."""

    def __init__(
        self,
        db: Store,
        clock: Clock,
        outbox: Outbox,
        changes: Changes,
        *,
        disable_after_days: float,
        rng: random.Random | None = None,
        metrics: Registry | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.outbox = outbox
        self.changes = changes
        self.disable_after = disable_after_days * 86400
        self.rng = rng or random.Random()
        self.pending: set[asyncio.Future[Any]] = set()  # recorded, not committed yet
        self._queue: list[Recorded] = []
        self._writing: asyncio.Task[None] | None = None
        self.attempts = 0  # results committed so far
        self.counter = (metrics or Registry()).counter(
            "glimpze_delivery_attempts_total",
            "Delivery attempts by outcome: delivered, failed (a retry is scheduled), dead (given up), lost",
            ("outcome",),
        )

    def record(self, claim: DeliveryClaim, outcome: AttemptResult) -> asyncio.Future[None]:
        """Queue an attempt's result for the database; the future is done once it is committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        jitter = self.rng.uniform(1 - JITTER, 1 + JITTER)
        self._queue.append((claim, outcome, self.clock.now(), self.clock.due(), jitter, done))
        self.pending.add(done)
        done.add_done_callback(self.pending.discard)
        if self._writing is None:
            self._writing = asyncio.create_task(self._write())
        return done

    async def _write(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    statuses = await self.db.write(functools.partial(self._store_all, batch))
                except Exception:
                    # e.g. a webhook deleted meanwhile (its deliveries went with it): record one by one
                    log.exception("recording %d attempts failed; retrying one by one", len(batch))
                    statuses = []
                    for item in batch:
                        try:
                            statuses.extend(await self.db.write(functools.partial(self._store_all, [item])))
                        except Exception:
                            statuses.append("lost")
                for (*_, done), status in zip(batch, statuses):
                    self.attempts += 1
                    self.counter.inc(status)
                    done.set_result(None)
        finally:
            self._writing = None

    def _store_all(self, batch: list[Recorded], tx: Tx) -> list[str]:
        return [self._store(tx, *item[:5]) for item in batch]

    def _store(
        self, tx: Tx, claim: DeliveryClaim, outcome: AttemptResult, now: float, due: float, jitter: float
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
        next_at: float | None = None
        if outcome.disable:  # received or not, the receiver wants no more
            status = "delivered" if outcome.delivered else "dead"
            reason = "the receiver answered 410 Gone"
            if outcome.status_code != 410:
                reason = "the receiver asked to stop deliveries (webhook-delivery: disable)"
            if webhook_id is not None:
                self._disable(tx, webhook_id, reason, now)
        elif outcome.delivered:
            status = "delivered"
            if webhook_id is not None:
                tx.execute(SQL_SUCCEEDED, (webhook_id,))
        else:
            delay = retry_delay(claim.cycle_attempt, jitter, outcome.retry_after)
            status, next_at = ("dead", None) if delay is None else ("failed", due + delay)
            self._count_failure(tx, claim, now)
        finish = {
            "status": status,
            "attempt": claim.attempt,
            "next": next_at,
            "code": outcome.status_code,
            "error": outcome.error,
            "now": now,
            "seq": claim.seq,
        }
        tx.execute(SQL_FINISH, finish)
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
        """Deactivate the webhook: its spans close at the newest event (what they hold waits), and
        `webhook.disabled` (emitted after that, so not for it) tells the others."""
        row = tx.execute(SQL_DISABLE, {"reason": reason, "now": now, "id": webhook_id}).fetchone()
        if row is not None:
            log.warning("webhook %s disabled: %s", webhook_id, reason)
            close_spans(tx, webhook_id)
            self.outbox.emit(
                tx,
                row["project_id"],
                "webhook.disabled",
                {"webhook_id": webhook_id, "url": row["url"], "reason": reason},
                occurred_at=now,
            )
