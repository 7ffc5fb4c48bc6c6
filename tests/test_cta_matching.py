"""Which cards an assistant reply gets: priority order, the cap of three, each condition on its own,
the SSE `done` event, and the time bound on patterns (an evil regex never stalls the server)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glimpze.chat.ctas import MAX_CTAS, glob_match, language_match
from glimpze.chat.patterns import PatternSearcher
from tests.conftest import Api, SseReader
from tests.cta_setup import SHOP, agent, card_labels, reply, rule, session

pytestmark = pytest.mark.anyio


async def test_five_rules_four_matching_give_three_cards_in_priority_order(api: Api) -> None:
    bot = await agent(api)
    chat = await session(api, bot["id"], page_url=f"{SHOP}/pricing", language="en-US")
    made = {
        "keywords": await rule(api, bot["id"], label="Plans", priority=10, match={"keywords": ["pricing"]}),
        "always": await rule(api, bot["id"], label="Demo", priority=50),
        "french": await rule(api, bot["id"], label="Tarifs", priority=30, match={"languages": ["fr"]}),
        "page": await rule(api, bot["id"], label="Docs", priority=30, match={"page_url": f"{SHOP}/*"}),
        # Same priority as "Plans" but created later: the tie goes to Plans, and the cap cuts this one.
        "pattern": await rule(api, bot["id"], label="Sale", priority=10, match={"pattern": r"\d+% off"}),
    }
    answer = await reply(api, chat["id"], "Our pricing starts at $9, and today 20% off.")
    assert MAX_CTAS == 3
    assert [card["label"] for card in answer["ctas"]] == ["Demo", "Docs", "Plans"]
    assert answer["cta"] == answer["ctas"][0]
    demo = made["always"]
    assert answer["ctas"][0] == {"id": demo["id"], "label": "Demo", "description": None, "url": demo["url"]}
    # With the top rule switched off, the fourth matching rule moves up into the three.
    await api.patch(f"/v1/ctas/{demo['id']}", json={"active": False})
    assert await card_labels(api, chat["id"], "Our pricing, 20% off.") == ["Docs", "Plans", "Sale"]


async def test_a_rule_without_conditions_matches_every_reply(api: Api) -> None:
    bot = await agent(api)
    await rule(api, bot["id"], label="Talk to us")
    chat = await session(api, bot["id"])  # no page URL
    for text in ("hello", "x", "Ünïcødé ✓"):
        assert await card_labels(api, chat["id"], text) == ["Talk to us"]


async def test_no_rules_no_cards(api: Api) -> None:
    bot = await agent(api)
    answer = await reply(api, (await session(api, bot["id"]))["id"], "hello")
    assert answer["ctas"] == [] and answer["cta"] is None


async def test_the_language_condition_alone(api: Api) -> None:
    bot = await agent(api)
    await rule(api, bot["id"], label="English", match={"languages": ["en", "de-AT"]})
    cases = {"en": True, "en-US": True, "en-GB": True, "EN-gb": True, "fr": False, "eng": False, "fr-CA": False}
    for language, matches in cases.items():
        chat = await session(api, bot["id"], language=language)
        assert await card_labels(api, chat["id"], "anything") == (["English"] if matches else []), language


async def test_a_session_takes_its_agents_language(api: Api) -> None:
    bot = await agent(api, language="de-AT")
    await rule(api, bot["id"], label="Austria", match={"languages": ["de-AT"]})
    await rule(api, bot["id"], label="German", match={"languages": ["de"]})
    await rule(api, bot["id"], label="Germany", match={"languages": ["de-DE"]})
    chat = await session(api, bot["id"])
    assert await card_labels(api, chat["id"], "Hallo") == ["Austria", "German"]


async def test_the_page_url_condition_alone(api: Api) -> None:
    bot = await agent(api)
    await rule(api, bot["id"], label="Plans", match={"page_url": f"{SHOP}/pricing*"})
    for page_url, matches in [
        (f"{SHOP}/pricing", True),
        (f"{SHOP}/pricing/team?plan=pro#faq", True),  # `*` spans slashes, queries and fragments
        (f"{SHOP}/docs/pricing", False),  # the glob covers the whole URL
        ("https://other.example.com/pricing", False),
        (None, False),  # no page URL: a page condition cannot hold
    ]:
        chat = await session(api, bot["id"], page_url=page_url)
        assert await card_labels(api, chat["id"], "anything") == (["Plans"] if matches else []), page_url


async def test_the_keywords_condition_alone(api: Api) -> None:
    bot = await agent(api)
    await rule(api, bot["id"], label="Demo", match={"keywords": ["demo", "free trial", "C++"]})
    chat = await session(api, bot["id"])
    for text, matches in [
        ("Book a DEMO today", True),  # any case
        ("demo.", True),
        ("(Demo)", True),
        ("Start your free   trial now", True),  # a phrase: any whitespace between its words
        ("We love C++!", True),  # keywords that end in symbols still need a word boundary
        ("a demonstration", False),  # whole words only
        ("the trial is free", False),
        ("pseudodemo", False),
        ("We love C++x", False),
    ]:
        assert await card_labels(api, chat["id"], text) == (["Demo"] if matches else []), text


async def test_the_pattern_condition_alone(api: Api) -> None:
    bot = await agent(api)
    chat = await session(api, bot["id"])
    cta = await rule(api, bot["id"], label="Match", match={"pattern": "x"})
    for pattern, text, matches in [
        (r"\d+% off", "Today only: 20% off all plans", True),  # searched anywhere, not anchored
        (r"\d+% off", "20 % off", False),
        (r"^Today", "Today only", True),
        (r"^only", "Today only", False),
        (r"enterprise", "ENTERPRISE plans", False),  # as written: case-sensitive
        (r"(?i)enterprise", "ENTERPRISE plans", True),
        (r"line two$", "line one\nline two", True),
    ]:
        await api.patch(f"/v1/ctas/{cta['id']}", json={"match": {"pattern": pattern}})
        assert await card_labels(api, chat["id"], text) == (["Match"] if matches else []), (pattern, text)


async def test_all_given_conditions_must_hold(api: Api) -> None:
    bot = await agent(api)
    match = {"page_url": f"{SHOP}/*", "languages": ["en"], "keywords": ["price"], "pattern": r"\$\d+"}
    await rule(api, bot["id"], label="All", match=match)
    here = await session(api, bot["id"], page_url=f"{SHOP}/a", language="en")
    french = await session(api, bot["id"], page_url=f"{SHOP}/a", language="fr")
    assert await card_labels(api, here["id"], "The price is $10") == ["All"]
    assert await card_labels(api, here["id"], "The price is ten dollars") == []
    assert await card_labels(api, here["id"], "It costs $10") == []
    assert await card_labels(api, french["id"], "The price is $10") == []


async def test_only_the_sessions_agents_active_rules_and_only_assistant_replies(api: Api) -> None:
    bot, other = await agent(api), await agent(api, name="Other bot")
    await rule(api, other["id"], label="Theirs")
    inactive = await rule(api, bot["id"], label="Off", active=False)
    chat = await session(api, bot["id"])
    assert await card_labels(api, chat["id"], "hi") == []
    await api.patch(f"/v1/ctas/{inactive['id']}", json={"active": True})
    assert await card_labels(api, chat["id"], "hi") == ["Off"]
    agentless = await session(api, None)
    assert await card_labels(api, agentless["id"], "hi") == []
    human = await api.post(f"/v1/sessions/{chat['id']}/messages", json={"role": "agent", "text": "hi"})
    assert "ctas" not in human.json() and "cta" not in human.json()


async def test_the_done_event_carries_the_same_cards(live: Api) -> None:
    bot = await agent(live)
    await rule(live, bot["id"], label="Plans", priority=2, match={"keywords": ["pricing"]})
    await rule(live, bot["id"], label="Demo", priority=1, forward_context=["conversation_id", "page_url"])
    await rule(live, bot["id"], label="Elsewhere", priority=3, match={"page_url": "https://blog.example.com/*"})
    minted = await live.post("/v1/widget-tokens", json={"visitor": {"id": "v-9"}, "agent_id": bot["id"]})
    token = minted.json()["token"]
    opened = await live.client.post(
        "/widget/v1/sessions",
        json={"page_url": f"{SHOP}/pricing", "language": "en"},
        headers={"Authorization": f"Bearer {token}"},
    )
    chat = opened.json()
    answer = await reply(live, chat["id"], "Here is our pricing.")
    assert [card["label"] for card in answer["ctas"]] == ["Plans", "Demo"]
    async with live.client.stream("GET", f"/widget/v1/sessions/{chat['id']}/stream?token={token}") as response:
        sse = SseReader(response)
        message, done = await sse.next(), await sse.next()
    assert message is not None and message.event == "message" and message.json()["id"] == answer["id"]
    assert done is not None and done.event == "done"
    assert done.json() == {"message_id": answer["id"], "ctas": answer["ctas"], "cta": answer["cta"]}
    assert done.json()["cta"] == answer["ctas"][0]
    secret = (await live.get("/v1/ctas/secret")).json()["secret"]
    assert secret not in done.data and secret not in message.data  # the visitor never sees it


# The time bound on patterns


EVIL = r"(a+)+$"
EVIL_TEXT = "a" * 5000 + "b"  # exponential backtracking: re would search for longer than the universe's age


async def test_an_evil_pattern_times_out_as_no_match_while_the_server_keeps_serving(api: Api) -> None:
    bot = await agent(api)
    await rule(api, bot["id"], label="Evil", priority=9, match={"pattern": EVIL})
    await rule(api, bot["id"], label="Fine", priority=1, match={"pattern": "b$"})
    chat = await session(api, bot["id"])
    searcher: PatternSearcher = api.glimpze.ctas.patterns
    finished: list[str] = []

    async def timed(name: str, call: Any) -> Any:
        result = await call
        finished.append(name)
        return result

    started = time.monotonic()
    answer, health = await asyncio.gather(
        timed("reply", reply(api, chat["id"], EVIL_TEXT)), timed("healthz", api.client.get("/healthz"))
    )
    assert time.monotonic() - started < 3
    assert health.status_code == 200 and finished[0] == "healthz"  # served while the search ran
    assert [card["label"] for card in answer["ctas"]] == ["Fine"]  # the worker came back for the next rule
    assert searcher.timeouts == 1
    # The evil rule still matches texts it can decide in time.
    assert await card_labels(api, chat["id"], "aaa") == ["Evil"]


async def test_a_reply_meeting_many_evil_patterns_stays_within_its_budget(api: Api) -> None:
    bot = await agent(api)
    for i in range(12):
        await rule(api, bot["id"], label=f"Evil {i}", priority=10, match={"pattern": EVIL})
    await rule(api, bot["id"], label="Plain", priority=0)
    chat = await session(api, bot["id"])
    started = time.monotonic()
    assert await card_labels(api, chat["id"], EVIL_TEXT) == ["Plain"]
    # About MATCH_BUDGET_SECONDS (1 s), not 12 × SEARCH_TIMEOUT_SECONDS (3 s).
    assert time.monotonic() - started < 2.5
    assert api.glimpze.ctas.patterns.timeouts < 12


async def test_many_long_keywords_cannot_stall_the_server_either(api: Api) -> None:
    """Fifty phrase keywords against a long reply: O(n·k·m) for the regex engine (over a second
    here), so keywords are searched in the worker too, within the same time bound."""
    bot = await agent(api)
    keywords = [" ".join(["a"] * 48) + f" b{i}" for i in range(50)]
    await rule(api, bot["id"], label="Slow", priority=1, match={"keywords": keywords})
    await rule(api, bot["id"], label="Plain", priority=0)
    chat = await session(api, bot["id"])
    started = time.monotonic()
    assert await card_labels(api, chat["id"], "a " * 5000) == ["Plain"]
    assert time.monotonic() - started < 2
    assert await card_labels(api, chat["id"], "say " + keywords[7].upper() + "!") == ["Slow", "Plain"]


async def test_the_searcher_on_its_own() -> None:
    searcher = PatternSearcher(timeout=0.2)
    try:
        assert await searcher.search([r"\bdemo\b", "book"], "book a demo") is True
        assert await searcher.search([r"\bdemo\b"], "demonstration") is False
        assert await searcher.search(["é+"], "café") is True  # text travels as UTF-8 JSON
        assert await searcher.search(["book", "x"], "book a demo") is False  # every pattern must be found
        assert await searcher.search([], "anything") is True
        assert await searcher.search([EVIL], EVIL_TEXT) is None
        assert await searcher.search(["x"], "x\ny") is True  # a fresh worker took over
        loop = asyncio.get_running_loop()
        assert await searcher.search(["x"], "x", deadline=loop.time() - 1) is None  # no budget left
        # A search cancelled half-way leaves no answer behind for the next one to read as its own.
        task = asyncio.create_task(searcher.search([EVIL], EVIL_TEXT))
        await asyncio.sleep(0)  # one step of the task: it sends the request and waits for the answer
        assert searcher._process is not None and searcher._lock.locked()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await searcher.search(["y"], "x") is False
    finally:
        await searcher.close()


# Conditions as functions


def test_an_evil_glob_is_fast() -> None:
    url = "https://shop.example.com/" + "a" * 2000
    started = time.monotonic()
    assert not glob_match("*a*a*a*a*a*a*a*a*a*a*b", url)
    assert glob_match("*a*a*a*a*a*a*a*a*a*a", url)
    assert time.monotonic() - started < 0.1


def _glob_regex(glob: str) -> re.Pattern[str]:
    return re.compile(".*".join(map(re.escape, glob.split("*"))), re.S)


@given(st.text("ab*/?", max_size=8), st.text("ab/?", max_size=12))
def test_glob_match_agrees_with_a_regex_translation(glob: str, text: str) -> None:
    assert glob_match(glob, text) == bool(_glob_regex(glob).fullmatch(text))


def test_language_match() -> None:
    assert language_match(["en"], "en-GB") and language_match(["EN"], "en")
    assert not language_match(["en-GB"], "en") and not language_match(["en"], None)
    assert not language_match(["en"], "eng")
