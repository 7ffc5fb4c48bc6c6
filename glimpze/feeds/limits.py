"""Quotas: continuous token buckets per feed, and a failed-authentication limiter per client IP.

Buckets live in memory (one process per database) and are taken synchronously on the event loop,
so concurrent requests can never take more tokens than exist. Buckets measure time on the
clock's `monotonic()` reading (every `now` here is one), so a step of the wall clock neither
stops nor speeds their refill. A feed's bucket levels are written with each stored event and
loaded back on first use, so a restart neither resets nor loses the day's usage; across a restart
only wall time can tell how long it was, so that refill uses it (`FeedBuckets.load`).
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from glimpze.clock import Clock
from glimpze.config import Plan
from glimpze.errors import GlimpzeError, RateLimited

T = TypeVar("T")

AUTH_FAILURES_PER_MINUTE = 20
AUTH_LIMITER_MAX_CLIENTS = 100_000
THROTTLED_STORED_PER_MINUTE = 10


@dataclass(slots=True)
class Bucket:
    """Holds up to `capacity` tokens and refills continuously at `rate` tokens per second."""

    capacity: float
    rate: float
    tokens: float
    at: float

    @classmethod
    def full(cls, capacity: float, per_seconds: float, now: float) -> Bucket:
        return cls(capacity, capacity / per_seconds, capacity, now)

    def refill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now

    def take(self, now: float) -> bool:
        self.refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def seconds_until_token(self, now: float) -> float:
        self.refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def seconds_until_full(self, now: float) -> float:
        self.refill(now)
        return (self.capacity - self.tokens) / self.rate

    def resize(self, capacity: float, per_seconds: float, now: float) -> None:
        """A plan change: keep the tokens used so far, within the new capacity."""
        self.refill(now)
        used = self.capacity - self.tokens
        self.capacity, self.rate = capacity, capacity / per_seconds
        self.tokens = max(0.0, capacity - used)


class Usage(msgspec.Struct):
    """One bucket as the API shows it."""

    limit: int
    remaining: int
    reset_seconds: int


class FeedUsage(msgspec.Struct):
    minute: Usage
    day: Usage


@dataclass(slots=True)
class Decision:
    allowed: bool
    limit_name: str  # the bucket nearest exhaustion, or the one that refused
    limit: int
    remaining: int
    reset_seconds: int
    retry_after: int  # only meaningful when refused

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


@dataclass(slots=True)
class FeedBuckets:
    minute: Bucket
    day: Bucket
    plan: Plan
    throttled_window: float = 0.0  # start of the current minute of stored throttled events
    throttled_stored: int = 0
    throttled_dropped: int = 0  # refused and not stored, counted since the feed was loaded

    @classmethod
    def load(cls, plan: Plan, now: float, minute: float | None, day: float | None, at: float | None) -> FeedBuckets:
        """Buckets with the levels stored at `at` (None: full). `at` is on `now`'s timeline: the caller
        turns a stored wall time into it (now - wall seconds since), the one refill that wall time measures."""
        buckets = cls(Bucket.full(plan.events_per_minute, 60, now), Bucket.full(plan.events_per_day, 86400, now), plan)
        if at is not None and minute is not None and day is not None:
            buckets.minute.tokens = min(minute, buckets.minute.capacity)
            buckets.day.tokens = min(day, buckets.day.capacity)
            buckets.minute.at = buckets.day.at = min(at, now)
        return buckets

    def set_plan(self, plan: Plan, now: float) -> None:
        if plan != self.plan:
            self.minute.resize(plan.events_per_minute, 60, now)
            self.day.resize(plan.events_per_day, 86400, now)
            self.plan = plan

    def take(self, now: float) -> Decision:
        """Take one token from both buckets, or from neither."""
        self.minute.refill(now)
        self.day.refill(now)
        allowed = self.minute.tokens >= 1 and self.day.tokens >= 1
        if allowed:
            self.minute.tokens -= 1
            self.day.tokens -= 1
        return self.decision(now, allowed)

    def decision(self, now: float, allowed: bool = True) -> Decision:
        if allowed:
            # Headers describe the bucket closest to running out.
            name, bucket = min((("minute", self.minute), ("day", self.day)), key=lambda nb: nb[1].tokens)
            retry = 0.0
        else:
            waits = {"minute": self.minute.seconds_until_token(now), "day": self.day.seconds_until_token(now)}
            name = max(waits, key=lambda n: waits[n])
            bucket, retry = getattr(self, name), waits[name]
        return Decision(
            allowed,
            name,
            int(bucket.capacity),
            int(bucket.tokens),
            math.ceil(bucket.seconds_until_full(now)),
            max(1, math.ceil(retry)),
        )

    def store_throttled(self, now: float) -> bool:
        """Whether a refused event is stored (the first few each minute) or only counted."""
        if now - self.throttled_window >= 60:
            self.throttled_window, self.throttled_stored = now, 0
        if self.throttled_stored < THROTTLED_STORED_PER_MINUTE:
            self.throttled_stored += 1
            return True
        self.throttled_dropped += 1
        return False

    def usage(self, now: float) -> FeedUsage:
        def one(bucket: Bucket) -> Usage:
            return Usage(int(bucket.capacity), int(bucket.tokens), math.ceil(bucket.seconds_until_full(now)))

        self.minute.refill(now)
        self.day.refill(now)
        return FeedUsage(one(self.minute), one(self.day))


class AuthFailureLimiter:
    """At most AUTH_FAILURES_PER_MINUTE failed authentications per client address (monotonic time)."""

    def __init__(self, clock: Clock, per_minute: int = AUTH_FAILURES_PER_MINUTE) -> None:
        self.clock = clock
        self.per_minute = per_minute
        self._clients: OrderedDict[str, Bucket] = OrderedDict()

    def blocked(self, client: str) -> float:
        """Seconds the client must wait, or 0 when it may try."""
        bucket = self._clients.get(client)
        return 0.0 if bucket is None else bucket.seconds_until_token(self.clock.monotonic())

    def failed(self, client: str) -> None:
        now = self.clock.monotonic()
        bucket = self._clients.get(client)
        if bucket is None:
            bucket = self._clients[client] = Bucket.full(self.per_minute, 60, now)
            if len(self._clients) > AUTH_LIMITER_MAX_CLIENTS:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(client)
        bucket.take(now)

    async def guard(self, client: str, check: Callable[[], Awaitable[T]]) -> T:
        """Run a credential check for `client`: refused with 429 while it is blocked, and a
        401 or 404 from the check (a wrong secret, a guessed id) counts as a failure."""
        wait = self.blocked(client)
        if wait > 0:
            raise too_many_failures(wait)
        try:
            return await check()
        except GlimpzeError as exc:
            if exc.status in (401, 404):
                self.failed(client)
            raise

    def prune(self) -> None:
        """Forget clients whose bucket has refilled (called by the scheduler)."""
        now = self.clock.monotonic()
        for client in [c for c, b in self._clients.items() if b.seconds_until_full(now) == 0]:
            del self._clients[client]


def too_many_failures(wait: float) -> RateLimited:
    seconds = max(1, int(wait + 0.999))
    return RateLimited(
        f"Too many failed authentication attempts from this address; retry in {seconds} s.",
        headers={"Retry-After": str(seconds)},
        extra={"limit": "auth_failures"},
    )


def parse_networks(entries: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(entry, strict=False) for entry in entries]


def client_ip(
    peer: str | None,
    forwarded_for: str | None,
    trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> str:
    """The client's address: X-Forwarded-For read right to left, skipping trusted proxies.

    The header is believed only when the direct peer is itself a trusted proxy.
    """
    address = peer or "unknown"
    if not forwarded_for or not trusted or not _is_trusted(address, trusted):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        if not hop:
            continue
        if not _is_trusted(hop, trusted):
            return hop
        address = hop
    return address


def _is_trusted(address: str, trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in net for net in trusted)
