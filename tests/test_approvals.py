"""Approvals: lifecycle, the seed 002 callback through the webhook engine (POST, PUT, GET), retries,
409s, callback secrets, retention, the widget state and the migration of existing deliveries."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook

from glimpze.clock import FakeClock
from glimpze.config import load
from glimpze.delivery.signing import verify_glimpze_signature
from glimpze.feeds.events import event_out
from glimpze.store import database as store
from glimpze.store.migrations import MIGRATIONS
from glimpze.store.pagination import decode_cursor
from tests.conftest import Api, driven, out_events, running
from tests.receiver import Answer, Receiver
from tests.test_webhooks import glimpze_signature_ok

pytestmark = pytest.mark.anyio

SQL_OUT_EVENT = (
    "INSERT INTO out_events (id, project_id, type, occurred_at, payload) VALUES (?, 'prj_1', 'feed.event', 0, '{}')"
)
SEED_BODY_KEYS = ["feed_id", "action_type", "event_id", "timestamp", "metadata"]


@pytest.fixture
def clock() -> FakeClock:
    # Wall-clock time: the standardwebhooks verifier only accepts timestamps within 5 minutes.
    return FakeClock(float(int(time.time())))


@pytest.fixture
async def api(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Api]:
    async with driven(tmp_path, clock) as api:
        yield api


async def deliver(api: Api, clock: FakeClock) -> int:
    return await api.glimpze.dispatcher.deliver_due(clock.now())


def approval_event(url: str | None = None, method: str = "POST", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schema_type": "approval",
        "content": {"description": "Deploy v2.3.0 to production?"},
        "metadata": {"deployment_id": "deploy-123", "environment": "production"},
        "intent": {"send_push": True},
        **extra,
    }
    if url is not None:
        body["callback"] = {"url": url, "method": method}
    return body


async def ingest_approval(api: Api, feed: dict[str, Any], body: dict[str, Any]) -> str:
    response = await api.ingest(feed, body)
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def respond(api: Api, event_id: str, action: str) -> Any:
    return await api.post(f"/v1/approvals/{event_id}/respond", json={"action_type": action})


async def test_approve_sends_exactly_the_seed_002_callback_signed_and_a_second_answer_is_409(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    feed = await api.feed("approval")
    secret = feed["callback_secret"]
    assert secret.startswith("whsec_")
    answer = await api.ingest(feed, approval_event(receiver.url))
    assert answer.status_code == 202
    assert answer.json()["push"] == "none"  # the project has no push targets
    event_id = answer.json()["id"]

    pending = (await api.get("/v1/approvals", params={"status": "pending"})).json()
    assert [a["event_id"] for a in pending["data"]] == [event_id]
    assert pending["data"][0]["description"] == "Deploy v2.3.0 to production?"
    assert pending["data"][0]["callback"] == {"url": receiver.url, "method": "POST"}

    clock.advance(42)
    response = await respond(api, event_id, "approve")
    assert response.status_code == 200, response.text
    decided = response.json()
    assert decided["status"] == "approved" and decided["decided_by"] == "admin"  # the API key's name
    assert [a["action_type"] for a in decided["actions"]] == ["approve"]
    assert (await deliver(api, clock)) == 1

    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/hook"
    body = json.loads(request.body)
    assert list(body) == SEED_BODY_KEYS
    assert body == {
        "feed_id": feed["id"],
        "action_type": "approve",
        "event_id": event_id,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.now())),
        "metadata": {"deployment_id": "deploy-123", "environment": "production"},
    }
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-glimpze-event"] == "approval.responded"
    assert glimpze_signature_ok(secret, request.headers["x-glimpze-signature"], request.body)
    assert StandardWebhook(secret).verify(request.body, request.headers) == body
    assert not glimpze_signature_ok("whsec_" + "A" * 44, request.headers["x-glimpze-signature"], request.body)

    again = await respond(api, event_id, "reject")
    assert again.status_code == 409
    problem = again.json()
    assert problem["code"] == "approval_decided"
    assert problem["decision"] == {
        "status": "approved",
        "action_type": "approve",
        "decided_by": "admin",
        "decided_at": decided["decided_at"],
    }
    assert "approved by 'admin'" in problem["detail"]
    assert (await respond(api, event_id, "defer")).status_code == 409
    assert (await deliver(api, clock)) == 0  # a refused answer sends nothing

    detail = (await api.get(f"/v1/approvals/{event_id}")).json()
    assert detail["actions"][0]["callback_status"] == "delivered"
    assert (await api.get("/v1/approvals", params={"status": "pending"})).json()["data"] == []
    assert [a["event_id"] for a in (await api.get("/v1/approvals?status=approved")).json()["data"]] == [event_id]

    db = api.glimpze.config.db_path
    [requested] = out_events(db, "approval.requested")
    assert requested["event_id"] == event_id and requested["description"] == "Deploy v2.3.0 to production?"
    assert requested["callback"] == {"url": receiver.url, "method": "POST"}
    [responded] = out_events(db, "approval.responded")
    assert responded["action_type"] == "approve" and responded["responded_by"] == "admin"


async def test_get_callback_puts_the_fields_in_the_query_string_and_signs_the_full_url(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    feed = await api.feed("approval")
    url = receiver.url + "?resume=abc%2Fdef&x=1"  # n8n's Wait node resumes on GET at its own URL
    event_id = await ingest_approval(api, feed, approval_event(url, method="GET"))
    assert (await respond(api, event_id, "reject")).status_code == 200
    assert (await deliver(api, clock)) == 1

    [request] = receiver.requests
    assert request.method == "GET" and request.body == b""
    assert request.target.startswith("/hook?resume=abc%2Fdef&x=1&")  # the URL's own query, kept as given
    fields = dict(parse_qsl(urlsplit(request.target).query))
    assert fields["resume"] == "abc/def" and fields["x"] == "1"
    assert fields["feed_id"] == feed["id"] and fields["action_type"] == "reject" and fields["event_id"] == event_id
    assert json.loads(fields["metadata"]) == {"deployment_id": "deploy-123", "environment": "production"}
    assert fields["timestamp"].endswith("Z")
    full_url = f"http://127.0.0.1:{receiver.port}{request.target}".encode()
    secret = feed["callback_secret"]
    assert glimpze_signature_ok(secret, request.headers["x-glimpze-signature"], full_url)
    StandardWebhook(secret).verify(full_url, request.headers, json_parse=False)


async def test_put_callback_and_a_409_from_the_receiver_counts_as_delivered(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    feed = await api.feed("approval")
    event_id = await ingest_approval(api, feed, approval_event(receiver.url, method="PUT"))
    receiver.script([Answer(409)])  # an n8n resume URL that already resumed
    detail = (await respond(api, event_id, "approve")).json()
    assert (await deliver(api, clock)) == 1
    assert receiver.requests[0].method == "PUT" and json.loads(receiver.requests[0].body)["action_type"] == "approve"
    delivery = (await api.get(f"/v1/deliveries/{detail['actions'][0]['callback_delivery_id']}")).json()
    assert delivery["status"] == "delivered" and delivery["last_status_code"] == 409
    assert delivery["webhook_id"] is None
    assert delivery["callback"] == {"feed_id": feed["id"], "method": "PUT", "url": receiver.url}


async def test_a_receiver_failing_twice_gets_the_callback_on_the_third_attempt(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    feed = await api.feed("approval")
    event_id = await ingest_approval(api, feed, approval_event(receiver.url))
    receiver.script([Answer(500), Answer(503)])
    detail = (await respond(api, event_id, "approve")).json()
    delivery_id = detail["actions"][0]["callback_delivery_id"]

    assert (await deliver(api, clock)) == 1  # attempt 1: 500
    clock.advance(4)
    assert (await deliver(api, clock)) == 0  # the first retry waits 5 s (±10 %)
    clock.advance(2)
    assert (await deliver(api, clock)) == 1  # attempt 2: 503
    clock.advance(331)
    assert (await deliver(api, clock)) == 1  # attempt 3, after 5 min (±10 %): 200

    bodies = [r.body for r in receiver.requests]
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]
    ids = {r.headers["x-glimpze-delivery"] for r in receiver.requests}
    assert ids == {delivery_id}
    assert [r.headers["x-glimpze-attempt"] for r in receiver.requests] == ["1", "2", "3"]
    signed = receiver.requests[2].headers["x-glimpze-signature"]  # re-signed at each attempt's time
    assert verify_glimpze_signature(feed["callback_secret"], signed, bodies[2], now=clock.now())
    delivery = (await api.get(f"/v1/deliveries/{delivery_id}")).json()
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 503, 200]


async def test_callback_deliveries_can_be_replayed(api: Api, receiver: Receiver, clock: FakeClock) -> None:
    feed = await api.feed("approval")
    event_id = await ingest_approval(api, feed, approval_event(receiver.url))
    receiver.script([Answer(410)])  # gone: given up at once (and no webhook to disable)
    delivery_id = (await respond(api, event_id, "approve")).json()["actions"][0]["callback_delivery_id"]
    await deliver(api, clock)
    assert (await api.get(f"/v1/deliveries/{delivery_id}")).json()["status"] == "dead"
    replayed = await api.post(f"/v1/deliveries/{delivery_id}/replay")
    assert replayed.status_code == 200 and replayed.json()["status"] == "pending"
    await deliver(api, clock)
    assert (await api.get(f"/v1/deliveries/{delivery_id}")).json()["status"] == "delivered"
    assert len(receiver.requests) == 2


async def test_defer_sends_a_callback_keeps_the_approval_pending_and_a_later_answer_decides(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    feed = await api.feed("approval")
    event_id = await ingest_approval(api, feed, approval_event(receiver.url))
    deferred = (await respond(api, event_id, "defer")).json()
    assert deferred["status"] == "pending" and deferred["defers"] == 1
    assert deferred["deferred_until"] is not None and deferred["decided_at"] is None
    assert (await respond(api, event_id, "defer")).json()["defers"] == 2
    assert (await respond(api, event_id, "reject")).json()["status"] == "rejected"
    await deliver(api, clock)
    assert [json.loads(r.body)["action_type"] for r in receiver.requests] == ["defer", "defer", "reject"]
    actions = (await api.get(f"/v1/approvals/{event_id}")).json()["actions"]
    assert [(a["action_type"], a["by"]) for a in actions] == [("defer", "admin")] * 2 + [("reject", "admin")]


async def test_approval_without_callback_is_decided_and_still_emits_responded(api: Api, clock: FakeClock) -> None:
    feed = await api.feed("approval")
    event_id = await ingest_approval(api, feed, approval_event())
    detail = (await respond(api, event_id, "approve")).json()
    assert detail["actions"][0]["callback_delivery_id"] is None
    assert len(out_events(api.glimpze.config.db_path, "approval.responded")) == 1


async def test_respond_errors(api: Api, tmp_path: Path) -> None:
    feed = await api.feed("approval")
    event_id = await ingest_approval(api, feed, approval_event())
    bad = await api.post(f"/v1/approvals/{event_id}/respond", json={"action_type": "maybe"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "$.action_type"
    extra = await api.post(f"/v1/approvals/{event_id}/respond", json={"action_type": "approve", "by": "me"})
    assert extra.status_code == 422 and extra.json()["errors"][0]["path"] == "$.by"
    assert (await respond(api, "evt_unknown", "approve")).status_code == 404
    assert (await api.get("/v1/approvals/evt_unknown")).status_code == 404
    assert (await api.get("/v1/approvals", params={"status": "maybe"})).status_code == 422
    # another project's key sees nothing of it
    _, other = await api.glimpze.keys.create_project("Other")
    headers = {"Authorization": f"Bearer {other.key}"}
    response = await api.client.post(
        f"/v1/approvals/{event_id}/respond", json={"action_type": "approve"}, headers=headers
    )
    assert response.status_code == 404
    assert (await api.client.get("/v1/approvals", headers=headers)).json()["data"] == []
    # a summary feed has no approvals, and callbacks are for approval events only
    summary = await api.feed("summary")
    refused = await api.ingest(
        summary, {"schema_type": "summary", "content": {"title": "t", "primary_value": "1"}, "callback": {"url": "x"}}
    )
    assert refused.status_code == 422 and refused.json()["errors"][0]["path"] == "$.callback"


async def test_approvals_list_pages_newest_first(api: Api) -> None:
    feed = await api.feed("approval")
    ids = [await ingest_approval(api, feed, approval_event()) for _ in range(3)]
    first = (await api.get("/v1/approvals", params={"limit": 2})).json()
    assert [a["event_id"] for a in first["data"]] == ids[:0:-1]
    second = (await api.get("/v1/approvals", params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert [a["event_id"] for a in second["data"]] == [ids[0]] and second["next_cursor"] is None


async def test_callback_secret_on_approval_feeds_only_and_rotation_signs_with_both(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    feed = await api.feed("approval")
    assert (await api.get(f"/v1/feeds/{feed['id']}")).json()["callback_secret"] == feed["callback_secret"]
    summary = await api.feed("summary")
    assert "callback_secret" not in summary
    assert "callback_secret" not in (await api.get(f"/v1/feeds/{summary['id']}")).json()
    assert (await api.post(f"/v1/feeds/{summary['id']}/rotate-callback-secret")).status_code == 409

    rotated = (await api.post(f"/v1/feeds/{feed['id']}/rotate-callback-secret", json={"grace_seconds": 60})).json()
    new, old = rotated["callback_secret"], rotated["previous_callback_secret"]
    assert old == feed["callback_secret"] and new != old and rotated["previous_callback_secret_expires_at"]
    assert (await api.get(f"/v1/feeds/{feed['id']}")).json()["callback_secret"] == new

    event_id = await ingest_approval(api, feed, approval_event(receiver.url))
    await respond(api, event_id, "approve")
    await deliver(api, clock)
    request = receiver.requests[0]
    for secret in (new, old):  # both sign during the grace period
        assert glimpze_signature_ok(secret, request.headers["x-glimpze-signature"], request.body)
        StandardWebhook(secret).verify(request.body, request.headers)

    bad = await api.post(f"/v1/feeds/{feed['id']}/rotate-callback-secret", json={"grace_seconds": -1})
    assert bad.status_code == 422


async def test_a_callback_to_a_private_address_is_refused_at_connect_time(
    tmp_path: Path, clock: FakeClock, receiver: Receiver
) -> None:
    # Accepted while the operator allowed 127.0.0.1 (ingest refuses it otherwise); then the allowance is gone.
    allowed = load(
        None, env={}, overrides={"data_dir": str(tmp_path / "data"), "webhooks.allow_targets": ["127.0.0.1"]}
    )
    async with running(allowed, clock) as api:
        feed = await api.feed("approval")
        event_id = await ingest_approval(api, feed, approval_event(receiver.url))
        admin = api.key
    config = load(None, env={}, overrides={"data_dir": str(tmp_path / "data")})  # no allow_targets
    async with running(config, clock, key=admin) as api:
        await api.glimpze.dispatcher.stop_runner()
        delivery_id = (await respond(api, event_id, "approve")).json()["actions"][0]["callback_delivery_id"]
        await api.glimpze.dispatcher.deliver_due(clock.now())
        delivery = (await api.get(f"/v1/deliveries/{delivery_id}")).json()
        assert delivery["status"] == "failed" and "target refused" in delivery["last_error"]
        assert receiver.requests == []


async def test_retention_keeps_a_pending_approvals_event_and_purges_decided_ones(api: Api, clock: FakeClock) -> None:
    feed = await api.feed("approval")
    old_pending = await ingest_approval(api, feed, approval_event())
    old_decided = await ingest_approval(api, feed, approval_event())
    await respond(api, old_decided, "approve")
    newest = await ingest_approval(api, feed, approval_event())  # the widget state: kept anyway
    clock.advance(8 * 86400)  # past the free plan's 7 days
    assert await api.glimpze.retention.purge_expired(clock.now()) == 1
    events = (await api.get(f"/v1/feeds/{feed['id']}/events")).json()["data"]
    assert {e["id"] for e in events} == {old_pending, newest}
    assert (await api.get(f"/v1/approvals/{old_decided}")).status_code == 404
    assert (await respond(api, old_pending, "approve")).status_code == 200


async def test_the_approval_widget_shows_its_state(api: Api) -> None:
    feed = await api.feed("approval")
    event_id = await ingest_approval(api, feed, approval_event())
    url = f"/w/{feed['id']}/small.png?token={feed['read_token']}"
    etags = [(await api.client.get(url)).headers["etag"]]
    states = [await widget_view(api, feed)]
    await respond(api, event_id, "defer")
    states.append(await widget_view(api, feed))
    etags.append((await api.client.get(url)).headers["etag"])
    await respond(api, event_id, "reject")
    states.append(await widget_view(api, feed))
    response = await api.client.get(url)
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
    etags.append(response.headers["etag"])
    assert states == [("pending", 1), ("deferred", 1), ("rejected", 0)]
    assert len(set(etags)) == 3  # each state is drawn anew


async def widget_view(api: Api, feed: dict[str, Any]) -> tuple[str, int]:
    """The approval widget's state and waiting count, as `/v1/feeds/{id}/widget` says them."""
    approval = (await api.get(f"/v1/feeds/{feed['id']}/widget")).json()["approval"]
    return approval["state"], approval["waiting"]


