"""/v1/leads: upsert by email then phone, the seed 003 `lead.captured` payload, CRM mapping and sync lists."""

from __future__ import annotations

from typing import Any

import pytest

from glimpze.clock import FakeClock, iso
from tests.conftest import Api, out_events, row_counts

pytestmark = pytest.mark.anyio

SEED_003_FIELDS = {"id", "event", "occurred_at", "lead_id", "agent_id", "conversation_id", "fields"}


async def capture(api: Api, expect: int = 201, **body: Any) -> dict[str, Any]:
    response = await api.post("/v1/leads", json=body)
    assert response.status_code == expect, response.text
    return response.json()


async def test_the_same_email_twice_is_one_lead_and_two_captures(api: Api, clock: FakeClock) -> None:
    agent = (await api.post("/v1/agents", json={"name": "Sales bot"})).json()
    session = (await api.post("/v1/sessions", json={"visitor": {"id": "v1"}, "agent_id": agent["id"]})).json()
    first = await capture(
        api,
        fields={"name": "Ada Lovelace", "email": "Ada@Example.com", "company": "Engines Ltd"},
        intent={"topic": "pricing"},
        session_id=session["id"],
    )
    assert first["id"].startswith("lead_") and first["captures"] == 1
    assert first["agent_id"] == agent["id"]  # from the session
    assert first["session_id"] == first["conversation_id"] == session["id"]
    clock.advance(10)
    second = await capture(
        api,
        200,
        fields={"email": "ada@example.COM", "phone": "+44 20 7946 0958", "company": "Analytical Engines", "seats": 5},
        intent={"budget": "5k"},
    )
    assert second["id"] == first["id"] and second["captures"] == 2
    assert second["fields"] == {
        "name": "Ada Lovelace",  # kept
        "email": "ada@example.COM",  # the new value wins
        "phone": "+44 20 7946 0958",
        "company": "Analytical Engines",
        "seats": 5,
    }
    assert second["intent"] == {"topic": "pricing", "budget": "5k"}
    assert second["updated_at"] == iso(clock.now()) and second["created_at"] == first["created_at"]
    assert row_counts(api.glimpze.config.db_path)["leads"] == 1

    captured = out_events(api.glimpze.config.db_path, "lead.captured")
    assert len(captured) == 2
    for payload in captured:
        assert set(payload) == SEED_003_FIELDS  # nothing else at the top level
        assert payload["event"] == "lead.captured" and payload["lead_id"] == first["id"]
        assert payload["agent_id"] == agent["id"] and payload["conversation_id"] == session["id"]
    assert captured[0]["fields"] == {
        "name": "Ada Lovelace",
        "email": "Ada@Example.com",
        "phone": None,
        "company": "Engines Ltd",
    }
    assert captured[1]["fields"] == second["fields"]
    assert captured[0]["id"] != captured[1]["id"]  # receivers deduplicate on id


async def test_phone_matches_when_no_email_does(api: Api) -> None:
    by_phone = await capture(api, fields={"name": "Bo", "phone": "+1 (555) 010-2000"})
    merged = await capture(api, 200, fields={"phone": "+1 555 010 2000", "email": "bo@example.com"})
    assert merged["id"] == by_phone["id"] and merged["fields"]["email"] == "bo@example.com"
    # now email matches first, even when the phone names another lead
    other = await capture(api, fields={"phone": "+1 555 999 0000"})
    again = await capture(api, 200, fields={"email": "BO@example.com", "phone": "+1 555 999 0000"})
    assert again["id"] == by_phone["id"] != other["id"]


async def test_a_null_does_not_erase_and_leads_without_keys_are_separate(api: Api) -> None:
    lead = await capture(api, fields={"email": "cy@example.com", "name": "Cy", "note": "x"})
    merged = await capture(api, 200, fields={"email": "cy@example.com", "name": None, "note": None})
    assert merged["id"] == lead["id"] and merged["fields"]["name"] == "Cy" and merged["fields"]["note"] == "x"
    one = await capture(api, fields={"name": "Anonymous"})
    two = await capture(api, fields={"name": "Anonymous"})
    assert one["id"] != two["id"]


