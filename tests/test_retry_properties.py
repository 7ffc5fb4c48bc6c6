"""Property tests of the delivery retry schedule (DESIGN §4): waits of 5 s … 24 h with ±10 % jitter,
`Retry-After` stretching a wait up to 24 h, dead after the 10th failed attempt, delivered on any 2xx.

The token bucket's properties are in tests/test_limits.py."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glimpze.clock import FakeClock, parse_iso
from glimpze.config import load
from glimpze.delivery.dispatcher import JITTER, MAX_ATTEMPTS, MAX_RETRY_AFTER, RETRY_DELAYS, retry_delay
from tests.conftest import running
from tests.fake_network import FakeNetwork

jitters = st.floats(1 - JITTER, 1 + JITTER)
retry_afters = st.none() | st.floats(0, 10 * 86400, allow_nan=False)


@given(attempt=st.integers(1, MAX_ATTEMPTS - 1), jitter=jitters, retry_after=retry_afters)
def test_every_wait_is_the_schedule_within_jitter_or_a_capped_retry_after(
    attempt: int, jitter: float, retry_after: float | None
) -> None:
    delay = retry_delay(attempt, jitter, retry_after)
    base = RETRY_DELAYS[attempt - 1]
    assert delay is not None
    assert base * (1 - JITTER) <= delay  # Retry-After never shortens a wait
    if retry_after is None:
        assert delay <= base * (1 + JITTER)
    else:
        assert delay <= max(base * (1 + JITTER), MAX_RETRY_AFTER)
        assert delay >= min(retry_after, MAX_RETRY_AFTER)


@given(attempt=st.integers(MAX_ATTEMPTS, 1000), jitter=jitters, retry_after=retry_afters)
def test_the_tenth_failure_is_the_last(attempt: int, jitter: float, retry_after: float | None) -> None:
    assert MAX_ATTEMPTS == 10
    assert retry_delay(attempt, jitter, retry_after) is None


def test_the_schedule_spans_about_three_days() -> None:
    assert list(RETRY_DELAYS) == [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    assert sum(RETRY_DELAYS) * (1 - JITTER) > 2.8 * 86400 and sum(RETRY_DELAYS) * (1 + JITTER) < 3.5 * 86400


# One answer of the receiver: a status code (with a Retry-After) or a connection that fails.
answers = st.one_of(
    st.tuples(st.sampled_from([500, 502, 404, 408]), st.none()),
    st.tuples(st.sampled_from([429, 503]), st.none() | st.integers(0, 3 * 86400)),
    st.tuples(st.just(0), st.none()),  # 0: the connection is refused
    st.tuples(st.sampled_from([200, 202, 204]), st.none()),
    st.tuples(st.just(410), st.none()),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(answers, min_size=1, max_size=12))
def test_the_dispatcher_follows_the_schedule_for_any_sequence_of_answers(
    script: list[tuple[int, int | None]],
) -> None:
    """Drive the real dispatcher against a receiver answering `script` (then 500s), moving a fake
    clock to each due time: every wait is within the schedule, nothing is sent early, and the
    delivery ends delivered at the first 2xx, dead at 410 or after the 10th failure."""
    anyio.run(_follow_schedule, script, backend="asyncio")


async def _follow_schedule(script: list[tuple[int, int | None]]) -> None:
    answered: list[tuple[int, int | None]] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        status, retry_after = script[len(answered)] if len(answered) < len(script) else (500, None)
        answered.append((status, retry_after))
        if status == 0:
            raise httpx.ConnectError("refused", request=request)
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return httpx.Response(status, headers=headers)

    clock = FakeClock()
    with tempfile.TemporaryDirectory() as tmp:
        config_file = Path(tmp) / "glimpze.toml"
        config_file.write_text("")
        config = load(config_file, env={}, overrides={"data_dir": str(Path(tmp) / "data")})
        async with running(config, clock, network=FakeNetwork(receiver)) as api:
            await api.glimpze.dispatcher.stop_runner()
            hook = await api.post("/v1/webhooks", json={"url": "https://hooks.example.com/x", "events": ["feed.event"]})
            feed = await api.feed("counter")
            await api.ingest(feed, {"schema_type": "counter", "content": {"title": "n", "count": 1}})
            deliveries = f"/v1/webhooks/{hook.json()['id']}/deliveries"
            while True:
                assert await api.glimpze.dispatcher.deliver_due(clock.now()) == 1
                [delivery] = (await api.get(deliveries)).json()["data"]
                status, retry_after = answered[-1]
                attempt = len(answered)
                assert delivery["attempts"] == attempt
                if 200 <= status < 300:
                    assert delivery["status"] == "delivered"
                    break
                if status == 410 or attempt == MAX_ATTEMPTS:
                    assert delivery["status"] == "dead" and delivery["next_attempt_at"] is None
                    break
                assert delivery["status"] == "failed"
                wait = parse_iso(delivery["next_attempt_at"]) - clock.now()
                _check_wait(attempt, wait, retry_after if status in (429, 503) else None)
                clock.advance(wait - 0.01)
                assert await api.glimpze.dispatcher.deliver_due(clock.now()) == 0, "sent before it was due"
                clock.advance(0.02)
            clock.advance(30 * 86400)  # a finished delivery is never sent again
            assert await api.glimpze.dispatcher.deliver_due(clock.now()) == 0
    assert len(answered) <= MAX_ATTEMPTS


def _check_wait(attempt: int, wait: float, retry_after: int | None) -> None:
    base = RETRY_DELAYS[attempt - 1]
    slack = 0.002  # times are stored as REAL seconds and read back through ISO-8601 milliseconds
    low = base * (1 - JITTER)
    high = base * (1 + JITTER)
    if retry_after is not None:
        low = max(low, min(retry_after, MAX_RETRY_AFTER))
        high = max(high, min(retry_after, MAX_RETRY_AFTER))
    assert low - slack <= wait <= high + slack, (attempt, wait, retry_after)
