"""POST /ingest/{feed_id}: the seed's examples, every bad-input class, idempotency, widget state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api, row_counts

pytestmark = pytest.mark.anyio

SEEDS = sorted((Path(__file__).parent / "seed_examples").glob("*.json"))


@pytest.mark.parametrize("example", SEEDS, ids=lambda p: p.stem)
async def test_every_seed_example_is_accepted_logged_and_becomes_the_widget(api: Api, example: Path) -> None:
    body = example.read_bytes()
    sent = json.loads(body)
    feed = await api.feed(sent["schema_type"], plan="pro" if sent["schema_type"] == "custom" else None)

    response = await api.ingest(feed, body, headers={"Content-Type": "application/json"})

    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer == {
        "id": answer["id"],
        "feed_id": feed["id"],
        "status": "accepted",
        "widget_updated": True,
        "push": "none",
    }
    assert answer["id"].startswith("evt_")
    assert response.headers["content-length"] == str(len(response.content))  # not chunked
    log = (await api.get(f"/v1/feeds/{feed['id']}/events")).json()
    [event] = log["data"]
    assert event["id"] == answer["id"]
    assert event["status"] == "accepted"
    assert event["content"] == sent["content"]
    assert event["metadata"] == sent.get("metadata", {})
    assert event["intent"] == {"update_widget": True, "send_push": sent["intent"].get("send_push", False)}
    assert event["callback"] == sent.get("callback")
    widget = (await api.get(f"/v1/feeds/{feed['id']}/widget")).json()
    # An approval feed's widget also says its request's state and how many wait.
    approval = {"approval": {"state": "pending", "waiting": 1}} if sent["schema_type"] == "approval" else {}
    assert widget == {"feed_id": feed["id"], "event": event, **approval}


async def test_widget_is_empty_until_the_first_update_and_ignores_update_widget_false(api: Api) -> None:
    feed = await api.feed("status")
    assert (await api.get(f"/v1/feeds/{feed['id']}/widget")).json() == {"feed_id": feed["id"], "event": None}

    first = {"schema_type": "status", "content": {"title": "API", "status": "success", "message": "up"}}
    quiet = {**first, "content": {**first["content"], "status": "error"}, "intent": {"update_widget": False}}
    r1 = await api.ingest(feed, first)
    r2 = await api.ingest(feed, quiet)

    assert r2.json()["widget_updated"] is False
    widget = (await api.get(f"/v1/feeds/{feed['id']}/widget")).json()
    assert widget["event"]["id"] == r1.json()["id"]
    log = (await api.get(f"/v1/feeds/{feed['id']}/events")).json()["data"]
    assert [e["id"] for e in log] == [r2.json()["id"], r1.json()["id"]]  # newest first
    assert log[0]["widget_updated"] is False


async def test_friendly_coercions_for_automation_tools(api: Api) -> None:
    feed = await api.feed("counter")
    body = {"schema_type": "counter", "content": {"title": 2026, "count": " -3.5 ", "trendValue": 12}}
    assert (await api.ingest(feed, body)).status_code == 202
    body["content"]["count"] = "127"
    assert (await api.ingest(feed, body)).status_code == 202

    events = (await api.get(f"/v1/feeds/{feed['id']}/events")).json()["data"]
    assert events[0]["content"] == {"title": "2026", "count": 127, "trendValue": "12"}
    assert events[1]["content"]["count"] == -3.5


async def test_missing_content_type_is_accepted_when_the_body_is_json(api: Api) -> None:
    feed = await api.feed("summary")
    body = b'{"schema_type":"summary","content":{"title":"t","primary_value":"1"}}'
    response = await api.client.post(
        f"/ingest/{feed['id']}", content=body, headers={"Authorization": f"Bearer {feed['write_key']}"}
    )
    # httpx adds no Content-Type for raw content; the server must not need one.
    assert response.status_code == 202, response.text


GOOD = {"schema_type": "status", "content": {"title": "API", "status": "info", "message": "ok"}}


def _bad(changes: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(json.dumps(GOOD))
    for path, value in changes.items():
        target = body
        *parents, last = path.split(".")
        for part in parents:
            target = target[part]
        target[last] = value
    return body


# (name, how to send, expected status, code, error path or None)
BAD_INPUTS: list[tuple[str, dict[str, Any], int, str, str | None]] = [
    ("no key", {"key": None}, 401, "invalid_write_key", None),
    ("wrong key", {"key": "gzw_" + "x" * 40}, 401, "invalid_write_key", None),
    ("not a bearer scheme", {"auth": "Basic Zm9vOmJhcg=="}, 401, "invalid_write_key", None),
    ("unknown feed, no key", {"feed": "fd_unknown", "key": None}, 401, "invalid_write_key", None),
    ("unknown feed, valid-looking key", {"feed": "fd_unknown"}, 404, "not_found", None),
    ("body over 64 KiB", {"raw": b'{"x":"' + b"a" * 70_000 + b'"}'}, 413, "payload_too_large", None),
    ("form content type", {"content_type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type", None),
    ("xml content type", {"content_type": "application/xml"}, 415, "unsupported_media_type", None),
    ("malformed json", {"raw": b'{"schema_type": "status",'}, 400, "invalid_json", None),
    ("empty body", {"raw": b""}, 400, "invalid_json", None),
    ("json array", {"raw": b"[1, 2]"}, 422, "validation_failed", "$"),
    ("missing schema_type", {"json": {"content": GOOD["content"]}}, 422, "validation_failed", "$.schema_type"),
    ("unknown schema_type", {"json": _bad({"schema_type": "gauge"})}, 422, "validation_failed", "$.schema_type"),
    (
        "schema_type not a string",
        {"json": _bad({"schema_type": ["status"]})},
        422,
        "validation_failed",
        "$.schema_type",
    ),
    (
        "schema of another feed",
        {"json": {"schema_type": "summary", "content": {"title": "t", "primary_value": "1"}}},
        422,
        "schema_type_mismatch",
        "$.schema_type",
    ),
    (
        "custom event to a status feed",
        {"json": _bad({"schema_type": "custom"})},
        422,
        "schema_type_mismatch",
        "$.schema_type",
    ),
    ("unknown content field", {"json": _bad({"content.colour": "red"})}, 422, "validation_failed", "$.content.colour"),
    ("unknown top-level field", {"json": _bad({"extra": 1})}, 422, "validation_failed", "$.extra"),
    (
        "missing content field",
        {"json": {"schema_type": "status", "content": {"title": "t", "status": "info"}}},
        422,
        "validation_failed",
        "$.content.message",
    ),
    ("bad enum", {"json": _bad({"content.status": "green"})}, 422, "validation_failed", "$.content.status"),
    ("wrong type", {"json": _bad({"content.title": ["x"]})}, 422, "validation_failed", "$.content.title"),
    ("bool for text", {"json": _bad({"content.message": True})}, 422, "validation_failed", "$.content.message"),
    (
        "intent flag as string",
        {"json": _bad({"intent": {"send_push": "yes"}})},
        422,
        "validation_failed",
        "$.intent.send_push",
    ),
    (
        "unknown intent field",
        {"json": _bad({"intent": {"update_widgets": True}})},
        422,
        "validation_failed",
        "$.intent.update_widgets",
    ),
    ("metadata not an object", {"json": _bad({"metadata": [1]})}, 422, "validation_failed", "$.metadata"),
    ("metadata over 8 KiB", {"json": _bad({"metadata": {"blob": "x" * 9000}})}, 422, "validation_failed", "$.metadata"),
    (
        "callback on a status event",
        {"json": _bad({"callback": {"url": "https://x.example/cb"}})},
        422,
        "validation_failed",
        "$.callback",
    ),
    ("text too long", {"json": _bad({"content.title": "t" * 1001})}, 422, "validation_failed", "$.content.title"),
]


@pytest.mark.parametrize("name,send,status,code,path", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
async def test_bad_input_is_refused_with_a_problem_and_changes_nothing(
    api: Api, name: str, send: dict[str, Any], status: int, code: str, path: str | None
) -> None:
    feed = await api.feed("status")
    db = Path(api.glimpze.config.db_path)
    before = row_counts(db)

    headers = {"Content-Type": send.get("content_type", "application/json")}
    key = send.get("key", feed["write_key"])
    if "auth" in send:
        headers["Authorization"] = send["auth"]
    elif key is not None:
        headers["Authorization"] = f"Bearer {key}"
    body = send["raw"] if "raw" in send else json.dumps(send.get("json", GOOD)).encode()
    response = await api.client.post(f"/ingest/{send.get('feed', feed['id'])}", content=body, headers=headers)

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["type"] == f"urn:glimpze:error:{code}"
    assert problem["title"] and problem["detail"]
    if path is not None:
        assert [e["path"] for e in problem["errors"]] == [path], problem
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert row_counts(db) == before


async def test_unknown_field_errors_suggest_the_nearest_name(api: Api) -> None:
    feed = await api.feed("counter")
    body = {"schema_type": "counter", "content": {"title": "t", "count": 1, "trend_value": "+1%"}}
    problem = (await api.ingest(feed, body)).json()
    assert problem["errors"] == [
        {"path": "$.content.trend_value", "message": "unknown field 'trend_value'; did you mean 'trendValue'?"}
    ]


async def test_non_numeric_count_names_the_field(api: Api) -> None:
    feed = await api.feed("counter")
    problem = (await api.ingest(feed, {"schema_type": "counter", "content": {"title": "t", "count": "1,000"}})).json()
    assert problem["errors"][0]["path"] == "$.content.count"
    assert "1,000" in problem["errors"][0]["message"]


async def test_idempotency_key_replays_the_first_answer_and_stores_once(api: Api) -> None:
    feed = await api.feed("status")
    headers = {"Idempotency-Key": "run-42"}
    first = await api.ingest(feed, GOOD, headers=headers)
    again = await api.ingest(feed, GOOD, headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    events = (await api.get(f"/v1/feeds/{feed['id']}/events")).json()["data"]
    assert len(events) == 1

    other = await api.ingest(feed, _bad({"content.message": "different"}), headers=headers)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert len((await api.get(f"/v1/feeds/{feed['id']}/events")).json()["data"]) == 1


async def test_idempotency_keys_are_scoped_to_the_credential(api: Api) -> None:
    a, b = await api.feed("status"), await api.feed("status")
    headers = {"Idempotency-Key": "same"}
    ra = await api.ingest(a, GOOD, headers=headers)
    rb = await api.ingest(b, GOOD, headers=headers)
    assert ra.status_code == rb.status_code == 202
    assert ra.json()["id"] != rb.json()["id"]


async def test_errors_are_not_stored_for_idempotency(api: Api) -> None:
    feed = await api.feed("status")
    headers = {"Idempotency-Key": "k1"}
    bad = await api.ingest(feed, _bad({"content.status": "green"}), headers=headers)
    assert bad.status_code == 422
    good = await api.ingest(feed, GOOD, headers=headers)
    assert good.status_code == 202


async def test_event_log_paginates_newest_first(api: Api, clock: Any) -> None:
    feed = await api.feed("status", plan="power")
    ids = []
    for i in range(7):
        ids.append((await api.ingest(feed, _bad({"content.message": f"m{i}"}))).json()["id"])
    seen, cursor = [], None
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = (await api.get(f"/v1/feeds/{feed['id']}/events{query}")).json()
        seen += [e["id"] for e in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]

    bad = await api.get(f"/v1/feeds/{feed['id']}/events?cursor=nonsense")
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["path"] == "query.cursor"


async def test_ingest_and_event_log_do_not_leak_across_projects(api: Api) -> None:
    feed = await api.feed("status")
    _, other = await api.glimpze.keys.create_project("Other")
    response = await api.client.get(f"/v1/feeds/{feed['id']}/events", headers={"Authorization": f"Bearer {other.key}"})
    assert response.status_code == 404


async def test_a_422_names_every_failing_field_the_first_one_found_first(api: Api) -> None:
    feed = await api.feed("status")
    before = row_counts(api.glimpze.config.db_path)
    body = {
        "schema_type": "status",
        "content": {"title": "API", "status": "fine", "mesage": "up"},
        "intent": {"send_push": "yes"},
        "callback": {"url": "https://example.com/"},
    }
    response = await api.ingest(feed, body)

    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert [e["path"] for e in problem["errors"]] == [
        "$.content.status",  # msgspec's first error stays first
        "$.content.mesage",
        "$.content.message",
        "$.intent.send_push",
        "$.callback",
    ]
    assert problem["errors"][1]["message"] == "unknown field 'mesage'; did you mean 'message'?"
    assert problem["errors"][4]["message"] == "callback is allowed on approval events only"
    assert all(f"{e['path']}: {e['message']}" in problem["detail"] for e in problem["errors"])
    assert row_counts(api.glimpze.config.db_path) == before


async def test_a_v1_422_names_every_failing_field(api: Api) -> None:
    response = await api.post("/v1/feeds", json={"name": 7, "schema_type": "gauge", "plann": "pro"})

    assert response.status_code == 422
    assert [e["path"] for e in response.json()["errors"]] == ["$.name", "$.schema_type", "$.plann"]
