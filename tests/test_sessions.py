"""/v1/sessions: create, list, PATCH (labels, routing, status per the transition table), notes,
handoffs, messages, close; the events they emit; idempotency; project isolation."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from glimpze.chat.transitions import STATUSES, TRANSITIONS, check_transition
from glimpze.clock import FakeClock, iso
from tests.conftest import Api, out_events, row_counts

pytestmark = pytest.mark.anyio

VISITOR = {"id": "visitor-42", "name": "Ada", "email": "ada@example.com"}


async def create(api: Api, **body: Any) -> dict[str, Any]:
    response = await api.post("/v1/sessions", json={"visitor": VISITOR, **body})
    assert response.status_code == 201, response.text
    return response.json()


def events(api: Api, event_type: str | None = None) -> list[dict[str, Any]]:
    return out_events(api.glimpze.config.db_path, event_type)


async def test_create_and_read_a_session(api: Api) -> None:
    agent = (await api.post("/v1/agents", json={"name": "Helper", "language": "de"})).json()
    session = await create(
        api,
        agent_id=agent["id"],
        labels=["vip", " vip ", "billing"],
        priority="high",
        team="support",
        assignee="bo",
        page_url="https://shop.example.com/cart",
        context={"cart": {"items": 3}},
    )
    assert session["id"].startswith("ses_")
    assert session["status"] == "open" and session["priority"] == "high"
    assert session["labels"] == ["vip", "billing"]
    assert session["language"] == "de"  # the agent's default language
    assert session["visitor"] == VISITOR
    assert (await api.get(f"/v1/sessions/{session['id']}")).json() == session

    [created] = events(api, "session.created")
    assert created["session_id"] == session["id"]
    assert {k: v for k, v in created.items() if k not in ("id", "event", "occurred_at", "session_id")} == {
        k: v for k, v in session.items() if k != "id"
    }
    assert created["occurred_at"].endswith("Z") and len(created["occurred_at"]) == 24  # milliseconds


@pytest.mark.parametrize(
    "body,path",
    [
        ({}, "$.visitor"),
        ({"visitor": {"name": "x"}}, "$.visitor.id"),
        ({"visitor": {"id": "v", "email": "not-an-email"}}, "$.visitor.email"),
        ({"visitor": VISITOR, "priority": "asap"}, "$.priority"),
        ({"visitor": VISITOR, "labels": ["x"] * 21}, "$.labels"),
        ({"visitor": VISITOR, "language": "english please"}, "$.language"),
        ({"visitor": VISITOR, "colour": "red"}, "$.colour"),
        ({"visitor": VISITOR, "agent_id": "agt_nope"}, "$.agent_id"),
        ({"visitor": VISITOR, "context": {"blob": "x" * 9000}}, "$.context"),
    ],
)
async def test_create_validation_names_the_field_and_stores_nothing(api: Api, body: Any, path: str) -> None:
    response = await api.post("/v1/sessions", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["path"] == path
    assert row_counts(api.glimpze.config.db_path)["sessions"] == 0
    assert events(api) == []


async def test_list_filters_and_pagination(api: Api) -> None:
    agent = (await api.post("/v1/agents", json={"name": "A"})).json()
    a = await create(api, team="sales", labels=["vip"], agent_id=agent["id"])
    b = await create(api, team="support", assignee="bo")
    c = await create(api, team="sales", labels=["vip", "x"])
    await api.patch(f"/v1/sessions/{b['id']}", json={"status": "pending"})

    async def ids(query: str) -> list[str]:
        response = await api.get(f"/v1/sessions{query}")
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()["data"]]

    assert await ids("") == [c["id"], b["id"], a["id"]]  # newest first
    assert await ids("?team=sales") == [c["id"], a["id"]]
    assert await ids("?label=vip") == [c["id"], a["id"]]
    assert await ids("?label=x") == [c["id"]]
    assert await ids("?assignee=bo") == [b["id"]]
    assert await ids(f"?agent_id={agent['id']}") == [a["id"]]
    assert await ids("?status=pending") == [b["id"]]
    assert await ids("?status=open&team=sales&label=vip") == [c["id"], a["id"]]
    bad = await api.get("/v1/sessions?status=done")
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "query.status"

    first = (await api.get("/v1/sessions?limit=2")).json()
    second = (await api.get(f"/v1/sessions?limit=2&cursor={first['next_cursor']}")).json()
    assert [s["id"] for s in first["data"] + second["data"]] == [c["id"], b["id"], a["id"]]
    assert second["next_cursor"] is None


async def test_labels_replace_add_and_remove(api: Api) -> None:
    session = await create(api, labels=["a", "b"])
    url = f"/v1/sessions/{session['id']}"
    assert (await api.patch(url, json={"add_labels": ["c", "a"]})).json()["labels"] == ["a", "b", "c"]
    assert (await api.patch(url, json={"remove_labels": ["b", "zz"]})).json()["labels"] == ["a", "c"]
    assert (await api.patch(url, json={"add_labels": ["d"], "remove_labels": ["a"]})).json()["labels"] == ["c", "d"]
    assert (await api.patch(url, json={"labels": ["z"]})).json()["labels"] == ["z"]
    both = await api.patch(url, json={"labels": ["q"], "add_labels": ["r"]})
    assert both.status_code == 422 and both.json()["errors"][0]["path"] == "$.add_labels"
    full = await api.patch(url, json={"add_labels": [f"l{i}" for i in range(20)]})
    assert full.status_code == 422 and full.json()["errors"][0]["path"] == "$.add_labels"
    updates = events(api, "session.updated")
    assert [u["changes"] for u in updates] == [
        {"labels": {"old": ["a", "b"], "new": ["a", "b", "c"]}},
        {"labels": {"old": ["a", "b", "c"], "new": ["a", "c"]}},
        {"labels": {"old": ["a", "c"], "new": ["c", "d"]}},
        {"labels": {"old": ["c", "d"], "new": ["z"]}},
    ]


async def test_patch_routing_reports_old_and_new_values(api: Api, clock: FakeClock) -> None:
    session = await create(api, team="support")
    clock.advance(5)
    response = await api.patch(
        f"/v1/sessions/{session['id']}", json={"priority": "urgent", "assignee": "bo", "team": "billing"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["updated_at"] == iso(clock.now())
    [updated] = events(api, "session.updated")
    assert updated["changes"] == {
        "priority": {"old": "normal", "new": "urgent"},
        "team": {"old": "support", "new": "billing"},
        "assignee": {"old": None, "new": "bo"},
    }
    assert updated["session_id"] == session["id"] and updated["assignee"] == "bo"
    unassign = await api.patch(f"/v1/sessions/{session['id']}", json={"assignee": None})
    assert unassign.json()["assignee"] is None


async def test_a_patch_that_changes_nothing_is_a_200_no_op(api: Api, clock: FakeClock) -> None:
    session = await create(api, priority="high")
    clock.advance(5)
    for body in ({"status": "open"}, {"priority": "high"}, {}, {"add_labels": []}):
        response = await api.patch(f"/v1/sessions/{session['id']}", json=body)
        assert response.status_code == 200, (body, response.text)
        assert response.json() == session
    assert events(api, "session.updated") == []


def _expected(old: str, new: str, via: str) -> int:
    """The answer DESIGN §7 asks for, from the table (and the same-status and closed rules)."""
    rule = TRANSITIONS.get((old, new))  # type: ignore[arg-type]
    if old == "closed" and via == "patch":
        return 409  # a closed session takes a PATCH of `status` alone, nothing else
    if old == new and via != "close":
        return 200  # a same-status PATCH is a no-op (closing a closed session is not)
    return 200 if rule == via or (rule == "patch" and via == "patch_alone") else 409


async def _session_in(api: Api, status: str, clock: FakeClock) -> str:
    session_id = (await create(api))["id"]
    if status in ("pending", "snoozed"):
        body: dict[str, Any] = {"status": status}
        if status == "snoozed":
            body["snoozed_until"] = iso(clock.now() + 3600)
        assert (await api.patch(f"/v1/sessions/{session_id}", json=body)).status_code == 200
    elif status == "closed":
        assert (await api.post(f"/v1/sessions/{session_id}/close")).status_code == 200
    return session_id


async def test_every_status_transition_follows_the_table(api: Api, clock: FakeClock) -> None:
    """Every (from, to) pair, asked for by a PATCH with status alone, by a PATCH with another field,
    and by POST /close; the answer and the stored status agree with TRANSITIONS."""
    for old, new in itertools.product(STATUSES, STATUSES):
        for via in ("patch_alone", "patch", "close"):
            if via == "close" and new != "closed":
                continue
            session_id = await _session_in(api, old, clock)
            url = f"/v1/sessions/{session_id}"
            if via == "close":
                response = await api.post(f"{url}/close", json={"resolution": "done"})
            else:
                body: dict[str, Any] = {"status": new}
                if new == "snoozed" and old != "snoozed":
                    body["snoozed_until"] = iso(clock.now() + 600)
                if via == "patch":
                    body["priority"] = "low"
                response = await api.patch(url, json=body)
            expected = _expected(old, new, via)
            assert response.status_code == expected, (old, new, via, response.text)
            stored = (await api.get(url)).json()["status"]
            assert stored == (new if expected == 200 else old), (old, new, via)
            if expected == 409:
                code = "session_closed" if old == "closed" else "invalid_transition"
                assert response.json()["code"] == code, (old, new, via)


def test_the_transition_table_is_the_only_judge() -> None:
    for old, new in itertools.product(STATUSES, STATUSES):
        for via in ("patch", "patch_alone", "close"):
            allowed = _expected(old, new, via) == 200 and old != new
            try:
                check_transition(old, new, via)  # type: ignore[arg-type]
            except Exception:
                assert not allowed, (old, new, via)
            else:
                assert allowed, (old, new, via)


async def test_snoozing_needs_a_future_time_and_wakes_up(api: Api, clock: FakeClock) -> None:
    session = await create(api)
    url = f"/v1/sessions/{session['id']}"
    for body, message in [
        ({"status": "snoozed"}, "is required"),
        ({"status": "snoozed", "snoozed_until": None}, "is required"),
        ({"status": "snoozed", "snoozed_until": iso(clock.now() - 1)}, "in the future"),
        ({"status": "snoozed", "snoozed_until": "2030-01-01T00:00:00"}, "timezone"),
        ({"snoozed_until": iso(clock.now() + 60)}, "only allowed with status"),
    ]:
        response = await api.patch(url, json=body)
        assert response.status_code == 422, (body, response.text)
        error = response.json()["errors"][0]
        assert error["path"] == "$.snoozed_until" and message in error["message"], error
    until = iso(clock.now() + 600)
    snoozed = (await api.patch(url, json={"status": "snoozed", "snoozed_until": until})).json()
    assert (snoozed["status"], snoozed["snoozed_until"]) == ("snoozed", until)
    later = iso(clock.now() + 900)
    assert (await api.patch(url, json={"snoozed_until": later})).json()["snoozed_until"] == later

    assert await api.glimpze.sessions.wake_snoozed(clock.now() + 899) == 0
    clock.advance(900)
    assert await api.glimpze.sessions.wake_snoozed(clock.now()) == 1
    woken = (await api.get(url)).json()
    assert (woken["status"], woken["snoozed_until"]) == ("open", None)
    assert events(api, "session.updated")[-1]["changes"] == {
        "status": {"old": "snoozed", "new": "open"},
        "snoozed_until": {"old": later, "new": None},
    }


async def test_a_closed_session_takes_notes_and_leads_and_only_a_reopen(api: Api, clock: FakeClock) -> None:
    session = await create(api)
    url = f"/v1/sessions/{session['id']}"
    closed = await api.post(f"{url}/close", json={"resolution": "solved"})
    assert closed.status_code == 200
    assert closed.json()["resolution"] == "solved" and closed.json()["closed_at"] == iso(clock.now())
    [event] = events(api, "session.closed")
    assert event["status"] == "closed" and event["resolution"] == "solved" and "changes" not in event

    assert (await api.post(f"{url}/notes", json={"text": "follow up next week"})).status_code == 201
    lead = await api.post("/v1/leads", json={"fields": {"email": "a@example.com"}, "session_id": session["id"]})
    assert lead.status_code == 201
    for method, path, body in [
        ("patch", url, {"priority": "high"}),
        ("patch", url, {"status": "open", "priority": "high"}),
        ("post", f"{url}/handoffs", {"to_team": "sales", "reason": "x"}),
        ("post", f"{url}/messages", {"role": "agent", "text": "hello?"}),
        ("post", f"{url}/close", {}),
    ]:
        response = await getattr(api, method)(path, json=body)
        assert response.status_code == 409, (path, body, response.text)
        assert response.json()["code"] == "session_closed"

    reopened = await api.patch(url, json={"status": "open"})
    assert reopened.status_code == 200
    assert (reopened.json()["status"], reopened.json()["resolution"], reopened.json()["closed_at"]) == (
        "open",
        None,
        None,
    )
    assert events(api, "session.updated")[-1]["changes"] == {
        "status": {"old": "closed", "new": "open"},
        "resolution": {"old": "solved", "new": None},
        "closed_at": {"old": iso(clock.now()), "new": None},
    }


async def test_close_with_an_empty_body(api: Api) -> None:
    session = await create(api)
    response = await api.post(f"/v1/sessions/{session['id']}/close")
    assert response.status_code == 200 and response.json()["resolution"] is None


async def test_notes_are_append_only_records(api: Api) -> None:
    session = await create(api)
    url = f"/v1/sessions/{session['id']}/notes"
    first = await api.post(url, json={"text": "called back", "author": "bo"})
    assert first.status_code == 201 and first.json()["id"].startswith("note_")
    await api.post(url, json={"text": "sent quote"})
    listed = (await api.get(url)).json()
    assert [n["text"] for n in listed["data"]] == ["called back", "sent quote"]
    assert (await api.post(url, json={"text": ""})).status_code == 422
    assert (await api.get("/v1/sessions/ses_nope/notes")).status_code == 404
    assert events(api, "session.updated") == []  # notes change nothing about the session


async def test_handoffs_move_the_session_and_escalate(api: Api) -> None:
    session = await create(api, team="support", assignee="bo")
    url = f"/v1/sessions/{session['id']}/handoffs"
    response = await api.post(url, json={"to_team": "sales", "to_assignee": "cy", "reason": "wants a quote"})
    assert response.status_code == 201, response.text
    handoff = response.json()
    assert handoff["id"].startswith("hnd_")
    assert (handoff["from_team"], handoff["from_assignee"]) == ("support", "bo")
    moved = (await api.get(f"/v1/sessions/{session['id']}")).json()
    assert (moved["team"], moved["assignee"]) == ("sales", "cy")
    second = await api.post(url, json={"to_team": "legal", "reason": "contract"})
    assert second.json()["from_team"] == "sales"
    assert (await api.get(f"/v1/sessions/{session['id']}")).json()["assignee"] is None
    assert [h["to_team"] for h in (await api.get(url)).json()["data"]] == ["sales", "legal"]

    first_event, second_event = events(api, "session.escalated")
    assert first_event["handoff"] == handoff
    assert first_event["changes"] == {
        "team": {"old": "support", "new": "sales"},
        "assignee": {"old": "bo", "new": "cy"},
    }
    assert second_event["team"] == "legal"
    missing = await api.post(url, json={"to_team": "sales"})
    assert missing.status_code == 422 and missing.json()["errors"][0]["path"] == "$.reason"


async def test_messages_list_in_order_and_emit_message_created(api: Api) -> None:
    agent = (await api.post("/v1/agents", json={"name": "Bot"})).json()
    session = await create(api, agent_id=agent["id"])
    url = f"/v1/sessions/{session['id']}/messages"
    posted = []
    for role, text in [("visitor", "hi"), ("assistant", "hello, how can I help?"), ("agent", "Bo here")]:
        response = await api.post(url, json={"role": role, "text": text})
        assert response.status_code == 201, response.text
        posted.append(response.json())
    assert [m["seq"] for m in posted] == [1, 2, 4]  # the assistant's `done` took 3
    page1 = (await api.get(f"{url}?limit=2")).json()
    page2 = (await api.get(f"{url}?limit=2&cursor={page1['next_cursor']}")).json()
    assert [m["text"] for m in page1["data"] + page2["data"]] == ["hi", "hello, how can I help?", "Bo here"]
    created = events(api, "message.created")
    assert [(e["message_id"], e["role"], e["agent_id"]) for e in created] == [
        (m["id"], m["role"], agent["id"]) for m in posted
    ]
    bad = await api.post(url, json={"role": "system", "text": "x"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "$.role"
    assert (await api.post("/v1/sessions/ses_nope/messages", json={"role": "agent", "text": "x"})).status_code == 404


async def test_a_visitor_message_reopens_a_pending_session(api: Api) -> None:
    session = await create(api)
    url = f"/v1/sessions/{session['id']}"
    await api.patch(url, json={"status": "pending"})
    await api.post(f"{url}/messages", json={"role": "agent", "text": "anything else?"})
    assert (await api.get(url)).json()["status"] == "pending"  # an agent reply leaves it waiting
    await api.post(f"{url}/messages", json={"role": "visitor", "text": "yes, one more thing"})
    assert (await api.get(url)).json()["status"] == "open"
    assert events(api, "session.updated")[-1]["changes"] == {"status": {"old": "pending", "new": "open"}}


@pytest.mark.parametrize(
    "path,body,variant",
    [
        ("/v1/sessions", {"visitor": VISITOR}, {"priority": "high"}),
        ("/v1/sessions/{id}/messages", {"role": "agent", "text": "once"}, {"text": "twice"}),
        ("/v1/sessions/{id}/notes", {"text": "once"}, {"text": "twice"}),
        ("/v1/sessions/{id}/handoffs", {"to_team": "sales", "reason": "once"}, {"reason": "twice"}),
        ("/v1/leads", {"fields": {"email": "once@example.com"}}, {"intent": {"x": 1}}),
    ],
)
async def test_creates_take_an_idempotency_key(
    api: Api, path: str, body: dict[str, Any], variant: dict[str, Any]
) -> None:
    session = await create(api)
    path = path.replace("{id}", session["id"])
    headers = {"Idempotency-Key": "retry-1"}
    first = await api.post(path, json=body, headers=headers)
    stored = row_counts(api.glimpze.config.db_path)
    again = await api.post(path, json=body, headers=headers)
    assert first.status_code == again.status_code == 201, first.text
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert row_counts(api.glimpze.config.db_path) == stored  # the replay stored nothing and emitted nothing
    other = await api.post(path, json={**body, **variant}, headers=headers)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


async def test_a_key_never_sees_another_projects_sessions(api: Api) -> None:
    session = await create(api)
    _, other_key = await api.glimpze.keys.create_project("Other")
    other = {"Authorization": f"Bearer {other_key.key}"}
    url = f"/v1/sessions/{session['id']}"
    for method, path, body in [
        ("get", url, None),
        ("patch", url, {"priority": "high"}),
        ("post", f"{url}/close", {}),
        ("post", f"{url}/notes", {"text": "x"}),
        ("get", f"{url}/notes", None),
        ("post", f"{url}/handoffs", {"to_team": "x", "reason": "y"}),
        ("get", f"{url}/handoffs", None),
        ("post", f"{url}/messages", {"role": "agent", "text": "x"}),
        ("get", f"{url}/messages", None),
    ]:
        kwargs: dict[str, Any] = {"headers": other} if body is None else {"headers": other, "json": body}
        response = await getattr(api.client, method)(path, **kwargs)
        assert response.status_code == 404, (method, path, response.text)
    assert (await api.client.get("/v1/sessions", headers=other)).json()["data"] == []
    assert (await api.get(url)).json()["priority"] == "normal"  # nothing changed
    agent = (await api.post("/v1/agents", json={"name": "Mine"})).json()
    assert (await api.client.get(f"/v1/agents/{agent['id']}", headers=other)).status_code == 404
    foreign = await api.client.post("/v1/sessions", json={"visitor": VISITOR, "agent_id": agent["id"]}, headers=other)
    assert foreign.status_code == 422 and foreign.json()["errors"][0]["path"] == "$.agent_id"


async def test_agents(api: Api) -> None:
    created = await api.post("/v1/agents", json={"name": "Support bot"})
    assert created.status_code == 201
    agent = created.json()
    assert agent["id"].startswith("agt_") and agent["language"] == "en"
    assert (await api.get(f"/v1/agents/{agent['id']}")).json() == agent
    assert [a["id"] for a in (await api.get("/v1/agents")).json()["data"]] == [agent["id"]]
    bad = await api.post("/v1/agents", json={"name": ""})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "$.name"
