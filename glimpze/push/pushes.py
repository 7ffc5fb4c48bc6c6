"""Push notifications: decided at ingest, queued in the event's transaction, sent by the scheduler.

`decide` is called by ingest before an event is stored, for an event with `intent.send_push` and for every
approval (seed 002: "approval always sends push"):
- the project has no push targets → "none";
- an approval → "queued" (exempt from the feed limit; during quiet hours it is `held` and goes
  out when they end: `release_quiet_hours`);
- quiet hours → "suppressed", logged `suppressed`;
- a push of the same feed less than `[push] feed_interval_seconds` ago → "suppressed", logged
  `coalesced` (a loop cannot flood a phone);
- otherwise "queued".
`queue_decided` writes the push row (title and body drawn from the event) in the event's
transaction. `send_due(now)` sends due pushes to every target of their project at once — Web
Push subscriptions and Apprise URLs, each connection checked by the SSRF guard (ssrf.py) — and
logs each target's result; an approval's push gets
fresh Approve / Reject links (action_links.py) when it is sent, or is dropped if it was answered
meanwhile. A runner calls it after each commit that queued a push and on the scheduler's tick;
tests stop the runner and call it with a fake `now`. A failed push is not retried (a late
notification is worse than none: the log says why); one cut short by a crash is sent again.
Whether a push is due, and when a send's lease ends, are judged on the clock's `due()` time, which
never runs backwards (clock.py); `created_at` and `sent_at` are wall times.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import msgspec

from glimpze.clock import Clock, iso
from glimpze.config import Config
from glimpze.errors import not_found
from glimpze.feeds.events import NO_PUSH, NewEvent, PushDecision
from glimpze.feeds.feeds import FeedState
from glimpze.feeds.schemas import IngestEvent
from glimpze.ids import new_id
from glimpze.ops.metrics import Registry
from glimpze.ops.runner import Runner
from glimpze.push import apprise_urls
from glimpze.push.action_links import ACTIONS, BUTTON_ACTIONS, ActionLinks
from glimpze.push.buttons import Button
from glimpze.push.quiet_hours import QuietHours, QuietHoursSpec, QuietHoursState
from glimpze.push.targets import PushTargets, Recipient
from glimpze.push.webpush import WebPush
from glimpze.store.pagination import Page, page
from glimpze.store.sql import Row, Store, Tx, one

log = logging.getLogger("glimpze.push")

QUEUED, HELD, SUPPRESSED, COALESCED = "queued", "held", "suppressed", "coalesced"
SEND_BATCH = 20
LEASE_SECONDS = 120  # a push still `sending` this long after it was claimed was cut short by a crash
TITLE_MAX, BODY_MAX = 120, 1000
PAYLOAD_MAX = 3000  # Web Push services take 4 KB after encryption
TEST_TITLE = "Test from Glimpze"
TEST_BODY = "Push notifications reach you here."
STATUS_WORDS = {"success": "OK", "warning": "Warning", "info": "Info", "error": "Error"}
TREND_ARROWS = {"up": "▲", "down": "▼", "flat": "▶"}
_BUTTONS = msgspec.json.Decoder(list[Button])

SQL_FEED_NAME = "SELECT name FROM feeds WHERE id = ?"
SQL_INSERT = """
    INSERT INTO pushes (id, project_id, feed_id, event_id, approval, status, reason, title, body, open_path, actions,
                        send_at, created_at)
    VALUES (:id, :project_id, :feed_id, :event_id, :approval, :status, :reason, :title, :body, :open_path, :actions,
            :now, :now)
"""
SQL_RELEASE_LEASES = "UPDATE pushes SET status = 'queued', send_at = ? WHERE status = 'sending'"
# An approval's push also reads whether it is still pending (answered meanwhile: it is dropped).
SQL_DUE = """
    SELECT p.seq, p.id, p.project_id, p.feed_id, p.event_id, p.approval, p.title, p.body, p.open_path, p.actions,
           a.status AS approval_status
    FROM pushes p LEFT JOIN approvals a ON p.approval/*pg: <> 0*/ AND a.event_id = p.event_id
    WHERE p.status IN ('queued', 'sending') AND p.send_at <= :now ORDER BY p.send_at, p.seq LIMIT :limit
