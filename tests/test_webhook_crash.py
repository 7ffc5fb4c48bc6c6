"""Crash safety of deliveries: SIGKILL a real server twice mid-stream; every event still arrives."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from tests.receiver import Receiver
from tests.server import UNLIMITED_PLAN, Server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

EVENTS = 1000


async def test_deliveries_survive_two_sigkills(tmp_path: Path) -> None:
    with Receiver() as receiver:
        server = Server(tmp_path, UNLIMITED_PLAN + '\n[webhooks]\nallow_targets = ["127.0.0.1"]\n')
        server.start()
        try:
            admin = {"Authorization": f"Bearer {server.admin_key()}"}
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                hook = await client.post(
                    "/v1/webhooks", json={"url": receiver.url, "events": ["feed.event"]}, headers=admin
                )
                assert hook.status_code == 201, hook.text
                feed = (
                    await client.post("/v1/feeds", json={"name": "crash", "schema_type": "counter"}, headers=admin)
                ).json()
            write = {"Authorization": f"Bearer {feed['write_key']}"}
            acknowledged: list[str] = []
            next_event = 0

            async def send_until(count: int) -> None:
                """Send events with 8 concurrent clients until `count` are acknowledged."""
                nonlocal next_event
                async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:

                    async def sender() -> None:
                        nonlocal next_event
                        while len(acknowledged) < count:
                            next_event += 1
                            body = {"schema_type": "counter", "content": {"title": "n", "count": next_event}}
                            response = await client.post(f"/ingest/{feed['id']}", json=body, headers=write)
                            assert response.status_code == 202
                            acknowledged.append(response.json()["id"])

                    await asyncio.gather(*(sender() for _ in range(8)))

            for stop_at in (EVENTS // 3, 2 * EVENTS // 3):
                await send_until(stop_at)
                server.kill()  # deliveries are queued and in flight at this moment
                server.start()
            await send_until(EVENTS)

            def all_arrived() -> bool:
                got = {json.loads(r.body)["id"] for r in receiver.requests}
                return got >= set(acknowledged)

            for _ in range(600):  # bounded: up to 60 s for the stragglers (a killed attempt retries after 5 s)
                if all_arrived():
                    break
                await asyncio.sleep(0.1)
            received = defaultdict(set)
            for request in receiver.requests:
                received[json.loads(request.body)["id"]].add(request.headers["webhook-id"])
            missing = set(acknowledged) - set(received)
            assert not missing, f"{len(missing)} acknowledged events never delivered"
            # duplicates are possible only for attempts in flight at a kill, and carry the same webhook-id
            assert all(len(ids) == 1 for ids in received.values())
            duplicates = len(receiver.requests) - len(received)
            print(f"{len(acknowledged)} events, {len(receiver.requests)} deliveries, {duplicates} duplicates")
        finally:
            server.kill()
    conn = sqlite3.connect(server.data / "glimpze.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
