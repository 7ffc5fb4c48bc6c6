"""Widget tokens (mint, expiry, tampering, origin binding, projects), widget origins and CORS, and
the visitor API apart from the stream (open or resume, messages, polling)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from glimpze.clock import FakeClock, iso
from glimpze.errors import Unauthorized
from glimpze.ops.logs import redact, safe_target
from tests.conftest import Api, out_events

pytestmark = pytest.mark.anyio

SHOP = "https://shop.example.com"
VISITOR = {"id": "v-7", "name": "Ada", "email": "ada@example.com"}


async def mint(api: Api, headers: dict[str, str] | None = None, **body: Any) -> str:
    response = await api.post("/v1/widget-tokens", json={"visitor": VISITOR, **body}, headers=headers or {})
    assert response.status_code == 201, response.text
    return response.json()["token"]


def bearer(token: str, origin: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if origin:
        headers["Origin"] = origin
    return headers


async def open_session(api: Api, token: str, origin: str | None = None, **body: Any) -> Any:
    return await api.client.post("/widget/v1/sessions", json=body or None, headers=bearer(token, origin))


def _split(token: str) -> tuple[list[Any], str]:
    payload, signature = token.removeprefix("gzt_").split(".")
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))), signature


def _join(claims: list[Any], signature: str) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"gzt_{payload}.{signature}"


# Minting


async def test_mint_a_token(api: Api, clock: FakeClock) -> None:
    response = await api.post("/v1/widget-tokens", json={"visitor": VISITOR})
    assert response.status_code == 201
    token = response.json()
    assert token["token"].startswith("gzt_")
    assert token["expires_at"] == iso(int(clock.now()) + 600)  # 10 minutes by default
    hour = await api.post("/v1/widget-tokens", json={"visitor": VISITOR, "ttl_seconds": 3600})
    assert hour.json()["expires_at"] == iso(int(clock.now()) + 3600)


@pytest.mark.parametrize(
    "body,path",
    [
        ({}, "$.visitor"),
        ({"visitor": {}}, "$.visitor.id"),
        ({"visitor": VISITOR, "ttl_seconds": 3601}, "$.ttl_seconds"),
        ({"visitor": VISITOR, "ttl_seconds": 5}, "$.ttl_seconds"),
        ({"visitor": VISITOR, "origin": "https://shop.example.com/checkout"}, "$.origin"),
        ({"visitor": VISITOR, "origin": "shop.example.com"}, "$.origin"),
        ({"visitor": VISITOR, "agent_id": "agt_nope"}, "$.agent_id"),
        ({"visitor": VISITOR, "context": {"blob": "x" * 3000}}, "$.context"),
    ],
)
async def test_mint_validation(api: Api, body: dict[str, Any], path: str) -> None:
    response = await api.post("/v1/widget-tokens", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["path"] == path


# Verification: every failure is a 401 invalid_token


async def test_expired_token(api: Api, clock: FakeClock) -> None:
    token = await mint(api, ttl_seconds=60)
    assert (await open_session(api, token)).status_code == 201
    clock.advance(60)
    response = await open_session(api, token)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token" and "expired" in response.json()["detail"]


async def test_tampered_tokens(api: Api) -> None:
    token = await mint(api)
    claims, signature = _split(token)
    other_visitor = [*claims]
    other_visitor[1] = {**claims[1], "id": "someone-else"}
    longer = [*claims]
    longer[6] = claims[6] + 86400
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    for bad in (
        _join(other_visitor, signature),
        _join(longer, signature),
        token.rsplit(".", 1)[0] + "." + flipped,
        token + "x",
        token.replace("gzt_", "gzt_x"),
        "gzt_nonsense",
        "gzt_!!!.abc",
        "not-a-token",
        api.key,  # an API key is not a widget token
    ):
        response = await open_session(api, bad)
        assert response.status_code == 401, (bad, response.text)
        assert response.json()["code"] == "invalid_token"
        assert response.headers["www-authenticate"].startswith("Bearer")
    missing = await api.client.post("/widget/v1/sessions")
    assert missing.status_code == 401 and missing.json()["code"] == "invalid_token"


async def test_a_token_of_another_project(api: Api) -> None:
    _, other_key = await api.glimpze.keys.create_project("Other")
    other = {"Authorization": f"Bearer {other_key.key}"}
    theirs = await mint(api, headers=other)
    ours = await mint(api)
    # Claiming the other project with our signature (or ours with theirs) fails: the secrets differ.
    claims, signature = _split(ours)
    their_claims, their_signature = _split(theirs)
    swapped = (_join([their_claims[0], *claims[1:]], signature), _join([claims[0], *their_claims[1:]], their_signature))
    for bad in swapped:
        response = await open_session(api, bad)
        assert response.status_code == 401 and response.json()["code"] == "invalid_token"
    # A project that never minted has no secret: nothing verifies for it.
    project, _ = await api.glimpze.keys.create_project("Silent")
    response = await open_session(api, _join([project.id, *claims[1:]], signature))
    assert response.status_code == 401
    # A genuine token of the other project opens a session there, never one of ours.
    mine = (await open_session(api, ours)).json()
    assert (await open_session(api, theirs)).json()["id"] != mine["id"]
    elsewhere = await api.client.get(f"/widget/v1/sessions/{mine['id']}", headers=bearer(theirs))
    assert elsewhere.status_code == 404


async def test_a_token_bound_to_an_origin(api: Api) -> None:
    await api.put("/v1/settings/widget-origins", json={"origins": [SHOP, "https://evil.example"]})
    token = await mint(api, origin="HTTPS://Shop.Example.com:443")
    assert (await open_session(api, token, SHOP)).status_code == 201
    for origin in ("https://evil.example", None):
        response = await open_session(api, token, origin)
        assert response.status_code == 401, origin
        assert response.json()["code"] == "invalid_token" and SHOP in response.json()["detail"]


# Widget origins and CORS


async def test_widget_origins_setting(api: Api) -> None:
    assert (await api.get("/v1/settings/widget-origins")).json() == {"origins": []}
    response = await api.put(
        "/v1/settings/widget-origins", json={"origins": ["https://B.example.com/", SHOP, "http://localhost:3000", SHOP]}
    )
    assert response.status_code == 200, response.text
    expected = ["http://localhost:3000", "https://b.example.com", SHOP]
    assert response.json() == {"origins": expected}
    assert (await api.get("/v1/settings/widget-origins")).json() == {"origins": expected}
    bad = await api.put("/v1/settings/widget-origins", json={"origins": [SHOP, "https://x.example/path"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "$.origins[1]"
    assert (await api.get("/v1/settings/widget-origins")).json() == {"origins": expected}  # unchanged


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }


async def test_no_widget_origins_means_cross_origin_calls_fail_with_a_refusal_the_page_can_read(api: Api) -> None:
    token = await mint(api)
    # The preflight lets the call through, so that the page can read why it is refused...
    pre = await api.client.options("/widget/v1/sessions", headers=preflight(SHOP))
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == SHOP
    # ...and the call is refused before its token is even looked at, with CORS headers for the
    # refusal only and nothing in it but the reason.
    for credentials in (bearer(token, SHOP), bearer("not-a-token", SHOP), {"Origin": SHOP}):
        call = await api.client.post("/widget/v1/sessions", headers=credentials)
        assert call.status_code == 403 and call.headers["access-control-allow-origin"] == SHOP
        assert call.headers["content-type"] == "application/problem+json" and call.headers["vary"] == "Origin"
        problem = call.json()
        assert problem["code"] == "origin_not_allowed" and "PUT /v1/settings/widget-origins" in problem["detail"]
        assert set(problem) == {"type", "title", "status", "detail", "code", "errors"}
        assert call.headers["cache-control"] == "no-store" and "sandbox" in call.headers["content-security-policy"]
    stream = await api.client.get("/widget/v1/sessions/ses_x/stream", params={"token": token}, headers={"Origin": SHOP})
    assert stream.status_code == 403 and stream.headers["access-control-allow-origin"] == SHOP
    assert api.glimpze.streams.streams_open == 0
    assert (await api.get("/v1/sessions")).json()["data"] == []  # nothing was opened
    served = await open_session(api, token)  # a server-side call (no Origin) is fine, without CORS
    assert served.status_code == 201 and "access-control-allow-origin" not in served.headers


async def test_cors_allows_exactly_the_projects_origins(api: Api) -> None:
    await api.put("/v1/settings/widget-origins", json={"origins": [SHOP]})
    token = await mint(api)
    pre = await api.client.options("/widget/v1/sessions/ses_x/stream", headers=preflight(SHOP))
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == SHOP
    assert "POST" in pre.headers["access-control-allow-methods"]
    allowed_headers = pre.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "idempotency-key", "last-event-id"):
        assert header in allowed_headers
    assert pre.headers["vary"] == "Origin"
    call = await open_session(api, token, SHOP)
    assert call.status_code == 201 and call.headers["access-control-allow-origin"] == SHOP
    refused = await open_session(api, token, "https://other.example")
    assert refused.status_code == 403 and refused.json()["code"] == "origin_not_allowed"

    # An origin another project allows passes the preflight, but not our token's check.
    _, other_key = await api.glimpze.keys.create_project("Other")
    await api.client.put(
        "/v1/settings/widget-origins",
        json={"origins": ["https://other.example"]},
        headers={"Authorization": f"Bearer {other_key.key}"},
    )
    theirs = await api.client.options("/widget/v1/sessions", headers=preflight("https://other.example"))
    assert theirs.status_code == 204
    crossed = await open_session(api, token, "https://other.example")
    assert crossed.status_code == 403 and crossed.json()["code"] == "origin_not_allowed"
    assert "Origin 'https://other.example'" in crossed.json()["detail"]


async def test_every_widget_api_answer_has_a_strict_csp(api: Api) -> None:
    """Answers are data for the widget's script, never pages: nothing in them may run or load."""
    await api.put("/v1/settings/widget-origins", json={"origins": [SHOP]})
    token = await mint(api)
    answers = {
        "created": await open_session(api, token, SHOP),
        "problem": await open_session(api, "not-a-token", SHOP),
        "preflight": await api.client.options("/widget/v1/sessions", headers=preflight(SHOP)),
        "unknown origin's preflight": await api.client.options(
            "/widget/v1/sessions", headers=preflight("https://x.example")
        ),
        "refusal": await open_session(api, token, "https://x.example"),
        "no origin": await api.client.get("/widget/v1/sessions/ses_nope", headers=bearer(token)),
    }
    for name, response in answers.items():
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "sandbox" in csp, name
        assert response.headers["x-content-type-options"] == "nosniff", name
        assert response.headers["cache-control"] == "no-store", name
    # The widget reads Date to correct for a visitor's clock.
    assert "Date" in answers["created"].headers["access-control-expose-headers"]


