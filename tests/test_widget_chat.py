"""What the visitor widget's panel shows besides messages: the agent's profile in its header
(display name, avatar, reply time: set through /v1/agents, served with the session) and the typing
signal (`POST /v1/sessions/{id}/typing` → an unnumbered SSE `typing` event that expires by itself,
is rate-bounded, and is never stored)."""

from __future__ import annotations

from typing import Any

import pytest

from glimpze.chat.streams import TYPING_REFRESH_SECONDS, TYPING_SECONDS
from glimpze.clock import FakeClock
from tests.conftest import Api, SseReader, row_counts

pytestmark = pytest.mark.anyio

PROFILE = {"display_name": "Acme support", "avatar_url": "https://cdn.acme.example/team.png", "reply_time": "in_a_day"}


async def visitor_session(api: Api, agent_id: str | None = None, visitor: str = "v-1") -> tuple[str, dict[str, Any]]:
    """A widget token and the session it opens."""
    body: dict[str, Any] = {"visitor": {"id": visitor, "name": "Ada"}}
    if agent_id:
        body["agent_id"] = agent_id
    token = (await api.post("/v1/widget-tokens", json=body)).json()["token"]
    opened = await api.client.post("/widget/v1/sessions", headers={"Authorization": f"Bearer {token}"})
    assert opened.status_code in (200, 201), opened.text
    return token, opened.json()


# The agent's profile


async def test_agent_profile_fields_are_created_changed_and_cleared(api: Api) -> None:
    plain = await api.post("/v1/agents", json={"name": "Bot"})
    assert plain.status_code == 201
    assert {k: plain.json()[k] for k in PROFILE} == {"display_name": None, "avatar_url": None, "reply_time": None}
    created = await api.post("/v1/agents", json={"name": "Helper", **PROFILE})
    assert created.status_code == 201, created.text
    agent = created.json()
    assert {k: agent[k] for k in PROFILE} == PROFILE
    assert (await api.get(f"/v1/agents/{agent['id']}")).json() == agent

    changed = await api.patch(f"/v1/agents/{agent['id']}", json={"reply_time": "in_a_few_minutes", "avatar_url": None})
    assert changed.status_code == 200, changed.text
    assert changed.json()["reply_time"] == "in_a_few_minutes" and changed.json()["avatar_url"] is None
    assert changed.json()["display_name"] == "Acme support" and changed.json()["name"] == "Helper"
    renamed = await api.patch(f"/v1/agents/{agent['id']}", json={"name": " Helper 2 ", "display_name": " Sales "})
    assert (renamed.json()["name"], renamed.json()["display_name"]) == ("Helper 2", "Sales")
    assert (await api.patch(f"/v1/agents/{agent['id']}", json={})).json() == renamed.json()
    assert (await api.patch("/v1/agents/agt_nope", json={"name": "x"})).status_code == 404


@pytest.mark.parametrize(
    "body,path",
    [
        ({"avatar_url": "http://cdn.acme.example/team.png"}, "$.avatar_url"),  # mixed content on an https site
        ({"avatar_url": "javascript:alert(1)"}, "$.avatar_url"),
        ({"avatar_url": "https://cdn.acme.example/a b.png"}, "$.avatar_url"),
        ({"avatar_url": "https://x.example/" + "a" * 2048}, "$.avatar_url"),
        ({"reply_time": "soon"}, "$.reply_time"),
        ({"display_name": ""}, "$.display_name"),
        ({"display_name": "x" * 101}, "$.display_name"),
        ({"colour": "red"}, "$.colour"),
    ],
)
async def test_agent_profile_fields_are_validated(api: Api, body: dict[str, Any], path: str) -> None:
    agent = (await api.post("/v1/agents", json={"name": "Helper"})).json()
    for response in (
        await api.post("/v1/agents", json={"name": "Other", **body}),
        await api.patch(f"/v1/agents/{agent['id']}", json=body),
    ):
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["path"] == path
    assert (await api.get(f"/v1/agents/{agent['id']}")).json() == agent  # unchanged
    assert len((await api.get("/v1/agents")).json()["data"]) == 1


async def test_the_widget_gets_the_agents_profile_with_the_session(api: Api) -> None:
    agent = (await api.post("/v1/agents", json={"name": "Internal name", **PROFILE})).json()
    token, session = await visitor_session(api, agent["id"])
    assert session["agent"] == PROFILE  # the internal name stays inside
    await api.patch(f"/v1/agents/{agent['id']}", json={"display_name": "Night shift"})
    again = await api.client.get(f"/widget/v1/sessions/{session['id']}", headers={"Authorization": f"Bearer {token}"})
    assert again.json()["agent"] == {**PROFILE, "display_name": "Night shift"}
    _, without = await visitor_session(api, visitor="v-2")
    assert without["agent"] is None


# Typing


async def typing(api: Api, session_id: str, status: int = 200, **body: Any) -> Any:
    response = await api.post(f"/v1/sessions/{session_id}/typing", json=body or None)
    assert response.status_code == status, response.text
    return response.json()


