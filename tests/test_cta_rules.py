"""CTA rules through `/v1`: create, list in matching order, change, delete, projects kept apart, and
bad input answered with the path of the bad field and nothing stored."""

from __future__ import annotations

from typing import Any

import pytest

from glimpze.chat import ctas
from tests.conftest import Api, row_counts
from tests.cta_setup import SHOP, agent, rule
from tests.test_conversation_inputs import ODD_VALUES

pytestmark = pytest.mark.anyio


async def test_create_read_change_and_delete_a_rule(api: Api) -> None:
    bot = await agent(api)
    body = {
        "label": "Book a demo",
        "description": "30 minutes with our team",
        "url": f"{SHOP}/demo?src=chat",
        "priority": 20,
        "match": {"page_url": f"{SHOP}/*", "languages": ["en"], "keywords": ["demo", " free   trial "]},
        "forward_context": ["conversation_id", "visitor_email", "conversation_id"],
    }
    created = await api.post(f"/v1/agents/{bot['id']}/ctas", json=body)
    assert created.status_code == 201, created.text
    cta = created.json()
    assert cta["id"].startswith("cta_") and cta["agent_id"] == bot["id"]
    assert cta["label"] == "Book a demo" and cta["active"] is True and cta["priority"] == 20
    assert cta["match"] == {
        "page_url": f"{SHOP}/*",
        "languages": ["en"],
        "keywords": ["demo", "free trial"],  # trimmed, inner whitespace folded
        "pattern": None,
    }
    assert cta["forward_context"] == ["conversation_id", "visitor_email"]  # repeats dropped
    assert (await api.get(f"/v1/ctas/{cta['id']}")).json() == cta

    changed = await api.patch(f"/v1/ctas/{cta['id']}", json={"active": False, "match": {"pattern": "(?i)demo"}})
    assert changed.status_code == 200, changed.text
    after = changed.json()
    assert after["active"] is False and after["label"] == "Book a demo"
    assert after["match"] == {"page_url": None, "languages": None, "keywords": None, "pattern": "(?i)demo"}
    assert after["forward_context"] == ["conversation_id", "visitor_email"]  # untouched
    cleared = (await api.patch(f"/v1/ctas/{cta['id']}", json={"description": None, "forward_context": []})).json()
    assert cleared["description"] is None and cleared["forward_context"] == []
    assert (await api.patch(f"/v1/ctas/{cta['id']}", json={})).json() == cleared  # a no-op

    deleted = await api.delete(f"/v1/ctas/{cta['id']}")
    assert deleted.status_code == 204
    assert (await api.get(f"/v1/ctas/{cta['id']}")).status_code == 404
    assert (await api.delete(f"/v1/ctas/{cta['id']}")).status_code == 404


async def test_defaults(api: Api) -> None:
    bot = await agent(api)
    cta = await rule(api, bot["id"])
    assert (cta["description"], cta["priority"], cta["active"], cta["forward_context"]) == (None, 0, True, [])
    assert cta["match"] == {"page_url": None, "languages": None, "keywords": None, "pattern": None}


async def test_the_list_is_in_matching_order_and_pages(api: Api) -> None:
    bot = await agent(api)
    other = await agent(api, name="Support bot")
    priorities = [5, 50, 5, -3, 50, 0, 7]
    made = [await rule(api, bot["id"], label=f"r{i}", priority=p) for i, p in enumerate(priorities)]
    await rule(api, other["id"], label="elsewhere", priority=100)
    expected = [c["id"] for c in sorted(made, key=lambda c: -c["priority"])]  # a stable sort keeps creation order
    seen: list[str] = []
    cursor = ""
    while True:
        listed = (await api.get(f"/v1/agents/{bot['id']}/ctas?limit=3&cursor={cursor}")).json()
        seen += [c["id"] for c in listed["data"]]
        if listed["next_cursor"] is None:
            break
        cursor = listed["next_cursor"]
    assert seen == expected
    assert (await api.get("/v1/agents/agt_missing/ctas")).status_code == 404
    bad = await api.get(f"/v1/agents/{bot['id']}/ctas?cursor=nope")
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "query.cursor"