async def test_glimpzes_own_origin_is_same_origin(api: Api) -> None:
    token = await mint(api)
    assert (await open_session(api, token, "http://localhost:8080")).status_code == 201


# The visitor API


async def test_open_resumes_the_visitors_open_session(api: Api) -> None:
    token = await mint(api, context={"plan": "pro"})
    first = await open_session(api, token, page_url="https://shop.example.com/pricing", language="fr")
    assert first.status_code == 201, first.text
    session = first.json()
    assert session["visitor"] == VISITOR and session["status"] == "open"
    assert (session["page_url"], session["language"]) == ("https://shop.example.com/pricing", "fr")
    fields = {"id", "status", "agent_id", "agent", "visitor", "language", "page_url", "created_at", "updated_at"}
    assert set(session) == fields and session["agent"] is None
    again = await open_session(api, await mint(api, context={"plan": "other"}))
    assert again.status_code == 200 and again.json()["id"] == session["id"]
    stored = (await api.get(f"/v1/sessions/{session['id']}")).json()
    assert stored["context"] == {"plan": "pro"}  # hydrated when opened
    assert len(out_events(api.glimpze.config.db_path, "session.created")) == 1

    await api.patch(f"/v1/sessions/{session['id']}", json={"status": "pending"})
    assert (await open_session(api, token)).json()["id"] == session["id"]  # pending is still open
    await api.post(f"/v1/sessions/{session['id']}/close")
    fresh = await open_session(api, token)
    assert fresh.status_code == 201 and fresh.json()["id"] != session["id"]

    agent = (await api.post("/v1/agents", json={"name": "Bot"})).json()
    with_agent = await open_session(api, await mint(api, agent_id=agent["id"]))
    assert with_agent.status_code == 201 and with_agent.json()["agent_id"] == agent["id"]
    bad = await open_session(api, token, page_url="")
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "$.page_url"


