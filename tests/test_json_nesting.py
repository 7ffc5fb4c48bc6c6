"""JSON nested too deeply: refused with a problem that names the place, never a RecursionError (500);
JSON nested up to the limit is stored, listed, delivered and shown like any other."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from glimpze.clock import FakeClock
from glimpze.validation import MAX_JSON_DEPTH
from tests import imagefiles as img
from tests.conftest import Api, driven, row_counts
from tests.dashboard import Dash
from tests.receiver import Receiver

pytestmark = pytest.mark.anyio

DEEP = 10_000  # levels: ten times Python's recursion limit


def nested(levels: int, leaf: str = '"bottom"') -> str:
    """`levels` arrays, one inside the other, around `leaf`."""
    return "[" * levels + leaf + "]" * levels


def around(template: str, levels: int = DEEP) -> str:
    """`template` with `nested(levels)` in place of `DEEP`."""
    return template.replace("DEEP", nested(levels))


def too_deep_at(path: str, levels_above: int) -> str:
    """The path of the first array too deep, for `nested()` placed at `path`: that array is at level
    `levels_above + 1` (the document is level 1), and the first one past MAX_JSON_DEPTH is refused."""
    return path + "[0]" * (MAX_JSON_DEPTH - levels_above)


def b64(data: str) -> str:
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


async def send_ingest_metadata(api: Api, feeds: dict[str, Any]) -> Any:
    feed = feeds["status"]
    body = around('{"schema_type": "status", "content": {"title": "t", "status": "info"}, "metadata": {"a": DEEP}}')
    return await api.ingest(feed, body, headers={"Content-Type": "application/json"})


async def send_token_context(api: Api, feeds: dict[str, Any]) -> Any:
    body = around('{"visitor": {"id": "v-1"}, "context": {"plan": DEEP}}')
    return await api.post("/v1/widget-tokens", content=body, headers={"Content-Type": "application/json"})


async def send_lead_fields(api: Api, feeds: dict[str, Any]) -> Any:
    body = around('{"fields": {"email": "a@example.com", "answers": DEEP}}')
    return await api.post("/v1/leads", content=body, headers={"Content-Type": "application/json"})


async def send_session_context(api: Api, feeds: dict[str, Any]) -> Any:
    body = around('{"visitor": {"id": "v-1"}, "context": {"cart": DEEP}}')
    return await api.post("/v1/sessions", content=body, headers={"Content-Type": "application/json"})


async def send_upload_metadata(api: Api, feeds: dict[str, Any]) -> Any:
    return await api.upload(feeds["custom"], {"small_image": img.widget("small")}, {"metadata": around('{"a": DEEP}')})


async def send_visitor_token(api: Api, feeds: dict[str, Any]) -> Any:
    """The visitor API reads a widget token's payload before its signature: a forged one, nested deep."""
    claims = around('["prj_x", {"id": "v-1"}, {"a": DEEP}, null, null, 0, 9999999999]', 2_000)
    token = f"gzt_{b64(claims)}.{'A' * 43}"
    return await api.client.post("/widget/v1/sessions", headers={"Authorization": f"Bearer {token}"})


async def send_list_cursor(api: Api, feeds: dict[str, Any]) -> Any:
    return await api.get("/v1/feeds", params={"cursor": b64(nested(DEEP, "1"))})


CASES = [
    ("ingest metadata", send_ingest_metadata, 400, "invalid_json", too_deep_at("$.metadata.a", 2)),
    ("widget-token context", send_token_context, 400, "invalid_json", too_deep_at("$.context.plan", 2)),
    ("lead fields", send_lead_fields, 400, "invalid_json", too_deep_at("$.fields.answers", 2)),
    ("a /v1 body", send_session_context, 400, "invalid_json", too_deep_at("$.context.cart", 2)),
    ("an upload's metadata field", send_upload_metadata, 422, "validation_failed", too_deep_at("$.metadata.a", 1)),
    ("the visitor API's token", send_visitor_token, 401, "invalid_token", None),
    ("a list cursor", send_list_cursor, 422, "validation_failed", "query.cursor"),
]