"""
SQL_ANY_DUE = "SELECT 1 FROM pushes WHERE status IN ('queued', 'sending') AND send_at <= ? LIMIT 1"
SQL_LEASE = "UPDATE pushes SET status = 'sending', send_at = ? WHERE seq = ?"
SQL_FINISH = "UPDATE pushes SET status = ?, reason = ?, sent_at = ?, send_at = NULL WHERE seq = ?"
SQL_INSERT_RESULT = """
    INSERT INTO push_results (push_seq, target_id, kind, status, error, at) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (push_seq, target_id) DO UPDATE SET kind = excluded.kind, status = excluded.status,
        error = excluded.error, at = excluded.at
"""
SQL_HELD_PROJECTS = "SELECT DISTINCT project_id FROM pushes WHERE status = 'held'"
SQL_RELEASE = "UPDATE pushes SET status = 'queued', send_at = :now WHERE project_id = :project AND status = 'held'"
SQL_LOG = """
    SELECT seq, id, event_id, feed_id, approval, status, reason, title, body, created_at, sent_at FROM pushes
    WHERE project_id = :project AND seq < :before AND (:event IS NULL OR event_id = :event)
      AND (:feed IS NULL OR feed_id = :feed)
    ORDER BY seq DESC LIMIT :limit
"""
SQL_LOG_RESULTS = """
    SELECT push_seq, target_id, kind, status, error, at FROM push_results
    WHERE push_seq IN (SELECT CAST(value AS BIGINT) FROM json_each(?)) ORDER BY at, target_id
"""
SQL_PURGE = """
    DELETE FROM pushes WHERE seq IN (
        SELECT seq FROM pushes WHERE created_at < :cutoff AND status NOT IN ('queued', 'held', 'sending')
        ORDER BY created_at LIMIT :batch
    )