async def test_a_key_never_sees_another_projects_rules(api: Api) -> None:
    bot = await agent(api)
    cta = await rule(api, bot["id"])
    _, other_key = await api.glimpze.keys.create_project("Other")
    other = {"Authorization": f"Bearer {other_key.key}"}
    for method, path, body in [
        ("post", f"/v1/agents/{bot['id']}/ctas", {"label": "x", "url": f"{SHOP}/x"}),
        ("get", f"/v1/agents/{bot['id']}/ctas", None),
        ("get", f"/v1/ctas/{cta['id']}", None),
        ("patch", f"/v1/ctas/{cta['id']}", {"label": "theirs"}),
        ("delete", f"/v1/ctas/{cta['id']}", None),
    ]:
        kwargs: dict[str, Any] = {"headers": other} if body is None else {"headers": other, "json": body}
        response = await getattr(api.client, method)(path, **kwargs)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["code"] == "not_found"
    assert (await api.get(f"/v1/ctas/{cta['id']}")).json() == cta  # nothing changed
    assert row_counts(api.glimpze.config.db_path)["cta_rules"] == 1
    # Each project has its own context secret.
    ours = (await api.get("/v1/ctas/secret")).json()["secret"]
    theirs = (await api.client.get("/v1/ctas/secret", headers=other)).json()["secret"]
    assert ours != theirs


BAD_CREATES: list[tuple[dict[str, Any], str]] = [
    ({"url": "ftp://shop.example.com/x"}, "$.url"),
    ({"url": "javascript:alert(1)"}, "$.url"),
    ({"url": "/relative/path"}, "$.url"),
    ({"url": f"{SHOP}/x?glimpze_sig=abc"}, "$.url"),
    ({"url": 42}, "$.url"),
    ({"url": "https://[::1/x"}, "$.url"),
    ({"forward_context": ["conversation_id", "password"]}, "$.forward_context[1]"),
    ({"forward_context": "conversation_id"}, "$.forward_context"),
    ({"match": {"pattern": "(unclosed"}}, "$.match.pattern"),
    ({"match": {"pattern": "a" * 501}}, "$.match.pattern"),
    ({"match": {"pattern": ""}}, "$.match.pattern"),
    ({"match": {"pattern": 7}}, "$.match.pattern"),
    ({"priority": "high"}, "$.priority"),
    ({"priority": 1.5}, "$.priority"),
    ({"priority": True}, "$.priority"),
    ({"priority": 10**7}, "$.priority"),
    ({"active": "yes"}, "$.active"),
    ({"match": []}, "$.match"),
    ({"match": {"colour": "red"}}, "$.match.colour"),
    ({"match": {"keywords": "pricing"}}, "$.match.keywords"),
    ({"match": {"keywords": []}}, "$.match.keywords"),
    ({"match": {"keywords": ["  "]}}, "$.match.keywords"),
    ({"match": {"languages": ["english!"]}}, "$.match.languages[0]"),
    ({"match": {"page_url": ""}}, "$.match.page_url"),
    ({"label": ""}, "$.label"),
    ({"label": "   "}, "$.label"),
    ({"label": 5}, "$.label"),
    ({"description": 5}, "$.description"),
    ({"priorty": 3}, "$.priorty"),
]


