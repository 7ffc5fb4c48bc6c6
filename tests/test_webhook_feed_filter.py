"""Webhooks filtered by feed (issue 21): `feed_ids` on a webhook sends it only the events of those
feeds (events that concern no feed, such as `webhook.test` or the session events, still go), a
PATCH applies to later events only, an unknown feed is refused by its path, a feed deleted later
stays in the filter and matches nothing, and what waits is counted and listed as it is sent."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from glimpze.clock import FakeClock
from glimpze.delivery import backlog, dispatcher, outbox
from glimpze.store import database as store
from glimpze.store.migrations import MIGRATIONS
from tests.conftest import Api, driven
from tests.dashboard import Dash, audit
from tests.receiver import Receiver
from tests.server import UNLIMITED_PLAN
from tests.server import run_cli as glimpze

pytestmark = pytest.mark.anyio

EVENT = {"schema_type": "counter", "content": {"title": "Jobs", "count": 1}}
APPROVAL = {"schema_type": "approval", "content": {"description": "Deploy?"}, "metadata": {"n": 1}}


@pytest.fixture
async def api(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Api]:
    """The real app on a SQLite file, its dispatcher driven by the test (`send`)."""
    async with driven(tmp_path, clock, UNLIMITED_PLAN) as api:
        yield api


async def webhook(api: Api, url: str, **fields: Any) -> dict[str, Any]:
    response = await api.post("/v1/webhooks", json={"url": url, "events": ["*"], **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def send(api: Api, clock: FakeClock) -> int:
    return int(await api.glimpze.dispatcher.deliver_due(clock.now()))


async def ingest(api: Api, feed: dict[str, Any], body: dict[str, Any] = EVENT) -> str:
    answer = await api.ingest(feed, body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def received(receiver: Receiver, path: str) -> list[tuple[str, str]]:
    """(event type, feed id) of what arrived at `path`, sorted (an unordered webhook sends at once)."""
    bodies = [json.loads(r.body) for r in receiver.requests if r.path == path]
    return sorted((b["event"], b.get("feed_id") or "") for b in bodies)


async def test_a_webhook_takes_only_the_events_of_its_feeds(api: Api, clock: FakeClock, receiver: Receiver) -> None:
    counter, approvals, other = await api.feed("counter"), await api.feed("approval"), await api.feed("counter")
    one = await webhook(api, f"{receiver.url}/one", feed_ids=[approvals["id"]])
    two = await webhook(api, f"{receiver.url}/two", feed_ids=[counter["id"], approvals["id"]], events=["feed.event"])
    await webhook(api, f"{receiver.url}/all", feed_ids=[])  # empty: every feed
    assert one["feed_ids"] == [approvals["id"]] and sorted(two["feed_ids"]) == sorted([counter["id"], approvals["id"]])
    await ingest(api, counter)
    await ingest(api, other)
    event_id = await ingest(api, approvals, APPROVAL)
    responded = await api.post(f"/v1/approvals/{event_id}/respond", json={"action_type": "approve"})
    assert responded.status_code == 200, responded.text
    await api.post(f"/v1/webhooks/{one['id']}/test")  # an event of no feed: the filter does not apply
    await send(api, clock)
    a = approvals["id"]
    assert received(receiver, "/hook/one") == [
        ("approval.requested", a),
        ("approval.responded", a),
        ("feed.event", a),
        ("webhook.test", ""),
    ]
    assert received(receiver, "/hook/two") == sorted([("feed.event", counter["id"]), ("feed.event", a)])
    assert [e for e, _ in received(receiver, "/hook/all")] == [
        "approval.requested",
        "approval.responded",
        "feed.event",
        "feed.event",
        "feed.event",
    ]


async def test_patching_feed_ids_applies_to_the_events_after_it(api: Api, clock: FakeClock, receiver: Receiver) -> None:
    a, b = await api.feed("counter"), await api.feed("counter")
    hook = await webhook(api, receiver.url, feed_ids=[a["id"]])
    first = await ingest(api, a)  # queued under the old filter: still sent
    await ingest(api, b)  # not for it
    patched = await api.patch(f"/v1/webhooks/{hook['id']}", json={"feed_ids": [b["id"]]})
    assert patched.status_code == 200 and patched.json()["feed_ids"] == [b["id"]]
    await ingest(api, a)  # not for it any more
    second = await ingest(api, b)
    assert (await api.get(f"/v1/webhooks/{hook['id']}")).json()["feed_ids"] == [b["id"]]
    await send(api, clock)
    assert sorted(json.loads(r.body)["id"] for r in receiver.requests) == sorted([first, second])
    cleared = await api.patch(f"/v1/webhooks/{hook['id']}", json={"feed_ids": None})  # every feed again
    assert cleared.json()["feed_ids"] == []
    third = await ingest(api, a)
    await send(api, clock)
    assert [json.loads(r.body)["id"] for r in receiver.requests][2:] == [third]
    listed = (await api.get("/v1/webhooks")).json()["data"]
    assert listed[0]["feed_ids"] == []


async def test_an_unknown_feed_is_refused_by_its_path_and_nothing_is_stored(api: Api, receiver: Receiver) -> None:
    feed = await api.feed("counter")
    body = {"url": receiver.url, "events": ["*"], "feed_ids": [feed["id"], "fd_nope", "x'; --"]}
    refused = await api.post("/v1/webhooks", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "validation_failed"
    assert [e["path"] for e in refused.json()["errors"]] == ["$.feed_ids[1]", "$.feed_ids[2]"]
    assert (await api.get("/v1/webhooks")).json()["data"] == []
    hook = await webhook(api, receiver.url, feed_ids=[feed["id"]])
    refused = await api.patch(f"/v1/webhooks/{hook['id']}", json={"feed_ids": ["fd_nope"], "description": "x"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["path"] == "$.feed_ids[0]"
    got = (await api.get(f"/v1/webhooks/{hook['id']}")).json()
    assert got["feed_ids"] == [feed["id"]] and got["description"] == ""
    wrong_type = await api.post("/v1/webhooks", json={**body, "feed_ids": [feed["id"], 7]})
    assert wrong_type.status_code == 422 and wrong_type.json()["errors"][0]["path"] == "$.feed_ids[1]"


async def test_a_feed_deleted_later_stays_in_the_filter_and_matches_nothing(
    api: Api, clock: FakeClock, receiver: Receiver
) -> None:
    gone, kept = await api.feed("counter"), await api.feed("counter")
    hook = await webhook(api, receiver.url, feed_ids=[gone["id"]])
    assert (await api.delete(f"/v1/feeds/{gone['id']}")).status_code == 204
    assert (await api.get(f"/v1/webhooks/{hook['id']}")).json()["feed_ids"] == [gone["id"]]
    await ingest(api, kept)  # never "every feed" because its only feed went
    await send(api, clock)
    assert receiver.requests == []
    # The filter as read back can be sent back (a form, n8n): the id it holds is still accepted.
    again = await api.patch(f"/v1/webhooks/{hook['id']}", json={"feed_ids": [gone["id"], kept["id"]]})
    assert again.status_code == 200, again.text
    await ingest(api, kept)
    await send(api, clock)
    assert len(receiver.requests) == 1


async def listed(api: Api, hook: dict[str, Any], status: str) -> list[str]:
    page = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries?status={status}&limit=100")).json()
    assert page["next_cursor"] is None
    return [d["event_id"] for d in page["data"]]


async def test_what_waits_is_counted_listed_and_sent_by_the_filter(
    api: Api, clock: FakeClock, receiver: Receiver
) -> None:
    a, b = await api.feed("counter"), await api.feed("counter")
    hook = await webhook(api, f"{receiver.url}/a", feed_ids=[a["id"]])
    typed = await webhook(api, f"{receiver.url}/t", feed_ids=[b["id"]], events=["feed.event", "webhook.failing"])
    mine = [await ingest(api, a) for _ in range(3)]
    theirs = [await ingest(api, b) for _ in range(5)]
    await api.post(f"/v1/webhooks/{typed['id']}/test")
    counts = await api.glimpze.inspector.counts([hook["id"], typed["id"]])
    assert counts[hook["id"]].pending == 3 and counts[typed["id"]].pending == 6
    assert await listed(api, hook, "pending") == mine[::-1]
    assert (await listed(api, typed, "pending"))[1:] == theirs[::-1]
    queue = await api.glimpze.db.fetch_one(dispatcher.SQL_QUEUE_STATS, {"now": api.glimpze.clock.due()})
    assert queue["open"] == 9
    other = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries?limit=1")).json()["data"][0]
    assert (await api.get(f"/v1/deliveries/{other['id']}")).status_code == 200  # read by id before it has a row
    foreign = backlog.delivery_id(int(other["id"][4:14], 16) + 3, other["id"][14:])  # an event of feed b
    assert (await api.get(f"/v1/deliveries/{foreign}")).status_code == 404
    assert await send(api, clock) == 9
    assert sorted(json.loads(r.body)["id"] for r in receiver.requests if r.path == "/hook/a") == sorted(mine)
    counts = await api.glimpze.inspector.counts([hook["id"]])
    assert counts[hook["id"]].pending == 0 and counts[hook["id"]].delivered == 3


def test_filtered_spans_are_read_and_counted_by_index_ranges(tmp_path: Path) -> None:
    """A span filtered by feed reads one range of out_events(project_id, feed_id, type, seq) per
    feed and type: never the events of other feeds in between, and no sort of them."""
    conn = store.connect(tmp_path / "plans.db")
    store.migrate(conn)

    def plan(sql: str, params: dict[str, Any]) -> str:
        return "\n".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))

    params = {"project": "p", "webhook": "w", "after": 0, "hi": 9, "limit": 9}
    for events in ('["*"]', '["feed.event","session.closed"]'):
        branches = backlog.span_branches(events, '["fd_a","fd_b"]', after=":after", hi=":hi")
        made = plan(outbox.merged(branches, "e.seq AS seq"), params)
        assert "out_events_feed (project_id=? AND feed_id=? AND type=?" in made, made
        assert "SCAN e" not in made and "rowid>" not in made, made
    counted = plan(backlog.SQL_WAITING_COUNTS, {"ids": "[]"})
    assert "COVERING INDEX out_events_feed (project_id=? AND feed_id=? AND type=?" in counted, counted
    look = plan(dispatcher.SQL_DUE_TARGETS, {"now": 0})
    assert "SCAN e" not in look and "out_events_feed" in look, look
    conn.close()


def test_the_upgrade_numbers_the_events_of_each_feed(tmp_path: Path) -> None:
    """Events stored before the upgrade get their feed (from the payload) and their numbers."""
    conn = store.connect(tmp_path / "old.db")
    for number, (_, script) in enumerate(MIGRATIONS[:-1], start=1):
        conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    conn.close()
    old = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    old.execute("INSERT INTO projects VALUES ('prj_old', 'Old', 0)")
    for n, (kind, feed) in enumerate(
        [("feed.event", "fd_a"), ("session.created", None), ("feed.event", "fd_b"), ("feed.event", "fd_a")]
    ):
        payload = json.dumps({"id": f"evt_{n}", "event": kind, **({"feed_id": feed} if feed else {})}).encode()
        old.execute(
            "INSERT INTO out_events (id, project_id, type, occurred_at, payload) VALUES (?, 'prj_old', ?, 0, ?)",
            (f"evt_{n}", kind, payload),
        )
    old.close()
    conn = store.connect(tmp_path / "old.db")
    store.migrate(conn)
    rows = [tuple(r) for r in conn.execute("SELECT type, feed_id, feed_seq FROM out_events ORDER BY seq")]
    assert rows == [("feed.event", "fd_a", 1), ("session.created", None, None), ("feed.event", "fd_b", 1),
                    ("feed.event", "fd_a", 2)]  # fmt: skip
    conn.close()


async def test_the_dashboard_form_sets_and_shows_the_feed_filter(api: Api, receiver: Receiver) -> None:
    """Each feed is a checkbox of the webhook form (none checked: every feed); a deleted feed the
    filter still names stays checked, marked as matching nothing."""
    a, b = await api.feed("counter", name="Builds"), await api.feed("counter", name="Backups")
    dash = Dash(api.client)
    await dash.set_up(api.announced)
    form = await dash.open("/webhooks?new=1")
    assert f'name="feed_ids" value="{a["id"]}"' in form.text and "Builds" in form.text
    assert audit(form.text) == []
    fields = {"url": receiver.url, "events": ["*"], "feed_ids": [a["id"], b["id"]], "active": "on"}
    page = await dash.follow(await dash.submit("/webhooks", fields))
    hook_id = page.url.path.rsplit("/", 1)[1]
    assert sorted((await api.get(f"/v1/webhooks/{hook_id}")).json()["feed_ids"]) == sorted([a["id"], b["id"]])
    assert re.search(rf'value="{b["id"]}" checked', page.text)
    await dash.follow(await dash.submit(f"/webhooks/{hook_id}", {**fields, "feed_ids": [a["id"]]}))
    assert (await api.get(f"/v1/webhooks/{hook_id}")).json()["feed_ids"] == [a["id"]]
    await api.delete(f"/v1/feeds/{a['id']}")
    page = await dash.open(f"/webhooks/{hook_id}")
    assert re.search(rf'value="{a["id"]}" checked> <code>{a["id"]}</code> \(deleted: matches nothing\)', page.text)
    assert audit(page.text) == []
    await dash.follow(await dash.submit(f"/webhooks/{hook_id}", {**fields, "feed_ids": []}))
    assert (await api.get(f"/v1/webhooks/{hook_id}")).json()["feed_ids"] == []
    refused = await dash.submit("/webhooks", {**fields, "feed_ids": ["fd_nope"]})
    assert refused.status_code == 422 and 'id="new-feed_ids-error"' in refused.text


def test_the_cli_adds_a_webhook_filtered_by_feed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = glimpze("feeds", "create", "--name", "Backups", "--schema", "status", "--json", data=data)
    assert made.returncode == 0, made.stderr
    feed_id = json.loads(made.stdout)["id"]
    url = "https://n8n.example.com/webhook/glimpze"
    refused = glimpze("webhooks", "add", url, "--feeds", f"{feed_id},fd_nope", data=data)
    assert refused.returncode == 1 and "$.feed_ids[1]" in refused.stderr
    added = glimpze("webhooks", "add", url, "--feeds", feed_id, "--json", data=data)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["feed_ids"] == [feed_id]
