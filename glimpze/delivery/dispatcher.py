"""The dispatcher: sends queued deliveries and has every attempt recorded (outcomes.py).

A delivery targets a webhook, or (webhook_id NULL) the callback of an approval (callbacks.py):
the same queue, retry schedule and attempt log. Each target with something to send gets a lane —
a webhook, or an approval feed for its callbacks (signed with the feed's callback secret) — a task
that claims a batch (leasing it), sends it at most `concurrency` at a time (one at a time, head
first, for an `ordered` webhook; one at a time in answer order for callbacks) over the lane's own
connection pool (pools.py), and has each attempt recorded. Lanes are independent, so a slow
receiver only slows its own lane. The database is the queue: the dispatcher is woken after every
commit that emitted an event and by a scheduler tick (for retries), and `deliver_due(now)` does one
pass, which tests call directly with a fake clock. Whether a delivery is due and when its lease
ends are judged on the clock's `due()` time, which never runs backwards (clock.py).

A webhook's claim is one write job (`_claim_webhook`): its due rows (retries, replays, leases a
stopped process released), read from `deliveries_due` (webhook_id, next_attempt_at, and the rowid
SQLite appends) in due order, so no sort of the backlog; then, for the room left, rows made from
its spans of the event log (backlog.materialise), leased in the same job. Only attempts in flight,
failures, retries and the record of what was sent are rows: fresh events cost nothing until they
are sent, and a claim costs the rows it leases. An ordered webhook sends its head: the oldest open
row, else the first event its spans hold (made into rows a batch at a time, in event order, so
the head stays first across both). Nothing the look for work or a claim reads grows with the
backlog: the look is an index seek per webhook and type (backlog.WAITING_EXISTS).

Fair share under load. The event loop serves ingest and deliveries on one core. While ingest
requests are in flight (`busy()`), at most BUSY_TURNS deliveries are in flight across all lanes:
the slower the loop answers, the fewer go out, so ingest keeps most of the core while deliveries
still flow at hundreds a second, more as the loop has room (a fixed pace of 20 a second left
receivers minutes behind; issue 18). On the shared development machine 2 turns gave 400-600
deliveries/s during a saturating load and ingest 0.6-0.9× with 50 webhooks; 4 turns 600-1,100/s
and 0.5-1.0×. A turn waits BUSY_PATIENCE for the answer, then goes to the next delivery: a
receiver that takes its time costs the loop nothing meanwhile, so slow receivers never hold up
the others however long ingest lasts. (A turn given back as soon as the request was written
measured worse: the deliveries' other work then ran unbounded, 3,800/s, and ingest fell to 0.07×
with 50 webhooks.) Once ingest pauses, every lane sends at its full concurrency.

PostgreSQL next (DESIGN §8): the claim job is one transaction that first takes the webhook's row
(`SELECT … FROM webhooks WHERE id = $1 FOR UPDATE SKIP LOCKED`: one lane per webhook across
processes), so making rows from a span and leasing them cannot race another process; leases are
then not cleared at start, and an outcome is written `WHERE seq = $1 AND attempts = $2` (fencing
by attempt number); the wake-ups after a commit become `NOTIFY` with the (project, type) pairs.
The statements are one text for both databases (store/dialect.py translates `INDEXED BY`, the
two-argument `max`/`min`, and the 0/1 flags marked `/*pg: <> 0*/`; `json_each` over a text array
is a function of the PostgreSQL schema).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpcore

from glimpze.clock import Clock
from glimpze.config import Config
from glimpze.delivery import backlog
from glimpze.delivery.attempts import DeliveryClaim, attempt, claim_of
from glimpze.delivery.http1 import Pool, Share
from glimpze.delivery.outbox import Outbox
from glimpze.delivery.outcomes import (  # noqa: F401  (the schedule's names, where tests find them)
    JITTER,
    MAX_ATTEMPTS,
    MAX_RETRY_AFTER,
    RETRY_DELAYS,
    Outcomes,
    retry_delay,
)
from glimpze.delivery.pools import Pools
from glimpze.delivery.ssrf import ssl_context
from glimpze.ops.metrics import Registry
from glimpze.ops.runner import Runner
from glimpze.store.changes import Changes
from glimpze.store.sql import Row, Store, Tx

log = logging.getLogger("glimpze.delivery")

LEASE_SECONDS = 60
LANE_BATCH = 100
BUSY_TURNS = 2  # deliveries in flight at once (all lanes) while ingest requests are being served
BUSY_PATIENCE = 0.05  # seconds a turn waits for an answer before it goes to another delivery
RUN_INTERVAL = 0.05  # the least time between two looks for webhooks with due deliveries

SQL_RELEASE_LEASES = (
    "UPDATE deliveries SET lease_until = NULL WHERE status IN ('pending', 'failed') AND lease_until IS NOT NULL"
)
_OPEN_ROWS = """
    SELECT count(*) AS open,
           count(CASE WHEN d.lease_until > :now THEN 1 END) AS leased,
           min(CASE WHEN d.next_attempt_at <= :now AND (d.webhook_id IS NULL OR w.active/*pg: <> 0*/)
                    THEN d.next_attempt_at END)
               AS oldest_due
    FROM deliveries d LEFT JOIN webhooks w ON w.id = d.webhook_id
    WHERE d.status IN ('pending', 'failed')