async def test_visitor_messages_and_polling(api: Api) -> None:
    token = await mint(api)
    session = (await open_session(api, token)).json()
    url = f"/widget/v1/sessions/{session['id']}/messages"
    first = await api.client.post(url, json={"text": "Hello?"}, headers=bearer(token))
    assert first.status_code == 201, first.text
    assert (first.json()["role"], first.json()["author"], first.json()["seq"]) == ("visitor", "Ada", 1)
    await api.post(f"/v1/sessions/{session['id']}/messages", json={"role": "assistant", "text": "Hi Ada"})
    await api.post(f"/v1/sessions/{session['id']}/messages", json={"role": "agent", "text": "Bo here"})

    everything = (await api.client.get(url, headers=bearer(token))).json()
    assert [m["text"] for m in everything["data"]] == ["Hello?", "Hi Ada", "Bo here"]
    assert everything["next_after"] == 4 and everything["status"] == "open"  # seq 3 was the assistant's done
    newer = (await api.client.get(f"{url}?after=2", headers=bearer(token))).json()
    assert [m["text"] for m in newer["data"]] == ["Bo here"]
    nothing = (await api.client.get(f"{url}?after=4", headers=bearer(token))).json()
    assert nothing == {"data": [], "next_after": 4, "status": "open"}
    assert (await api.client.get(f"{url}?after=-1", headers=bearer(token))).status_code == 422
    # past SQLite's INTEGER range (found by schemathesis: a 500)
    huge = await api.client.get(f"{url}?after={2**63}", headers=bearer(token))
    assert huge.status_code == 422 and huge.json()["errors"][0]["path"] == "query.after"

    created = out_events(api.glimpze.config.db_path, "message.created")
    assert created[0]["role"] == "visitor" and created[0]["session_id"] == session["id"]
    assert (await api.client.post(url, json={"text": ""}, headers=bearer(token))).status_code == 422
    assert (await api.client.post(url, json={"text": "x", "role": "agent"}, headers=bearer(token))).status_code == 422