async def shown(api: Api, feed: dict[str, Any]) -> dict[str, Any]:
    """What every reader of the widget shows: the JSON document, `/v1`'s widget and the PNG's card."""
    document = (await api.client.get(f"/w/{feed['id']}.json", params={"token": feed["read_token"]})).json()
    v1 = (await api.get(f"/v1/feeds/{feed['id']}/widget")).json()
    widgets = api.glimpze.widgets
    reader = await api.glimpze.feeds.reader(feed["id"], feed["read_token"])
    row, approval = await api.glimpze.events.widget_row(feed["id"], "approval")
    card = widgets.card(reader, event_out(row), approval)
    assert document["event"]["id"] == v1["event"]["id"] and document["approval"] == v1["approval"]
    assert (card.content["description"], card.approval_state, card.waiting) == (
        v1["event"]["content"]["description"],
        v1["approval"]["state"],
        v1["approval"]["waiting"],
    )
    return {"description": card.content["description"], "state": card.approval_state, "waiting": card.waiting}


async def test_an_approval_widget_shows_the_oldest_pending_request_and_how_many_wait(
    api: Api, clock: FakeClock
) -> None:
    feed = await api.feed("approval")
    first = await ingest_approval(api, feed, {**approval_event(), "content": {"description": "A: deploy?"}})
    second = await ingest_approval(api, feed, {**approval_event(), "content": {"description": "B: migrate?"}})
    assert await shown(api, feed) == {"description": "A: deploy?", "state": "pending", "waiting": 2}
    await respond(api, second, "approve")  # B decided: A still waits, and the widget says so
    assert await shown(api, feed) == {"description": "A: deploy?", "state": "pending", "waiting": 1}
    await respond(api, first, "defer")
    assert await shown(api, feed) == {"description": "A: deploy?", "state": "deferred", "waiting": 1}
    clock.advance(60)
    await respond(api, first, "reject")  # none waits: the latest decision
    assert await shown(api, feed) == {"description": "A: deploy?", "state": "rejected", "waiting": 0}
    # A request that does not update the widget is not counted.
    silent = {**approval_event(), "content": {"description": "C"}, "intent": {"update_widget": False}}
    await ingest_approval(api, feed, silent)
    assert await shown(api, feed) == {"description": "A: deploy?", "state": "rejected", "waiting": 0}