"""
# The queue at a glance (metrics, `glimpze check`): open deliveries (rows, and those the spans hold),
# those being sent now, and the oldest time one fell due, of an active webhook or a callback (a
# paused webhook's queue just waits). A delivery without a row is due since its event occurred.
SQL_QUEUE_STATS = f"""
    SELECT r.open + ({backlog.SQL_WAITING_TOTAL}) AS open, r.leased,
           CASE WHEN v.oldest IS NULL OR v.oldest > :now THEN r.oldest_due
                WHEN r.oldest_due IS NULL OR v.oldest < r.oldest_due THEN v.oldest
                ELSE r.oldest_due END AS oldest_due
    FROM ({_OPEN_ROWS}) r, (SELECT ({backlog.SQL_WAITING_OLDEST}) AS oldest) v
"""
# Sendable now: due and not leased. An ordered webhook may only send its head (oldest open row).
_SENDABLE = """
    d.status IN ('pending', 'failed') AND d.next_attempt_at <= :now AND (d.lease_until IS NULL OR d.lease_until <= :now)
"""
_OPEN_ORDERED = "d.webhook_id = {webhook} AND d.ordered/*pg: <> 0*/ AND d.status IN ('pending', 'failed')"
_HEAD_OF = f"(SELECT min(d.seq) FROM deliveries d WHERE {_OPEN_ORDERED})"
# The targets with something to send: webhooks (due rows, or events their spans hold; an ordered
# one only if its head can go), then approval feeds with due callbacks (found in their own partial
# index, which the webhook deliveries' planner must not be tempted to scan).
SQL_DUE_TARGETS = f"""
    SELECT w.id AS target, w.ordered, 0 AS callback FROM webhooks w
    WHERE w.active/*pg: <> 0*/ AND CASE
        WHEN w.ordered/*pg: <> 0*/ AND EXISTS (SELECT 1 FROM deliveries d WHERE {_OPEN_ORDERED.format(webhook="w.id")})
            THEN EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = {_HEAD_OF.format(webhook="w.id")} AND {_SENDABLE})
        WHEN w.ordered/*pg: <> 0*/ THEN {backlog.WAITING_EXISTS}
        ELSE EXISTS (SELECT 1 FROM deliveries d WHERE d.webhook_id = w.id AND {_SENDABLE}) OR {backlog.WAITING_EXISTS}
        END
    UNION ALL
    -- a feed's callbacks go one at a time, in answer order (defer, defer, reject): an ordered lane
    SELECT DISTINCT d.feed_id, 1, 1 FROM deliveries d INDEXED BY deliveries_callbacks
    WHERE d.feed_id IS NOT NULL AND {_SENDABLE}
"""
SQL_LANE_WEBHOOK = """
    SELECT id, project_id, url, headers, timeout_seconds, secret, previous_secret, previous_secret_expires_at,
           active, ordered, delivery_code
    FROM webhooks WHERE id = ?
"""
_ROWS = """
    SELECT d.seq, d.id, d.attempts, d.schedule_base, e.payload, e.type, ({sendable}) AS sendable
    FROM deliveries d JOIN out_events e ON e.seq = d.event_seq
"""
SQL_CLAIM = f"""
    {_ROWS.format(sendable="1")} WHERE d.webhook_id = :target AND {_SENDABLE}
    ORDER BY d.next_attempt_at, d.seq LIMIT :limit
"""
SQL_CLAIM_HEAD = f"{_ROWS.format(sendable=_SENDABLE)} WHERE d.seq = {_HEAD_OF.format(webhook=':target')}"
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


class _BusyTurn:
    """One of the fair share's turns, given back once (http1.Share)."""

    patience = BUSY_PATIENCE

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self._slots: asyncio.Semaphore | None = slots

    def release(self) -> None:
        if self._slots is not None:
            self._slots.release()
            self._slots = None


