"""A webhook's custom headers are checked when saved (API create and PATCH, the dashboard's forms):
only what every delivery can send as it is, RFC 9110 names and values, is stored."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest

from glimpze.clock import FakeClock
from tests.conftest import Api, driven, row_counts
from tests.dashboard import Dash
from tests.receiver import Receiver

pytestmark = pytest.mark.anyio

UNSENDABLE = [
    ("X-Greeting", "héllo", "$.headers['X-Greeting']", "U+00E9"),
    ("X-Mood", "ok 😀", "$.headers['X-Mood']", "U+1F600"),
    ("X-Tab", "a\x0bb", "$.headers['X-Tab']", "U+000B"),
    ("X-Del", "a\x7f", "$.headers['X-Del']", "U+007F"),
    ("X-Nul", "a\x00b", "$.headers['X-Nul']", "U+0000"),
    ("X-Split", "a\r\nX-Evil: 1", "$.headers['X-Split']", "U+000D"),
    ("Authorization", " Bearer x", "$.headers.Authorization", "start or end"),
    ("Authorization", "Bearer x\t", "$.headers.Authorization", "start or end"),
    ("X Space", "x", "$.headers['X Space']", "not a header name"),
    ("X-Line\n", "x", "$.headers['X-Line\\n']", "not a header name"),
    ("Héader", "x", "$.headers['Héader']", "not a header name"),
    ("Content-Type", "text/plain", "$.headers['Content-Type']", "set by Glimpze"),
    ("x-glimpze-signature", "t=1,v1=0", "$.headers['x-glimpze-signature']", "set by Glimpze"),
    ("Webhook-Signature", "v1,x", "$.headers['Webhook-Signature']", "set by Glimpze"),
    ("Content-Encoding", "gzip", "$.headers['Content-Encoding']", "cannot be set"),
]
IDS = [f"{name!r}: {value!r}" for name, value, *_ in UNSENDABLE]


def refused(response: Any, path: str, words: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert [e["path"] for e in problem["errors"]] == [path], problem
    assert words in problem["errors"][0]["message"], problem


@pytest.mark.parametrize("name,value,path,words", UNSENDABLE, ids=IDS)
async def test_webhook_headers_that_cannot_be_sent_are_refused_when_saved(
    api: Api, name: str, value: str, path: str, words: str
) -> None:
    hook = (await api.post("/v1/webhooks", json={"url": "https://x.example/", "events": ["*"]})).json()
    db = Path(api.glimpze.config.db_path)
    before = row_counts(db)

    created = await api.post(
        "/v1/webhooks", json={"url": "https://x.example/", "events": ["*"], "headers": {name: value}}
    )
    refused(created, path, words)
    patched = await api.patch(f"/v1/webhooks/{hook['id']}", json={"headers": {"X-Ok": "1", name: value}})
    refused(patched, path, words)

    assert row_counts(db) == before
    assert (await api.get(f"/v1/webhooks/{hook['id']}")).json()["headers"] == {}


async def test_the_dashboard_refuses_the_same_headers(api: Api) -> None:
    dash = Dash(api.client)
    await dash.set_up(api.announced)
    hook = (await api.post("/v1/webhooks", json={"url": "https://x.example/", "events": ["*"]})).json()
    db = Path(api.glimpze.config.db_path)
    before = row_counts(db)

    await dash.open("/webhooks?new=1")
    fields = {"url": "https://x.example/", "events": ["*"], "headers": "X-Greeting: héllo", "active": "on"}
    added = await dash.submit("/webhooks", fields)
    assert added.status_code == 422 and "U+00E9" in added.text and "X-Greeting" in html.unescape(added.text)

    await dash.open(f"/webhooks/{hook['id']}")
    saved = await dash.follow(await dash.submit(f"/webhooks/{hook['id']}", {**fields, "headers": "X-Del: a\x7f"}))
    assert "Not saved" in saved.text and "U+007F" in saved.text and "X-Del" in html.unescape(saved.text)

    assert row_counts(db) == before
    assert (await api.get(f"/v1/webhooks/{hook['id']}")).json()["headers"] == {}


async def test_headers_that_pass_the_check_reach_the_receiver_as_saved(
    tmp_path: Path, clock: FakeClock, receiver: Receiver
) -> None:
    headers = {"Authorization": "Bearer a.b-c_d~", "X-Empty": "", "X-Spaced": "a\tb  c!#$%&'*+.^_`|~"}
    async with driven(tmp_path, clock) as api:
        hook = await api.post("/v1/webhooks", json={"url": receiver.url, "events": ["*"], "headers": headers})
        assert hook.status_code == 201, hook.text
        assert (await api.post(f"/v1/webhooks/{hook.json()['id']}/test")).status_code == 200
        await api.glimpze.dispatcher.deliver_due(clock.now())
        await receiver.wait_for(1)
        got = receiver.requests[0].headers
        assert {name: got.get(name.lower()) for name in headers} == headers