"""


class PushResult(msgspec.Struct):
    target_id: str
    kind: str
    status: str  # sent | failed | removed (the push service said the subscription is gone)
    error: str | None
    at: str


class PushRecord(msgspec.Struct, kw_only=True):
    """One entry of the push log: a push an event asked for, and what became of it."""

    id: str
    event_id: str
    feed_id: str
    approval: bool
    status: str  # queued | held | sending | sent | failed | suppressed | coalesced
    reason: str | None
    title: str
    body: str
    created_at: str
    sent_at: str | None
    results: list[PushResult]


class Push:
    """Decides, queues, sends and logs pushes; see the module docstring."""

    def __init__(
        self,
        db: Store,
        config: Config,
        clock: Clock,
        targets: PushTargets,
        quiet: QuietHours,
        webpush: WebPush,
        action_links: ActionLinks,
        metrics: Registry | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.targets = targets
        self.quiet = quiet
        self.webpush = webpush
        self.policy = targets.policy
        self.interval = config.push.feed_interval_seconds
        self.timeout = config.push.timeout_seconds
        self.open_url = config.base_url + "/"
        self.retention = config.webhooks.event_retention_days * 86400
        self.action_links = action_links
        self.link_ttl = config.push.action_link_ttl_seconds
        self._last_push: dict[str, float] = {}  # feed id -> when its last push was queued
        self._queued = False
        self._sending = asyncio.Lock()
        self._runner: Runner | None = None
        self.sent = 0
        self.outcomes = (metrics or Registry()).counter(
            "glimpze_pushes_total",
            "Pushes by outcome: sent (to at least one target), failed, suppressed (quiet hours, or an approval "
            "answered before its push went out), coalesced (the feed's push limit)",
            ("outcome",),
        )

    # Deciding and queuing (inside ingest)

    def decide(self, feed: FeedState, event: IngestEvent, now: float) -> PushDecision:
        """Whether an event about to be stored gets a push, and how (see the module docstring)."""
        approval = feed.schema_type == "approval"
        if not approval and not event.intent.send_push:
            return NO_PUSH
        if not self.targets.count(feed.project_id):
            return NO_PUSH
        quiet = self.quiet.active(feed.project_id, now)
        if approval:
            return PushDecision("queued", HELD if quiet else QUEUED)
        if quiet:
            self.outcomes.inc(SUPPRESSED)
            return PushDecision("suppressed", SUPPRESSED)
        last = self._last_push.get(feed.id)
        if last is not None and 0 <= now - last < self.interval:
            self.outcomes.inc(COALESCED)
            return PushDecision("suppressed", COALESCED)
        self._last_push[feed.id] = now
        return PushDecision("queued", QUEUED)

    def queue_decided(self, tx: Tx, stored: NewEvent, decision: PushDecision) -> None:
        """Queue (or log) the push `decide` settled, in the event's transaction."""
        if decision.status is None:
            return
        name = one(tx.execute(SQL_FEED_NAME, (stored.feed.id,)))[0]
        title, body = message_text(stored.feed.schema_type, name, msgspec.json.decode(stored.content))
        self.queue(
            tx,
            project_id=stored.feed.project_id,
            feed_id=stored.feed.id,
            event_id=stored.id,
            approval=stored.feed.schema_type == "approval",
            title=title,
            body=body,
            status=decision.status,
            now=stored.received_at,
            buttons=stored.buttons,
        )

    def message_status(self, project_id: str, session_id: str, now: float) -> str | None:
        """How a visitor message's push goes out now: queued, suppressed (quiet hours), coalesced
        (one per conversation every `feed_interval_seconds`), or None (no targets)."""
        if not self.targets.count(project_id):
            return None
        if self.quiet.active(project_id, now):
            self.outcomes.inc(SUPPRESSED)
            return SUPPRESSED
        last = self._last_push.get(session_id)
        if last is not None and 0 <= now - last < self.interval:
            self.outcomes.inc(COALESCED)
            return COALESCED
        self._last_push[session_id] = now
        return QUEUED

    def approval_status(self, project_id: str, now: float) -> str | None:
        """How an approval's push goes out now: queued, held (quiet hours), or None (no targets)."""
        if not self.targets.count(project_id):
            return None
        return HELD if self.quiet.active(project_id, now) else QUEUED

    def queue(
        self,
        tx: Tx,
        *,
        project_id: str,
        feed_id: str,
        event_id: str,
        approval: bool,
        title: str,
        body: str,
        status: str,
        now: float,
        open_path: str | None = None,
        buttons: list[Button] | None = None,
    ) -> None:
        """Write one push row (inside a write job); queued ones are sent after the commit. Tapping it
        opens `open_path` in the dashboard (default: the approval's page, or the dashboard); its
        `buttons` become links when it is sent (buttons.py)."""
        reasons = {
            HELD: "quiet hours: held until they end",
            SUPPRESSED: "quiet hours",
            COALESCED: f"the feed's push limit (one per {self.interval:g} s)",
        }
        params = {
            "id": new_id("psh_"),
            "project_id": project_id,
            "feed_id": feed_id,
            "event_id": event_id,
            "approval": approval,
            "status": status,
            "reason": reasons.get(status),
            "title": title,
            "body": body,
            "open_path": open_path,
            "actions": msgspec.json.encode(buttons) if buttons else None,
            "now": now,
        }
        tx.execute(SQL_INSERT, params)
        self._queued = self._queued or status == QUEUED

    # The runner

    async def start(self) -> None:
        """Requeue pushes a previous process was sending (one process per database), then run: a
        pass after every commit that queued a push, and on the scheduler's tick."""
        await self.db.execute(SQL_RELEASE_LEASES, (self.clock.now(),))
        self._runner = Runner("glimpze-push", lambda: self.send_due(self.clock.due()))
        self._runner.start()

    def after_commit(self) -> None:
        """Called by the writer after every commit: wake the runner if a push was queued."""
        if self._queued:
            self._queued = False
            self.wake()

    def wake(self) -> None:
        if self._runner is not None:
            self._runner.wake()

    async def stop_runner(self) -> None:
        """Stop reacting to wake-ups; `send_due` still works (tests drive it with a fake clock)."""
        if self._runner is not None:
            await self._runner.stop()

    async def stop(self, grace: float = 5.0) -> None:
        """Give a send in progress `grace` seconds, then stop."""
        if self._runner is not None:
            try:
                async with asyncio.timeout(grace):
                    async with self._sending:
                        pass
            except TimeoutError:
                pass
            await self.stop_runner()
        await self.webpush.close()

    # Sending

    async def send_due(self, now: float) -> int:
        """Send every push due at `now` (a `due()` time: the runner passes the clock's); returns
        how many were handled."""
        handled = 0
        async with self._sending:
            while True:
                # A read first: an idle server's tick must not cost a write (an fsync) every time.
                if await self.db.fetch_one(SQL_ANY_DUE, (now,)) is None:
                    return handled
                rows = await self.db.write(functools.partial(_claim, now))
                if not rows:
                    return handled
                for row in rows:
                    await self._send(row, self.clock.now())
                handled += len(rows)

    async def release_quiet_hours(self, now: float) -> int:
        """Queue the held pushes (approvals) of every project whose quiet hours are over at `now`."""
        held = [row[0] for row in await self.db.fetch_all(SQL_HELD_PROJECTS)]
        over = [project for project in held if not self.quiet.active(project, now)]
        if not over:
            return 0

        def job(tx: Tx) -> int:
            return sum(tx.execute(SQL_RELEASE, {"project": p, "now": now}).rowcount for p in over)

        released = await self.db.write(job)
        if released:
            self.wake()
        return released

    async def set_quiet_hours(self, project_id: str, spec: QuietHoursSpec) -> QuietHoursState:
        """Set a project's quiet hours; approvals held outside the new window are pushed now."""
        state = await self.quiet.set(project_id, spec)
        await self.release_quiet_hours(self.clock.now())
        return state

    async def clear_quiet_hours(self, project_id: str) -> None:
        """Turn a project's quiet hours off; its held approvals are pushed now."""
        await self.quiet.clear(project_id)
        await self.release_quiet_hours(self.clock.now())

    async def _send(self, row: Row, now: float) -> None:
        links: dict[str, str] = {}  # action -> URL
        titles: dict[str, str] = {}  # action -> its button's label (else the action's name)
        if row["approval"]:
            if row["approval_status"] != "pending":
                await self._finish(row, SUPPRESSED, "the approval was answered before its push went out", now)
                self.outcomes.inc(SUPPRESSED)
                return
            expires = now + self.link_ttl  # fresh Approve / Reject links, made as it goes out
            links = {action: self.action_links.url(row["event_id"], action, expires) for action in ACTIONS}
        elif row["actions"]:  # a button's link: its page, or its request (buttons.py)
            titles = dict(zip(BUTTON_ACTIONS, (button.label for button in _BUTTONS.decode(row["actions"]))))
            links = {action: self.action_links.url(row["event_id"], action, now + self.link_ttl) for action in titles}
        targets = await self.targets.of_project(row["project_id"])
        if not targets:
            await self._finish(row, "failed", "the project has no push targets", now)
            self.outcomes.inc("failed")
            return
        title, body = row["title"], row["body"]
        actions = [{"action": a, "title": titles.get(a, a.title()), "url": url} for a, url in links.items()]
        # Tapping an approval's notification opens its page in the dashboard (a conversation's push,
        # the conversation); others open the dashboard.
        url = f"{self.open_url}approvals/{row['event_id']}" if row["approval"] else self.open_url
        if row["open_path"]:
            url = self.open_url + row["open_path"]
        payload = webpush_payload(title, body, url, actions)
        text = body + "".join(f"\n{a['title']}: {a['url']}" for a in actions)
        urgent = bool(row["approval"])
        results = await asyncio.gather(
            *(self._deliver(target, title, text, payload, now, urgent) for target in targets)
        )
        count = await self.db.write(functools.partial(self._record, row, targets, results, self.clock.now()))
        if count is not None:
            self.targets.set_count(row["project_id"], count)
        self.sent += 1
        self.outcomes.inc("sent" if any(status == "sent" for status, _ in results) else "failed")

    async def test(self, project_id: str, target_id: str) -> PushResult:
        """Send a test notification to one target now and say how it went (a gone subscription is
        removed, as after any push). Not queued: the person who pressed "send test" waits for the
        answer, at most the push timeout per target; nor logged as an event's push."""
        target = next((t for t in await self.targets.of_project(project_id) if t.id == target_id), None)
        if target is None:
            raise not_found("push target", target_id)
        now = self.clock.now()
        payload = webpush_payload(TEST_TITLE, TEST_BODY, self.open_url, [])
        status, error = await self._deliver(target, TEST_TITLE, TEST_BODY, payload, now, False)
        if status == "removed":
            count = await self.db.write(lambda tx: self.targets.remove(tx, project_id, [target.id]))
            self.targets.set_count(project_id, count)
        return PushResult(target.id, target.kind, status, error, iso(self.clock.now()))

    async def _deliver(
        self, target: Recipient, title: str, text: str, payload: bytes, now: float, urgent: bool
    ) -> tuple[str, str | None]:
        """Send to one target: (sent | failed | removed, error)."""
        try:
            if target.subscription is not None:
                sent = await self.webpush.send(target.subscription, payload, now=now, urgent=urgent)
                if sent.gone:
                    return "removed", sent.error
                return ("sent", None) if sent.ok else ("failed", sent.error)
            error = await asyncio.to_thread(apprise_urls.send, target.url, title, text, self.timeout, self.policy)
            return ("sent", None) if error is None else ("failed", error)
        except Exception as exc:
            log.exception("push to target %s failed", target.id)
            return "failed", (str(exc) or type(exc).__name__)[:300]

    def _record(
        self,
        row: Row,
        targets: list[Recipient],
        results: list[tuple[str, str | None]],
        now: float,
        tx: Tx,
    ) -> int | None:
        """Log each target's result and the push's; drop gone subscriptions (returns the new count then)."""
        tx.executemany(
            SQL_INSERT_RESULT,
            [(row["seq"], t.id, t.kind, status, error, now) for t, (status, error) in zip(targets, results)],
        )
        sent = any(status == "sent" for status, _ in results)
        reason = None if sent else next((error for _, error in results if error), "no target accepted it")
        tx.execute(SQL_FINISH, ("sent" if sent else "failed", reason, now, row["seq"]))
        gone = [t.id for t, (status, _) in zip(targets, results) if status == "removed"]
        return self.targets.remove(tx, row["project_id"], gone) if gone else None

    async def _finish(self, row: Row, status: str, reason: str, now: float) -> None:
        await self.db.execute(SQL_FINISH, (status, reason, now, row["seq"]))

    # Reading and purging the log

    async def log(
        self,
        project_id: str,
        *,
        event_id: str | None,
        feed_id: str | None,
        before: tuple[int] | None,
        limit: int,
    ) -> Page[PushRecord]:
        params = {
            "project": project_id,
            "before": before[0] if before else 2**63 - 1,
            "event": event_id,
            "feed": feed_id,
            "limit": limit + 1,
        }
        rows = list(await self.db.fetch_all(SQL_LOG, params))
        seqs = msgspec.json.encode([row["seq"] for row in rows[:limit]]).decode()
        results: dict[int, list[PushResult]] = {}
        for r in await self.db.fetch_all(SQL_LOG_RESULTS, (seqs,)):
            results.setdefault(r["push_seq"], []).append(
                PushResult(r["target_id"], r["kind"], r["status"], r["error"], iso(r["at"]))
            )

        def record(row: Row) -> PushRecord:
            return PushRecord(
                id=row["id"],
                event_id=row["event_id"],
                feed_id=row["feed_id"],
                approval=bool(row["approval"]),
                status=row["status"],
                reason=row["reason"],
                title=row["title"],
                body=row["body"],
                created_at=iso(row["created_at"]),
                sent_at=None if row["sent_at"] is None else iso(row["sent_at"]),
                results=results.get(row["seq"], []),
            )

        return page(rows, limit, record, lambda r: (r["seq"],))

    async def purge(self, now: float, batch: int = 500) -> int:
        """Delete finished pushes older than the outgoing-event retention, a batch at a time."""
        total = 0
        while True:
            deleted = await self.db.execute(SQL_PURGE, {"cutoff": now - self.retention, "batch": batch})
            total += deleted
            if deleted < batch:
                return total