@pytest.mark.parametrize("name,send,status,code,path", CASES, ids=[c[0] for c in CASES])
async def test_deeply_nested_json_is_a_400_not_a_500(
    api: Api, caplog: pytest.LogCaptureFixture, name: str, send: Any, status: int, code: str, path: str | None
) -> None:
    feeds = {"status": await api.feed("status"), "custom": await api.feed("custom", plan="pro")}
    await api.post("/v1/widget-tokens", json={"visitor": {"id": "v-0"}})  # the token secret exists before
    db = Path(api.glimpze.config.db_path)
    before = row_counts(db)
    caplog.clear()
    response = await send(api, feeds)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == code and problem["type"] == f"urn:glimpze:error:{code}"
    if path is not None:
        assert [e["path"] for e in problem["errors"]] == [path], problem
    if code in ("invalid_json", "validation_failed") and path != "query.cursor":
        assert (
            f"at most {MAX_JSON_DEPTH} levels" in problem["detail"] or "levels deep" in problem["errors"][0]["message"]
        )
    assert row_counts(db) == before
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "nothing is logged as an error"


async def test_the_nesting_limit_counts_the_document_itself(api: Api) -> None:
    """A body nested exactly MAX_JSON_DEPTH levels is decoded; one level more is the 400."""
    feed = await api.feed("counter")
    event = '{"schema_type": "counter", "content": {"title": "t", "count": 1}, "metadata": {"a": DEEP}}'
    ok = await api.ingest(feed, around(event, MAX_JSON_DEPTH - 2))  # the body and metadata are two levels
    assert ok.status_code == 202, ok.text
    over = await api.ingest(feed, around(event, MAX_JSON_DEPTH - 1))
    assert over.status_code == 400, over.text
    assert over.json()["errors"][0]["path"] == too_deep_at("$.metadata.a", 2)
    brackets_in_text = {"schema_type": "counter", "content": {"title": "[" * 100 + '\\"{' * 50, "count": 1}}
    assert (await api.ingest(feed, brackets_in_text)).status_code == 202  # brackets inside strings do not count


async def test_json_nested_to_the_limit_is_stored_listed_delivered_and_shown(
    tmp_path: Path, clock: FakeClock, receiver: Receiver
) -> None:
    """Just under the limit, a value goes everywhere JSON goes: list answers, webhook payloads, the
    visitor API and the dashboard's pages, none of them recursing too deep."""
    async with driven(tmp_path, clock) as api:
        hook = await api.post("/v1/webhooks", json={"url": receiver.url, "events": ["feed.event", "lead.captured"]})
        assert hook.status_code == 201, hook.text
        deepest = json.loads(nested(MAX_JSON_DEPTH - 2))  # inside `metadata` / `fields` / `context`

        feed = await api.feed("approval")
        event = {"schema_type": "approval", "content": {"description": "Deploy?"}, "metadata": {"deep": deepest}}
        accepted = await api.ingest(feed, event)
        assert accepted.status_code == 202, accepted.text
        listed = (await api.get(f"/v1/feeds/{feed['id']}/events")).json()["data"]
        assert listed[0]["metadata"] == {"deep": deepest}

        lead = await api.post("/v1/leads", json={"fields": {"email": "a@example.com", "deep": deepest}})
        assert lead.status_code == 201, lead.text

        token = await api.post("/v1/widget-tokens", json={"visitor": {"id": "v-1"}, "context": {"deep": deepest}})
        assert token.status_code == 201, token.text
        opened = await api.client.post(
            "/widget/v1/sessions", headers={"Authorization": f"Bearer {token.json()['token']}"}
        )
        assert opened.status_code == 201, opened.text

        await api.glimpze.dispatcher.deliver_due(clock.now())
        await receiver.wait_for(2)
        payloads = {json.loads(r.body)["event"]: json.loads(r.body) for r in receiver.requests}
        assert payloads["feed.event"]["metadata"] == {"deep": deepest}
        assert payloads["lead.captured"]["fields"]["deep"] == deepest

        dash = Dash(api.client)
        await dash.set_up(api.announced)
        for page in (f"/feeds/{feed['id']}", "/approvals", "/leads", f"/conversations/{opened.json()['id']}"):
            shown = await dash.open(page)
            assert "bottom" in shown.text, page
