"""`Glimpze`: the services the server and the CLI share, built from a Config, a clock and a store."""

from __future__ import annotations

import logging

import httpx

from glimpze.clock import Clock, SystemClock
from glimpze.config import Config
from glimpze.db import Database
from glimpze.feeds import Feeds
from glimpze.idempotency import Idempotency
from glimpze.ingest import Ingest
from glimpze.keys import Keys
from glimpze.limits import AuthFailureLimiter, parse_networks
from glimpze.retention import Retention

log = logging.getLogger("glimpze")


class Glimpze:
    """One instance per process: open() before use, close() at the end."""

    def __init__(
        self, config: Config, *, clock: Clock | None = None, http: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.http_transport = http  # outgoing calls go through this when given (tests)
        self.db = Database(config.db_path, synchronous=config.synchronous)
        self.trusted_proxies = parse_networks(config.trusted_proxies)
        self.auth_failures = AuthFailureLimiter()
        self.keys = Keys(self.db, self.clock)
        self.feeds = Feeds(self.db, config, self.clock)
        self.idempotency = Idempotency(self.db, self.clock)
        self.ingest = Ingest(self.db, self.feeds, self.idempotency, self.clock, self.auth_failures)
        self.retention = Retention(self.db, config)

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        try:
            await self.flush()
        finally:
            await self.db.close()

    async def flush(self) -> None:
        """Write the counters kept in memory (key use, dropped throttled events)."""
        await self.keys.flush_last_used()
        await self.feeds.flush_dropped()

    async def __aenter__(self) -> Glimpze:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
