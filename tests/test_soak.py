"""A minute of mixed load on a real `glimpze serve`, with two SIGKILLs and restarts.

Ingest, image uploads, visitors opening sessions and posting messages, and a webhook receiving all
of it (the first answers fail, so retries are part of the run). The process is killed twice while
the load runs and restarted at once; the clients carry on through the gaps and record only what
was acknowledged. Afterwards: every acknowledged write is in the database, every outgoing event
reached the receiver at least once, and `PRAGMA integrity_check` is ok. The last part of the
load runs without kills, and the server's RSS over it must not grow: a leak per request shows up
as a steady climb over thousands of requests.

Every load loop ends at a deadline; the load is paced (a few hundred writes a second) so the
server, its deliveries and the receiver share two cores with this test.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.figures import report
from tests.imagefiles import widget
from tests.load import ALLOW_LOCAL_TARGETS, create_feed
from tests.receiver import Answer, Receiver
from tests.server import UNLIMITED_PLAN, Server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

LOAD_SECONDS = 60
KILLS_AT = (8, 18)  # seconds into the load
RSS_FROM = 32  # the kill-free stretch whose RSS is watched: from here to the end of the load
RSS_SAMPLE_SECONDS = 0.5
RSS_GROWTH_LIMIT_MB = 5.0  # between the first and the last fifth of the stretch (medians)
INGEST_SENDERS = 3
INGEST_INTERVAL = 1 / 40  # per sender: ~120 events a second in all
UPLOAD_INTERVAL = 0.5
VISITORS = 2
VISITOR_INTERVAL = 0.1  # between a visitor loop's requests
MESSAGES_PER_VISITOR = 3
FAILING_ANSWERS = 20  # the receiver's first answers are 503s: those deliveries are retried
DRAIN_SECONDS = 90  # for the deliveries still queued when the load stops


class Acknowledged:
    """What the server acknowledged (2xx), by kind; and answers that were neither 2xx nor a gap."""

    def __init__(self) -> None:
        self.events: list[str] = []  # ingested and uploaded: each becomes a feed.event
        self.sessions: list[str] = []
        self.messages: list[str] = []
        self.unexpected: list[str] = []
        self.gaps = 0  # requests that met a dead or restarting server


class MixedLoad:
    """The load's loops, all ending at `deadline` (time.monotonic())."""

    def __init__(self, url: str, admin: str, feed: dict[str, Any], pictures: dict[str, Any], deadline: float) -> None:
        self.url = url
        self.admin = {"Authorization": f"Bearer {admin}"}
        self.feed = feed
        self.pictures = pictures
        self.deadline = deadline
        self.done = Acknowledged()
        self.images = [widget("small", seed=n) for n in range(4)]

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            loops = [self._ingest(client, n) for n in range(INGEST_SENDERS)]
            loops += [self._uploads(client), *(self._visitor(client, n) for n in range(VISITORS))]
            await asyncio.gather(*loops)

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def _paced(self, interval: float, step: Callable[[int], Awaitable[None]]) -> None:
        n = 0
        next_at = time.monotonic()
        while self.running():
            await step(n)
            n += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _send(self, client: httpx.AsyncClient, method: str, path: str, **kw: Any) -> httpx.Response | None:
        """One request, tried again after a gap (the server killed or restarting) until the deadline.

        A request that met a gap may have been committed before the kill: only its answer counts."""
        while self.running():
            try:
                response = await client.request(method, path, **kw)
            except httpx.HTTPError:
                self.done.gaps += 1
                await asyncio.sleep(0.05)
                continue
            if response.is_success:
                return response
            self.done.unexpected.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
            return None
        return None

    async def _ingest(self, client: httpx.AsyncClient, sender: int) -> None:
        write = {"Authorization": f"Bearer {self.feed['write_key']}"}

        async def step(n: int) -> None:
            body = {"schema_type": "counter", "content": {"title": f"sender {sender}", "count": n}}
            response = await self._send(client, "POST", f"/ingest/{self.feed['id']}", json=body, headers=write)
            if response is not None:
                self.done.events.append(response.json()["id"])

        await self._paced(INGEST_INTERVAL, step)

    async def _uploads(self, client: httpx.AsyncClient) -> None:
        write = {"Authorization": f"Bearer {self.pictures['write_key']}"}

        async def step(n: int) -> None:
            files = {"small_image": ("s.png", self.images[n % len(self.images)], "image/png")}
            path = f"/ingest/{self.pictures['id']}/upload"
            response = await self._send(client, "POST", path, files=files, headers=write)
            if response is not None:
                self.done.events.append(response.json()["id"])

        await self._paced(UPLOAD_INTERVAL, step)

    async def _visitor(self, client: httpx.AsyncClient, loop: int) -> None:
        """Visitor after visitor: a widget token, the session, a few messages, a poll for them."""
        state: dict[str, Any] = {}

        async def step(n: int) -> None:
            stage = n % (MESSAGES_PER_VISITOR + 3)
            if stage == 0:
                body = {"visitor": {"id": f"visitor-{loop}-{n}"}}
                minted = await self._send(client, "POST", "/v1/widget-tokens", json=body, headers=self.admin)
                state.clear()
                if minted is not None:
                    state["auth"] = {"Authorization": f"Bearer {minted.json()['token']}"}
            elif "auth" not in state:
                return
            elif stage == 1:
                opened = await self._send(client, "POST", "/widget/v1/sessions", headers=state["auth"])
                if opened is not None:
                    state["session"] = opened.json()["id"]
                    self.done.sessions.append(state["session"])
            elif "session" not in state:
                return
            elif stage <= MESSAGES_PER_VISITOR + 1:
                path = f"/widget/v1/sessions/{state['session']}/messages"
                posted = await self._send(client, "POST", path, json={"text": f"message {n}"}, headers=state["auth"])
                if posted is not None:
                    self.done.messages.append(posted.json()["id"])
            else:
                path = f"/widget/v1/sessions/{state['session']}/messages"
                polled = await self._send(client, "GET", path, headers=state["auth"])
                if polled is not None and not polled.json()["data"]:
                    self.done.unexpected.append(f"GET {path}: no messages")

        await self._paced(VISITOR_INTERVAL, step)


