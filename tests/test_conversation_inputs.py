"""Hostile input to every conversation endpoint that takes a body: never a 5xx, always a problem."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api

pytestmark = pytest.mark.anyio

ODD_VALUES: list[Any] = [None, 0, -1, 1.5, 10**30, True, "", "é\u0000\u202e", "x" * 20_000, [], [None], {}, {"": {}}]


async def test_odd_values_in_every_field_never_break_the_server(api: Api) -> None:
    agent = (await api.post("/v1/agents", json={"name": "A"})).json()
    session = (await api.post("/v1/sessions", json={"visitor": {"id": "v"}, "agent_id": agent["id"]})).json()
    lead = (await api.post("/v1/leads", json={"fields": {"email": "a@example.com"}})).json()
    token = (await api.post("/v1/widget-tokens", json={"visitor": {"id": "v"}})).json()["token"]
    widget = {"Authorization": f"Bearer {token}"}
    s = f"/v1/sessions/{session['id']}"
    valid: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
        ("post", "/v1/agents", {"name": "n", "language": "en"}, {}),
        ("post", "/v1/sessions", {"visitor": {"id": "v", "name": "n", "email": "a@b.co"}, "labels": ["a"]}, {}),
        ("patch", s, {"priority": "low", "labels": ["a"], "team": "t", "assignee": "a"}, {}),
        ("patch", s, {"status": "snoozed", "snoozed_until": "2099-01-01T00:00:00Z"}, {}),
        ("patch", s, {"add_labels": ["a"], "remove_labels": ["b"]}, {}),
        ("post", f"{s}/messages", {"role": "agent", "text": "t", "author": "a"}, {}),
        ("post", f"{s}/notes", {"text": "t", "author": "a"}, {}),
        ("post", f"{s}/handoffs", {"to_team": "t", "to_assignee": "a", "reason": "r"}, {}),
        ("post", "/v1/leads", {"fields": {"email": "x@y.co", "phone": "+1 555 0100"}, "intent": {}}, {}),
        ("patch", f"/v1/leads/{lead['id']}", {"crm": {"system": "s", "record_id": "r"}}, {}),
        ("post", "/v1/widget-tokens", {"visitor": {"id": "v"}, "origin": "https://a.example", "ttl_seconds": 60}, {}),
        ("put", "/v1/settings/widget-origins", {"origins": ["https://a.example"]}, {}),
        ("post", "/widget/v1/sessions", {"page_url": "https://a.example/x", "language": "en"}, widget),
        ("post", f"/widget/v1/sessions/{session['id']}/messages", {"text": "t"}, widget),
    ]
    for method, path, body, headers in valid:
        for field in body:
            for value in ODD_VALUES:
                response = await getattr(api, method)(path, json={**body, field: value}, headers=headers)
                assert response.status_code < 500, (method, path, field, value, response.text)
                if response.status_code >= 400:
                    assert response.headers["content-type"] == "application/problem+json", (path, field, value)
                    assert response.json()["code"], (path, field, value)