async def test_typing_reaches_the_visitors_stream_unnumbered_and_ends_with_the_message(
    live: Api, clock: FakeClock
) -> None:
    token, session = await visitor_session(live)
    sid = session["id"]
    await live.post(f"/v1/sessions/{sid}/messages", json={"role": "visitor", "text": "Hello?"})
    async with live.client.stream("GET", f"/widget/v1/sessions/{sid}/stream?token={token}") as response:
        sse = SseReader(response)
        first = await sse.next()
        assert first is not None and (first.event, first.id) == ("message", "1")

        answer = await typing(live, sid, author="Sam")
        assert answer == {"typing": True, "role": "agent", "author": "Sam", "expires_in": TYPING_SECONDS}
        signal = await sse.next(timeout=1.0)
        assert signal is not None and signal.event == "typing" and signal.id is None  # Last-Event-ID untouched
        assert signal.json() == answer

        # Called on every keystroke: within the refresh window nothing more is sent.
        clock.advance(TYPING_REFRESH_SECONDS / 2)
        for _ in range(5):
            standing = await typing(live, sid, author="Sam")
            assert standing["typing"] and standing["expires_in"] == TYPING_SECONDS - TYPING_REFRESH_SECONDS / 2
        reply = await live.post(f"/v1/sessions/{sid}/messages", json={"role": "agent", "text": "Hi!", "author": "Sam"})
        arrived = await sse.next(timeout=1.0)
        assert arrived is not None and (arrived.event, arrived.id) == ("message", "2")  # no typing in between
        assert arrived.json() == reply.json()

        # After the refresh window a call raises a new event; a stop ends it at once.
        await typing(live, sid, role="assistant")
        raised = await sse.next(timeout=1.0)
        assert raised is not None and raised.event == "typing"
        assert raised.json() == {"typing": True, "role": "assistant", "author": None, "expires_in": TYPING_SECONDS}
        clock.advance(TYPING_REFRESH_SECONDS)
        await typing(live, sid, role="assistant")
        renewed = await sse.next(timeout=1.0)
        assert renewed is not None and renewed.event == "typing" and renewed.json()["expires_in"] == TYPING_SECONDS
        stopped = await typing(live, sid, role="assistant", typing=False)
        assert stopped["typing"] is False and stopped["expires_in"] == 0
        stop = await sse.next(timeout=1.0)
        assert stop is not None and stop.event == "typing" and stop.json()["typing"] is False
    # Never stored: no message, no stream event, no outgoing event.
    assert [m["text"] for m in (await live.get(f"/v1/sessions/{sid}/messages")).json()["data"]] == ["Hello?", "Hi!"]
    assert row_counts(live.glimpze.config.db_path)["session_stream"] == 2


async def test_a_stream_that_connects_while_someone_types_gets_the_signal_until_it_expires(
    live: Api, clock: FakeClock
) -> None:
    token, session = await visitor_session(live)
    sid = session["id"]
    await typing(live, sid, author="Sam")
    clock.advance(1.5)
    async with live.client.stream("GET", f"/widget/v1/sessions/{sid}/stream?token={token}") as response:
        standing = await SseReader(response).next()
        assert standing is not None and standing.event == "typing"
        assert standing.json()["expires_in"] == TYPING_SECONDS - 1.5
    clock.advance(TYPING_SECONDS)  # expired by itself
    assert (await typing(live, sid, typing=False))["typing"] is False
    async with live.client.stream("GET", f"/widget/v1/sessions/{sid}/stream?token={token}") as response:
        sse = SseReader(response)
        await live.post(f"/v1/sessions/{sid}/messages", json={"role": "agent", "text": "Back"})
        first = await sse.next()
        assert first is not None and first.event == "message"  # no stale typing before it


async def test_typing_needs_an_open_session_of_the_project(api: Api) -> None:
    _, session = await visitor_session(api)
    missing = await api.post("/v1/sessions/ses_nope/typing")
    assert missing.status_code == 404
    bad = await api.post(f"/v1/sessions/{session['id']}/typing", json={"role": "visitor"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "$.role"
    await api.post(f"/v1/sessions/{session['id']}/close", json={})
    closed = await api.post(f"/v1/sessions/{session['id']}/typing")
    assert closed.status_code == 409 and closed.json()["code"] == "session_closed"


async def test_a_body_of_blanks_is_not_an_empty_body(api: Api) -> None:
    """No body opens the session with its defaults; whitespace alone is not JSON (found by schemathesis)."""
    token = (await api.post("/v1/widget-tokens", json={"visitor": {"id": "v-blank"}})).json()["token"]
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for blank in (b"\t", b" ", b"\r\n"):
        refused = await api.client.post("/widget/v1/sessions", content=blank, headers=auth)
        assert refused.status_code == 400 and refused.json()["code"] == "invalid_json", refused.text
    assert (await api.get("/v1/sessions")).json()["data"] == []  # nothing opened
    opened = await api.client.post("/widget/v1/sessions", headers=auth)
    assert opened.status_code in (200, 201), opened.text
