"""What the widget needs of CTA cards: polls carry them as the stream's `done` does, and a card
clicked long after its reply is signed again, only for the session that was offered it."""

from __future__ import annotations

from typing import Any

import pytest

from glimpze.clock import FakeClock
from tests import cta_setup
from tests.conftest import Api

pytestmark = pytest.mark.anyio

VISITOR = {"id": "v-9", "name": "Grace"}


class Visitor:
    """A widget's calls with one visitor's token."""

    def __init__(self, api: Api, token: str) -> None:
        self.api = api
        self.headers = {"Authorization": f"Bearer {token}"}

    async def get(self, path: str) -> Any:
        return await self.api.client.get(path, headers=self.headers)

    async def open(self) -> dict[str, Any]:
        response = await self.api.client.post("/widget/v1/sessions", json={}, headers=self.headers)
        assert response.status_code == 201, response.text
        return response.json()


async def visitor(api: Api, agent_id: str, visitor_id: str = "v-9") -> Visitor:
    body = {"visitor": {**VISITOR, "id": visitor_id}, "agent_id": agent_id}
    response = await api.post("/v1/widget-tokens", json=body)
    assert response.status_code == 201, response.text
    return Visitor(api, response.json()["token"])


async def setup(api: Api) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    agent = await cta_setup.agent(api)
    rules = [
        await cta_setup.rule(
            api,
            agent["id"],
            label="Pricing",
            priority=2,
            match={"keywords": ["price"]},
            forward_context=["conversation_id", "visitor_name"],
        ),
        await cta_setup.rule(api, agent["id"], label="Docs", priority=1, match={"keywords": ["price"]}),
        await cta_setup.rule(
            api, agent["id"], label="Never shown", match={"keywords": ["zebra"]}, forward_context=["conversation_id"]
        ),
    ]
    return agent, rules


async def test_polls_carry_the_cards_of_assistant_messages(api: Api) -> None:
    agent, _ = await setup(api)
    grace = await visitor(api, agent["id"])
    session = await grace.open()
    await api.post(f"/v1/sessions/{session['id']}/messages", json={"role": "agent", "text": "Hello"})
    reply = await cta_setup.reply(api, session["id"], "The price is right.")
    await cta_setup.reply(api, session["id"], "Nothing to add.")

    poll = (await grace.get(f"/widget/v1/sessions/{session['id']}/messages")).json()
    hello, priced, plain = poll["data"]
    assert (hello["ctas"], hello["cta"]) == (None, None)
    assert priced["ctas"] == reply["ctas"] and priced["cta"] == reply["ctas"][0]
    assert [card["label"] for card in priced["ctas"]] == ["Pricing", "Docs"]
    assert (plain["ctas"], plain["cta"]) == ([], None)
    # Polling from just before the reply still finds its cards (its `done` is numbered after it).
    later = (await grace.get(f"/widget/v1/sessions/{session['id']}/messages?after={hello['seq']}")).json()
    assert later["data"][0]["ctas"] == reply["ctas"]


async def test_a_card_is_signed_again_for_a_late_click(api: Api, clock: FakeClock) -> None:
    agent, (pricing, docs, never) = await setup(api)
    grace = await visitor(api, agent["id"])
    session = await grace.open()
    reply = await cta_setup.reply(api, session["id"], "See the price.")
    signed_at = int(cta_setup.query(reply["ctas"][0]["url"])["glimpze_ts"])

    clock.advance(250)  # the widget asks after 240 s; the old URL still verifies, but not for long
    path = f"/widget/v1/ctas/{pricing['id']}/url?session={session['id']}"
    fresh = await grace.get(path)
    assert fresh.status_code == 200, fresh.text
    card = fresh.json()
    assert (card["id"], card["label"]) == (pricing["id"], "Pricing")
    assert int(cta_setup.query(card["url"])["glimpze_ts"]) == int(clock.now()) > signed_at
    assert cta_setup.payload_of(card["url"]) == cta_setup.payload_of(reply["ctas"][0]["url"])
    clock.advance(200)  # the first URL has expired by now; the fresh one has not
    verified = (await api.post("/v1/ctas/verify", json={"url": card["url"]})).json()
    assert verified["valid"] is True and verified["payload"]["conversation_id"] == session["id"]
    old = (await api.post("/v1/ctas/verify", json={"url": reply["ctas"][0]["url"]})).json()
    assert old == {"valid": False, "reason": "expired"}

    # A card without forwarded context comes back unchanged.
    plain = (await grace.get(f"/widget/v1/ctas/{docs['id']}/url?session={session['id']}")).json()
    assert plain["url"] == docs["url"]


async def test_only_a_card_offered_in_the_visitors_session_is_signed(api: Api) -> None:
    agent, (pricing, _, never) = await setup(api)
    grace = await visitor(api, agent["id"])
    session = await grace.open()
    await cta_setup.reply(api, session["id"], "The price is right.")

    not_offered = await grace.get(f"/widget/v1/ctas/{never['id']}/url?session={session['id']}")
    assert not_offered.status_code == 404 and not_offered.json()["code"] == "not_found"
    unknown = await grace.get(f"/widget/v1/ctas/cta_nope/url?session={session['id']}")
    assert unknown.status_code == 404
    someone_else = await visitor(api, agent["id"], "v-other")
    theirs = await someone_else.get(f"/widget/v1/ctas/{pricing['id']}/url?session={session['id']}")
    assert theirs.status_code == 404
    missing = await grace.get(f"/widget/v1/ctas/{pricing['id']}/url")
    assert missing.status_code == 422 and missing.json()["code"] == "validation_failed"

    await api.patch(f"/v1/ctas/{pricing['id']}", json={"active": False})
    inactive = await grace.get(f"/widget/v1/ctas/{pricing['id']}/url?session={session['id']}")
    assert inactive.status_code == 404
