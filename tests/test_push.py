"""Push: real Apprise and real pywebpush to local receivers, push targets, the per-feed limit,
quiet hours with a fake clock, deferred re-notification, action links, lazy imports."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from py_vapid import Vapid02

from glimpze.clock import FakeClock
from glimpze.ops.logs import redact, safe_target
from glimpze.push import pushes as push_module
from tests.conftest import Api, driven, running
from tests.receiver import Answer, Receiver
from tests.server import REPO
from tests.webpush_browser import Browser

pytestmark = pytest.mark.anyio

NEW_YORK = ZoneInfo("America/New_York")
STATUS_EVENT = {
    "schema_type": "status",
    "content": {"title": "Production API", "status": "error", "message": "Database connection failed"},
    "intent": {"send_push": True},
}
APPROVAL_EVENT = {
    "schema_type": "approval",
    "content": {"description": "Deploy v2.3.0 to production?"},
    "metadata": {"deployment_id": "deploy-123"},
}


@pytest.fixture
async def api(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Api]:
    async with driven(tmp_path, clock, '[push]\nvapid_subject = "mailto:ops@example.com"') as api:
        yield api


async def send(api: Api, clock: FakeClock) -> int:
    return await api.glimpze.push.send_due(clock.now())


async def apprise_target(api: Api, receiver: Receiver) -> dict[str, Any]:
    response = await api.post("/v1/push/targets", json={"url": f"json://user:s3cretpw@127.0.0.1:{receiver.port}/hook"})
    assert response.status_code == 201, response.text
    return response.json()


async def push_log(api: Api, **params: str) -> list[dict[str, Any]]:
    return (await api.get("/v1/push/log", params=params)).json()["data"]


def messages(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.requests]


async def test_apprise_json_target_delivers_the_push_to_a_local_receiver(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    target = await apprise_target(api, receiver)
    assert target["kind"] == "apprise" and target["service"] == "JSON"
    assert "s3cretpw" not in target["url"] and target["url"].startswith("json://user:****@127.0.0.1")
    listed = (await api.get("/v1/push/targets")).json()
    assert "s3cretpw" not in json.dumps(listed) and [t["id"] for t in listed["data"]] == [target["id"]]

    feed = await api.feed("status", name="API health")
    answer = await api.ingest(feed, STATUS_EVENT)
    assert answer.json()["push"] == "queued"
    assert receiver.requests == []  # never inline in the request
    assert await send(api, clock) == 1
    [message] = messages(receiver)
    assert message["title"] == "Production API: Error" and message["message"] == "Database connection failed"

    [entry] = await push_log(api, event_id=answer.json()["id"])
    assert entry["status"] == "sent" and entry["results"] == [
        {"target_id": target["id"], "kind": "apprise", "status": "sent", "error": None, "at": entry["sent_at"]}
    ]
    events = (await api.get(f"/v1/feeds/{feed['id']}/events")).json()["data"]
    assert events[0]["push"] == "queued"

    receiver.script([Answer(500)])
    clock.advance(60)
    await api.ingest(feed, STATUS_EVENT)
    await send(api, clock)
    failed = (await push_log(api))[0]
    assert failed["status"] == "failed" and "500" in failed["reason"]
    assert failed["results"][0]["status"] == "failed"


async def test_web_push_through_pywebpush_is_decrypted_by_the_browsers_keys(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    public_key = (await api.get("/v1/push/vapid-public-key")).json()["public_key"]
    assert len(base64.urlsafe_b64decode(public_key + "==")) == 65
    browser = Browser()
    subscribed = await api.post("/v1/push/subscriptions", json=browser.subscription(receiver.url + "/sub/1"))
    assert subscribed.status_code == 201, subscribed.text
    assert subscribed.json()["kind"] == "webpush" and "/sub/1" not in subscribed.json()["url"]

    feed = await api.feed("counter", name="Signups")
    event = {"schema_type": "counter", "content": {"title": "New Signups", "count": 127, "unit": "users"}}
    answer = await api.ingest(feed, {**event, "intent": {"send_push": True}})
    assert answer.json()["push"] == "queued"
    assert await send(api, clock) == 1

    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/hook/sub/1"
    assert request.headers["content-encoding"] == "aes128gcm"
    assert request.headers["ttl"] == "86400" and request.headers["urgency"] == "normal"
    payload = browser.decrypt(request.body)
    assert payload == {"title": "New Signups", "body": "127 users", "url": "http://localhost:8080/", "actions": []}
    authorization = request.headers["authorization"]
    assert authorization.startswith("vapid t=") and authorization.endswith(f",k={public_key}")
    assert Vapid02.verify(authorization)  # signed by the key browsers subscribed with
    jwt = authorization.split("t=", 1)[1].split(",", 1)[0]
    claims = json.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))
    assert claims["aud"] == f"http://127.0.0.1:{receiver.port}" and claims["sub"] == "mailto:ops@example.com"


async def test_vapid_keys_are_made_once_owner_only_and_kept_across_restarts(
    tmp_path: Path, config: Any, clock: FakeClock
) -> None:
    async with running(config, clock) as api:
        key = (await api.get("/v1/push/vapid-public-key")).json()["public_key"]
        admin = api.key
    private = config.data_path / "vapid_private.pem"
    assert private.stat().st_mode & 0o777 == 0o600
    assert (config.data_path / "vapid_public.txt").stat().st_mode & 0o777 == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    async with running(config, clock, key=admin) as api:
        assert (await api.get("/v1/push/vapid-public-key")).json()["public_key"] == key


async def test_a_410_from_the_push_service_removes_the_subscription(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    browser = Browser()
    await api.post("/v1/push/subscriptions", json=browser.subscription(receiver.url))
    feed = await api.feed("status")
    receiver.script([Answer(410)])
    answer = await api.ingest(feed, STATUS_EVENT)
    await send(api, clock)
    [entry] = await push_log(api, event_id=answer.json()["id"])
    assert entry["status"] == "failed" and entry["results"][0]["status"] == "removed"
    assert (await api.get("/v1/push/targets")).json()["data"] == []
    clock.advance(60)
    assert (await api.ingest(feed, STATUS_EVENT)).json()["push"] == "none"  # no targets left


async def test_push_is_none_without_targets_or_without_send_push(api: Api, receiver: Receiver) -> None:
    feed = await api.feed("status")
    assert (await api.ingest(feed, STATUS_EVENT)).json()["push"] == "none"
    approvals = await api.feed("approval")
    assert (await api.ingest(approvals, APPROVAL_EVENT)).json()["push"] == "none"
    await apprise_target(api, receiver)
    quiet = {**STATUS_EVENT, "intent": {"send_push": False}}
    assert (await api.ingest(feed, quiet)).json()["push"] == "none"
    assert await push_log(api) == []


async def test_per_feed_push_limit_coalesces_and_approvals_are_exempt(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    await apprise_target(api, receiver)
    feed, other = await api.feed("status"), await api.feed("status")
    assert (await api.ingest(feed, STATUS_EVENT)).json()["push"] == "queued"
    clock.advance(5)
    second = await api.ingest(feed, STATUS_EVENT)
    assert second.json()["push"] == "suppressed"
    assert (await api.ingest(other, STATUS_EVENT)).json()["push"] == "queued"  # the limit is per feed
    clock.advance(5)  # 10 s after the first push
    assert (await api.ingest(feed, STATUS_EVENT)).json()["push"] == "queued"

    [coalesced] = await push_log(api, event_id=second.json()["id"])
    assert coalesced["status"] == "coalesced" and "one per 10 s" in coalesced["reason"]
    approvals = await api.feed("approval")
    answers = [(await api.ingest(approvals, APPROVAL_EVENT)).json()["push"] for _ in range(3)]
    assert answers == ["queued"] * 3
    assert await send(api, clock) == 6
    assert len(receiver.requests) == 6


async def test_quiet_hours_across_midnight_in_new_york(api: Api, receiver: Receiver, clock: FakeClock) -> None:
    await apprise_target(api, receiver)
    quiet = {"start": "22:00", "end": "07:00", "timezone": "America/New_York"}
    state = (await api.put("/v1/settings/quiet-hours", json=quiet)).json()
    assert state["enabled"] is True and state["start"] == "22:00" and state["timezone"] == "America/New_York"
    feed, approvals = await api.feed("status", name="API"), await api.feed("approval", name="Deploys")

    # 21:59 local (02:59 UTC the next day): outside, sent
    clock.t = datetime(2027, 1, 15, 21, 59, tzinfo=NEW_YORK).timestamp()
    assert (await api.ingest(feed, STATUS_EVENT)).json()["push"] == "queued"
    assert await send(api, clock) == 1

    # 23:30 local: a push is suppressed; an approval is held
    clock.t = datetime(2027, 1, 15, 23, 30, tzinfo=NEW_YORK).timestamp()
    inside = await api.get("/v1/settings/quiet-hours")
    assert inside.json()["active_now"] is True and inside.json()["next_end"] == "2027-01-16T12:00:00.000Z"
    suppressed = await api.ingest(feed, STATUS_EVENT)
    assert suppressed.json()["push"] == "suppressed"
    held = await api.ingest(approvals, APPROVAL_EVENT)
    assert held.json()["push"] == "queued"  # it will be pushed, when the window ends
    assert await send(api, clock) == 0
    assert (await push_log(api, event_id=suppressed.json()["id"]))[0]["status"] == "suppressed"
    assert (await push_log(api, event_id=held.json()["id"]))[0]["status"] == "held"

    # 06:59:30 local: still inside, nothing released
    clock.t = datetime(2027, 1, 16, 6, 59, 30, tzinfo=NEW_YORK).timestamp()
    assert await api.glimpze.push.release_quiet_hours(clock.now()) == 0
    assert await send(api, clock) == 0
    assert len(receiver.requests) == 1

    # 07:00 local: the window ends; the held approval goes out, the suppressed push never does
    clock.t = datetime(2027, 1, 16, 7, 0, tzinfo=NEW_YORK).timestamp()
    assert await api.glimpze.push.release_quiet_hours(clock.now()) == 1
    assert await send(api, clock) == 1
    assert [m["title"] for m in messages(receiver)] == ["Production API: Error", "Approval needed: Deploys"]
    assert "Approve: http://localhost:8080/a/gza_" in messages(receiver)[1]["message"]
    assert (await push_log(api, event_id=held.json()["id"]))[0]["status"] == "sent"
    assert (await api.ingest(feed, STATUS_EVENT)).json()["push"] == "queued"

    assert (await api.delete("/v1/settings/quiet-hours")).status_code == 204
    assert (await api.get("/v1/settings/quiet-hours")).json() == {
        "enabled": False,
        "start": None,
        "end": None,
        "timezone": None,
        "active_now": False,
        "next_end": None,
    }


async def test_turning_quiet_hours_off_releases_held_approvals(api: Api, receiver: Receiver, clock: FakeClock) -> None:
    await apprise_target(api, receiver)
    clock.t = datetime(2027, 7, 1, 23, 0, tzinfo=NEW_YORK).timestamp()  # summer time: the window follows it
    await api.put("/v1/settings/quiet-hours", json={"start": "22:00", "end": "07:00", "timezone": "America/New_York"})
    approvals = await api.feed("approval")
    held = await api.ingest(approvals, APPROVAL_EVENT)
    assert (await push_log(api, event_id=held.json()["id"]))[0]["status"] == "held"
    await api.delete("/v1/settings/quiet-hours")
    assert (await push_log(api, event_id=held.json()["id"]))[0]["status"] == "queued"
    assert await send(api, clock) == 1


@pytest.mark.parametrize(
    "body,path",
    [
        ({"start": "22:00", "end": "7:00", "timezone": "UTC"}, "$.end"),
        ({"start": "24:00", "end": "07:00", "timezone": "UTC"}, "$.start"),
        ({"start": "22:00", "end": "22:00", "timezone": "UTC"}, "$.end"),
        ({"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"}, "$.timezone"),
        ({"start": "22:00", "end": "07:00", "timezone": "../etc/passwd"}, "$.timezone"),
        ({"start": "22:00", "end": "07:00"}, "$.timezone"),
        ({"start": "22:00", "end": "07:00", "timezone": "UTC", "days": [1]}, "$.days"),
    ],
)
async def test_quiet_hours_validation(api: Api, body: dict[str, Any], path: str) -> None:
    response = await api.put("/v1/settings/quiet-hours", json=body)
    assert response.status_code == 422 and response.json()["errors"][0]["path"] == path


async def test_a_deferred_approval_is_pushed_again_after_the_delay(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    await apprise_target(api, receiver)
    feed = await api.feed("approval", name="Deploys")
    event_id = (await api.ingest(feed, APPROVAL_EVENT)).json()["id"]
    await send(api, clock)
    assert (await api.post(f"/v1/approvals/{event_id}/respond", json={"action_type": "defer"})).status_code == 200
    clock.advance(3599)
    assert await api.glimpze.approvals.renotify_deferred(clock.now()) == 0
    clock.advance(1)
    assert await api.glimpze.approvals.renotify_deferred(clock.now()) == 1
    assert await api.glimpze.approvals.renotify_deferred(clock.now()) == 0  # once per defer
    assert await send(api, clock) == 1
    assert [m["title"] for m in messages(receiver)] == [
        "Approval needed: Deploys",
        "Reminder: Approval needed: Deploys",
    ]
    assert (await api.get(f"/v1/approvals/{event_id}")).json()["deferred_until"] is None


async def test_an_approval_answered_before_its_push_went_out_is_not_pushed(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    await apprise_target(api, receiver)
    feed = await api.feed("approval")
    event_id = (await api.ingest(feed, APPROVAL_EVENT)).json()["id"]
    await api.post(f"/v1/approvals/{event_id}/respond", json={"action_type": "approve"})
    assert await send(api, clock) == 1
    assert receiver.requests == []
    [entry] = await push_log(api, event_id=event_id)
    assert entry["status"] == "suppressed" and "answered" in entry["reason"]


def links_in(message: dict[str, Any]) -> dict[str, str]:
    """The action links of an Apprise message, as paths on this server."""
    return {
        m[0].lower(): m[1] for m in re.findall(r"(Approve|Reject): http://localhost:8080(/a/\S+)", message["message"])
    }


async def test_action_links_confirm_on_get_decide_on_post_once(api: Api, receiver: Receiver, clock: FakeClock) -> None:
    await apprise_target(api, receiver)
    callback = Receiver()
    try:
        feed = await api.feed("approval", name="Deploys")
        body = {**APPROVAL_EVENT, "callback": {"url": callback.url}}
        event_id = (await api.ingest(feed, body)).json()["id"]
        await send(api, clock)
        links = links_in(messages(receiver)[0])
        assert set(links) == {"approve", "reject"}

        page = await api.client.get(links["approve"])  # a link preview, or the user opening it
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "Deploy v2.3.0 to production?" in page.text and "<form method=post>" in page.text
        assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert (await api.get(f"/v1/approvals/{event_id}")).json()["status"] == "pending"  # GET changed nothing

        done = await api.client.post(links["approve"])
        assert done.status_code == 200 and "Approved." in done.text
        approval = (await api.get(f"/v1/approvals/{event_id}")).json()
        assert approval["status"] == "approved" and approval["decided_by"] == "push"
        await api.glimpze.dispatcher.deliver_due(clock.now())
        assert json.loads(callback.requests[0].body)["action_type"] == "approve"

        again = await api.client.post(links["approve"])
        assert again.status_code == 409 and "Already <strong>approved</strong> by push" in again.text
        reject = await api.client.post(links["reject"])
        assert reject.status_code == 409 and (await api.get(f"/v1/approvals/{event_id}")).json()["status"] == "approved"
        assert len(callback.requests) == 1
    finally:
        callback.close()


async def test_action_links_expire_and_refuse_tampering(api: Api, receiver: Receiver, clock: FakeClock) -> None:
    await apprise_target(api, receiver)
    feed = await api.feed("approval")
    event_id = (await api.ingest(feed, APPROVAL_EVENT)).json()["id"]
    await send(api, clock)
    links = links_in(messages(receiver)[0])

    tampered = links["reject"].replace(".reject.", ".approve.")
    assert (await api.client.post(tampered)).status_code == 404
    assert (await api.client.get("/a/gza_nonsense")).status_code == 404
    assert (await api.get(f"/v1/approvals/{event_id}")).json()["status"] == "pending"

    clock.advance(86400)  # [push] action_link_ttl_seconds
    expired = await api.client.post(links["approve"])
    assert expired.status_code == 410 and "expired" in expired.text
    assert (await api.get(f"/v1/approvals/{event_id}")).json()["status"] == "pending"

    # a re-notification brings fresh links
    await api.post(f"/v1/approvals/{event_id}/respond", json={"action_type": "defer"})
    clock.advance(3600)
    await api.glimpze.approvals.renotify_deferred(clock.now())
    await send(api, clock)
    fresh = links_in(messages(receiver)[1])
    assert (await api.client.post(fresh["reject"])).status_code == 200
    assert (await api.get(f"/v1/approvals/{event_id}")).json()["status"] == "rejected"


async def test_web_push_approval_carries_approve_and_reject_actions(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    browser = Browser()
    await api.post("/v1/push/subscriptions", json=browser.subscription(receiver.url))
    feed = await api.feed("approval", name="Deploys")
    event_id = (await api.ingest(feed, APPROVAL_EVENT)).json()["id"]
    await send(api, clock)
    request = receiver.requests[0]
    assert request.headers["urgency"] == "high"
    payload = browser.decrypt(request.body)
    assert payload["title"] == "Approval needed: Deploys" and payload["body"] == "Deploy v2.3.0 to production?"
    assert [(a["action"], a["title"]) for a in payload["actions"]] == [("approve", "Approve"), ("reject", "Reject")]
    assert payload["url"] == f"http://localhost:8080/approvals/{event_id}"  # tapping it opens the approval
    reject = payload["actions"][1]["url"].removeprefix("http://localhost:8080")
    assert (await api.client.post(reject)).status_code == 200
    assert (await api.get(f"/v1/approvals/{event_id}")).json()["status"] == "rejected"


@pytest.mark.parametrize(
    "body,path,code",
    [
        ({"url": "nonsense://whatever"}, "$.url", "validation_failed"),
        ({"url": ""}, "$.url", "validation_failed"),
        ({"url": "json://10.1.2.3/hook"}, "$.url", "target_not_allowed"),
        ({"url": "ntfys://169.254.169.254/topic"}, "$.url", "target_not_allowed"),
        ({"url": "json://127.0.0.1/", "name": "x"}, "$.name", "validation_failed"),
    ],
)
async def test_apprise_targets_are_checked_on_save(api: Api, body: dict[str, Any], path: str, code: str) -> None:
    response = await api.post("/v1/push/targets", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code and response.json()["errors"][0]["path"] == path


async def test_cloud_targets_are_saved_redacted_and_targets_can_be_deleted(api: Api, receiver: Receiver) -> None:
    telegram = (await api.post("/v1/push/targets", json={"url": "tgram://123456789:AAbbCCddEEff/4242"})).json()
    assert telegram["service"] == "Telegram" and "AAbbCCddEEff" not in telegram["url"]
    feed = await api.feed("status")
    assert (await api.ingest(feed, STATUS_EVENT)).json()["push"] == "queued"
    assert (await api.delete(f"/v1/push/targets/{telegram['id']}")).status_code == 204
    assert (await api.delete(f"/v1/push/targets/{telegram['id']}")).status_code == 404
    assert (await api.ingest(feed, STATUS_EVENT)).json()["push"] == "none"


@pytest.mark.parametrize(
    "change,path,code",
    [
        ({"endpoint": "ftp://push.example.com/x"}, "$.endpoint", "validation_failed"),
        ({"endpoint": "https://10.0.0.1/push/x"}, "$.endpoint", "target_not_allowed"),
        ({"keys": {"p256dh": "AAAA", "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}, "$.keys.p256dh", "validation_failed"),
        ({"keys": {"p256dh": None, "auth": "x"}}, "$.keys.p256dh", "validation_failed"),
        ({"keys": "nope"}, "$.keys", "validation_failed"),
    ],
)
async def test_subscriptions_are_checked(api: Api, change: dict[str, Any], path: str, code: str) -> None:
    body = {**Browser().subscription("https://push.example.com/send/abc"), **change}
    response = await api.post("/v1/push/subscriptions", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code and response.json()["errors"][0]["path"] == path


async def test_subscribe_again_replaces_keys_and_unsubscribe_by_endpoint(api: Api) -> None:
    endpoint = "https://push.example.com/send/abc"
    first = (await api.post("/v1/push/subscriptions", json=Browser().subscription(endpoint))).json()
    second = (await api.post("/v1/push/subscriptions", json=Browser().subscription(endpoint))).json()
    assert first["id"] == second["id"] and len((await api.get("/v1/push/targets")).json()["data"]) == 1
    bad_auth = Browser().subscription(endpoint)
    bad_auth["keys"]["auth"] = "short"
    assert (await api.post("/v1/push/subscriptions", json=bad_auth)).json()["errors"][0]["path"] == "$.keys.auth"
    gone = await api.client.request("DELETE", "/v1/push/subscriptions", json={"endpoint": endpoint}, headers=api.auth)
    assert gone.status_code == 204
    again = await api.client.request("DELETE", "/v1/push/subscriptions", json={"endpoint": endpoint}, headers=api.auth)
    assert again.status_code == 422
    assert (await api.get("/v1/push/targets")).json()["data"] == []


def test_an_idle_server_does_not_import_push_libraries(tmp_path: Path) -> None:
    """A started server, first start included, imports neither pywebpush nor Apprise, nor
    cryptography: they load with the first push target, push or request for the VAPID key."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from glimpze.app import create_app
        from glimpze.config import load

        async def start():
            app = create_app(load(None, env={{}}, overrides={{"data_dir": {str(tmp_path)!r}}}), announce=print)
            async with app.lifespan():
                pass

        asyncio.run(start())
        heavy = ("pywebpush", "apprise", "py_vapid", "http_ece", "cryptography")
        print(sorted(m for m in heavy if m in sys.modules))
        """
    )
    for run in ("first", "second"):
        result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().splitlines()[-1] == "[]", run


async def test_a_push_cut_short_by_a_crash_is_sent_at_the_next_start(
    api: Api, receiver: Receiver, clock: FakeClock
) -> None:
    await apprise_target(api, receiver)
    feed = await api.feed("status")
    await api.ingest(feed, STATUS_EVENT)
    push = api.glimpze.push
    claimed = await api.glimpze.db.write(lambda conn: push_module._claim(clock.now(), conn))
    assert len(claimed) == 1 and (await push_log(api))[0]["status"] == "sending"  # then the process died
    await push.start()  # a new process: leases are cleared, the runner sends at once
    try:
        await receiver.wait_for(1)
    finally:
        await push.stop_runner()
    assert messages(receiver)[0]["title"] == "Production API: Error"


def test_action_link_tokens_stay_out_of_logs() -> None:
    token = "gza_evt_06an0000000000000000.approve.1800086400.abcdEFGH1234.0123456789abcdefABCD_-"
    assert token not in safe_target(f"/a/{token}", b"")
    assert token not in redact(f"POST /a/{token} 200") and "gza_…" in redact(f"link {token}")


async def test_a_test_push_goes_to_one_target_at_once_and_says_how_it_went(api: Api, receiver: Receiver) -> None:
    target = await apprise_target(api, receiver)
    browser = Browser()
    subscription = (await api.post("/v1/push/subscriptions", json=browser.subscription(receiver.url + "/sub"))).json()

    sent = await api.post(f"/v1/push/targets/{target['id']}/test")
    assert sent.status_code == 200, sent.text
    assert sent.json() == {
        "target_id": target["id"],
        "kind": "apprise",
        "status": "sent",
        "error": None,
        "at": sent.json()["at"],
    }
    [message] = messages(receiver)
    assert message["title"] == "Test from Glimpze" and message["message"] == push_module.TEST_BODY

    assert (await api.post(f"/v1/push/targets/{subscription['id']}/test")).json()["status"] == "sent"
    payload = browser.decrypt(receiver.requests[1].body)
    assert payload == {
        "title": "Test from Glimpze",
        "body": push_module.TEST_BODY,
        "url": "http://localhost:8080/",
        "actions": [],
    }

    receiver.script([Answer(500)])
    failed = (await api.post(f"/v1/push/targets/{target['id']}/test")).json()
    assert failed["status"] == "failed" and "500" in failed["error"]
    receiver.script([Answer(410)])
    gone = (await api.post(f"/v1/push/targets/{subscription['id']}/test")).json()
    assert gone["status"] == "removed" and "410" in gone["error"]
    assert [t["id"] for t in (await api.get("/v1/push/targets")).json()["data"]] == [target["id"]]
    assert (await api.post("/v1/push/targets/ptg_missing/test")).status_code == 404
    assert await push_log(api) == []  # tests are not an event's pushes


async def test_metrics_count_pushes_by_outcome(api: Api, receiver: Receiver, clock: FakeClock) -> None:
    await apprise_target(api, receiver)
    feed = await api.feed("status")
    assert (await api.ingest(feed, STATUS_EVENT)).json()["push"] == "queued"
    assert (await api.ingest(feed, STATUS_EVENT)).json()["push"] == "suppressed"  # the feed's push limit
    assert await send(api, clock) == 1
    receiver.script([Answer(500)])
    clock.advance(60)
    await api.ingest(feed, STATUS_EVENT)
    assert await send(api, clock) == 1
    pushes = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in (await api.get("/metrics")).text.splitlines()
        if line.startswith("glimpze_pushes_total{")
    }
    assert pushes == {"sent": 1, "failed": 1, "coalesced": 1}


def test_processes_sharing_a_data_dir_keep_the_first_vapid_key_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes starting together on one data dir (several behind PostgreSQL) both find no key
    pair; the one that stores its private key second must use the first's, not overwrite it."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from glimpze.push import webpush

    other = tmp_path / "other"
    first = webpush.ensure_keys(other)  # what the other process made, on its own disk here
    generate = ec.generate_private_key

    def generate_while_the_other_finishes(curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
        key = generate(curve)
        (tmp_path / webpush.PRIVATE_KEY_FILE).write_bytes((other / webpush.PRIVATE_KEY_FILE).read_bytes())
        return key

    monkeypatch.setattr(ec, "generate_private_key", generate_while_the_other_finishes)
    assert webpush.ensure_keys(tmp_path) == first
    assert (tmp_path / webpush.PUBLIC_KEY_FILE).read_text().strip() == first
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == sorted(
        [webpush.PRIVATE_KEY_FILE, webpush.PUBLIC_KEY_FILE]
    )  # no temporary file left behind