async def test_the_approval_widgets_png_says_how_many_wait(api: Api) -> None:
    feed = await api.feed("approval")
    await ingest_approval(api, feed, approval_event())
    url = f"/w/{feed['id']}/medium.png?token={feed['read_token']}"
    one = await api.client.get(url)
    await ingest_approval(api, feed, approval_event())  # a second: the card still shows the first
    two = await api.client.get(url)
    assert one.headers["etag"] != two.headers["etag"] and one.content != two.content


async def test_decided_approvals_list_in_decision_order(api: Api, clock: FakeClock) -> None:
    feed = await api.feed("approval")
    first = await ingest_approval(api, feed, approval_event())
    second = await ingest_approval(api, feed, approval_event())
    third = await ingest_approval(api, feed, approval_event())
    for event_id in (second, third, first):
        clock.advance(1)
        await respond(api, event_id, "approve")
    project = (await api.glimpze.keys.list_projects())[0].id
    history = await api.glimpze.approvals.decided(project, status=None, before=None, limit=2)
    assert [a.event_id for a in history.data] == [first, third]
    cursor = decode_cursor(history.next_cursor, float, int)
    rest = await api.glimpze.approvals.decided(project, status=None, before=cursor, limit=2)
    assert [a.event_id for a in rest.data] == [second] and rest.next_cursor is None