def delivered(receiver: Receiver) -> tuple[set[str], set[str], set[str]]:
    """The ids of the feed events, sessions and messages whose outgoing events arrived."""
    events, sessions, messages = set(), set(), set()
    for request in list(receiver.requests):
        if request.headers.get("x-glimpze-attempt") is None:
            continue
        payload = json.loads(request.body)
        if payload["event"] == "feed.event":
            events.add(payload["id"])
        elif payload["event"] == "session.created":
            sessions.add(payload["session_id"])
        elif payload["event"] == "message.created":
            messages.add(payload["message_id"])
    return events, sessions, messages


async def test_a_minute_of_mixed_load_with_two_sigkills(tmp_path: Path) -> None:
    started = time.monotonic()
    with Receiver() as receiver:
        receiver.script([Answer(503)] * FAILING_ANSWERS)
        server = Server(tmp_path, UNLIMITED_PLAN + ALLOW_LOCAL_TARGETS)
        server.start()
        try:
            admin = server.admin_key()
            auth = {"Authorization": f"Bearer {admin}"}
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                feed = await create_feed(client, auth)
                pictures = await create_feed(client, auth, "custom", "pictures")
                events = ["feed.event", "session.created", "message.created"]
                hook = await client.post("/v1/webhooks", json={"url": receiver.url, "events": events}, headers=auth)
                assert hook.status_code == 201, hook.text

            load_started = time.monotonic()
            load = MixedLoad(server.url, admin, feed, pictures, deadline=load_started + LOAD_SECONDS)
            running = asyncio.create_task(load.run())
            for at in KILLS_AT:
                await anyio.sleep(max(0.0, load_started + at - time.monotonic()))
                assert not running.done(), running
                await anyio.to_thread.run_sync(server.kill)  # SIGKILL to the process this test started
                await anyio.to_thread.run_sync(server.start)
            await anyio.sleep(max(0.0, load_started + RSS_FROM - time.monotonic()))
            rss: list[float] = []
            while not running.done():
                rss.append(server.rss_mb())
                await anyio.sleep(RSS_SAMPLE_SECONDS)
            await running
            load_took = time.monotonic() - load_started
            done = load.done

            # Every acknowledged write's outgoing event reaches the receiver (bounded wait).
            wanted = (set(done.events), set(done.sessions), set(done.messages))
            with anyio.move_on_after(DRAIN_SECONDS):
                # (more may arrive than was acknowledged: writes committed just before a kill)
                while not all(got >= want for got, want in zip(delivered(receiver), wanted)):
                    await anyio.sleep(0.2)
            got_events, got_sessions, got_messages = delivered(receiver)
        finally:
            server.kill()

    assert not done.unexpected, done.unexpected[:10]
    assert len(done.events) > 1000 and len(done.sessions) > 10 and len(done.messages) > 30, vars(done)
    assert server.runs == 1 + len(KILLS_AT)

    db = server.data / "glimpze.db"
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {
            table: {row[0] for row in conn.execute(f"SELECT id FROM {table}")}
            for table in ("events", "sessions", "messages")
        }
    finally:
        conn.close()
    for table, acknowledged in (("events", done.events), ("sessions", done.sessions), ("messages", done.messages)):
        missing = set(acknowledged) - stored[table]
        assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged {table} lost"

    undelivered = {
        "feed.event": set(done.events) - got_events,
        "session.created": set(done.sessions) - got_sessions,
        "message.created": set(done.messages) - got_messages,
    }
    assert not any(undelivered.values()), {kind: len(ids) for kind, ids in undelivered.items()}

    fifth = max(1, len(rss) // 5)
    first, last = statistics.median(rss[:fifth]), statistics.median(rss[-fifth:])
    report(
        f"soak: {load_took:.0f} s of load, {time.monotonic() - started:.0f} s in all; {len(done.events)} events, "
        f"{len(done.sessions)} sessions, {len(done.messages)} messages acknowledged, {len(receiver.requests)} "
        f"deliveries received; 2 SIGKILLs ({done.gaps} requests met the gaps); RSS over the last "
        f"{LOAD_SECONDS - RSS_FROM} s without kills {first:.1f} → {last:.1f} MB (max {max(rss):.1f})"
    )
    assert len(rss) >= 20
    assert last - first < RSS_GROWTH_LIMIT_MB, f"RSS grew from {first:.1f} to {last:.1f} MB: {rss}"