async def test_visitor_message_idempotency(api: Api) -> None:
    token = await mint(api)
    session = (await open_session(api, token)).json()
    url = f"/widget/v1/sessions/{session['id']}/messages"
    headers = {**bearer(token), "Idempotency-Key": "tap-1"}
    first = await api.client.post(url, json={"text": "once"}, headers=headers)
    # a refreshed token for the same visitor replays too
    refreshed = {**bearer(await mint(api)), "Idempotency-Key": "tap-1"}
    again = await api.client.post(url, json={"text": "once"}, headers=refreshed)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert len(out_events(api.glimpze.config.db_path, "message.created")) == 1


async def test_a_visitor_sees_only_their_own_sessions(api: Api) -> None:
    mine = await mint(api)
    session = (await open_session(api, mine)).json()
    theirs = (await api.post("/v1/widget-tokens", json={"visitor": {"id": "v-8"}})).json()["token"]
    for method, path, body in [
        ("get", f"/widget/v1/sessions/{session['id']}", None),
        ("get", f"/widget/v1/sessions/{session['id']}/messages", None),
        ("post", f"/widget/v1/sessions/{session['id']}/messages", {"text": "hi"}),
    ]:
        kwargs: dict[str, Any] = {"headers": bearer(theirs)}
        if body is not None:
            kwargs["json"] = body
        response = await getattr(api.client, method)(path, **kwargs)
        assert response.status_code == 404, (method, path)
    assert (await api.client.get(f"/widget/v1/sessions/{session['id']}", headers=bearer(mine))).status_code == 200


