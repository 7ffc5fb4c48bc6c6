"""ntfy under /ntfy and Gotify under /gotify (DESIGN §10): each documented form of publishing, the
event it stores, the answer's shape, errors in each dialect's shape, and feed topics."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from glimpze.clock import FakeClock
from glimpze.config import load
from glimpze.web.dialects import ntfy_secret
from tests.conftest import Api, driven, row_counts, running
from tests.imagefiles import picture, widget
from tests.receiver import Receiver

pytestmark = pytest.mark.anyio

NTFY_ANSWER_KEYS = {"id", "time", "expires", "event", "topic", "message"}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def ntfy_auth_param(header: str) -> str:
    """`?auth=` as ntfy's docs make it: raw URL-safe base64 of the Authorization header."""
    return base64.urlsafe_b64encode(header.encode()).decode().rstrip("=")


async def status_feed(api: Api, topic: str | None = None, name: str = "Backups") -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "schema_type": "status"}
    if topic:
        body["topic"] = topic
    response = await api.post("/v1/feeds", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def last_event(api: Api, feed: dict[str, Any]) -> dict[str, Any]:
    events = (await api.get(f"/v1/feeds/{feed['id']}/events")).json()["data"]
    return dict(events[0])


# ntfy: each form (text body, headers, query parameters, JSON, webhooks) and each credential


NTFY_FORMS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "text body, Bearer",
        {"content": "Backup successful 😀", "auth": "bearer"},
        {"title": "backups", "status": "info", "message": "Backup successful 😀", "push": False},
    ),
    (
        "headers, Basic with any user",
        {
            "content": "Remote access to phils-laptop detected. Act right away.",
            "headers": {"Title": "Unauthorized access detected", "Priority": "urgent", "Tags": "warning,skull"},
            "auth": "basic",
        },
        {"title": "Unauthorized access detected", "status": "error", "push": True, "priority": 5},
    ),
    (
        "X- headers, ?auth=",
        {
            "content": "Backup of mailsrv13 failed",
            "headers": {"X-Title": "Backups", "X-Priority": "4", "X-Tags": "warning,mailsrv13"},
            "auth": "param",
        },
        {"title": "Backups", "status": "warning", "push": True, "priority": 4},
    ),
    (
        "short headers, Basic with the key as user",
        {"content": "All good", "headers": {"t": "Nightly", "p": "2", "ta": "white_check_mark"}, "auth": "user"},
        {"title": "Nightly", "status": "success", "push": False, "priority": 2},
    ),
    (
        "query parameters",
        {"params": {"title": "From the query", "message": "q", "priority": "high", "tags": "tada"}, "auth": "bearer"},
        {"title": "From the query", "status": "success", "message": "q", "push": True},
    ),
    (
        "short query parameters",
        {"params": {"t": "Short", "m": "line one\\nline two", "p": "min"}, "auth": "bearer"},
        {"title": "Short", "status": "info", "message": "line one\nline two", "push": False, "priority": 1},
    ),
    (
        "PUT, Markdown and a click URL",
        {
            "method": "PUT",
            "content": "Look ma, **bold text**",
            "headers": {"Markdown": "yes", "Click": "https://example.com/x"},
            "auth": "bearer",
        },
        {"status": "info", "source": {"markdown": True, "click": "https://example.com/x"}},
    ),
    (
        "RFC 2047 title",
        {"content": "m", "headers": {"Title": "=?UTF-8?B?8J+HqfCfh6o=?="}, "auth": "bearer"},
        {"title": "🇩🇪"},
    ),
]


