"""Cost that stays flat as the work grows (issue 18): deliveries made from the event log as they are
sent, spans of a webhook's active times, claims and polls by index, a pool per lane, a fair share
of the loop under ingest, wake-ups by project and type, seqs never given out twice."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from glimpze.clock import FakeClock
from glimpze.delivery import backlog, dispatcher, outbox
from glimpze.delivery.signing import new_signing_secret
from glimpze.store import database as store
from glimpze.store.migrations import MIGRATIONS
from glimpze.store.pagination import decode_cursor
from tests.conftest import Api, driven, running
from tests.pg import query
from tests.receiver import Answer, Receiver
from tests.server import UNLIMITED_PLAN

pytestmark = pytest.mark.anyio

EVENT = {"schema_type": "counter", "content": {"title": "Jobs", "count": 1}}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(float(int(time.time())))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
async def api(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Api]:
    async with driven(tmp_path, clock, UNLIMITED_PLAN) as api:
        yield api


async def webhook(api: Api, url: str, **fields: Any) -> dict[str, Any]:
    response = await api.post("/v1/webhooks", json={"url": url, "events": ["feed.event"], **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def ingest(api: Api, feed: dict[str, Any], count: int) -> list[str]:
    ids = []
    for i in range(count):
        answer = await api.ingest(feed, {**EVENT, "content": {"title": "n", "count": i}})
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])
    return ids


def rows(api: Api, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in query(api.glimpze.config.db_path, sql)]  # either backend (tests/pg.py)


def sent_ids(receiver: Receiver) -> list[str]:
    return [json.loads(r.body)["id"] for r in receiver.requests]


async def test_ingest_writes_no_delivery_row_however_many_webhooks_take_the_event(api: Api, receiver: Receiver) -> None:
    hooks = [await webhook(api, f"{receiver.url}/{i}") for i in range(50)]
    await ingest(api, await api.feed("counter"), 3)
    assert rows(api, "SELECT count(*) FROM deliveries") == [(0,)]  # the accept path is O(1) in webhooks
    for hook in (hooks[0], hooks[-1]):
        listed = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["data"]
        assert [d["status"] for d in listed] == ["pending"] * 3
    queue = await api.glimpze.db.fetch_one(dispatcher.SQL_QUEUE_STATS, {"now": api.glimpze.clock.due()})
    assert queue is not None and queue["open"] == 150 and queue["leased"] == 0


async def test_a_delivery_without_a_row_is_listed_read_inspected_and_sent_under_its_id(
    api: Api, clock: FakeClock, receiver: Receiver
) -> None:
    hook = await webhook(api, receiver.url, headers={"X-Team": "ops"})
    [event_id] = await ingest(api, await api.feed("counter"), 1)
    [listed] = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["data"]
    assert listed["event_id"] == event_id and listed["status"] == "pending" and listed["attempts"] == 0
    assert listed["next_attempt_at"] == listed["created_at"]  # due since its event occurred
    one = (await api.get(f"/v1/deliveries/{listed['id']}")).json()
    assert one == {**listed, "attempt_log": []}
    project = await api.glimpze.db.fetch_value("SELECT project_id FROM webhooks WHERE id = ?", (hook["id"],))
    request = await api.glimpze.inspector.sent(project, listed["id"])  # the dashboard's inspector
    assert (request.method, request.url) == ("POST", receiver.url) and json.loads(request.body)["id"] == event_id
    assert ("X-Team", "ops") in request.headers and ("X-Glimpze-Delivery", listed["id"]) in request.headers
    replayed = await api.post(f"/v1/deliveries/{listed['id']}/replay")  # it is due already: it stays so
    assert replayed.status_code == 200 and replayed.json()["status"] == "pending"
    assert rows(api, "SELECT count(*) FROM deliveries") == [(0,)]

    assert await api.glimpze.dispatcher.deliver_due(clock.now()) == 1
    [sent] = receiver.requests
    assert sent.headers["webhook-id"] == sent.headers["x-glimpze-delivery"] == listed["id"]
    assert sent.headers["x-team"] == "ops"
    after = (await api.get(f"/v1/deliveries/{listed['id']}")).json()
    assert after["status"] == "delivered" and [a["attempt"] for a in after["attempt_log"]] == [1]
    assert (await api.get(f"/v1/deliveries/dlv_{'0' * 20}")).status_code == 404


async def test_a_webhook_paused_twice_with_a_backlog_gets_the_events_of_its_active_times_in_order(
    api: Api, clock: FakeClock, receiver: Receiver
) -> None:
    hook = await webhook(api, receiver.url, ordered=True)
    feed = await api.feed("counter")
    wanted: list[str] = []
    for active in (True, False, True, False, True):
        ids = await ingest(api, feed, 2)
        if active:
            wanted += ids
        await api.patch(f"/v1/webhooks/{hook['id']}", json={"active": not active})
    assert await api.glimpze.dispatcher.deliver_due(clock.now()) == 0  # paused: what it holds waits
    await api.patch(f"/v1/webhooks/{hook['id']}", json={"active": True})
    assert await api.glimpze.dispatcher.deliver_due(clock.now()) == 6
    assert sent_ids(receiver) == wanted
    listed = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["data"]
    assert [d["event_id"] for d in listed] == wanted[::-1]
    assert rows(api, "SELECT count(*) FROM webhook_spans") == [(1,)]  # the finished spans are gone


async def test_a_new_filter_applies_to_later_events_and_queued_ones_still_go(
    api: Api, clock: FakeClock, receiver: Receiver
) -> None:
    hook = await webhook(api, receiver.url)
    feed = await api.feed("counter")
    queued = await ingest(api, feed, 2)
    await api.patch(f"/v1/webhooks/{hook['id']}", json={"events": ["session.created"]})
    await ingest(api, feed, 2)
    assert await api.glimpze.dispatcher.deliver_due(clock.now()) == 2
    assert sorted(sent_ids(receiver)) == sorted(queued)  # not ordered: they go out side by side


async def test_an_ordered_webhook_keeps_its_order_across_rows_and_the_log(
    api: Api, clock: FakeClock, receiver: Receiver
) -> None:
    await webhook(api, receiver.url, ordered=True)
    ids = await ingest(api, await api.feed("counter"), dispatcher.LANE_BATCH + 20)  # more than one batch
    receiver.script([Answer(500)])
    assert await api.glimpze.dispatcher.deliver_due(clock.now()) == 1  # the head failed: nothing passes it
    clock.advance(6)
    assert await api.glimpze.dispatcher.deliver_due(clock.now()) == len(ids)
    assert sent_ids(receiver) == [ids[0], *ids]
    assert receiver.max_in_flight == 1


async def test_lanes_keep_their_connections_alive(api: Api, clock: FakeClock, receiver: Receiver) -> None:
    for i in range(10):  # 10 lanes × 4 in flight
        await webhook(api, f"{receiver.url}/{i}")
    await ingest(api, await api.feed("counter"), 30)
    assert await api.glimpze.dispatcher.deliver_due(clock.now()) == 300
    assert receiver.count_connections() <= 10 * api.glimpze.config.webhooks.concurrency


async def test_deliveries_flow_while_ingest_requests_are_in_flight(
    api: Api, clock: FakeClock, receiver: Receiver
) -> None:
    await webhook(api, receiver.url)
    await ingest(api, await api.feed("counter"), 200)
    api.glimpze.ingest.in_flight += 1  # an ingest request is being served all along
    try:
        began = time.monotonic()
        assert await api.glimpze.dispatcher.deliver_due(clock.now()) == 200
        took = time.monotonic() - began
    finally:
        api.glimpze.ingest.in_flight -= 1
    assert took < 5, f"200 deliveries took {took:.1f} s beside ingest"  # a fixed 20/s took 10 s


async def test_a_long_poll_cursor_moves_past_the_events_it_did_not_return(api: Api) -> None:
    first = (await api.get("/v1/events?types=session.created")).json()
    assert first["data"] == []
    await ingest(api, await api.feed("counter"), 5)
    newest = await api.glimpze.db.fetch_value("SELECT max(seq) FROM out_events")
    empty = (await api.get(f"/v1/events?types=session.created&after={first['next_cursor']}")).json()
    assert empty["data"] == [] and decode_cursor(empty["next_cursor"], int) == (newest,)
    everything = (await api.get(f"/v1/events?after={first['next_cursor']}&limit=3")).json()
    assert len(everything["data"]) == 3  # a full page continues after its last event
    rest = (await api.get(f"/v1/events?after={everything['next_cursor']}")).json()
    assert len(rest["data"]) == 2 and decode_cursor(rest["next_cursor"], int) == (newest,)


async def test_a_waiting_filtered_poll_is_not_woken_by_other_types_or_projects(api: Api) -> None:
    feed = await api.feed("counter")
    _, other = await api.glimpze.keys.create_project("Other")
    other_headers = {"Authorization": f"Bearer {other.key}"}
    reads = 0
    fetch_all = api.glimpze.db.fetch_all

    async def counting(sql: str, params: Any = ()) -> Any:
        nonlocal reads
        reads += "out_events" in sql and "payload" in sql  # a long poll's reading
        return await fetch_all(sql, params)

    api.glimpze.db.fetch_all = counting  # type: ignore[method-assign]
    poll = asyncio.create_task(api.get("/v1/events?types=session.closed&wait=1"))
    await asyncio.sleep(0.1)
    await ingest(api, feed, 10)  # commits of another type
    poll_other = asyncio.create_task(api.client.get("/v1/events?types=feed.event&wait=1", headers=other_headers))
    await asyncio.sleep(0.1)
    await ingest(api, feed, 3)  # feed.event, but of another project than that poll's
    assert (await poll).json()["data"] == [] and (await poll_other).json()["data"] == []
    assert reads <= 4, f"{reads} reads for two polls that nothing concerned"  # each: one, and one at its end


async def test_a_waiting_poll_answers_when_its_type_comes(api: Api) -> None:
    feed = await api.feed("counter")
    cursor = (await api.get("/v1/events?types=feed.event")).json()["next_cursor"]
    poll = asyncio.create_task(api.get(f"/v1/events?types=feed.event&after={cursor}&wait=10"))
    await asyncio.sleep(0.1)
    sent = time.monotonic()
    [event_id] = await ingest(api, feed, 1)
    answer = (await poll).json()
    assert [e["id"] for e in answer["data"]] == [event_id] and time.monotonic() - sent < 1


async def test_seqs_continue_after_retention_purged_every_event(api: Api, clock: FakeClock, receiver: Receiver) -> None:
    feed = await api.feed("counter")
    await ingest(api, feed, 2)
    cursor = (await api.get("/v1/events")).json()["next_cursor"]
    clock.advance(8 * 86400)
    assert await api.glimpze.outbox.purge(clock.now()) == 2  # the table is empty now
    await webhook(api, receiver.url)
    [event_id] = await ingest(api, feed, 1)
    assert [e["id"] for e in (await api.get(f"/v1/events?after={cursor}")).json()["data"]] == [event_id]
    assert await api.glimpze.dispatcher.deliver_due(clock.now()) == 1
    assert sent_ids(receiver) == [event_id]


async def test_retention_keeps_what_a_paused_webhook_still_holds(
    api: Api, clock: FakeClock, receiver: Receiver
) -> None:
    hook = await webhook(api, receiver.url, events=["session.created", "feed.event"])
    feed = await api.feed("counter")
    [held] = await ingest(api, feed, 1)
    await api.patch(f"/v1/webhooks/{hook['id']}", json={"active": False})
    await ingest(api, feed, 3)
    clock.advance(8 * 86400)
    await ingest(api, feed, 1)
    assert await api.glimpze.outbox.purge(clock.now()) == 0  # the held one is first: it and all after stay
    await api.patch(f"/v1/webhooks/{hook['id']}", json={"active": True})
    assert await api.glimpze.dispatcher.deliver_due(clock.now()) == 1
    assert sent_ids(receiver) == [held]
    assert await api.glimpze.outbox.purge(clock.now()) == 4


async def test_the_upgrade_keeps_queued_rows_and_queues_nothing_twice(tmp_path: Path, clock: FakeClock) -> None:
    """A database of the previous version with a delivery queued as a row: after the upgrade it is
    sent once, and the webhook takes the events that come after."""
    data = tmp_path / "data"
    data.mkdir()
    conn = store.connect(data / "glimpze.db")
    spans = next(i for i, (name, _) in enumerate(MIGRATIONS) if name.startswith("delivery spans"))
    for number, (_, script) in enumerate(MIGRATIONS[:spans], start=1):
        conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    conn.close()
    with Receiver() as receiver:
        config_file = tmp_path / "glimpze.toml"
        config_file.write_text('[webhooks]\nallow_targets = ["127.0.0.1"]\n')
        from glimpze.config import load

        config = load(config_file, env={}, overrides={"data_dir": str(data)})
        old = sqlite3.connect(data / "glimpze.db", isolation_level=None)
        old.execute("INSERT INTO projects VALUES ('prj_old', 'Old', 0)")
        for hook, active in (("wh_on", 1), ("wh_off", 0)):
            old.execute(
                "INSERT INTO webhooks (id, project_id, url, events, active, timeout_seconds, secret, created_at, "
                "updated_at) VALUES (?, 'prj_old', ?, '[\"*\"]', ?, 20, ?, 0, 0)",
                (hook, receiver.url, active, new_signing_secret()),
            )
        for n in (1, 2):  # two events, each with the row the previous version's emit wrote
            old.execute(
                "INSERT INTO out_events (id, project_id, type, occurred_at, payload) "
                "VALUES (?, 'prj_old', 'feed.event', ?, ?)",
                (f"evt_old{n}", clock.now(), b'{"id":"evt_old"}'),
            )
            old.execute(
                "INSERT INTO deliveries (id, webhook_id, event_seq, status, next_attempt_at, created_at, updated_at) "
                "VALUES (?, 'wh_on', ?, 'pending', ?, ?, ?)",
                (f"dlv_000000000{n}abcdefabcd", n, clock.now(), clock.now(), clock.now()),
            )
        old.close()
        async with running(config, clock) as api:
            await api.glimpze.dispatcher.stop_runner()  # its first look may have sent the row already
            await api.glimpze.dispatcher.deliver_due(clock.now())
            sent = sorted(r.headers["webhook-id"] for r in receiver.requests)
            assert sent == ["dlv_0000000001abcdefabcd", "dlv_0000000002abcdefabcd"]  # once each
            assert rows(api, "SELECT webhook_id, start_seq, through_seq FROM webhook_spans") == [("wh_on", 2, None)]
            assert rows(api, "SELECT type_seq FROM out_events ORDER BY seq") == [(1,), (2,)]  # numbered
            test = await api.glimpze.webhooks.test("prj_old", "wh_on")  # an event after the upgrade
            assert await api.glimpze.dispatcher.deliver_due(clock.now()) == 1
            assert [r.headers["webhook-id"] for r in receiver.requests][2:] == [test.id]
            codes = rows(api, "SELECT delivery_code FROM webhooks")
            assert all(len(code) == 10 for (code,) in codes) and len(set(codes)) == 2


def test_claims_looks_and_polls_read_index_ranges(tmp_path: Path) -> None:
    """No statement of the delivery path reads the backlog or sorts it: each is index ranges."""
    conn = store.connect(tmp_path / "plans.db")
    store.migrate(conn)

    def plan(sql: str, params: dict[str, Any]) -> str:
        return "\n".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))

    claim = plan(dispatcher.SQL_CLAIM, {"target": "wh", "now": 0, "limit": 100})
    assert "USING INDEX deliveries_due" in claim and "TEMP B-TREE" not in claim
    look = plan(dispatcher.SQL_DUE_TARGETS, {"now": 0})
    assert "SCAN e" not in look and "SCAN d" not in look
    for events in ('["*"]', '["feed.event","session.closed"]'):
        branches = backlog.span_branches(events, after=":after", hi=":hi")
        made = plan(
            outbox.merged(branches, "e.seq AS seq"), {"project": "p", "webhook": "w", "after": 0, "hi": 9, "limit": 9}
        )
        assert "SCAN e" not in made and "rowid>" not in made, made
    for types in (None, ["session.closed"], ["session.closed", "lead.captured"]):
        polled = plan(outbox.poll_sql(types), {"project": "p", "after": 0, "limit": 50})
        assert "out_events_type" in polled or types is None, polled
        assert "SCAN e" not in polled and "rowid>" not in polled, polled
    counted = plan(backlog.SQL_WAITING_COUNTS, {"ids": "[]"})
    assert "COVERING INDEX out_events_type (project_id=? AND type=?" in counted, counted
    conn.close()


async def listed(api: Api, hook: dict[str, Any], status: str) -> int:
    count, cursor = 0, ""
    while True:
        page = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries?status={status}&limit=100{cursor}")).json()
        count += len(page["data"])
        if page["next_cursor"] is None:
            return count
        cursor = f"&cursor={page['next_cursor']}"


async def test_what_waits_is_counted_as_it_is_listed(api: Api, clock: FakeClock, receiver: Receiver) -> None:
    """The counts (two index seeks per span and type) agree with the listings (the rows read)
    across pauses, a filter change, tests aimed at one webhook, rows made by sending, and retention."""
    star = await webhook(api, f"{receiver.url}/star", events=["*"])
    typed = await webhook(api, f"{receiver.url}/typed", events=["feed.event", "session.created"], ordered=True)
    feed = await api.feed("counter")

    async def agree() -> None:
        counts = await api.glimpze.inspector.counts([star["id"], typed["id"]])
        for hook in (star, typed):
            assert counts[hook["id"]].pending == await listed(api, hook, "pending"), hook["events"]
        queue = await api.glimpze.db.fetch_one(dispatcher.SQL_QUEUE_STATS, {"now": api.glimpze.clock.due()})
        assert queue is not None
        assert queue["open"] == sum([await listed(api, h, s) for h in (star, typed) for s in ("pending", "failed")])

    await ingest(api, feed, 3)
    await api.patch(f"/v1/webhooks/{typed['id']}", json={"active": False})
    await ingest(api, feed, 2)
    await api.patch(f"/v1/webhooks/{typed['id']}", json={"active": True})
    await api.post(f"/v1/webhooks/{typed['id']}/test")
    await api.post(f"/v1/webhooks/{star['id']}/test")
    await api.patch(f"/v1/webhooks/{star['id']}", json={"events": ["session.created"]})
    await ingest(api, feed, dispatcher.LANE_BATCH + 5)
    await agree()
    receiver.default = Answer(500)  # rows made by sending, failed: the ordered one keeps 100 more made
    await api.glimpze.dispatcher.deliver_due(clock.now())
    await agree()
    receiver.default = Answer(200)
    clock.advance(8 * 86400)  # everything sent, then past retention
    assert await api.glimpze.dispatcher.deliver_due(clock.now()) > 0
    assert await api.glimpze.outbox.purge(clock.now()) > 0
    await api.patch(f"/v1/webhooks/{star['id']}", json={"events": ["*"]})
    await ingest(api, feed, 4)
    await agree()


async def test_a_slow_receiver_does_not_hold_up_the_others_beside_ingest(api: Api, clock: FakeClock) -> None:
    """Waiting for a receiver takes no turn of the fair share: while ingest requests are in flight
    all along, a receiver that holds every request does not stop the others' deliveries."""
    with Receiver() as slow, Receiver() as fast:
        for i in range(3):  # three slow webhooks: 12 requests held, more than the share's turns
            await webhook(api, f"{slow.url}/{i}")
        await webhook(api, fast.url)
        await ingest(api, await api.feed("counter"), 10)
        slow.hold.clear()
        api.glimpze.ingest.in_flight += 1  # an ingest request is being served all along
        sending = asyncio.create_task(api.glimpze.dispatcher.deliver_due(clock.now()))
        try:
            await fast.wait_for(10, timeout=10)
            assert len(slow.requests) == 0 and slow.in_flight >= 4  # as many as the share has turns, or more
        finally:
            api.glimpze.ingest.in_flight -= 1
            slow.hold.set()
            await sending