def _claim(now: float, tx: Tx) -> list[Row]:
    rows = tx.execute(SQL_DUE, {"now": now, "limit": SEND_BATCH}).fetchall()
    tx.executemany(SQL_LEASE, [(now + LEASE_SECONDS, row["seq"]) for row in rows])
    return rows


def message_text(schema_type: str, feed_name: str, content: dict[str, Any]) -> tuple[str, str]:
    """A notification's title and body, drawn from an event's content."""
    title = str(content.get("title") or feed_name)
    if schema_type == "summary":
        body = str(content.get("primary_value", ""))
        if content.get("secondary_value"):
            body += f" ({content['secondary_value']})"
    elif schema_type == "status":
        title = f"{title}: {STATUS_WORDS.get(content.get('status', ''), content.get('status', ''))}"
        body = "\n".join(str(content[k]) for k in ("message", "details") if content.get(k))
    elif schema_type == "counter":
        body = " ".join(str(p) for p in (content.get("count"), content.get("unit")) if p not in (None, ""))
        if content.get("trend") or content.get("trendValue"):
            trend = f"{TREND_ARROWS.get(content.get('trend', ''), '')} {content.get('trendValue', '')}".strip()
            body += f" {trend}"
        if content.get("subtitle"):
            body += f" · {content['subtitle']}"
    elif schema_type == "approval":
        title, body = f"Approval needed: {feed_name}", str(content.get("description", ""))
    else:  # custom: images; the notification only says the widget changed
        title, body = feed_name, "The widget has a new image."
    return _cut(title, TITLE_MAX), _cut(body, BODY_MAX)


def webpush_payload(title: str, body: str, url: str, actions: list[dict[str, str]]) -> bytes:
    """The JSON a service worker receives: `{title, body, url, actions}`, cut to fit a push."""
    while True:
        payload = msgspec.json.encode({"title": title, "body": body, "url": url, "actions": actions})
        if len(payload) <= PAYLOAD_MAX or not body:
            return payload
        body = _cut(body, max(0, len(body) - (len(payload) - PAYLOAD_MAX) - 1))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"