@pytest.mark.parametrize("name,send,expect", NTFY_FORMS, ids=[form[0] for form in NTFY_FORMS])
async def test_each_ntfy_form_stores_a_status_event_and_answers_in_ntfys_shape(
    api: Api, name: str, send: dict[str, Any], expect: dict[str, Any]
) -> None:
    feed = await status_feed(api, topic="backups")
    key = feed["write_key"]
    headers = dict(send.get("headers", {}))
    params = dict(send.get("params", {}))
    auth = send["auth"]
    if auth == "bearer":
        headers["Authorization"] = f"Bearer {key}"
    elif auth == "basic":
        headers["Authorization"] = basic("phil", key)
    elif auth == "user":
        headers["Authorization"] = basic(key, "")
    else:
        params["auth"] = ntfy_auth_param(basic("", key))
    response = await api.client.request(
        send.get("method", "POST"), "/ntfy/backups", content=send.get("content", ""), headers=headers, params=params
    )

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer.keys() >= NTFY_ANSWER_KEYS
    assert answer["event"] == "message" and answer["topic"] == "backups"
    assert answer["id"].startswith("evt_") and answer["expires"] > answer["time"]
    event = await last_event(api, feed)
    assert event["id"] == answer["id"] and event["schema_type"] == "status"
    content = event["content"]
    assert content["title"] == expect.get("title", content["title"])
    assert content["status"] == expect.get("status", content["status"])
    assert content["message"] == expect.get("message", content["message"]) == answer["message"]
    assert event["intent"]["send_push"] is expect.get("push", False)
    source = event["metadata"]["source"]
    assert source["protocol"] == "ntfy" and source["topic"] == "backups"
    if "priority" in expect:
        assert source["priority"] == answer["priority"] == expect["priority"]
    for key_, value in expect.get("source", {}).items():
        assert source[key_] == value


async def test_ntfy_json_publish_at_the_root(api: Api) -> None:
    feed = await status_feed(api, topic="mytopic")
    body = {
        "topic": "mytopic",
        "message": "Disk space is low at 5.1 GB",
        "title": "Low disk space alert",
        "tags": ["warning", "cd"],
        "priority": 4,
        "click": "https://homecamera.lan/xasds1h2xsSsa/",
        "actions": [{"action": "view", "label": "Admin panel", "url": "https://filesrv.lan/admin"}],
    }
    response = await api.client.post("/ntfy", json=body, headers={"Authorization": f"Bearer {feed['write_key']}"})

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["title"] == "Low disk space alert" and answer["tags"] == ["warning", "cd"]
    assert answer["priority"] == 4 and answer["actions"][0]["label"] == "Admin panel"
    event = await last_event(api, feed)
    assert event["content"] == {"title": "Low disk space alert", "status": "warning", "message": body["message"]}
    assert event["intent"] == {"update_widget": True, "send_push": True}
    assert event["metadata"]["source"]["click"] == body["click"]
    assert event["metadata"]["source"]["actions"] == body["actions"]


@pytest.mark.parametrize("method,path", [("GET", "/ntfy/mywebhook/trigger"), ("GET", "/ntfy/mywebhook/publish")])
async def test_ntfy_publish_as_a_webhook_with_get(api: Api, method: str, path: str) -> None:
    feed = await status_feed(api, topic="mywebhook")
    params = {"auth": ntfy_auth_param(f"Bearer {feed['write_key']}")}
    if path.endswith("publish"):
        params.update({"message": "Webhook triggered", "priority": "high", "tags": "warning,skull"})
    response = await api.client.request(method, path, params=params)

    assert response.status_code == 200, response.text
    content = (await last_event(api, feed))["content"]
    if path.endswith("trigger"):
        assert content == {"title": "mywebhook", "status": "info", "message": "triggered"}
    else:
        assert content == {"title": "mywebhook", "status": "error", "message": "Webhook triggered"}


async def test_a_feed_id_is_a_topic_and_templates_fill_placeholders(api: Api) -> None:
    feed = await status_feed(api)
    data = {"hostname": "phil-pc", "error": {"level": "severe", "desc": "Disk has run out of space"}}
    params = {"tpl": "yes", "t": "{{.hostname}}: A {{.error.level}} error", "m": "Error message: {{ .error.desc }}"}
    response = await api.client.post(
        f"/ntfy/{feed['id']}",
        content=json.dumps(data),
        params=params,
        headers={"Authorization": f"Bearer {feed['write_key']}"},
    )

    assert response.status_code == 200, response.text
    content = (await last_event(api, feed))["content"]
    assert content["title"] == "phil-pc: A severe error"
    assert content["message"] == "Error message: Disk has run out of space"