async def test_existing_deliveries_and_attempts_survive_the_approvals_migration(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = store.connect(path)
    before = next(i for i, (name, _) in enumerate(MIGRATIONS) if name.startswith("approvals:"))
    for number, (_, script) in enumerate(MIGRATIONS[:before], start=1):
        conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    conn.execute("INSERT INTO projects VALUES ('prj_1', 'P', 0)")
    conn.execute(
        "INSERT INTO webhooks (id, project_id, url, events, timeout_seconds, secret, created_at, updated_at) "
        "VALUES ('wh_1', 'prj_1', 'https://example.com/', '[\"*\"]', 20, 'whsec_x', 0, 0)"
    )
    conn.execute(SQL_OUT_EVENT, ("evt_1",))
    conn.execute(
        "INSERT INTO delivery_attempts (delivery_seq, attempt, at, status_code) SELECT seq, 1, 0, 500 FROM deliveries"
    )
    old = conn.execute("SELECT id, webhook_id, status FROM deliveries").fetchall()
    assert len(old) == 1
    assert store.migrate(conn) == len(MIGRATIONS)
    assert [tuple(r) for r in conn.execute("SELECT id, webhook_id, status FROM deliveries")] == [tuple(r) for r in old]
    assert conn.execute("SELECT attempt, status_code FROM delivery_attempts").fetchall()[0][1] == 500
    # Who gets a delivery is decided in Python now (outbox.emit): no trigger is left to decide it.
    assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall() == []
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    with pytest.raises(sqlite3.IntegrityError):  # a delivery targets a webhook or a callback, never both or none
        conn.execute(
            "INSERT INTO deliveries (id, webhook_id, event_seq, status, created_at, updated_at) "
            "VALUES ('dlv_x', NULL, 1, 'pending', 0, 0)"
        )
    conn.close()