@pytest.mark.parametrize(
    "body,path",
    [
        ({}, "$.fields"),
        ({"fields": {}}, "$.fields"),
        ({"fields": {"name": None}}, "$.fields"),
        ({"fields": {"email": "nope"}}, "$.fields.email"),
        ({"fields": {"email": 5}}, "$.fields.email"),
        ({"fields": {"phone": "call me"}}, "$.fields.phone"),
        ({"fields": {"big": "x" * 9000}}, "$.fields"),
        ({"fields": {"name": "x"}, "session_id": "ses_nope"}, "$.session_id"),
        ({"fields": {"name": "x"}, "conversation_id": "ses_nope"}, "$.conversation_id"),
        ({"fields": {"name": "x"}, "session_id": "ses_a", "conversation_id": "ses_b"}, "$.conversation_id"),
        ({"fields": {"name": "x"}, "agent_id": "agt_nope"}, "$.agent_id"),
        ({"fields": {"name": "x"}, "crm": {"system": "hubspot"}}, "$.crm.record_id"),
        ({"fields": {"name": "x"}, "score": 3}, "$.score"),
    ],
)
async def test_capture_validation(api: Api, body: dict[str, Any], path: str) -> None:
    response = await api.post("/v1/leads", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["path"] == path
    assert row_counts(api.glimpze.config.db_path)["leads"] == 0
    assert out_events(api.glimpze.config.db_path) == []


async def test_conversation_id_is_session_id(api: Api) -> None:
    session = (await api.post("/v1/sessions", json={"visitor": {"id": "v"}})).json()
    lead = await capture(api, fields={"email": "d@example.com"}, conversation_id=session["id"])
    assert lead["session_id"] == session["id"]


async def test_crm_mapping_and_sync_listing(api: Api, clock: FakeClock) -> None:
    a = await capture(api, fields={"email": "a@example.com"}, crm={"system": "hubspot", "record_id": "h-1"})
    clock.advance(1)
    b = await capture(api, fields={"email": "b@example.com"})
    clock.advance(1)
    c = await capture(api, fields={"email": "c@example.com"})
    assert a["crm"] == {"system": "hubspot", "record_id": "h-1"} and b["crm"] is None

    clock.advance(1)
    mapped = await api.patch(f"/v1/leads/{b['id']}", json={"crm": {"system": "salesforce", "record_id": "00Q1"}})
    assert mapped.status_code == 200 and mapped.json()["crm"] == {"system": "salesforce", "record_id": "00Q1"}
    assert (await api.get(f"/v1/leads/{b['id']}")).json()["crm"]["record_id"] == "00Q1"
    assert out_events(api.glimpze.config.db_path, "lead.captured")[-1]["lead_id"] == c["id"]  # PATCH emits nothing

    async def ids(query: str) -> list[str]:
        response = await api.get(f"/v1/leads{query}")
        assert response.status_code == 200, response.text
        return [lead["id"] for lead in response.json()["data"]]

    assert await ids("") == [a["id"], c["id"], b["id"]]  # in the order they last changed
    assert await ids("?crm_system=hubspot") == [a["id"]]
    assert await ids(f"?updated_since={c['updated_at']}") == [c["id"], b["id"]]
    first = (await api.get("/v1/leads?limit=2")).json()
    rest = (await api.get(f"/v1/leads?limit=2&cursor={first['next_cursor']}")).json()
    assert [lead["id"] for lead in first["data"] + rest["data"]] == [a["id"], c["id"], b["id"]]
    bad = await api.get("/v1/leads?updated_since=yesterday")
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "query.updated_since"

    cleared = await api.patch(f"/v1/leads/{a['id']}", json={"crm": None})
    assert cleared.json()["crm"] is None
    assert (await api.patch("/v1/leads/lead_nope", json={"crm": None})).status_code == 404


async def test_a_key_never_sees_another_projects_leads(api: Api) -> None:
    lead = await capture(api, fields={"email": "shared@example.com"})
    _, other_key = await api.glimpze.keys.create_project("Other")
    other = {"Authorization": f"Bearer {other_key.key}"}
    assert (await api.client.get(f"/v1/leads/{lead['id']}", headers=other)).status_code == 404
    assert (await api.client.patch(f"/v1/leads/{lead['id']}", json={"crm": None}, headers=other)).status_code == 404
    assert (await api.client.get("/v1/leads", headers=other)).json()["data"] == []
    # the same email in another project is another lead
    theirs = await api.client.post("/v1/leads", json={"fields": {"email": "shared@example.com"}}, headers=other)
    assert theirs.status_code == 201 and theirs.json()["id"] != lead["id"]