async def test_a_closed_session_takes_no_visitor_messages(api: Api) -> None:
    token = await mint(api)
    session = (await open_session(api, token)).json()
    await api.post(f"/v1/sessions/{session['id']}/close")
    response = await api.client.post(
        f"/widget/v1/sessions/{session['id']}/messages", json={"text": "hello?"}, headers=bearer(token)
    )
    assert response.status_code == 409 and response.json()["code"] == "session_closed"
    poll = await api.client.get(f"/widget/v1/sessions/{session['id']}/messages", headers=bearer(token))
    assert poll.json()["status"] == "closed"


async def test_openapi_documents_the_conversation_api(api: Api) -> None:
    spec = (await api.client.get("/schema/openapi.json")).json()
    assert "widgetToken" in spec["components"]["securitySchemes"]
    for path in ("/widget/v1/sessions", "/widget/v1/sessions/{session_id}/messages"):
        operation = spec["paths"][path]["post"]
        assert "requestBody" in operation and operation["security"] == [{"widgetToken": []}], path
    stream = spec["paths"]["/widget/v1/sessions/{session_id}/stream"]["get"]
    assert {p["name"] for p in stream["parameters"]} >= {"token", "last_event_id", "Last-Event-ID"}
    assert spec["paths"]["/v1/sessions"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    for name in ("Session", "Lead", "Message", "Handoff", "Note", "ChatToken", "SessionPatch", "LeadCapture"):
        assert name in spec["components"]["schemas"], name


async def test_logs_never_show_a_widget_token(api: Api) -> None:
    token = await mint(api)
    target = safe_target("/widget/v1/sessions/ses_1/stream", f"token={token}&last_event_id=3".encode())
    assert token not in target and "last_event_id=3" in target
    assert token not in redact(f"bad token {token}")


async def test_every_one_character_change_to_a_token_is_refused(api: Api) -> None:
    token = await mint(api, origin=SHOP, context={"plan": "pro"})
    tokens = api.glimpze.chat_tokens
    assert (await tokens.verify(token, SHOP)).visitor.id == VISITOR["id"]
    alphabet = "AbZ09-_.xé="
    for i in range(len(token)):
        for replacement in alphabet:
            if token[i] == replacement:
                continue
            with pytest.raises(Unauthorized) as refused:
                await tokens.verify(token[:i] + replacement + token[i + 1 :], SHOP)
            assert refused.value.code == "invalid_token"


async def test_a_bad_last_event_id_is_a_422(api: Api) -> None:
    token = await mint(api)
    session = (await open_session(api, token)).json()
    url = f"/widget/v1/sessions/{session['id']}/stream"
    header = await api.client.get(url, headers={**bearer(token), "Last-Event-ID": "soon"})
    assert header.status_code == 422 and header.json()["errors"][0]["path"] == "header.Last-Event-ID"
    query = await api.client.get(f"{url}?last_event_id=-1", headers=bearer(token))
    assert query.status_code == 422 and query.json()["errors"][0]["path"] == "query.last_event_id"
    # past SQLite's INTEGER range: refused before the stream starts (it used to fail inside it)
    huge = await api.client.get(url, headers={**bearer(token), "Last-Event-ID": str(2**63)})
    assert huge.status_code == 422 and huge.json()["errors"][0]["path"] == "header.Last-Event-ID"
    query = await api.client.get(f"{url}?last_event_id={2**63}", headers=bearer(token))
    assert query.status_code == 422 and query.json()["errors"][0]["path"] == "query.last_event_id"
