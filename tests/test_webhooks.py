"""Signed webhooks: API, signatures, retry schedule, dead-letter, replay, disabling, ordering, long polling."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from glimpze.clock import FakeClock, iso
from glimpze.config import load
from glimpze.delivery.dispatcher import RETRY_DELAYS
from tests.conftest import Api, running
from tests.receiver import Answer, Receiver

pytestmark = pytest.mark.anyio

EVENT = {"schema_type": "counter", "content": {"title": "Jobs", "count": 1}}


@pytest.fixture
def clock() -> FakeClock:
    # Real wall-clock time: the standardwebhooks verifier only accepts timestamps within 5 minutes.
    return FakeClock(float(int(time.time())))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
async def live(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Api]:
    """The app with its dispatcher running in the background, as in the server."""
    path = tmp_path / "glimpze.toml"
    path.write_text(
        'default_plan = "big"\n[webhooks]\nallow_targets = ["127.0.0.1"]\n'
        "[plans.big]\nevents_per_minute = 100000\nevents_per_day = 1000000\nhistory_days = 30\n"
        "custom_feeds = 1\n"
    )
    config = load(path, env={}, overrides={"data_dir": str(tmp_path / "data")})
    async with running(config, clock) as api:
        yield api


@pytest.fixture
async def api(live: Api) -> Api:
    """The app with its dispatcher driven by the test: `await deliver(api, clock)`."""
    await live.glimpze.dispatcher.stop_runner()
    return live


async def webhook(api: Api, url: str, **fields: Any) -> dict[str, Any]:
    response = await api.post("/v1/webhooks", json={"url": url, "events": ["*"], **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def deliver(api: Api, clock: FakeClock) -> int:
    return await api.glimpze.dispatcher.deliver_due(clock.now())


def glimpze_signature_ok(secret: str, header: str, body: bytes) -> bool:
    """Seed 003's verifier, as a receiver would write it."""
    t_part, *sig_parts = header.split(",")
    t = int(t_part.split("=")[1])
    if abs(time.time() - t) > 300:
        return False
    expected = hmac.new(secret.encode(), f"{t}.{body.decode()}".encode(), hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, p.split("=")[1]) for p in sig_parts)


async def test_webhook_crud_and_secret(api: Api, receiver: Receiver) -> None:
    created = await webhook(
        api, receiver.url, events=["feed.event", "session.closed"], description="n8n", headers={"X-Token": "abc"}
    )
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["feed.event", "session.closed"]
    assert created["timeout_seconds"] == 20
    got = (await api.get(f"/v1/webhooks/{created['id']}")).json()
    assert "secret" not in got and got["headers"] == {"X-Token": "abc"}
    assert (await api.get(f"/v1/webhooks/{created['id']}/secret")).json()["secret"] == created["secret"]
    listed = (await api.get("/v1/webhooks")).json()["data"]
    assert [w["id"] for w in listed] == [created["id"]] and "secret" not in listed[0]
    patched = (await api.patch(f"/v1/webhooks/{created['id']}", json={"active": False, "timeout_seconds": 5})).json()
    assert patched["active"] is False and patched["timeout_seconds"] == 5
    assert (await api.delete(f"/v1/webhooks/{created['id']}")).status_code == 204
    assert (await api.get(f"/v1/webhooks/{created['id']}")).status_code == 404


