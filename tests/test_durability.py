"""A 202 means committed: SIGKILL a real server mid-load and find every acknowledged event."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.load import IngestLoad, create_feed
from tests.pg import ON_POSTGRES, query
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
        feed = await create_feed(client, admin)
    async with IngestLoad(server.url, feed, senders=16) as load:
        await load.until(500)
        server.kill()  # mid-stream: requests are in flight
    acknowledged = load.acknowledged

    server.start()
    stored = {row[0] for row in query(server.data / "glimpze.db", "SELECT id FROM events")}  # either backend
    if not ON_POSTGRES:
        conn = sqlite3.connect(server.data / "glimpze.db")
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
    missing = [event_id for event_id in acknowledged if event_id not in stored]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged events lost"
    assert len(acknowledged) >= 500
