"""The store under sustained writes: the WAL stays bounded while writes go on, and empties when they stop."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from glimpze.store.database import Database, wal_path

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
WAL_BOUND = 64 * MIB  # issue 15: at any moment of sustained load
IDLE_BOUND = 16 * MIB  # issue 15: within 15 s of the load's end
WRITERS, ROWS_EACH = 8, 400
ROW = os.urandom(32 * 1024)  # 8 writers x 400 rows x 32 KiB: 100 MiB through the log


async def test_wal_stays_bounded_under_sustained_writes(tmp_path: Path) -> None:
    db = Database(tmp_path / "glimpze.db", wal_idle_seconds=0.2)  # a fast idle trigger
    await db.open()
    try:
        await db.execute("CREATE TABLE load (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        wal = wal_path(db.path)
        sizes: list[int] = []
        db.writer.after_commit.append(lambda: sizes.append(wal.stat().st_size))  # the log only grows in a commit

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO load (data) VALUES (?)", (ROW,))

        async def writer() -> None:
            for _ in range(ROWS_EACH):
                await db.write(insert)

        await asyncio.gather(*(writer() for _ in range(WRITERS)))
        assert WRITERS * ROWS_EACH * len(ROW) > WAL_BOUND * 1.5  # a log never started over would pass the bound
        assert max(sizes) <= WAL_BOUND, f"the WAL reached {max(sizes) / MIB:.0f} MiB"
        assert await db.fetch_value("SELECT count(*) FROM load") == WRITERS * ROWS_EACH

        # Idle: the writer empties the log (here 0.2 s after the last commit).
        async with asyncio.timeout(15):
            while wal.stat().st_size >= IDLE_BOUND:
                await asyncio.sleep(0.05)
        assert await db.fetch_value("PRAGMA integrity_check") == "ok"
    finally:
        await db.close()