async def test_ntfy_x_id_is_an_idempotency_key(api: Api) -> None:
    feed = await status_feed(api, topic="once")
    headers = {"Authorization": f"Bearer {feed['write_key']}", "X-ID": "backup-2024-06-01"}
    first = await api.client.post("/ntfy/once", content="done", headers=headers)
    again = await api.client.post("/ntfy/once", content="done", headers=headers)

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert len((await api.get(f"/v1/feeds/{feed['id']}/events")).json()["data"]) == 1


NTFY_REFUSALS: list[tuple[str, dict[str, Any], int, int, list[str]]] = [
    ("no key", {"auth": None}, 401, 40101, []),
    ("a wrong key", {"auth": "Bearer gzw_" + "x" * 43}, 401, 40101, []),
    ("another feed's topic", {"path": "/ntfy/elsewhere"}, 404, 40401, []),
    ("an unknown topic", {"path": "/ntfy/nothing-here"}, 404, 40401, []),
    ("an invalid topic", {"path": "/ntfy/bad.topic"}, 404, 40401, []),
    ("a subscription path", {"path": "/ntfy/backups/json", "method": "GET"}, 404, 40401, []),
    ("a bad priority", {"headers": {"Priority": "9"}}, 422, 42201, ["priority"]),
    ("bad actions", {"headers": {"Actions": "jump, Go"}}, 422, 42201, ["actions"]),
    (
        "what Glimpze does not offer",
        {
            "headers": {
                "Email": "phil@example.com",
                "Attach": "https://x.example/a.jpg",
                "Delay": "30min",
                "Call": "yes",
            }
        },
        422,
        42201,
        ["attach", "email", "call", "delay"],
    ),
    ("a file to a status feed", {"headers": {"Filename": "flower.jpg"}}, 422, 42201, ["attachment"]),
    ("a message too long", {"content": "x" * 1001}, 422, 42201, ["message"]),
]


@pytest.mark.parametrize("name,send,status,code,fields", NTFY_REFUSALS, ids=[r[0] for r in NTFY_REFUSALS])
async def test_ntfy_refusals_answer_in_ntfys_error_shape_and_store_nothing(
    api: Api, name: str, send: dict[str, Any], status: int, code: int, fields: list[str]
) -> None:
    feed = await status_feed(api, topic="backups")
    await status_feed(api, topic="elsewhere", name="Other")
    before = row_counts(api.glimpze.config.db_path)
    auth = send.get("auth", f"Bearer {feed['write_key']}")
    headers = {**({"Authorization": auth} if auth else {}), **send.get("headers", {})}
    response = await api.client.request(
        send.get("method", "POST"), send.get("path", "/ntfy/backups"), content=send.get("content", "m"), headers=headers
    )

    assert response.status_code == status, response.text
    answer = response.json()
    assert answer.keys() == {"code", "http", "error"} and answer["code"] == code and answer["http"] == status
    for field in fields:
        assert f"{field}:" in answer["error"]
    assert row_counts(api.glimpze.config.db_path) == before


# Gotify


async def test_each_gotify_form_stores_a_status_event_and_answers_gotifys_message(api: Api) -> None:
    feed = await status_feed(api, name="Backup server")
    key = feed["write_key"]
    forms: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"params": {"token": key}, "json": {"title": "my title", "message": "my message", "priority": 5}}, {}),
        ({"headers": {"X-Gotify-Key": key}, "data": {"title": "form", "message": "urlencoded", "priority": "9"}}, {}),
        (
            {
                "headers": {"Authorization": f"Bearer {key}"},
                "files": {"message": (None, "multipart"), "priority": (None, "2")},
            },
            {},
        ),
        (
            {
                "params": {"token": key},
                "json": {
                    "message": "**bold**",
                    "extras": {
                        "client::display": {"contentType": "text/markdown"},
                        "client::notification": {"click": {"url": "https://gotify.net"}},
                    },
                },
            },
            {},
        ),
    ]
    expected = [
        ("my title", "warning", False, 5),
        ("form", "error", True, 9),
        ("Backup server", "info", False, 2),
        ("Backup server", "info", False, 0),
    ]
    for (send, _), (title, status, push, priority) in zip(forms, expected):
        response = await api.client.post("/gotify/message", **send)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert {"id", "appid", "message", "title", "priority", "date"} <= answer.keys()
        assert isinstance(answer["id"], int) and isinstance(answer["appid"], int)
        assert answer["title"] == title and answer["priority"] == priority
        event = await last_event(api, feed)
        assert event["content"]["title"] == title and event["content"]["status"] == status
        assert event["content"]["message"] == answer["message"]
        assert event["intent"]["send_push"] is push
        assert event["metadata"]["source"]["protocol"] == "gotify"
    assert event["metadata"]["source"]["click"] == "https://gotify.net"
    assert answer["extras"]["client::display"] == {"contentType": "text/markdown"}


