"""The visitor's live stream (SSE) on a real server: delivery after commit, exact resume, expiry, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook

from glimpze.clock import FakeClock
from glimpze.config import Config, load
from glimpze.delivery.signing import verify_glimpze_signature
from tests.conftest import Api, SseReader, out_events
from tests.receiver import Receiver
from tests.server import Server

pytestmark = pytest.mark.anyio


async def mint(api: Api, **body: Any) -> str:
    response = await api.post("/v1/widget-tokens", json={"visitor": {"id": "v-1", "name": "Ada"}, **body})
    assert response.status_code == 201, response.text
    return response.json()["token"]


async def open_session(api: Api, token: str) -> dict[str, Any]:
    response = await api.client.post("/widget/v1/sessions", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (200, 201), response.text
    return response.json()


@pytest.fixture
def clock() -> FakeClock:
    # Wall-clock time: the standardwebhooks verifier accepts timestamps within 5 minutes only.
    return FakeClock(float(int(time.time())))


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "glimpze.toml"
    path.write_text('[webhooks]\nallow_targets = ["127.0.0.1"]\n')
    return load(path, env={}, overrides={"data_dir": str(tmp_path / "data")})


async def test_end_to_end_visitor_agent_handoff_close(live: Api) -> None:
    receiver = Receiver()
    hook = await live.post(
        "/v1/webhooks", json={"url": receiver.url, "events": ["session.escalated", "session.closed"]}
    )
    assert hook.status_code == 201, hook.text
    secret = hook.json()["secret"]
    agent = (await live.post("/v1/agents", json={"name": "Sales bot"})).json()
    token = await mint(live, agent_id=agent["id"], context={"plan": "pro", "cart": 3})
    visitor = {"Authorization": f"Bearer {token}"}
    session = await open_session(live, token)
    assert session["agent_id"] == agent["id"]
    full = (await live.get(f"/v1/sessions/{session['id']}")).json()
    assert full["context"] == {"plan": "pro", "cart": 3}  # hydrated from the token

    posted = await live.client.post(
        f"/widget/v1/sessions/{session['id']}/messages", json={"text": "Do you ship to Norway?"}, headers=visitor
    )
    assert posted.status_code == 201, posted.text
    assert posted.json()["role"] == "visitor" and posted.json()["author"] == "Ada"

    async with live.client.stream("GET", f"/widget/v1/sessions/{session['id']}/stream?token={token}") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        sse = SseReader(response)
        first = await sse.next()
        assert first is not None and (first.event, first.id) == ("message", "1")
        assert first.json()["text"] == "Do you ship to Norway?"

        reply = await live.post(
            f"/v1/sessions/{session['id']}/messages", json={"role": "agent", "text": "We do!", "author": "Bo"}
        )
        assert reply.status_code == 201, reply.text
        arrived = await sse.next(timeout=1.0)  # within a second of being posted
        assert arrived is not None and arrived.event == "message" and arrived.id == "2"
        assert arrived.json() == reply.json()

        handoff = await live.post(
            f"/v1/sessions/{session['id']}/handoffs", json={"to_team": "sales", "reason": "pricing question"}
        )
        assert handoff.status_code == 201, handoff.text
        await receiver.wait_for(1, timeout=5)  # session.escalated reaches the webhook receiver
        delivered = receiver.requests[0]
        payload = StandardWebhook(secret).verify(delivered.body, delivered.headers)
        assert verify_glimpze_signature(secret, delivered.headers["x-glimpze-signature"], delivered.body, time.time())
        assert payload["event"] == "session.escalated" and payload["session_id"] == session["id"]
        closed = await live.post(f"/v1/sessions/{session['id']}/close", json={"resolution": "answered"})
        assert closed.status_code == 200 and closed.json()["status"] == "closed"
        status = await sse.next(timeout=1.0)
        assert status is not None and status.event == "session" and status.json()["status"] == "closed"

    [escalated] = out_events(live.glimpze.config.db_path, "session.escalated")
    assert escalated["session_id"] == session["id"] and escalated["team"] == "sales"
    assert escalated["handoff"]["to_team"] == "sales" and escalated["handoff"]["reason"] == "pricing question"
    assert escalated["changes"] == {"team": {"old": None, "new": "sales"}}
    [closed_event] = out_events(live.glimpze.config.db_path, "session.closed")
    assert closed_event["resolution"] == "answered" and closed_event["status"] == "closed"
    types = [e["event"] for e in out_events(live.glimpze.config.db_path)]
    assert types == ["session.created", "message.created", "message.created", "session.escalated", "session.closed"]

    await receiver.wait_for(2, timeout=5)  # and session.closed, signed as well
    closing = receiver.requests[1]
    assert StandardWebhook(secret).verify(closing.body, closing.headers)["event"] == "session.closed"
    receiver.close()
    # the same events by long polling
    polled = (await live.get("/v1/events?types=session.escalated,session.closed")).json()["data"]
    assert [e["event"] for e in polled] == ["session.escalated", "session.closed"]
    assert polled[0] == escalated and polled[1] == closed_event


async def post_agent(api: Api, session_id: str, text: str, role: str = "agent") -> dict[str, Any]:
    response = await api.post(f"/v1/sessions/{session_id}/messages", json={"role": role, "text": text})
    assert response.status_code == 201, response.text
    return response.json()


async def read_all(api: Api, url: str, count: int, headers: dict[str, str] | None = None) -> list[Any]:
    async with api.client.stream("GET", url, headers=headers or {}) as response:
        assert response.status_code == 200, await response.aread()
        assert "default-src 'none'" in response.headers["content-security-policy"]
        sse = SseReader(response)
        return [await sse.next() for _ in range(count)]


async def test_last_event_id_resumes_exactly(live: Api) -> None:
    token = await mint(live)
    session = await open_session(live, token)
    for i in range(5):
        await post_agent(live, session["id"], f"m{i}")
    url = f"/widget/v1/sessions/{session['id']}/stream?token={token}"
    everything = await read_all(live, url, 5)
    assert [e.id for e in everything] == ["1", "2", "3", "4", "5"]
    by_header = await read_all(live, url, 2, {"Last-Event-ID": "3"})
    assert [(e.id, e.json()["text"]) for e in by_header] == [("4", "m3"), ("5", "m4")]
    by_query = await read_all(live, url + "&last_event_id=4", 1)
    assert by_query[0].id == "5"
    # The header wins over the query: a browser reconnecting on its own sends the newer one.
    both = await read_all(live, url + "&last_event_id=1", 1, {"Last-Event-ID": "4"})
    assert both[0].id == "5"


async def test_an_assistant_reply_is_followed_by_done(live: Api) -> None:
    token = await mint(live)
    session = await open_session(live, token)
    answer = await post_agent(live, session["id"], "Here is our pricing.", role="assistant")
    assert answer["ctas"] == [] and answer["cta"] is None
    message, done = await read_all(live, f"/widget/v1/sessions/{session['id']}/stream?token={token}", 2)
    assert message.event == "message" and message.json()["role"] == "assistant"
    assert "ctas" not in message.json()
    assert done.event == "done" and done.id == "2"
    assert done.json() == {"message_id": answer["id"], "ctas": [], "cta": None}


async def test_status_changes_reach_the_stream(live: Api) -> None:
    token = await mint(live)
    session = await open_session(live, token)
    url = f"/widget/v1/sessions/{session['id']}/stream?token={token}"
    async with live.client.stream("GET", url) as response:
        sse = SseReader(response)
        await live.patch(f"/v1/sessions/{session['id']}", json={"status": "pending"})
        await live.patch(f"/v1/sessions/{session['id']}", json={"priority": "high"})  # not a status change
        await live.patch(f"/v1/sessions/{session['id']}", json={"status": "open"})
        pending, reopened = await sse.next(timeout=1), await sse.next(timeout=1)
    assert (pending.event, pending.json()["status"]) == ("session", "pending")
    assert (reopened.event, reopened.json()["status"]) == ("session", "open")
    visible = {"id", "status", "agent_id", "visitor", "language", "page_url", "created_at", "updated_at"}
    assert set(pending.json()) == visible  # no labels, routing or context for the visitor


async def test_the_stream_closes_when_its_token_expires(live: Api, clock: FakeClock) -> None:
    token = await mint(live, ttl_seconds=60)
    session = await open_session(live, token)
    async with live.client.stream("GET", f"/widget/v1/sessions/{session['id']}/stream?token={token}") as response:
        sse = SseReader(response)
        clock.advance(61)
        await post_agent(live, session["id"], "too late")  # wakes the stream, which finds its token expired
        assert await sse.next(timeout=2) is None
    again = await live.client.get(f"/widget/v1/sessions/{session['id']}/stream?token={token}")
    assert again.status_code == 401 and again.json()["code"] == "invalid_token"


async def test_shutdown_closes_streams_at_once(live: Api) -> None:
    token = await mint(live)
    session = await open_session(live, token)
    server = live.app.state.server
    async with live.client.stream("GET", f"/widget/v1/sessions/{session['id']}/stream?token={token}") as response:
        sse = SseReader(response)
        opened = await sse.next(comments=True)
        assert opened is not None and opened.comment == "ping"  # the stream listens
        assert live.glimpze.streams.streams_open == 1
        server.should_exit = True
        assert await sse.next(timeout=2) is None  # not after uvicorn's 5 s graceful timeout
    assert live.glimpze.stopping.is_set()


async def test_idle_streams_send_heartbeats(live: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("glimpze.chat.streams.HEARTBEAT_SECONDS", 0.05)
    token = await mint(live)
    session = await open_session(live, token)
    async with live.client.stream("GET", f"/widget/v1/sessions/{session['id']}/stream?token={token}") as response:
        sse = SseReader(response)
        pings = [await sse.next(timeout=2, comments=True) for _ in range(3)]  # the opening one, then idle ones
    assert all(ping is not None and ping.comment == "ping" and ping.event is None for ping in pings)


async def test_a_stream_is_only_for_its_own_visitor(live: Api) -> None:
    mine = await mint(live)
    session = await open_session(live, mine)
    other = (await live.post("/v1/widget-tokens", json={"visitor": {"id": "v-2"}})).json()["token"]
    response = await live.client.get(f"/widget/v1/sessions/{session['id']}/stream?token={other}")
    assert response.status_code == 404
    no_token = await live.client.get(f"/widget/v1/sessions/{session['id']}/stream")
    assert no_token.status_code == 401 and no_token.json()["code"] == "invalid_token"
    # ?token= is for the stream only (EventSource cannot send headers)
    elsewhere = await live.client.get(f"/widget/v1/sessions/{session['id']}?token={mine}")
    assert elsewhere.status_code == 401


async def test_many_streams_are_woken_together(live: Api) -> None:
    token = await mint(live)
    session = await open_session(live, token)
    url = f"/widget/v1/sessions/{session['id']}/stream?token={token}"
    async with contextlib.AsyncExitStack() as stack:
        readers = []
        for _ in range(5):
            response = await stack.enter_async_context(live.client.stream("GET", url))
            readers.append(SseReader(response))
        message = await post_agent(live, session["id"], "hello all")
        with anyio.fail_after(1):
            got = await asyncio.gather(*(reader.next() for reader in readers))
    assert {e.json()["id"] for e in got} == {message["id"]}
    # Disconnected streams stop listening (the server learns of a disconnect on its own time).
    with anyio.fail_after(2):
        while live.glimpze.streams.streams_open:
            await asyncio.sleep(0.01)


@pytest.mark.slow
async def test_sigterm_ends_open_streams_at_once(tmp_path: Path) -> None:
    """A real `glimpze serve`: SIGTERM ends the stream and the process well before uvicorn's 5 s
    graceful timeout would have."""
    server = Server(tmp_path)
    server.start()
    try:
        admin = {"Authorization": f"Bearer {server.admin_key()}"}
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            token = (await client.post("/v1/widget-tokens", json={"visitor": {"id": "v"}}, headers=admin)).json()
            auth = {"Authorization": f"Bearer {token['token']}"}
            session = (await client.post("/widget/v1/sessions", headers=auth)).json()
            async with client.stream("GET", f"/widget/v1/sessions/{session['id']}/stream", headers=auth) as response:
                sse = SseReader(response)
                assert (await sse.next(comments=True)).comment == "ping"  # listening
                started = time.monotonic()
                assert server.proc is not None
                server.proc.send_signal(signal.SIGTERM)
                assert await sse.next(timeout=3) is None
        assert await anyio.to_thread.run_sync(server.proc.wait, 5) == 0  # a graceful stop exits 0
        assert time.monotonic() - started < 3
        assert "graceful shutdown exceeded" not in server.output()
    finally:
        server.kill()
