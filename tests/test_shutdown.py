"""Graceful shutdown of a real `glimpze serve` under load (DESIGN §7): SIGTERM ends long polls at
once, gives in-flight work up to 5 s, releases leases, checkpoints the WAL and exits 0 within 10 s,
losing no acknowledged event and no delivery."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path

import anyio
import httpx
import pytest

from tests.load import ALLOW_LOCAL_TARGETS, IngestLoad, create_feed, subscribe
from tests.pg import ON_POSTGRES, query
from tests.receiver import Receiver
from tests.server import UNLIMITED_PLAN, Server

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_sigterm_under_load_exits_0_within_10_s_and_loses_nothing(tmp_path: Path) -> None:
    with Receiver() as receiver:
        server = Server(tmp_path, UNLIMITED_PLAN + ALLOW_LOCAL_TARGETS)
        server.start()
        try:
            admin = {"Authorization": f"Bearer {server.admin_key()}"}
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                await subscribe(client, admin, receiver.url)
                feed = await create_feed(client, admin)
                # a long poll that is waiting when the signal comes
                cursor = (await client.get("/v1/events?types=webhook.test", headers=admin)).json()["next_cursor"]
                poll = asyncio.create_task(
                    client.get(f"/v1/events?after={cursor}&types=webhook.test&wait=30", headers=admin)
                )
                async with IngestLoad(server.url, feed) as load:
                    await load.until(300)
                    receiver.hold.clear()  # the receiver stops answering: deliveries hang in flight
                    with anyio.fail_after(10):
                        while receiver.in_flight == 0:
                            await asyncio.sleep(0.01)
                    assert server.proc is not None
                    signalled = time.monotonic()
                    server.proc.send_signal(signal.SIGTERM)
                    polled = await poll
                    poll_answered = time.monotonic() - signalled
                    status = await anyio.to_thread.run_sync(server.proc.wait, 15)
                    took = time.monotonic() - signalled
        finally:
            receiver.hold.set()
            server.kill()
        acknowledged = load.acknowledged

        assert status == 0, server.output()
        assert took < 10, f"exit took {took:.1f} s"
        assert polled.status_code == 200 and polled.json()["data"] == []
        assert poll_answered < 2, f"the long poll waited {poll_answered:.1f} s"
        assert "shutdown took longer" not in server.output()

        db = server.data / "glimpze.db"
        stored = {row[0] for row in query(db, "SELECT id FROM events")}  # either backend (tests/pg.py)
        leased = query(db, "SELECT count(*) FROM deliveries WHERE lease_until IS NOT NULL")[0][0]
        missing = [event_id for event_id in acknowledged if event_id not in stored]
        assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged events lost"
        assert leased == 0
        if not ON_POSTGRES:  # SQLite's file: sound, and its WAL emptied at the exit
            conn = sqlite3.connect(db)
            try:
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            finally:
                conn.close()
            wal = db.with_name("glimpze.db-wal")
            assert not wal.exists() or wal.stat().st_size == 0, "the WAL was not checkpointed"

        # After a restart every acknowledged event reaches the receiver.
        server.start()
        try:
            with anyio.fail_after(60):
                while not {json.loads(r.body)["id"] for r in receiver.requests} >= set(acknowledged):
                    await asyncio.sleep(0.1)
        finally:
            server.kill()
        print(f"{len(acknowledged)} acknowledged; exit 0 in {took:.2f} s; long poll answered in {poll_answered:.2f} s")