@pytest.mark.parametrize(
    "body,path,code",
    [
        ({"url": "ftp://x.example/", "events": ["*"]}, "$.url", "validation_failed"),
        ({"url": "https://user:pw@x.example/", "events": ["*"]}, "$.url", "validation_failed"),
        ({"url": "http://10.0.0.1/hook", "events": ["*"]}, "$.url", "target_not_allowed"),
        ({"url": "http://169.254.169.254/latest", "events": ["*"]}, "$.url", "target_not_allowed"),
        ({"url": "http://2852039166/latest", "events": ["*"]}, "$.url", "target_not_allowed"),  # 169.254.169.254
        ({"url": "http://[::1/hook", "events": ["*"]}, "$.url", "validation_failed"),
        ({"url": "https://x.example/", "events": []}, "$.events", "validation_failed"),
        ({"url": "https://x.example/", "events": ["feed.evnt"]}, "$.events[0]", "validation_failed"),
        (
            {"url": "https://x.example/", "events": ["*"], "headers": {"X-Glimpze-Event": "x"}},
            "$.headers['X-Glimpze-Event']",
            "validation_failed",
        ),
        (
            {"url": "https://x.example/", "events": ["*"], "headers": {"X-A": "a\r\nb"}},
            "$.headers['X-A']",
            "validation_failed",
        ),
        (
            {"url": "https://x.example/", "events": ["*"], "timeout_seconds": 600},
            "$.timeout_seconds",
            "validation_failed",
        ),
        ({"url": "https://x.example/", "events": ["*"], "secret": "mine"}, "$.secret", "validation_failed"),
    ],
)
async def test_webhook_validation(api: Api, body: dict[str, Any], path: str, code: str) -> None:
    response = await api.post("/v1/webhooks", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code
    assert response.json()["errors"][0]["path"] == path
    assert (await api.get("/v1/webhooks")).json()["data"] == []


async def test_refused_target_error_says_how_to_allow_it(api: Api) -> None:
    response = await api.post("/v1/webhooks", json={"url": "http://192.168.1.20:5678/webhook/x", "events": ["*"]})
    detail = response.json()["detail"]
    assert "allow_targets" in detail and "192.168.1.20:5678" in detail


async def test_every_delivery_verifies_with_both_schemes(api: Api, clock: FakeClock, receiver: Receiver) -> None:
    hook = await webhook(api, receiver.url, headers={"X-Source": "glimpze-test"})
    feed = await api.feed("counter")
    ids = [(await api.ingest(feed, {**EVENT, "content": {"title": "x", "count": i}})).json()["id"] for i in range(3)]
    await deliver(api, clock)
    await receiver.wait_for(3)

    verifier = StandardWebhook(hook["secret"])
    seen = []
    for request in receiver.requests:
        payload = verifier.verify(request.body, request.headers)
        assert glimpze_signature_ok(hook["secret"], request.headers["x-glimpze-signature"], request.body)
        assert request.headers["x-glimpze-event"] == "feed.event"
        assert request.headers["x-glimpze-delivery"] == request.headers["webhook-id"]
        assert request.headers["x-glimpze-attempt"] == "1"
        assert request.headers["x-source"] == "glimpze-test"
        assert request.headers["content-type"] == "application/json"
        assert list(payload)[:3] == ["id", "event", "occurred_at"]
        assert payload["event"] == "feed.event" and payload["feed_id"] == feed["id"]
        assert payload["content"]["title"] == "x" and payload["intent"] == {"update_widget": True, "send_push": False}
        seen.append(payload["id"])
    assert sorted(seen) == sorted(ids)  # a feed.event's id is the ingested event's id

    request = receiver.requests[0]
    tampered = [
        (request.body.replace(b'"x"', b'"y"'), request.headers),
        (request.body, {**request.headers, "webhook-id": "dlv_other"}),
        (request.body, {**request.headers, "webhook-timestamp": str(int(request.headers["webhook-timestamp"]) + 1)}),
    ]
    for body, headers in tampered:
        with pytest.raises(WebhookVerificationError):
            verifier.verify(body, headers)
    assert not glimpze_signature_ok(hook["secret"], request.headers["x-glimpze-signature"], tampered[0][0])
    later = request.headers["x-glimpze-signature"].replace("t=", "t=1", 1)
    assert not glimpze_signature_ok(hook["secret"], later, request.body)


async def test_retry_schedule_dead_letter_and_replay(api: Api, clock: FakeClock, receiver: Receiver) -> None:
    hook = await webhook(api, receiver.url, events=["feed.event"])
    receiver.default = Answer(500, body=b"down")
    feed = await api.feed("counter")
    await api.ingest(feed, EVENT)
    start = clock.now()
    attempt_times = []
    for attempt in range(1, 11):
        assert await deliver(api, clock) == 1, attempt
        attempt_times.append(clock.now())
        [delivery] = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["data"]
        assert delivery["attempts"] == attempt
        if attempt < 10:
            assert delivery["status"] == "failed"
            due = _seconds(delivery["next_attempt_at"]) - clock.now()
            expected = RETRY_DELAYS[attempt - 1]
            assert expected * 0.9 - 0.01 <= due <= expected * 1.1 + 0.01, (attempt, due)
            clock.advance(due - 1)
            assert await deliver(api, clock) == 0  # not yet due
            clock.advance(1.01)
    assert delivery["status"] == "dead" and delivery["next_attempt_at"] is None
    assert len(receiver.requests) == 10
    assert 2.9 * 86400 < attempt_times[-1] - start < 3.5 * 86400  # about three days
    detail = (await api.get(f"/v1/deliveries/{delivery['id']}")).json()
    assert [a["attempt"] for a in detail["attempt_log"]] == list(range(1, 11))
    assert detail["attempt_log"][0]["status_code"] == 500 and detail["attempt_log"][0]["response"] == "down"
    assert detail["attempt_log"][0]["latency_ms"] >= 0 and detail["last_error"] == "HTTP 500"

    receiver.default = Answer(204)
    replayed = await api.post(f"/v1/deliveries/{delivery['id']}/replay")
    assert replayed.status_code == 200 and replayed.json()["status"] == "pending"
    assert await deliver(api, clock) == 1
    after = (await api.get(f"/v1/deliveries/{delivery['id']}")).json()
    assert after["status"] == "delivered" and after["attempts"] == 11
    last = receiver.requests[-1]
    assert last.headers["webhook-id"] == delivery["id"]  # stable across retries and replays
    assert int(last.headers["webhook-timestamp"]) == int(clock.now())  # re-signed with a fresh timestamp
    assert last.headers["x-glimpze-attempt"] == "11"


async def test_a_backward_clock_step_does_not_delay_a_retry(api: Api, clock: FakeClock, receiver: Receiver) -> None:
    hook = await webhook(api, receiver.url, events=["feed.event"])
    receiver.script([Answer(500), Answer(500)])
    await api.ingest(await api.feed("counter"), EVENT)
    dispatcher = api.glimpze.dispatcher
    assert await dispatcher.deliver_due() == 1  # fails: the retry is planned 5 s (±10 %) later
    attempted = [iso(clock.now())]

    clock.step_wall(-3600)  # NTP or an operator sets the wall clock back an hour
    clock.advance(4)
    assert await dispatcher.deliver_due() == 0  # not yet
    clock.advance(1.6)
    assert await dispatcher.deliver_due() == 1  # on time, not an hour late; fails again: 300 s (±10 %)
    attempted.append(iso(clock.now()))
    clock.advance(270 - 0.1)
    assert await dispatcher.deliver_due() == 0
    clock.advance(60.2)
    assert await dispatcher.deliver_due() == 1  # a retry planned after the step is on time too
    attempted.append(iso(clock.now()))
    [delivery] = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["data"]
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3
    # the attempts are stamped with the wall clock, stepped back as it was
    log = (await api.get(f"/v1/deliveries/{delivery['id']}")).json()["attempt_log"]
    assert [a["at"] for a in log] == attempted


def _seconds(text: str) -> float:
    from glimpze.clock import parse_iso

    return parse_iso(text)


async def test_retry_after_stretches_the_wait(api: Api, clock: FakeClock, receiver: Receiver) -> None:
    hook = await webhook(api, receiver.url)
    receiver.script([Answer(429, {"Retry-After": "120"}), Answer(503, {"Retry-After": "999999"})])
    await api.ingest(await api.feed("counter"), EVENT)
    await deliver(api, clock)
    [delivery] = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["data"]
    assert 119 < _seconds(delivery["next_attempt_at"]) - clock.now() <= 120.01
    clock.advance(120)
    await deliver(api, clock)
    [delivery] = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["data"]
    assert abs(_seconds(delivery["next_attempt_at"]) - clock.now() - 86400) < 1  # capped at 24 h


@pytest.mark.parametrize("answer", [Answer(410), Answer(200, {"webhook-delivery": "disable"})])
async def test_gone_disables_the_webhook(api: Api, clock: FakeClock, receiver: Receiver, answer: Answer) -> None:
    hook = await webhook(api, receiver.url, events=["feed.event"])
    watcher = await webhook(api, f"{receiver.url}/watch", events=["webhook.disabled"])
    receiver.script([answer])
    feed = await api.feed("counter")
    await api.ingest(feed, EVENT)
    await deliver(api, clock)
    got = (await api.get(f"/v1/webhooks/{hook['id']}")).json()
    assert got["active"] is False and got["disabled_reason"]
    [delivery] = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["data"]
    assert delivery["status"] == ("dead" if answer.status == 410 else "delivered")

    await api.ingest(feed, EVENT)  # inactive: nothing is queued for it
    await deliver(api, clock)
    assert len((await api.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["data"]) == 1
    [notice] = [r for r in receiver.requests if r.path == "/hook/watch"]
    disabled = json.loads(notice.body)
    assert disabled["event"] == "webhook.disabled" and disabled["webhook_id"] == hook["id"]
    assert watcher["id"] != hook["id"]

    # re-enabling resumes; a replay sends the first one again
    await api.patch(f"/v1/webhooks/{hook['id']}", json={"active": True})
    assert (await api.post(f"/v1/webhooks/{hook['id']}/replay", json={"status": "all"})).json() == {"replayed": 1}
    await deliver(api, clock)
    [delivery] = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["data"]
    assert delivery["status"] == "delivered"


async def test_inactive_webhooks_and_event_filters(api: Api, clock: FakeClock, receiver: Receiver) -> None:
    await webhook(api, f"{receiver.url}/off", active=False)
    await webhook(api, f"{receiver.url}/sessions", events=["session.created"])
    await webhook(api, f"{receiver.url}/feeds", events=["feed.event"])
    await api.ingest(await api.feed("counter"), EVENT)
    await deliver(api, clock)
    assert [r.path for r in receiver.requests] == ["/hook/feeds"]


async def test_queued_deliveries_wait_while_inactive_and_resume(api: Api, clock: FakeClock, receiver: Receiver) -> None:
    hook = await webhook(api, receiver.url)
    feed = await api.feed("counter")
    await api.ingest(feed, EVENT)  # queued while active, then the webhook is paused
    await api.patch(f"/v1/webhooks/{hook['id']}", json={"active": False})
    assert await deliver(api, clock) == 0
    await api.patch(f"/v1/webhooks/{hook['id']}", json={"active": True})
    assert await deliver(api, clock) == 1
    assert len(receiver.requests) == 1


async def test_failing_warning_then_disabled_after_five_days(api: Api, clock: FakeClock, receiver: Receiver) -> None:
    hook = await webhook(api, receiver.url, events=["feed.event"])
    watch = Receiver()
    try:
        await webhook(api, watch.url, events=["webhook.failing", "webhook.disabled"])
        receiver.default = Answer(500)
        feed = await api.feed("counter")
        for _ in range(12):  # one event every 10 minutes: 12 failed attempts over two hours
            await api.ingest(feed, EVENT)
            await deliver(api, clock)
            clock.advance(600)
        await deliver(api, clock)
        failing = [json.loads(r.body) for r in watch.requests]
        assert [e["event"] for e in failing] == ["webhook.failing"]  # exactly once
        assert failing[0]["webhook_id"] == hook["id"] and failing[0]["consecutive_failures"] >= 10
        for _ in range(20):  # events keep coming and failing for five days
            clock.advance(6 * 3600)
            await api.ingest(feed, EVENT)
            await deliver(api, clock)
        got = (await api.get(f"/v1/webhooks/{hook['id']}")).json()
        assert got["active"] is False and "5 days" in got["disabled_reason"]
        assert [json.loads(r.body)["event"] for r in watch.requests] == ["webhook.failing", "webhook.disabled"]
    finally:
        watch.close()


async def test_a_success_resets_the_failure_streak(api: Api, clock: FakeClock, receiver: Receiver) -> None:
    hook = await webhook(api, receiver.url)
    receiver.script([Answer(500), Answer(500)])
    feed = await api.feed("counter")
    await api.ingest(feed, EVENT)
    await deliver(api, clock)
    assert (await api.get(f"/v1/webhooks/{hook['id']}")).json()["consecutive_failures"] == 1
    await api.ingest(feed, EVENT)
    await deliver(api, clock)
    await api.ingest(feed, EVENT)
    await deliver(api, clock)
    got = (await api.get(f"/v1/webhooks/{hook['id']}")).json()
    assert got["consecutive_failures"] == 0 and got["failing_since"] is None


async def test_ordered_webhook_sends_one_at_a_time_in_order(api: Api, clock: FakeClock, receiver: Receiver) -> None:
    await webhook(api, receiver.url, ordered=True)
    feed = await api.feed("counter")
    ids = [(await api.ingest(feed, {**EVENT, "content": {"title": "t", "count": i}})).json()["id"] for i in range(6)]
    receiver.script([Answer(500)])  # the head fails once and blocks the rest
    assert await deliver(api, clock) == 1
    assert len(receiver.requests) == 1
    clock.advance(6)
    await deliver(api, clock)
    sent = [json.loads(r.body)["id"] for r in receiver.requests]
    assert sent == [ids[0], *ids]
    assert receiver.max_in_flight == 1


async def test_a_slow_receiver_does_not_starve_others(live: Api) -> None:
    api = live
    with Receiver() as slow, Receiver() as fast:
        await webhook(api, slow.url)
        await webhook(api, fast.url)
        slow.hold.clear()  # the slow receiver holds every request until released
        feed = await api.feed("counter")
        for i in range(20):
            await api.ingest(feed, {**EVENT, "content": {"title": "t", "count": i}})
        await fast.wait_for(20, timeout=10)
        assert len(slow.requests) == 0 and slow.in_flight <= 4
        slow.hold.set()
        await slow.wait_for(20, timeout=10)
        assert slow.max_in_flight <= 4


async def test_new_deliveries_go_out_within_a_second(live: Api, receiver: Receiver) -> None:
    api = live
    await webhook(api, receiver.url)
    feed = await api.feed("counter")
    start = time.monotonic()
    await api.ingest(feed, EVENT)
    await receiver.wait_for(1, timeout=1.0)
    assert time.monotonic() - start < 1.0


async def test_secret_rotation_signs_with_both_during_the_overlap(
    api: Api, clock: FakeClock, receiver: Receiver
) -> None:
    hook = await webhook(api, receiver.url)
    rotated = (await api.post(f"/v1/webhooks/{hook['id']}/rotate-secret", json={"grace_seconds": 3600})).json()
    assert rotated["previous_secret"] == hook["secret"] and rotated["secret"] != hook["secret"]
    feed = await api.feed("counter")
    await api.ingest(feed, EVENT)
    await deliver(api, clock)
    request = receiver.requests[-1]
    for secret in (hook["secret"], rotated["secret"]):
        StandardWebhook(secret).verify(request.body, request.headers)
        assert glimpze_signature_ok(secret, request.headers["x-glimpze-signature"], request.body)
    clock.advance(3601)
    await api.ingest(feed, EVENT)
    await deliver(api, clock)
    request = receiver.requests[-1]
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(hook["secret"]).verify(
            request.body, {**request.headers, "webhook-timestamp": str(int(time.time()))}
        )
    assert not glimpze_signature_ok(hook["secret"], request.headers["x-glimpze-signature"], request.body)
    assert (await api.get(f"/v1/webhooks/{hook['id']}/secret")).json()["previous_secret"] is None


async def test_test_event_goes_to_that_webhook_only(api: Api, clock: FakeClock, receiver: Receiver) -> None:
    hook = await webhook(api, f"{receiver.url}/a", events=["session.created"])
    await webhook(api, f"{receiver.url}/b")
    response = await api.post(f"/v1/webhooks/{hook['id']}/test")
    assert response.status_code == 200 and response.json()["event"] == "webhook.test"
    await deliver(api, clock)
    assert [r.path for r in receiver.requests] == ["/hook/a"]
    assert json.loads(receiver.requests[0].body)["event"] == "webhook.test"


async def test_redirects_are_not_followed(api: Api, clock: FakeClock) -> None:
    with Receiver() as target, Receiver() as redirector:
        redirector.default = Answer(302, {"Location": target.url})
        hook = await webhook(api, redirector.url)
        await api.ingest(await api.feed("counter"), EVENT)
        await deliver(api, clock)
        assert target.requests == []
        [delivery] = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["data"]
        assert delivery["status"] == "failed" and delivery["last_status_code"] == 302


async def test_bulk_replay_by_status_and_time(api: Api, clock: FakeClock, receiver: Receiver) -> None:
    hook = await webhook(api, receiver.url)
    receiver.default = Answer(500)
    feed = await api.feed("counter")
    await api.ingest(feed, EVENT)
    clock.advance(60)
    await api.ingest(feed, EVENT)
    await deliver(api, clock)
    receiver.default = Answer(200)
    since = api.glimpze.clock.now() - 30
    from glimpze.clock import iso

    response = await api.post(f"/v1/webhooks/{hook['id']}/replay", json={"status": "failed", "since": iso(since)})
    assert response.json() == {"replayed": 1}
    await deliver(api, clock)
    statuses = [d["status"] for d in (await api.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["data"]]
    assert statuses == ["delivered", "failed"]
    failed = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries?status=failed")).json()["data"]
    assert len(failed) == 1


async def test_long_polling(api: Api, clock: FakeClock) -> None:
    feed = await api.feed("counter")
    first = (await api.ingest(feed, EVENT)).json()["id"]
    page = (await api.get("/v1/events")).json()
    assert [e["id"] for e in page["data"]] == [first]
    assert page["data"][0]["event"] == "feed.event" and page["data"][0]["content"]["count"] == 1
    cursor = page["next_cursor"]
    empty = (await api.get(f"/v1/events?after={cursor}")).json()
    assert empty == {"data": [], "next_cursor": cursor}

    async def ingest_soon() -> float:
        await asyncio.sleep(0.2)  # a real client arriving a moment later, while the poll waits
        sent = time.monotonic()
        await api.ingest(feed, EVENT)
        return sent

    poll = asyncio.create_task(api.get(f"/v1/events?after={cursor}&wait=10"))
    sent = await ingest_soon()
    answer = await poll
    assert time.monotonic() - sent < 0.1  # within 100 ms of the event
    assert len(answer.json()["data"]) == 1

    assert (await api.get("/v1/events?types=session.created")).json()["data"] == []
    bad = await api.get("/v1/events?types=feed.evnt")
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "query.types"


async def test_expired_cursor_is_410(api: Api, clock: FakeClock) -> None:
    feed = await api.feed("counter")
    await api.ingest(feed, EVENT)
    cursor = (await api.get("/v1/events")).json()["next_cursor"]
    old = "WzBd"  # seq 0: before everything
    clock.advance(8 * 86400)
    await api.ingest(feed, EVENT)
    assert await api.glimpze.outbox.purge(clock.now()) == 1
    gone = await api.get(f"/v1/events?after={old}")
    assert gone.status_code == 410 and gone.json()["code"] == "cursor_expired"
    assert len((await api.get(f"/v1/events?after={cursor}")).json()["data"]) == 1
    assert len((await api.get("/v1/events")).json()["data"]) == 1  # from the oldest retained


async def test_retention_keeps_events_that_deliveries_still_need(
    api: Api, clock: FakeClock, receiver: Receiver
) -> None:
    await webhook(api, receiver.url)
    receiver.default = Answer(500)
    await api.ingest(await api.feed("counter"), EVENT)
    await deliver(api, clock)
    clock.advance(8 * 86400)
    assert await api.glimpze.outbox.purge(clock.now()) == 0  # its delivery is still being retried
    receiver.default = Answer(200)
    await deliver(api, clock)
    assert await api.glimpze.outbox.purge(clock.now()) == 1


async def test_webhooks_are_per_project(api: Api, receiver: Receiver) -> None:
    hook = await webhook(api, receiver.url)
    _, other = await api.glimpze.keys.create_project("Other")
    headers = {"Authorization": f"Bearer {other.key}"}
    assert (await api.client.get(f"/v1/webhooks/{hook['id']}", headers=headers)).status_code == 404
    assert (await api.client.get("/v1/webhooks", headers=headers)).json()["data"] == []
    assert (await api.client.get("/v1/events", headers=headers)).json()["data"] == []


def test_signature_helpers_match_the_standard() -> None:
    from glimpze.delivery.signing import new_signing_secret, signature_headers

    secret = new_signing_secret()
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    body = b'{"a":1}'
    headers = signature_headers([secret], "msg_1", int(time.time()), body)
    StandardWebhook(secret).verify(body, headers)