@pytest.mark.parametrize(
    "send,status",
    [
        ({}, 401),
        ({"params": {"token": "gzw_" + "y" * 43}}, 401),
        ({"params": {"token": "KEY"}, "json": {"title": "no message"}}, 422),
        ({"params": {"token": "KEY"}, "json": {"message": "m", "priority": 11}}, 422),
        ({"params": {"token": "KEY"}, "content": b"{not json"}, 400),
    ],
)
async def test_gotify_refusals_answer_in_gotifys_error_shape(api: Api, send: dict[str, Any], status: int) -> None:
    feed = await status_feed(api)
    if send.get("params", {}).get("token") == "KEY":
        send = {**send, "params": {"token": feed["write_key"]}}
    response = await api.client.post("/gotify/message", **send)

    assert response.status_code == status, response.text
    answer = response.json()
    assert answer.keys() == {"error", "errorCode", "errorDescription"} and answer["errorCode"] == status


# Topics


async def test_a_topic_is_set_checked_unique_per_project_and_cleared(api: Api) -> None:
    feed = await status_feed(api, topic="alerts")
    assert feed["topic"] == "alerts"
    taken = await api.post("/v1/feeds", json={"name": "Two", "schema_type": "status", "topic": "alerts"})
    assert taken.status_code == 409
    for bad in ("has space", "fd_like_an_id", "x" * 65, ""):
        refused = await api.post("/v1/feeds", json={"name": "Bad", "schema_type": "status", "topic": bad})
        assert refused.status_code == 422 and refused.json()["errors"][0]["path"] == "$.topic", bad
    renamed = await api.patch(f"/v1/feeds/{feed['id']}", json={"topic": "alarms"})
    assert renamed.json()["topic"] == "alarms"
    publish = await api.client.post(
        "/ntfy/alarms", content="m", headers={"Authorization": f"Bearer {feed['write_key']}"}
    )
    assert publish.status_code == 200
    cleared = await api.patch(f"/v1/feeds/{feed['id']}", json={"topic": None})
    assert "topic" not in cleared.json()
    gone = await api.client.post("/ntfy/alarms", content="m", headers={"Authorization": f"Bearer {feed['write_key']}"})
    assert gone.status_code == 404


async def test_an_api_key_publishes_by_topic_and_creates_feeds_only_with_auto_create(
    tmp_path: Path, clock: Any
) -> None:
    toml = tmp_path / "glimpze.toml"
    for auto_create in (False, True):
        toml.write_text(f"[ntfy]\nauto_create = {str(auto_create).lower()}\n")
        config = load(toml, env={}, overrides={"data_dir": str(tmp_path / f"data-{auto_create}")})
        async with running(config, clock) as api:
            response = await api.client.post("/ntfy/new-topic", content="hello", headers=api.auth)
            if not auto_create:
                assert response.status_code == 404 and response.json()["code"] == 40401
                continue
            assert response.status_code == 200, response.text
            [feed] = (await api.get("/v1/feeds")).json()["data"]
            assert (feed["name"], feed["topic"], feed["schema_type"]) == ("new-topic", "new-topic", "status")
            assert feed["plan"] == config.default_plan
            again = await api.client.post("/ntfy/new-topic", content="again", headers=api.auth)
            assert again.status_code == 200
            assert len((await api.get("/v1/feeds")).json()["data"]) == 1


