"""Setup steps the CTA tests share: agents, rules, sessions and assistant replies through the API."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.conftest import Api

SHOP = "https://shop.example.com"


async def agent(api: Api, **body: Any) -> dict[str, Any]:
    response = await api.post("/v1/agents", json={"name": "Sales bot", **body})
    assert response.status_code == 201, response.text
    return response.json()


async def rule(api: Api, agent_id: str, **body: Any) -> dict[str, Any]:
    """A CTA rule; label and url have defaults."""
    fields = {"label": "Pricing", "url": f"{SHOP}/pricing", **body}
    response = await api.post(f"/v1/agents/{agent_id}/ctas", json=fields)
    assert response.status_code == 201, response.text
    return response.json()


async def session(api: Api, agent_id: str | None, **body: Any) -> dict[str, Any]:
    fields = {"visitor": {"id": "v-1", "name": "Ada", "email": "ada@example.com"}, "agent_id": agent_id, **body}
    response = await api.post("/v1/sessions", json=fields)
    assert response.status_code == 201, response.text
    return response.json()


async def reply(api: Api, session_id: str, text: str) -> dict[str, Any]:
    """Post an assistant message; the answer carries `ctas` and `cta`."""
    response = await api.post(f"/v1/sessions/{session_id}/messages", json={"role": "assistant", "text": text})
    assert response.status_code == 201, response.text
    return response.json()


async def card_labels(api: Api, session_id: str, text: str) -> list[str]:
    return [card["label"] for card in (await reply(api, session_id, text))["ctas"]]


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def payload_of(url: str) -> dict[str, Any]:
    """The context a signed URL carries, decoded without checking anything."""
    ctx = query(url)["glimpze_ctx"]
    return json.loads(base64.urlsafe_b64decode(ctx + "=" * (-len(ctx) % 4)))
