"""The dashboard's approvals inbox and push settings over HTTP: answering through the approvals
service (callbacks included), the decided history, push targets, test pushes, this browser's
subscription (JSON with the CSRF header), quiet hours, and the live stream's approval messages."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from glimpze.clock import FakeClock
from glimpze.delivery.signing import verify_glimpze_signature
from tests.conftest import Api, SseReader, driven
from tests.dashboard import Dash, approval_event, audit
from tests.receiver import Answer, Receiver
from tests.webpush_browser import Browser

pytestmark = pytest.mark.anyio


@pytest.fixture
async def api(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Api]:
    """The app allowed to call local receivers, its deliveries and pushes driven by the test."""
    async with driven(tmp_path, clock) as api:
        yield api


@pytest.fixture
async def dash(api: Api) -> Dash:
    client = Dash(api.client)
    await client.set_up(api.announced)
    return client


def notices(page: str) -> list[str]:
    return [
        html.unescape(re.sub(r"\s+", " ", text).strip())
        for text in re.findall(r'class="notice[^"]*"[^>]*>\s*<p>(.*?)</p>', page, re.S)
    ]


# Approvals


async def test_the_inbox_answers_through_the_approvals_service_and_the_callback_goes_out(
    api: Api, dash: Dash, receiver: Receiver, clock: FakeClock
) -> None:
    feed = await api.feed("approval", name="Deploys")
    deploy = (await api.ingest(feed, approval_event("Deploy v2.3.0 to production?", receiver.url))).json()["id"]
    migrate = (await api.ingest(feed, approval_event("Run the migration?"))).json()["id"]
    rollback = (await api.ingest(feed, approval_event("Roll back the CDN?"))).json()["id"]

    inbox = await dash.open("/approvals")
    assert "data-pending-count>3<" in inbox.text
    for event_id in (deploy, migrate, rollback):
        assert f'id="approval-{event_id}"' in inbox.text
    assert "No decisions yet" in inbox.text and 'data-live="/live"' in inbox.text

    answer = await dash.submit(f"/approvals/{deploy}/respond", {"action_type": "approve", "next": "/approvals"})
    # The live redraw that the answer sets off in the old page leaves the notice to the next page.
    redraw = await api.client.get("/approvals", headers={"X-Glimpze-Redraw": "1"})
    assert notices(redraw.text) == [] and f'id="approval-{deploy}"' not in redraw.text
    approved = await dash.follow(answer)
    assert approved.url.path == "/approvals"
    assert notices(approved.text) == ["Approved “Deploy v2.3.0 to production?”. Its callback is on its way."]
    assert (await api.glimpze.dispatcher.deliver_due(clock.now())) == 1
    [callback] = receiver.requests
    body = json.loads(callback.body)
    assert list(body) == ["feed_id", "action_type", "event_id", "timestamp", "metadata"]  # seed 002, exactly
    assert body["action_type"] == "approve" and body["event_id"] == deploy and body["feed_id"] == feed["id"]
    assert verify_glimpze_signature(
        feed["callback_secret"], callback.headers["x-glimpze-signature"], callback.body, clock.now()
    )

    # From the approval's own page: reject; the answer is recorded as the dashboard's.
    detail = await dash.open(f"/approvals/{migrate}")
    assert "Waiting for an answer" in detail.text and "No answer yet" in detail.text
    clock.advance(30)
    rejected = await dash.follow(
        await dash.submit(f"/approvals/{migrate}/respond", {"action_type": "reject", "next": f"/approvals/{migrate}"})
    )
    assert notices(rejected.text) == ["Rejected “Run the migration?”."]
    assert 'data-action="reject"' in rejected.text and "by <strong>dashboard</strong>" in rejected.text
    api_view = (await api.get(f"/v1/approvals/{migrate}")).json()
    assert api_view["status"] == "rejected" and api_view["decided_by"] == "dashboard"

    # Defer keeps it pending, with a reminder.
    deferred = await dash.follow(
        await dash.submit(f"/approvals/{rollback}/respond", {"action_type": "defer", "next": "/approvals"})
    )
    assert notices(deferred.text) == [
        "Deferred “Roll back the CDN?”: it stays pending and is pushed to you again in 1 hour."
    ]
    assert "data-pending-count>1<" in deferred.text and ">deferred<" in deferred.text

    # The decided history: who and when, newest request first, filtered by decision.
    rows = re.findall(
        r'<tr data-approval="(evt_\w+)" data-status="(\w+)">.*?<td>(\w+)</td>\s*'
        r'<td class="nowrap"><time datetime="([^"]+)"',
        deferred.text,
        re.S,
    )
    assert [(r[0], r[1], r[2]) for r in rows] == [(migrate, "rejected", "dashboard"), (deploy, "approved", "dashboard")]
    assert rows[0][3] == api_view["decided_at"]
    only_approved = await dash.open("/approvals?decided=approved")
    assert (
        f'data-approval="{deploy}" data-status="approved"' in only_approved.text
        and 'data-status="rejected"' not in only_approved.text
    )

    # The first approve or reject decides: a later answer is refused with the decision.
    again = await dash.follow(
        await dash.submit(f"/approvals/{deploy}/respond", {"action_type": "reject", "next": "/approvals"})
    )
    [refused] = notices(again.text)
    assert "already approved by 'dashboard'" in refused and "notice-error" in again.text
    odd = await dash.follow(await dash.submit(f"/approvals/{rollback}/respond", {"action_type": "maybe"}))
    assert "notice-error" in odd.text and (await api.get(f"/v1/approvals/{rollback}")).json()["status"] == "pending"
    assert (await dash.submit("/approvals/evt_missing/respond", {"action_type": "approve"})).status_code == 404
    assert (await api.client.get("/approvals/evt_missing")).status_code == 404


async def test_an_approval_feeds_page_shows_and_rotates_its_callback_secret(api: Api, dash: Dash) -> None:
    feed = await api.feed("approval", name="Deploys")
    page = await dash.open(f"/feeds/{feed['id']}")
    assert f'id="callback-secret" aria-label="Callback secret" data-secret>{feed["callback_secret"]}<' in page.text
    rotated = await dash.follow(await dash.submit(f"/feeds/{feed['id']}/rotate-callback-secret"))
    secrets = (await api.get(f"/v1/feeds/{feed['id']}")).json()
    assert secrets["callback_secret"] != feed["callback_secret"] and secrets["callback_secret"] in rotated.text
    assert (
        "keeps signing beside it for 24 hours" in rotated.text
        and "The previous secret also signs until" in rotated.text
    )
    summary = await api.feed("summary")
    assert "Approval callbacks" not in (await dash.open(f"/feeds/{summary['id']}")).text


async def test_the_live_stream_tells_of_approvals(live: Api) -> None:
    dash = Dash(live.client)
    await dash.set_up(live.announced)
    feed = await live.feed("approval", name="Deploys")
    page = await dash.open("/approvals")
    assert 'data-live-on="approval"' in page.text
    async with live.client.stream("GET", "/live") as response:
        reader = SseReader(response)
        ready = await reader.next(timeout=5)  # subscribed: what changes from now on is told
        assert ready is not None and ready.event == "ready"
        event_id = (await live.ingest(feed, approval_event("Ship it?"))).json()["id"]
        heard = [(await reader.next(timeout=5)).json() for _ in range(5)]  # type: ignore[union-attr]
        assert {"kind": "approval", "id": event_id, "of": feed["id"]} in heard
        assert {"kind": "tile", "id": feed["id"]} in heard
        await live.post(f"/v1/approvals/{event_id}/respond", json={"action_type": "approve"})
        heard = [(await reader.next(timeout=5)).json() for _ in range(3)]  # type: ignore[union-attr]
        assert {"kind": "approval", "id": event_id, "of": feed["id"]} in heard
        assert {"kind": "tile", "id": feed["id"]} in heard  # the approval widget now shows "approved"
        live.app.state.server.should_exit = True


# Push settings


async def test_push_targets_are_added_tested_and_removed(
    api: Api, dash: Dash, receiver: Receiver, clock: FakeClock
) -> None:
    page = await dash.open("/settings/push")
    assert "No targets yet" in page.text and audit(page.text) == []
    bad = await dash.submit("/settings/push/targets", {"url": "nonsense://nowhere"})
    assert (
        bad.status_code == 422
        and 'value="nonsense://nowhere"' in bad.text
        and "is not a URL Apprise can send to" in bad.text
    )
    refused = await dash.submit("/settings/push/targets", {"url": "json://169.254.169.254/x"})
    assert refused.status_code == 422 and 'aria-invalid="true"' in refused.text

    url = f"json://user:s3cretpw@127.0.0.1:{receiver.port}/hook"
    added = await dash.follow(await dash.submit("/settings/push/targets", {"url": url}))
    assert "Added the JSON target json://user:****@127.0.0.1" in added.text and "s3cretpw" not in added.text
    [target] = (await api.get("/v1/push/targets")).json()["data"]
    assert f'data-target="{target["id"]}" data-kind="apprise"' in added.text

    tested = await dash.follow(await dash.submit(f"/settings/push/targets/{target['id']}/test"))
    assert notices(tested.text) == ["Sent a test notification. It should be on its way to you now."]
    assert json.loads(receiver.requests[0].body)["title"] == "Test from Glimpze"
    receiver.script([Answer(500)])
    failed = await dash.follow(await dash.submit(f"/settings/push/targets/{target['id']}/test"))
    assert "The test notification was not sent" in failed.text and "500" in failed.text

    # An event's push shows in the recent pushes, with the target's result.
    feed = await api.feed("status", name="API health")
    event = {
        "schema_type": "status",
        "content": {"title": "API", "status": "error", "message": "Down"},
        "intent": {"send_push": True},
    }
    assert (await api.ingest(feed, event)).json()["push"] == "queued"
    await api.glimpze.push.send_due(clock.now())
    log = await dash.open("/settings/push")
    assert 'data-status="sent"' in log.text and "API: Error" in log.text and "JSON (json://user:****@" in log.text
    assert audit(log.text) == []

    removed = await dash.follow(await dash.submit(f"/settings/push/targets/{target['id']}/delete"))
    assert "Removed the push target" in removed.text and (await api.get("/v1/push/targets")).json()["data"] == []
    assert (await dash.submit("/settings/push/targets/ptg_missing/test")).status_code == 404


async def test_this_browsers_subscription_is_json_behind_the_session_and_the_csrf_header(
    api: Api, dash: Dash, receiver: Receiver
) -> None:
    page = await dash.open("/settings/push")
    vapid = re.search(r'data-vapid-key="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    assert vapid == (await api.get("/v1/push/vapid-public-key")).json()["public_key"]
    csrf = re.search(r'data-csrf="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    browser = Browser()
    subscription = browser.subscription(receiver.url + "/push/abc")

    assert (await api.client.post("/settings/push/subscription", json=subscription)).status_code == 403
    saved = await api.client.post("/settings/push/subscription", json=subscription, headers={"X-CSRF-Token": csrf})
    assert saved.status_code == 201, saved.text
    target = saved.json()
    assert target["kind"] == "webpush" and "/push/abc" not in target["url"]
    listed = await dash.open("/settings/push")
    assert f'data-target="{target["id"]}" data-kind="webpush"' in listed.text

    await dash.submit(f"/settings/push/targets/{target['id']}/test")
    payload = browser.decrypt(receiver.requests[0].body)
    assert payload["title"] == "Test from Glimpze" and payload["url"] == "http://localhost:8080/"

    broken = {**subscription, "keys": {"p256dh": "short", "auth": "x"}}
    problem = await api.client.post("/settings/push/subscription", json=broken, headers={"X-CSRF-Token": csrf})
    assert problem.status_code == 422 and problem.headers["content-type"] == "application/problem+json"
    assert problem.json()["errors"][0]["path"] == "$.keys.p256dh"

    forget = {"endpoint": subscription["endpoint"]}
    gone = await api.client.post("/settings/push/subscription/delete", json=forget, headers={"X-CSRF-Token": csrf})
    assert gone.status_code == 204 and (await api.get("/v1/push/targets")).json()["data"] == []
    again = await api.client.post("/settings/push/subscription/delete", json=forget, headers={"X-CSRF-Token": csrf})
    assert again.status_code == 422

    await dash.submit("/logout", on="/settings/push")
    assert (await api.client.post("/settings/push/subscription", json=subscription)).status_code == 403
    api.client.cookies.clear()
    anonymous = await api.client.post("/settings/push/subscription", json=subscription, headers={"X-CSRF-Token": csrf})
    assert anonymous.status_code in (401, 403)


async def test_quiet_hours_are_set_checked_and_turned_off(api: Api, dash: Dash, clock: FakeClock) -> None:
    page = await dash.open("/settings/push")
    assert 'data-quiet-state="off"' in page.text and '<option value="Europe/Berlin">' in page.text
    bad = await dash.submit(
        "/settings/push/quiet-hours", {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"}
    )
    assert bad.status_code == 422 and "is not a known IANA time zone" in bad.text and 'value="Mars/Olympus"' in bad.text
    same = await dash.submit("/settings/push/quiet-hours", {"start": "22:00", "end": "22:00", "timezone": "UTC"})
    assert same.status_code == 422 and "must differ from start" in same.text

    saved = await dash.follow(
        await dash.submit("/settings/push/quiet-hours", {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"})
    )
    assert "Quiet hours are 22:00–07:00 (Europe/Berlin)" in saved.text
    state = (await api.get("/v1/settings/quiet-hours")).json()
    assert state["enabled"] and (state["start"], state["end"], state["timezone"]) == ("22:00", "07:00", "Europe/Berlin")
    assert 'value="22:00"' in saved.text and 'value="Europe/Berlin"' in saved.text

    off = await dash.follow(await dash.submit("/settings/push/quiet-hours/off"))
    assert "Quiet hours are off" in off.text and 'data-quiet-state="off"' in off.text
    assert (await api.get("/v1/settings/quiet-hours")).json()["enabled"] is False