def test_ntfy_credentials_are_read_as_ntfy_sends_them() -> None:
    assert ntfy_secret("Bearer gzw_a", {}) == "gzw_a"
    assert ntfy_secret(basic("testuser", "gzw_b"), {}) == "gzw_b"
    assert ntfy_secret(basic("gzw_c", ""), {}) == "gzw_c"
    assert ntfy_secret(None, {"auth": ntfy_auth_param(basic("", "gzw_d"))}) == "gzw_d"
    assert ntfy_secret(None, {"auth": ntfy_auth_param("Bearer gzw_e")}) == "gzw_e"
    assert ntfy_secret("Digest x", {}) is None and ntfy_secret(None, {"auth": "%%%"}) is None


# Push buttons from ntfy actions


async def test_ntfy_view_and_http_actions_become_the_pushs_buttons(tmp_path: Path, clock: FakeClock) -> None:
    with Receiver() as receiver:
        async with driven(tmp_path, clock) as api:
            target = await api.post("/v1/push/targets", json={"url": f"json://127.0.0.1:{receiver.port}/push"})
            assert target.status_code == 201, target.text
            feed = await status_feed(api, topic="myhome")
            actions = (
                "view, Open portal, https://home.example.com/, clear=true; "
                f"http, Turn down, {receiver.url}/thermostat, method=PUT, headers.X-Token=abc, body='{{\"t\": 19}}'; "
                "broadcast, Take picture, extras.cmd=pic"
            )
            headers = {"Authorization": f"Bearer {feed['write_key']}", "Priority": "high", "Actions": actions}
            published = await api.client.post("/ntfy/myhome", content="You left the house", headers=headers)
            assert published.status_code == 200, published.text
            assert await api.glimpze.push.send_due(clock.now()) == 1

            [pushed] = [json.loads(r.body) for r in receiver.requests]
            links = re.findall(r"(Open portal|Turn down): (\S+)", pushed["message"])
            assert [label for label, _ in links] == ["Open portal", "Turn down"]  # broadcast is Android's alone
            view, http = (urlsplit(url).path for _, url in links)

            opened = await api.client.get(view)
            assert opened.status_code == 303 and opened.headers["location"] == "https://home.example.com/"
            page = await api.client.get(http)
            assert page.status_code == 200 and "Turn down" in page.text and len(receiver.requests) == 1
            pressed = await api.client.post(http)
            assert pressed.status_code == 200 and "Sent" in pressed.text
            sent = receiver.requests[-1]
            assert (sent.method, sent.path, sent.body) == (
                "PUT",
                urlsplit(receiver.url).path + "/thermostat",
                b'{"t": 19}',
            )
            assert sent.headers["x-token"] == "abc"

            forged = await api.client.get(http[:-3] + "AAA")
            assert forged.status_code == 404
            clock.advance(api.glimpze.config.push.action_link_ttl_seconds + 1)
            assert (await api.client.post(http)).status_code == 410


async def test_an_ntfy_file_of_a_widget_size_becomes_a_custom_feeds_image(api: Api) -> None:
    feed = (await api.post("/v1/feeds", json={"name": "Camera", "schema_type": "custom", "plan": "pro"})).json()
    auth = {"Authorization": f"Bearer {feed['write_key']}", "Filename": "door.png"}

    stored = await api.client.put(f"/ntfy/{feed['id']}", content=widget("medium"), headers=auth)
    assert stored.status_code == 200, stored.text
    event = await last_event(api, feed)
    assert event["schema_type"] == "custom" and event["content"]["medium"]["image_url"].endswith(".png")
    assert event["metadata"]["source"]["filename"] == "door.png"

    before = row_counts(api.glimpze.config.db_path)
    for body in (picture(300, 200), b"just text"):
        refused = await api.client.put(f"/ntfy/{feed['id']}", content=body, headers=auth)
        assert refused.status_code == 422 and "attachment:" in refused.json()["error"], refused.text
    assert row_counts(api.glimpze.config.db_path) == before