async def test_bad_rules_are_422s_naming_the_field_and_store_nothing(api: Api) -> None:
    bot = await agent(api)
    for change, path in BAD_CREATES:
        body = {"label": "Pricing", "url": f"{SHOP}/pricing", **change}
        response = await api.post(f"/v1/agents/{bot['id']}/ctas", json=body)
        assert response.status_code == 422, (change, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["code"] == "validation_failed" and problem["errors"][0]["path"] == path, (change, problem)
    assert row_counts(api.glimpze.config.db_path)["cta_rules"] == 0


async def test_label_and_url_are_required(api: Api) -> None:
    bot = await agent(api)
    for missing in ("label", "url"):
        body = {"label": "Pricing", "url": f"{SHOP}/pricing"}
        del body[missing]
        response = await api.post(f"/v1/agents/{bot['id']}/ctas", json=body)
        assert response.status_code == 422 and response.json()["errors"][0]["path"] == f"$.{missing}"


async def test_bad_changes_are_422s_and_change_nothing(api: Api) -> None:
    bot = await agent(api)
    cta = await rule(api, bot["id"], match={"keywords": ["pricing"]})
    for change, path in BAD_CREATES:
        response = await api.patch(f"/v1/ctas/{cta['id']}", json=change)
        assert response.status_code == 422, (change, response.text)
        assert response.json()["errors"][0]["path"] == path, change
    assert (await api.get(f"/v1/ctas/{cta['id']}")).json() == cta


async def test_unknown_agents_and_rules(api: Api) -> None:
    missing = await api.post("/v1/agents/agt_missing/ctas", json={"label": "x", "url": f"{SHOP}/x"})
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert (await api.patch("/v1/ctas/cta_missing", json={"label": "x"})).status_code == 404


async def test_an_agent_holds_a_bounded_number_of_rules(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctas, "MAX_RULES_PER_AGENT", 2)
    bot = await agent(api)
    await rule(api, bot["id"])
    await rule(api, bot["id"])
    third = await api.post(f"/v1/agents/{bot['id']}/ctas", json={"label": "x", "url": f"{SHOP}/x"})
    assert third.status_code == 409 and third.json()["code"] == "too_many_ctas"
    assert row_counts(api.glimpze.config.db_path)["cta_rules"] == 2


async def test_a_create_can_be_retried_with_an_idempotency_key(api: Api) -> None:
    bot = await agent(api)
    body = {"label": "Pricing", "url": f"{SHOP}/pricing"}
    headers = {"Idempotency-Key": "rule-1"}
    first = await api.post(f"/v1/agents/{bot['id']}/ctas", json=body, headers=headers)
    again = await api.post(f"/v1/agents/{bot['id']}/ctas", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert row_counts(api.glimpze.config.db_path)["cta_rules"] == 1


async def test_openapi_documents_the_cta_api(api: Api) -> None:
    spec = (await api.client.get("/schema/openapi.json")).json()
    paths = spec["paths"]
    assert "requestBody" in paths["/v1/agents/{agent_id}/ctas"]["post"]
    assert "get" in paths["/v1/agents/{agent_id}/ctas"]
    assert {"get", "patch", "delete"} <= set(paths["/v1/ctas/{cta_id}"])
    assert "requestBody" in paths["/v1/ctas/{cta_id}"]["patch"]
    assert "requestBody" in paths["/v1/ctas/verify"]["post"]
    assert "get" in paths["/v1/ctas/secret"] and "post" in paths["/v1/ctas/rotate-secret"]
    for name in ("Cta", "CtaCreate", "CtaPatch", "CtaMatch", "CtaSecret", "CtaVerify", "Verification", "CtaCard"):
        assert name in spec["components"]["schemas"], name


async def test_odd_values_in_every_field_never_break_the_server(api: Api) -> None:
    bot = await agent(api)
    cta = await rule(api, bot["id"])
    match = {"page_url": f"{SHOP}/*", "languages": ["en"], "keywords": ["demo"], "pattern": "x+"}
    full = {
        "label": "L",
        "url": f"{SHOP}/x",
        "description": "d",
        "priority": 1,
        "active": True,
        "match": match,
        "forward_context": ["agent_id"],
    }
    for method, path, body in [
        ("post", f"/v1/agents/{bot['id']}/ctas", full),
        ("patch", f"/v1/ctas/{cta['id']}", full),
        ("post", "/v1/ctas/verify", {"url": f"{SHOP}/x?glimpze_ctx=e30&glimpze_ts=1&glimpze_sig=00"}),
    ]:
        variants = [{**body, field: value} for field in body for value in ODD_VALUES]
        if "match" in body:
            variants += [{**body, "match": {**match, key: value}} for key in match for value in ODD_VALUES]
        for variant in variants:
            response = await getattr(api, method)(path, json=variant)
            assert response.status_code < 500, (method, path, variant, response.text)
            if response.status_code >= 400:
                assert response.headers["content-type"] == "application/problem+json", variant
