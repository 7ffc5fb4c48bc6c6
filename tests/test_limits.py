"""Plans and quotas: token buckets, throttled-event log, auth-failure limiter, retention, gating."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glimpze.clock import FakeClock, iso
from glimpze.config import Config, Plan, load
from glimpze.feeds.limits import Bucket, FeedBuckets, client_ip, parse_networks
from tests.conftest import Api, row_counts, running, write_locked
from tests.pg import query

pytestmark = pytest.mark.anyio

EVENT = {"schema_type": "counter", "content": {"title": "Jobs", "count": 1}}


def counter(n: int) -> dict[str, Any]:
    return {"schema_type": "counter", "content": {"title": "Jobs", "count": n}}


async def test_free_feed_burst_of_six_then_429_then_refill(api: Api, clock: FakeClock) -> None:
    feed = await api.feed("counter")
    for i in range(6):
        response = await api.ingest(feed, counter(i))
        assert response.status_code == 202
        assert response.headers["ratelimit-limit"] == "6"
        assert response.headers["ratelimit-remaining"] == str(5 - i)

    refused = await api.ingest(feed, counter(6))
    assert refused.status_code == 429
    problem = refused.json()
    assert problem["code"] == "rate_limited" and problem["limit"] == "minute"
    assert refused.headers["retry-after"] == "10"  # one token per 10 s on a 6/min plan
    assert refused.headers["ratelimit-remaining"] == "0"
    assert "6 events per minute" in problem["detail"]

    clock.advance(9.5)
    assert (await api.ingest(feed, counter(7))).status_code == 429
    assert (await api.ingest(feed, counter(7))).headers["retry-after"] == "1"
    clock.advance(0.5)
    assert (await api.ingest(feed, counter(8))).status_code == 202


async def test_day_limit_and_restart_keeps_the_day_count(tmp_path: Path, clock: FakeClock) -> None:
    config = load(_toml(tmp_path, ""), env={}, overrides={"data_dir": str(tmp_path / "data")})
    async with running(config, clock) as api:
        feed = await api.feed("counter")
        for i in range(60):
            assert (await api.ingest(feed, counter(i))).status_code == 202, i
            clock.advance(10)  # exactly the minute refill: only the day bucket drains

    # a new process on the same data: the day's usage is still there
    async with running(config, clock, key=api.key) as api:
        used = 0
        for i in range(60, 110):
            response = await api.ingest(feed, counter(i))
            if response.status_code == 429:
                break
            used += 1
            clock.advance(10)
        # 600 s passed in each run: the day bucket refilled 100 * 1200/86400 ≈ 1.4 events.
        assert used == 41, used
        assert response.json()["limit"] == "day"
        assert int(response.headers["retry-after"]) > 10
        usage = (await api.get(f"/v1/feeds/{feed['id']}")).json()["usage"]
        assert usage["day"]["limit"] == 100 and usage["day"]["remaining"] == 0
        clock.advance(int(response.headers["retry-after"]))
        assert (await api.ingest(feed, counter(200))).status_code == 202


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "glimpze.toml"
    path.write_text(text)
    return path


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 100),
    per=st.sampled_from([60.0, 86400.0]),
    gaps=st.lists(st.floats(0, 120, allow_nan=False), min_size=1, max_size=300),
)
def test_bucket_never_admits_more_than_capacity_plus_refill(capacity: int, per: float, gaps: list[float]) -> None:
    bucket = Bucket.full(capacity, per, 0.0)
    now = 0.0
    admitted = 0
    for gap in gaps:
        now += gap
        admitted += bucket.take(now)
        assert admitted <= capacity + now * capacity / per + 1e-9
        assert 0 <= bucket.tokens <= capacity


@settings(max_examples=100, deadline=None)
@given(arrivals=st.lists(st.floats(0, 600, allow_nan=False), min_size=1, max_size=200))
def test_bucket_admits_whenever_a_token_is_there(arrivals: list[float]) -> None:
    """The other side of the bound: a request is refused only when less than one token is left."""
    bucket = Bucket.full(6, 60, 0.0)
    for now in sorted(arrivals):
        before = min(6.0, bucket.tokens + (now - bucket.at) * bucket.rate)
        assert bucket.take(now) == (before >= 1)


plans = st.builds(
    Plan,
    events_per_minute=st.integers(1, 120),
    events_per_day=st.integers(1, 5000),
    history_days=st.just(7),
    custom_feeds=st.just(0),
)


@settings(max_examples=150, deadline=None)
@given(plan=plans, gaps=st.lists(st.floats(0, 3600, allow_nan=False), min_size=1, max_size=300))
def test_both_buckets_bound_what_a_feed_admits(plan: Plan, gaps: list[float]) -> None:
    """Over any arrival pattern a feed admits no more than either bucket allows, and the
    RateLimit headers never promise what is not there."""
    buckets = FeedBuckets.load(plan, 0.0, None, None, None)
    now, admitted = 0.0, 0
    for gap in gaps:
        now += gap
        decision = buckets.take(now)
        admitted += decision.allowed
        assert admitted <= plan.events_per_minute + now * plan.events_per_minute / 60 + 1e-6
        assert admitted <= plan.events_per_day + now * plan.events_per_day / 86400 + 1e-6
        assert 0 <= decision.remaining <= decision.limit
        assert decision.limit in (plan.events_per_minute, plan.events_per_day)


@settings(max_examples=150, deadline=None)
@given(plan=plans, burst=st.integers(1, 200), at=st.floats(0, 86400, allow_nan=False))
def test_retry_after_is_exactly_long_enough(plan: Plan, burst: int, at: float) -> None:
    """A refused client that waits `Retry-After` seconds gets in; one second less is still too early."""
    buckets = FeedBuckets.load(plan, at, None, None, None)
    for _ in range(burst):
        decision = buckets.take(at)
    if decision.allowed:
        return
    wait = decision.retry_after
    early = FeedBuckets.load(plan, at, buckets.minute.tokens, buckets.day.tokens, at)
    assert not early.take(at + wait - 1).allowed
    assert buckets.take(at + wait + 1e-6).allowed


@settings(max_examples=150, deadline=None)
@given(
    before=plans,
    after=plans,
    used=st.integers(0, 200),
    later=st.floats(0, 600, allow_nan=False),
)
def test_a_plan_change_keeps_what_was_used(before: Plan, after: Plan, used: int, later: float) -> None:
    """Moving a feed to another plan neither refunds the tokens it used nor goes below empty."""
    buckets = FeedBuckets.load(before, 0.0, None, None, None)
    taken = sum(buckets.take(0.0).allowed for _ in range(used))
    buckets.set_plan(after, later)
    for bucket, capacity, per in (
        (buckets.minute, after.events_per_minute, 60),
        (buckets.day, after.events_per_day, 86400),
    ):
        refilled = later * (before.events_per_minute / 60 if per == 60 else before.events_per_day / 86400)
        old_capacity = before.events_per_minute if per == 60 else before.events_per_day
        used_then = max(0.0, min(old_capacity, taken) - refilled)
        bucket.refill(later)  # an unchanged plan is left alone until the next take
        assert 0 <= bucket.tokens <= capacity
        assert math.isclose(bucket.tokens, max(0.0, capacity - used_then), abs_tol=1e-6)


async def test_ninety_concurrent_requests_on_a_pro_feed(api: Api, clock: FakeClock) -> None:
    feed = await api.feed("counter", plan="pro")

    async def one(i: int) -> int:
        clock.advance(0.01)  # time moves while they run: at most 0.9 s, under one refill
        return (await api.ingest(feed, counter(i))).status_code

    statuses = await asyncio.gather(*(one(i) for i in range(90)))
    accepted = statuses.count(202)
    elapsed = 0.9
    assert accepted <= 60 + math.floor(elapsed * 60 / 60)
    assert accepted >= 60
    assert statuses.count(429) == 90 - accepted


async def test_throttled_events_are_logged_but_change_nothing(api: Api) -> None:
    feed = await api.feed("counter")
    accepted = [(await api.ingest(feed, counter(i))).json()["id"] for i in range(6)]
    refused = await api.ingest(feed, counter(99))
    assert refused.status_code == 429
    event_id = refused.json()["event_id"]

    log = (await api.get(f"/v1/feeds/{feed['id']}/events")).json()["data"]
    assert log[0]["id"] == event_id
    assert log[0]["status"] == "throttled"
    assert log[0]["widget_updated"] is False and log[0]["push"] == "none"
    assert log[0]["content"]["count"] == 99
    widget = (await api.get(f"/v1/feeds/{feed['id']}/widget")).json()
    assert widget["event"]["id"] == accepted[-1]
    throttled = (await api.get(f"/v1/feeds/{feed['id']}/events?status=throttled")).json()["data"]
    assert [e["id"] for e in throttled] == [event_id]


async def test_a_flood_of_throttled_requests_adds_a_bounded_number_of_rows(api: Api, clock: FakeClock) -> None:
    feed = await api.feed("counter")
    for i in range(6):
        await api.ingest(feed, counter(i))
    db = api.glimpze.config.db_path
    before = row_counts(db)["events"]
    statuses: list[int] = []
    for chunk in range(20):  # 10,000 requests, 500 at a time; fake time barely moves
        clock.advance(0.001)
        responses = await asyncio.gather(*(api.ingest(feed, counter(chunk * 500 + i)) for i in range(500)))
        statuses += [r.status_code for r in responses]
    assert set(statuses) == {429}
    await api.glimpze.flush()
    assert row_counts(db)["events"] - before == 10  # THROTTLED_STORED_PER_MINUTE
    fetched = (await api.get(f"/v1/feeds/{feed['id']}")).json()
    assert fetched["throttled_dropped"] == 9_990
    log = (await api.get(f"/v1/feeds/{feed['id']}/events")).json()
    assert log["throttled_dropped"] == 9_990


async def test_dropped_count_is_never_lost_or_shown_low_during_a_flush(
    config: Config, api: Api, clock: FakeClock
) -> None:
    feed = await api.feed("counter")
    for i in range(116):  # 6 accepted, 10 throttled and stored, 100 throttled and only counted
        await api.ingest(feed, counter(i))

    async def shown() -> int:
        return (await api.get(f"/v1/feeds/{feed['id']}")).json()["throttled_dropped"]

    assert await shown() == 100
    with write_locked(config.db_path):  # the flush's write waits: the flush stays in progress
        first = asyncio.create_task(api.glimpze.feeds.flush_dropped())
        await asyncio.sleep(0.05)
        assert not first.done()
        assert await shown() == 100  # mid-flush: not 0
        for i in range(5):  # counted while the flush is in progress
            assert (await api.ingest(feed, counter(i))).status_code == 429
        assert await shown() == 105
        second = asyncio.create_task(api.glimpze.feeds.flush_dropped())  # waits for its own write
        await asyncio.sleep(0.05)
        assert not second.done()
    await asyncio.gather(first, second)
    assert await shown() == 105

    def stored() -> int:
        value = query(config.db_path, "SELECT throttled_dropped FROM feeds WHERE id = ?", (feed["id"],))[0][0]
        return int(value)  # type: ignore[call-overload]

    assert stored() == 105  # the second flush wrote what the first one could not have known
    await api.glimpze.feeds.flush_dropped()  # nothing new: nothing to write
    assert stored() == 105 and await shown() == 105


async def test_a_backward_clock_step_does_not_stop_refill(api: Api, clock: FakeClock) -> None:
    feed = await api.feed("counter")  # free plan: 6 a minute, one token back every 10 s
    for i in range(6):
        assert (await api.ingest(feed, counter(i))).status_code == 202
    assert (await api.ingest(feed, counter(6))).headers["retry-after"] == "10"

    clock.step_wall(-3600)  # NTP or an operator sets the wall clock back an hour
    refused = await api.ingest(feed, counter(7))
    assert refused.status_code == 429 and refused.headers["retry-after"] == "10"
    clock.advance(10)
    accepted = await api.ingest(feed, counter(8))
    assert accepted.status_code == 202, accepted.headers
    events = (await api.get(f"/v1/feeds/{feed['id']}/events?limit=1")).json()["data"]
    assert events[0]["received_at"] == iso(clock.now())  # stored times stay wall-clock

    # the failed-authentication limiter forgets on the same clock
    wrong = {"Authorization": "Bearer gzw_" + "x" * 40}
    for _ in range(21):
        last = await api.client.post(f"/ingest/{feed['id']}", json=EVENT, headers=wrong)
    assert last.status_code == 429
    clock.step_wall(-3600)
    clock.advance(3)
    clock.advance(10)  # and the feed's own bucket has a token again
    assert (await api.ingest(feed, counter(9))).status_code == 202


async def test_idempotent_replays_take_no_tokens(api: Api) -> None:
    feed = await api.feed("counter")
    for _ in range(10):
        response = await api.ingest(feed, EVENT, headers={"Idempotency-Key": "same"})
        assert response.status_code == 202
    assert response.headers["ratelimit-remaining"] == "5"


async def test_invalid_events_take_no_tokens(api: Api) -> None:
    feed = await api.feed("counter")
    for _ in range(10):
        assert (await api.ingest(feed, {"schema_type": "counter", "content": {}})).status_code == 422
    assert (await api.ingest(feed, EVENT)).headers["ratelimit-remaining"] == "5"


async def test_failed_authentication_is_limited_per_client(api: Api, clock: FakeClock) -> None:
    feed = await api.feed("counter")
    wrong = {"Authorization": "Bearer gzw_" + "x" * 40}
    for _ in range(20):
        response = await api.client.post(f"/ingest/{feed['id']}", json=EVENT, headers=wrong)
        assert response.status_code == 401
    blocked = await api.client.post(f"/ingest/{feed['id']}", json=EVENT, headers=wrong)
    assert blocked.status_code == 429 and blocked.json()["code"] == "rate_limited"
    assert int(blocked.headers["retry-after"]) >= 1
    # even the right key waits: the limiter answers before any key lookup
    assert (await api.ingest(feed, EVENT)).status_code == 429
    assert (await api.client.get("/v1/feeds", headers={"Authorization": "Bearer gzp_nope"})).status_code == 429
    clock.advance(3)
    assert (await api.ingest(feed, EVENT)).status_code == 202


async def test_forwarded_for_is_ignored_from_untrusted_peers(api: Api) -> None:
    feed = await api.feed("counter")
    for i in range(25):
        # a client rotating X-Forwarded-For must not escape the limiter
        headers = {"Authorization": "Bearer gzw_wrong", "X-Forwarded-For": f"203.0.113.{i}"}
        last = await api.client.post(f"/ingest/{feed['id']}", json=EVENT, headers=headers)
    assert last.status_code == 429


def test_client_ip_reads_forwarded_for_right_to_left() -> None:
    trusted = parse_networks(["127.0.0.1", "10.0.0.0/8"])
    assert client_ip("127.0.0.1", "198.51.100.7, 10.0.0.2", trusted) == "198.51.100.7"
    assert client_ip("127.0.0.1", "6.6.6.6, 198.51.100.7, 10.0.0.2", trusted) == "198.51.100.7"
    assert client_ip("198.51.100.9", "6.6.6.6", trusted) == "198.51.100.9"  # untrusted peer
    assert client_ip("127.0.0.1", None, trusted) == "127.0.0.1"
    assert client_ip("127.0.0.1", "10.0.0.3, 10.0.0.2", trusted) == "10.0.0.3"  # all trusted
    assert client_ip("127.0.0.1", "6.6.6.6", []) == "127.0.0.1"  # no trusted proxies configured


async def test_custom_feeds_are_gated_by_plan(api: Api) -> None:
    refused = await api.post("/v1/feeds", json={"name": "img", "schema_type": "custom"})
    assert refused.status_code == 403
    assert refused.json()["code"] == "plan_forbids" and "free" in refused.json()["detail"]
    first = await api.post("/v1/feeds", json={"name": "img", "schema_type": "custom", "plan": "pro"})
    assert first.status_code == 201
    second = await api.post("/v1/feeds", json={"name": "img2", "schema_type": "custom", "plan": "power"})
    assert second.status_code == 403 and "already has 1" in second.json()["detail"]
    downgrade = await api.patch(f"/v1/feeds/{first.json()['id']}", json={"plan": "free"})
    assert downgrade.status_code == 403


async def test_unknown_plan_is_422(api: Api) -> None:
    response = await api.post("/v1/feeds", json={"name": "x", "schema_type": "counter", "plan": "platinum"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "$.plan"


async def test_plan_change_applies_new_limits(api: Api) -> None:
    feed = await api.feed("counter")
    for i in range(6):
        await api.ingest(feed, counter(i))
    assert (await api.ingest(feed, EVENT)).status_code == 429
    await api.patch(f"/v1/feeds/{feed['id']}", json={"plan": "pro"})
    response = await api.ingest(feed, EVENT)
    assert response.status_code == 202
    assert response.headers["ratelimit-limit"] == "60"


async def test_operator_defined_plans(tmp_path: Path, clock: FakeClock) -> None:
    config: Config = load(
        _toml(
            tmp_path, "[plans.tiny]\nevents_per_minute = 2\nevents_per_day = 5\nhistory_days = 1\ncustom_feeds = 0\n"
        ),
        env={},
        overrides={"data_dir": str(tmp_path / "data")},
    )
    async with running(config, clock) as api:
        feed = await api.feed("counter", plan="tiny")
        assert [(await api.ingest(feed, counter(i))).status_code for i in range(3)] == [202, 202, 429]


async def test_retention_keeps_history_days_and_every_widget_state(api: Api, clock: FakeClock) -> None:
    free = await api.feed("counter")  # 7 days
    power = await api.feed("counter", plan="power")  # 45 days
    quiet = await api.feed("counter")  # its only event is its widget state
    old_free = [(await api.ingest(free, counter(i))).json()["id"] for i in range(3)]
    old_power = (await api.ingest(power, counter(1))).json()["id"]
    widget_only = (await api.ingest(quiet, counter(1))).json()["id"]
    clock.advance(8 * 86400)
    fresh = (await api.ingest(free, counter(9))).json()["id"]

    purged = await api.glimpze.retention.purge_expired(clock.now(), batch=2)

    assert purged == 3
    assert [e["id"] for e in (await api.get(f"/v1/feeds/{free['id']}/events")).json()["data"]] == [fresh]
    assert [e["id"] for e in (await api.get(f"/v1/feeds/{power['id']}/events")).json()["data"]] == [old_power]
    assert (await api.get(f"/v1/feeds/{quiet['id']}/widget")).json()["event"]["id"] == widget_only
    assert set(old_free).isdisjoint(e["id"] for e in (await api.get(f"/v1/feeds/{free['id']}/events")).json()["data"])

    clock.advance(40 * 86400)
    await api.glimpze.retention.purge_expired(clock.now())
    # the power feed's only event is older than 45 days now, but it is the widget state
    assert (await api.get(f"/v1/feeds/{power['id']}/widget")).json()["event"]["id"] == old_power