@dataclass(frozen=True, slots=True)
class Lane:
    """Where a lane sends: a webhook, or the callbacks of an approval feed (`id` is then the feed's)."""

    id: str
    callback: bool = False


@dataclass(slots=True)
class Batch:
    """A claimed batch: sent one at a time (`ordered`) or `concurrency` at a time."""

    claims: list[DeliveryClaim]
    ordered: bool


class Dispatcher:
    """Sends due deliveries; see the module docstring."""

    def __init__(
        self,
        db: Store,
        config: Config,
        clock: Clock,
        outbox: Outbox,
        changes: Changes,
        network: httpcore.AsyncNetworkBackend,
        rng: random.Random | None = None,
        busy: Callable[[], bool] = lambda: False,
        metrics: Registry | None = None,
    ) -> None:
        """Deliveries connect through `network` (ssrf.GuardedBackend, or a test's)."""
        self.db = db
        self.clock = clock
        self.outbox = outbox
        self.concurrency = config.webhooks.concurrency
        self.callback_timeout = config.webhooks.timeout_seconds
        self.busy = busy
        self.pools = Pools(lambda size: Pool(network, size, ssl_context()))
        self.outcomes = Outcomes(
            db,
            clock,
            outbox,
            changes,
            disable_after_days=config.webhooks.disable_after_days,
            rng=rng,
            metrics=metrics,
        )
        self._busy_slots = asyncio.Semaphore(BUSY_TURNS)
        self._lanes: dict[str, asyncio.Task[int]] = {}
        self._runner: Runner | None = None
        self._stopping = False
        self._stopped: asyncio.Future[None] | None = None

    @property
    def attempts(self) -> int:
        """Attempts recorded so far."""
        return self.outcomes.attempts

    # Running inside the server

    async def start(self) -> None:
        """Clear leases left by a previous process (one process per database), then run: a pass
        after every commit that emitted an event (the outbox's waiter), at most one per RUN_INTERVAL
        (running lanes pick up their own webhook's new deliveries as they go)."""
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
        await asyncio.gather(*self.outcomes.pending, return_exceptions=True)

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
        await asyncio.gather(*self.outcomes.pending, return_exceptions=True)
        if self._runner is not None:
            self.outbox.forget(self._runner.woken)
        await self.pools.aclose()
        # Claimed but not sent (or cut off): due again at the next start, no lease to wait out.
        await self.db.execute(SQL_RELEASE_LEASES)

    # One pass

    async def deliver_due(self, now: float | None = None) -> int:
        """Attempt every delivery due at `now` (default: the clock's `due()` time, as the runner
        does), and those that fall due while this runs; returns the number of attempts made.
        Waits until every attempt is recorded."""
        before = self.attempts
        while True:
            round_start = self.attempts
            await self._open_lanes(now)
            while self._lanes:
                await asyncio.gather(*self._lanes.values(), return_exceptions=True)
            await asyncio.gather(*self.outcomes.pending, return_exceptions=True)
            if self.attempts == round_start:  # nothing (more) was due
                return self.attempts - before

    async def _open_lanes(self, now: float | None) -> None:
        due_at = self.clock.due() if now is None else now
        for row in await self.db.fetch_all(SQL_DUE_TARGETS, {"now": due_at}):
            target = Lane(row["target"], bool(row["callback"]))
            if target.id not in self._lanes and not self._stopping:
                task = asyncio.create_task(self._lane(target, now), name=f"glimpze-lane-{target.id}")
                self._lanes[target.id] = task
                task.add_done_callback(functools.partial(self._lane_ended, target.id))
        await self.pools.sweep(set(self._lanes))

    def _lane_ended(self, lane: str, _: object) -> None:
        self._lanes.pop(lane, None)

    @property
    def stopping(self) -> bool:
        """Stop claiming and sending (read afresh at each step: a send may have waited meanwhile)."""
        return self._stopping

    async def _lane(self, target: Lane, now: float | None) -> int:
        try:
            return await self._send_batches(target, now)
        except Exception:  # a bug: the lane ends (its leases run out), the next look opens it again
            log.exception("the delivery lane of %s failed", target.id)
            return 0

    async def _send_batches(self, target: Lane, now: float | None) -> int:
        sent = 0
        while not self._stopping:
            batch = await self._claim(target, self.clock.due() if now is None else now)
            if not batch.claims:
                return sent
            pool = self.pools.get(target.id, 1 if batch.ordered else self.concurrency)
            if batch.ordered:
                for claim in batch.claims:  # one at a time, each recorded before the next is sent
                    if self.stopping:
                        break
                    outcome = await attempt(pool, claim, self.clock.now(), self._turn)
                    await self.outcomes.record(claim, outcome)
            else:
                queue = collections.deque(batch.claims)
                workers = min(self.concurrency, len(batch.claims))
                await asyncio.gather(*(self._work(pool, queue) for _ in range(workers)))
            sent += len(batch.claims)
        return sent

    async def _work(self, pool: Pool, queue: collections.deque[DeliveryClaim]) -> None:
        """One of a lane's `concurrency` senders; results are recorded without holding up the next send.
        Stopping, it sends nothing more: the claims left keep their lease until `stop` releases them."""
        while queue and not self._stopping:
            claim = queue.popleft()
            self.outcomes.record(claim, await attempt(pool, claim, self.clock.now(), self._turn))

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[Share | None]:
        """A request's turn (http1.Turn): none needed while ingest is idle; while ingest requests
        are being served, one of BUSY_TURNS across all lanes (the module docstring's fair share)."""
        if not self.busy():
            yield None
            return
        await self._busy_slots.acquire()
        turn = _BusyTurn(self._busy_slots)
        try:
            yield turn
        finally:
            turn.release()

    async def _claim(self, target: Lane, due: float) -> Batch:
        """Lease a batch of the target's deliveries due at `due` (a `due()` time)."""
        wall = self.clock.now()  # for secrets' grace periods and the rows' stamps: wall time
        if target.callback:
            params = {"target": target.id, "now": due, "limit": LANE_BATCH, "timeout": self.callback_timeout}

            def callbacks(tx: Tx) -> Batch:
                rows = tx.execute(SQL_CLAIM_CALLBACKS, params).fetchall()
                tx.executemany(SQL_LEASE, [(due + LEASE_SECONDS, row["seq"]) for row in rows])
                return Batch([claim_of(row, wall) for row in rows], ordered=True)

            return await self.db.write(callbacks)
        return await self.db.write(lambda tx: self._claim_webhook(tx, target.id, due, wall))

    def _claim_webhook(self, tx: Tx, webhook_id: str, due: float, wall: float) -> Batch:
        """The claim job of a webhook's lane (see the module docstring)."""
        hook = tx.execute(SQL_LANE_WEBHOOK, (webhook_id,)).fetchone()
        if hook is None or not hook["active"]:
            return Batch([], ordered=False)
        lease = due + LEASE_SECONDS
        params = {"target": webhook_id, "now": due, "limit": LANE_BATCH}
        if hook["ordered"]:
            head = tx.execute(SQL_CLAIM_HEAD, params).fetchone()
            if head is None:  # no open row: the spans' first events become the next rows
                backlog.materialise(tx, hook, room=LANE_BATCH, lease_until=None, now=wall)
                head = tx.execute(SQL_CLAIM_HEAD, params).fetchone()
            rows = [head] if head is not None and head["sendable"] else []
        else:
            rows = tx.execute(SQL_CLAIM, params).fetchall()
        tx.executemany(SQL_LEASE, [(lease, row["seq"]) for row in rows])
        claims = [_claim(hook, row, wall) for row in rows]
        if not hook["ordered"] and len(rows) < LANE_BATCH:
            made = backlog.materialise(tx, hook, room=LANE_BATCH - len(rows), lease_until=lease, now=wall)
            for m in made:
                row = {"seq": m.seq, "id": m.id, "attempts": 0, "schedule_base": 0, "payload": m.payload}
                claims.append(_claim(hook, {**row, "type": m.event_type}, wall))
        return Batch(claims, ordered=bool(hook["ordered"]))


def _claim(hook: Row, row: Row | dict[str, Any], wall: float) -> DeliveryClaim:
    """A claim of webhook `hook`'s delivery `row` (seq, id, attempts, schedule_base, payload, type)."""
    columns = ("url", "headers", "timeout_seconds", "secret", "previous_secret", "previous_secret_expires_at")
    fields = {name: hook[name] for name in columns}
    fields.update(webhook_id=hook["id"], project_id=hook["project_id"], feed_id=None, method="POST")
    fields.update({name: row[name] for name in ("seq", "id", "attempts", "schedule_base", "payload", "type")})
    return claim_of(fields, wall)
