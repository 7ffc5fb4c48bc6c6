"""A 202 means committed: SIGKILL a real server mid-load and find every acknowledged event."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import Server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path)
    server.start()
    yield server
    server.kill()


async def test_sigkill_loses_no_acknowledged_event(server: Server) -> None:
    admin = {"Authorization": f"Bearer {server.admin_key()}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        feed = (await client.post("/v1/feeds", json={"name": "load", "schema_type": "counter"}, headers=admin)).json()
        write = {"Authorization": f"Bearer {feed['write_key']}"}
        acknowledged: list[str] = []
        killed = asyncio.Event()

        async def sender(n: int) -> None:
            i = 0
            while not killed.is_set():
                body = {"schema_type": "counter", "content": {"title": f"s{n}", "count": i}}
                try:
                    response = await client.post(f"/ingest/{feed['id']}", json=body, headers=write)
                except httpx.HTTPError:
                    return
                if response.status_code == 202:
                    acknowledged.append(response.json()["id"])
                i += 1

        senders = [asyncio.create_task(sender(n)) for n in range(16)]
        while len(acknowledged) < 500:
            await asyncio.sleep(0.01)
        server.kill()  # mid-stream: requests are in flight
        killed.set()
        await asyncio.gather(*senders)

    server.start()
    conn = sqlite3.connect(server.data / "glimpze.db")
    stored = {row[0] for row in conn.execute("SELECT id FROM events")}
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    missing = [event_id for event_id in acknowledged if event_id not in stored]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged events lost"
    assert len(acknowledged) >= 500
