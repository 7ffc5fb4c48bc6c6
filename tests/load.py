"""Load for tests against a real server: setup helpers and concurrent ingest senders that record
every acknowledged event (a 202 means committed, so each one must be found later)."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import httpx

ALLOW_LOCAL_TARGETS = '\n[webhooks]\nallow_targets = ["127.0.0.1"]\n'


async def create_feed(
    client: httpx.AsyncClient, admin: dict[str, str], schema_type: str = "counter", name: str = "load"
) -> dict[str, Any]:
    response = await client.post("/v1/feeds", json={"name": name, "schema_type": schema_type}, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


async def subscribe(
    client: httpx.AsyncClient, admin: dict[str, str], url: str, events: list[str] | None = None
) -> dict[str, Any]:
    response = await client.post("/v1/webhooks", json={"url": url, "events": events or ["feed.event"]}, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


class IngestLoad:
    """`senders` concurrent clients posting counter events to `feed` until stopped.

    `acknowledged` holds the id of every 202. A connection error ends a sender, unless
    `through_restarts`: then it waits a little and carries on (the server is being restarted).
    """

    def __init__(
        self, base_url: str, feed: dict[str, Any], *, senders: int = 8, through_restarts: bool = False
    ) -> None:
        self.base_url = base_url
        self.feed = feed
        self.senders = senders
        self.through_restarts = through_restarts
        self.acknowledged: list[str] = []
        self.refused = 0  # answers other than 202 (none are expected)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> IngestLoad:
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=10)
        self._tasks = [asyncio.create_task(self._send(n)) for n in range(self.senders)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def until(self, count: int, timeout: float = 60) -> None:
        """Wait until `count` events in all were acknowledged."""
        with anyio.fail_after(timeout):
            while len(self.acknowledged) < count:
                await asyncio.sleep(0.01)

    async def _send(self, n: int) -> None:
        assert self._client is not None
        path = f"/ingest/{self.feed['id']}"
        write = {"Authorization": f"Bearer {self.feed['write_key']}"}
        i = 0
        while not self._stop.is_set():
            body = {"schema_type": "counter", "content": {"title": f"sender {n}", "count": i}}
            i += 1
            try:
                response = await self._client.post(path, json=body, headers=write)
            except httpx.HTTPError:
                if not self.through_restarts:
                    return
                await asyncio.sleep(0.05)
                continue
            if response.status_code == 202:
                self.acknowledged.append(response.json()["id"])
            else:
                self.refused += 1
