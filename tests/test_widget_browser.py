"""The visitor widget in a real browser: Playwright driving Debian's Chromium, a real `glimpze serve`
subprocess, and the example website (`examples/widget-host/server.py`) on another port, so every
widget call is cross-origin as on a customer's site.

One Glimpze, one example site and one browser for the module; each test has its own browser context,
so its own cookie (a new visitor) and localStorage (a new session). Playwright's sync API owns the
thread while it runs, so these are plain sync tests; API calls go through a sync httpx client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from glimpze.chat.ctx import verify
from tests.browser import ExampleSite, chromium
from tests.server import Server

WAIT_MS = 20_000  # the longest one browser wait may take (2 shared cores: be patient)

try:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)  # assertions have their own default (5 s), not the context's
except ImportError:  # the browser fixture skips, or fails under GLIMPZE_REQUIRE_BROWSER=1
    expect = None

pytestmark = pytest.mark.slow

RECONNECT_MS = 60_000  # a restart plus the widget's backoff (at most 30 s between tries)
TOKEN_TTL = 30  # the shortest a widget token may live: the widget renews it at 80 %, after 24 s
KEYWORD = "plans"
# name, priority; created out of priority order so the order shown can only come from priorities.
RULES = [("Compare plans", 20), ("Book a demo", 5), ("See pricing", 30), ("Talk to sales", 10)]
SHOWN = ["See pricing", "Compare plans", "Talk to sales"]  # the three highest, highest first
XSS = "<img src=x onerror=alert(1)>"
HOSTILE_PATH = "/?hostile"


class Glimpze:
    """The server, its admin API client, and what the module set up in it."""

    def __init__(self, server: Server, site: ExampleSite, api: httpx.Client, agent_id: str) -> None:
        self.server = server
        self.site = site
        self.api = api
        self.agent_id = agent_id

    def post(self, path: str, body: dict[str, Any], status: int = 201) -> Any:
        response = self.api.post(path, json=body)
        assert response.status_code == status, response.text
        return response.json()

    def say(self, session_id: str, role: str, text: str) -> Any:
        return self.post(f"/v1/sessions/{session_id}/messages", {"role": role, "text": text})


@pytest.fixture(scope="module")
def glimpze(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Glimpze]:
    root = tmp_path_factory.mktemp("widget-browser")
    server = Server(root)
    server.start()
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key()}"}, timeout=30)
    site = ExampleSite(root, server.url, server.admin_key(), ttl=TOKEN_TTL)
    try:
        agent = api.post("/v1/agents", json={"name": "Acme assistant"}).json()
        site.args += ["--agent-id", agent["id"]]
        site.start()
        g = Glimpze(server, site, api, agent["id"])
        assert api.put("/v1/settings/widget-origins", json={"origins": [site.url]}).status_code == 200
        for label, priority in RULES:
            g.post(
                f"/v1/agents/{agent['id']}/ctas",
                {
                    "label": label,
                    "description": f"{label}: it takes a minute.",
                    "url": f"{site.url}/landing/{label.lower().replace(' ', '-')}",
                    "priority": priority,
                    "match": {"keywords": [KEYWORD]},
                    "forward_context": ["conversation_id", "page_url", "visitor_name"],
                },
            )
        yield g
    finally:
        site.stop()
        api.close()
        server.kill()


@pytest.fixture(scope="module")
def browser(glimpze: Glimpze) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser: Any, glimpze: Glimpze, tmp_path: Path) -> Iterator[Any]:
    """A fresh visitor's tab; records dialogs and the page's console errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.dialogs = []
    page.errors = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    page.screenshot(path=str(tmp_path / "last.png"))
    context.close()


def w(page: Any, selector: str) -> Any:
    """A locator inside the widget (Playwright's CSS locators pierce open shadow roots)."""
    return page.locator(f"glimpze-widget {selector}")


def start_chat(page: Any, glimpze: Glimpze, text: str, path: str = "/") -> str:
    """Open the site, open the panel, send `text`; the session's id once the message is stored."""
    page.goto(glimpze.site.url + path)
    w(page, ".launcher").click()
    w(page, ".input").fill(text)
    w(page, ".input").press("Enter")
    expect(w(page, ".msg-visitor:not(.msg-pending):not(.msg-failed) .text").last).to_have_text(text)
    return session_of(page)


# The widget keeps {"session", "seen"} in localStorage under "glimpze-widget:<Glimpze's address>".
SESSION_OF = """() => {
    const key = Object.keys(localStorage).find((k) => k.startsWith("glimpze-widget:"));
    return key ? JSON.parse(localStorage.getItem(key)).session : null;
}"""


def session_of(page: Any) -> str:
    session_id = page.evaluate(SESSION_OF)
    assert session_id and session_id.startswith("ses_"), session_id
    return session_id


def texts(page: Any) -> list[str]:
    return w(page, ".msg .text").all_text_contents()


def test_cards_in_priority_order_with_verified_links_and_reconnecting_after_a_restart(
    page: Any, glimpze: Glimpze
) -> None:
    assert urlsplit(glimpze.site.url).port != urlsplit(glimpze.server.url).port  # cross-origin
    session_id = start_chat(page, glimpze, "Hello! Which plans do you have?")
    stored = glimpze.api.get(f"/v1/sessions/{session_id}/messages").json()["data"]
    assert [m["text"] for m in stored] == ["Hello! Which plans do you have?"]
    assert glimpze.api.get(f"/v1/sessions/{session_id}").json()["page_url"] == glimpze.site.url + "/"

    reply = glimpze.say(session_id, "assistant", "We have three plans; these links help you choose.")
    assert [card["label"] for card in reply["ctas"]] == SHOWN
    cards = w(page, ".msg-assistant .card")
    expect(cards).to_have_count(3)
    expect(cards.locator(".card-title")).to_have_text(SHOWN)
    expect(cards.first.locator(".card-desc")).to_have_text("See pricing: it takes a minute.")
    secret = glimpze.api.get("/v1/ctas/secret").json()["secret"]
    hrefs = [link.get_attribute("href") for link in cards.locator(".card-open").all()]
    assert [card["url"] for card in reply["ctas"]] == hrefs
    for href in hrefs:
        assert "glimpze_sig=" in href
        payload = verify(href, secret)
        assert payload is not None, href
        assert payload["conversation_id"] == session_id and payload["visitor_name"] == "Guest"

    # A click opens the destination, whose backend verifies the context (POST /v1/ctas/verify).
    with page.context.expect_page() as opened:
        cards.first.locator(".card-open").click()
    landing = opened.value
    expect(landing.locator("#verdict")).to_have_text("Signed context verified.")
    landing.close()

    # The server dies and comes back on the same port: the stream reconnects from the last event
    # and the next message arrives once, after everything already shown.
    glimpze.server.kill()
    glimpze.server.start(timeout=60)
    glimpze.say(session_id, "agent", "Sorry, we were away for a moment. Still there?")
    expect(w(page, ".msg-agent .text")).to_have_text(
        "Sorry, we were away for a moment. Still there?", timeout=RECONNECT_MS
    )
    expected = [
        "Hello! Which plans do you have?",
        "We have three plans; these links help you choose.",
        "Sorry, we were away for a moment. Still there?",
    ]
    assert texts(page) == expected

    # The session id lives in localStorage: a reload resumes the conversation with its cards.
    page.reload()
    w(page, ".launcher").click()
    expect(w(page, ".msg .text")).to_have_text(expected)
    expect(w(page, ".card .card-title")).to_have_text(SHOWN)
    assert page.dialogs == [] and page.errors == []


def test_markup_in_messages_shows_as_text_and_runs_nothing(page: Any, glimpze: Glimpze) -> None:
    session_id = start_chat(page, glimpze, XSS)
    glimpze.say(session_id, "agent", f"You wrote {XSS} and <script>alert(2)</script>")
    agent_text = w(page, ".msg-agent .text")
    expect(agent_text).to_have_text(f"You wrote {XSS} and <script>alert(2)</script>")
    expect(w(page, ".msg-visitor .text")).to_have_text(XSS)
    assert page.locator("img").count() == 0 and w(page, "img").count() == 0
    assert w(page, "script").count() == 0
    # Nothing ran: no dialog opened, and the markup is a single text node inside the paragraph.
    assert (
        page.evaluate("() => document.querySelector('glimpze-widget').shadowRoot.querySelectorAll('img').length") == 0
    )
    assert agent_text.evaluate("(p) => Array.from(p.childNodes).every((n) => n.nodeType === Node.TEXT_NODE)")
    assert page.dialogs == [] and page.errors == []


def widget_look(page: Any) -> dict[str, Any]:
    """Where the widget's parts are and how they look, to compare a plain and a hostile page."""
    page.mouse.move(0, 0)  # no hover effects; reduced motion (set by the test) leaves no transition running
    look: dict[str, Any] = {}
    for name in (".launcher", ".panel", ".head", ".title", ".input", ".send", ".msg-visitor .bubble"):
        part = w(page, name).first
        expect(part).to_be_visible()
        look[name] = {
            "box": part.bounding_box(),
            **part.evaluate(
                """(el) => {
                    const s = getComputedStyle(el);
                    return {display: s.display, visibility: s.visibility, opacity: s.opacity, color: s.color,
                            background: s.backgroundColor, font: s.font, radius: s.borderRadius,
                            padding: s.padding, position: s.position};
                }"""
            ),
        }
    host = page.locator("glimpze-widget")
    look["host"] = host.evaluate(
        """(el) => {
            const s = getComputedStyle(el);
            return {display: s.display, visibility: s.visibility, opacity: s.opacity, transform: s.transform,
                    position: s.position, zIndex: s.zIndex};
        }"""
    )
    return look


def test_hostile_page_css_neither_hides_nor_restyles_the_widget(page: Any, glimpze: Glimpze) -> None:
    page.emulate_media(reduced_motion="reduce")
    start_chat(page, glimpze, "Plain page")
    plain = widget_look(page)
    assert plain["host"]["display"] == "block" and plain["host"]["transform"] == "none"
    assert plain[".launcher"]["box"]["width"] == 56 and plain[".panel"]["box"]["width"] == 370

    page.context.clear_cookies()  # a new visitor for the hostile page, on the same tab
    page.evaluate("() => localStorage.clear()")
    start_chat(page, glimpze, "Plain page", path=HOSTILE_PATH)
    # The hostile stylesheet is in force on the page itself...
    assert page.locator("#intro").evaluate("(el) => getComputedStyle(el).display") == "none"
    assert page.locator("#host-button").evaluate("(el) => getComputedStyle(el).display") == "none"
    # ...and the widget looks exactly as it does on the plain page.
    assert widget_look(page) == plain
    # It still works: a reply arrives and is readable.
    session_id = session_of(page)
    glimpze.say(session_id, "agent", "Hi, you can read me.")
    expect(w(page, ".msg-agent .text")).to_have_text("Hi, you can read me.")
    expect(w(page, ".msg-agent .text")).to_be_visible()
    assert page.errors == []


def test_the_token_is_renewed_before_it_expires_without_losing_the_conversation(page: Any, glimpze: Glimpze) -> None:
    tokens: list[Any] = []
    page.on("request", lambda r: tokens.append(r) if r.url.endswith("/glimpze-token") else None)
    session_id = start_chat(page, glimpze, "Are you there?")
    assert len(tokens) == 1
    first_expiry = tokens[0].response().json()["expires_at"]
    glimpze.say(session_id, "agent", "Yes, here.")
    expect(w(page, ".msg-agent .text")).to_have_text("Yes, here.")
    # Renewed at 80 % of 30 s; the stream is reopened with the new token from the last event seen.
    renewed = page.expect_response(lambda r: r.url.endswith("/glimpze-token"), timeout=TOKEN_TTL * 1000 + WAIT_MS)
    reopened = page.expect_request(lambda r: "/stream?" in r.url, timeout=TOKEN_TTL * 1000 + WAIT_MS)
    with reopened as stream, renewed as renewal:
        pass
    assert renewal.value.json()["expires_at"] > first_expiry
    assert f"token={renewal.value.json()['token']}" in stream.value.url and "last_event_id=" in stream.value.url
    assert len(tokens) == 2
    # Past the first token's expiry (its stream has ended on the server), messages still arrive once.
    page.wait_for_function("(at) => Date.now() > Date.parse(at) + 1000", arg=first_expiry, polling=250)
    glimpze.say(session_id, "agent", "Still here after the renewal.")
    expect(w(page, ".msg-agent .text").last).to_have_text("Still here after the renewal.")
    assert texts(page) == ["Are you there?", "Yes, here.", "Still here after the renewal."]
    assert page.errors == []


def test_a_closed_session_says_so_and_a_new_one_can_start(page: Any, glimpze: Glimpze) -> None:
    session_id = start_chat(page, glimpze, "Thanks, that is all.")
    glimpze.post(f"/v1/sessions/{session_id}/close", {}, status=200)
    expect(w(page, ".ended")).to_be_visible()
    expect(w(page, ".ended p")).to_have_text("This conversation has ended.")
    expect(w(page, ".composer")).to_be_hidden()
    w(page, ".new").click()
    expect(w(page, ".composer")).to_be_visible()
    expect(w(page, ".msg")).to_have_count(0)
    w(page, ".input").fill("One more question")
    w(page, ".input").press("Enter")
    expect(w(page, ".msg-visitor:not(.msg-pending):not(.msg-failed) .text")).to_have_text("One more question")
    sessions = glimpze.api.get("/v1/sessions").json()["data"]
    fresh = [s for s in sessions if s["id"] != session_id and s["visitor"]["id"] == sessions[0]["visitor"]["id"]]
    assert fresh and fresh[0]["status"] == "open"


def test_without_eventsource_the_widget_polls_and_shows_cards(page: Any, glimpze: Glimpze) -> None:
    page.add_init_script("delete window.EventSource")
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/stream" in r.url else None)
    session_id = start_chat(page, glimpze, "Polling: which plans?")
    glimpze.say(session_id, "assistant", "Our plans, by polling.")
    expect(w(page, ".msg-assistant .card .card-title")).to_have_text(SHOWN)
    assert streams == []


def other_site(glimpze: Glimpze, root: Path, *, allowed: bool, agent_id: str | None = None) -> ExampleSite:
    """Another website with the widget, on its own port (origin), started; allowed or not."""
    site = ExampleSite(root, glimpze.server.url, glimpze.server.admin_key(), agent_id=agent_id, ttl=TOKEN_TTL)
    site.start()
    if allowed:
        origins = glimpze.api.get("/v1/settings/widget-origins").json()["origins"]
        response = glimpze.api.put("/v1/settings/widget-origins", json={"origins": [*origins, site.url]})
        assert response.status_code == 200, response.text
    return site


def test_a_page_whose_origin_is_not_allowed_says_why_and_stops_asking(
    page: Any, glimpze: Glimpze, tmp_path: Path
) -> None:
    site = other_site(glimpze, tmp_path, allowed=False)
    try:
        requests: list[str] = []
        console: list[str] = []
        watched = (glimpze.server.url, site.url + "/glimpze-token")  # Glimpze, and the site's token endpoint
        page.on("request", lambda r: requests.append(f"{r.method} {r.url}") if r.url.startswith(watched) else None)
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        page.clock.install()  # timers run as usual, and the test can jump ahead (retries, renewals)
        page.goto(site.url + "/")
        w(page, ".launcher").click()
        notice = w(page, ".notice")
        expect(notice).to_contain_text("Chat is not available on this site.")
        expect(notice).to_contain_text(f"Origin '{site.url}' is not one of this project's widget origins")
        expect(w(page, ".composer")).to_be_hidden()
        assert any("origin_not_allowed" in line and site.url in line for line in console), console
        assert f"POST {glimpze.server.url}/widget/v1/sessions" in requests
        asked = list(requests)
        # An hour of retries and token renewals later: not one more request.
        page.clock.run_for(3600 * 1000)
        page.evaluate("() => new Promise((resolve) => requestAnimationFrame(() => resolve(null)))")
        w(page, ".close").click()
        w(page, ".launcher").click()  # opening the panel again asks nothing either
        expect(notice).to_contain_text("Chat is not available on this site.")
        assert requests == asked
        assert page.errors == []
    finally:
        site.stop()


def test_the_header_shows_the_agents_team_name_avatar_and_reply_time(
    page: Any, glimpze: Glimpze, tmp_path: Path
) -> None:
    agent = glimpze.post(
        "/v1/agents",
        {
            "name": "Night bot",
            "display_name": "Acme night team",
            "avatar_url": "https://avatars.invalid/team.png",  # cannot load here: its initials stand in
            "reply_time": "in_a_few_hours",
        },
    )
    site = other_site(glimpze, tmp_path, allowed=True, agent_id=agent["id"])
    try:
        page.goto(site.url + "/")
        w(page, ".launcher").click()
        expect(w(page, ".head .title")).to_have_text("Acme night team")  # over the site's data-title
        expect(w(page, ".head .reply-time")).to_have_text("Typically replies in a few hours")
        expect(w(page, ".head .avatar")).to_have_text("AN")
        expect(page.get_by_role("dialog", name="Acme night team")).to_be_visible()
        # An agent without a profile leaves the site's own title and no reply time.
        page.context.clear_cookies()
        page.evaluate("() => localStorage.clear()")
        start_chat(page, glimpze, "Which title now?")
        expect(w(page, ".head .title")).to_have_text("Acme support")
        expect(w(page, ".head .reply-time")).to_be_hidden()
        expect(w(page, ".head .avatar")).to_be_hidden()
        assert page.errors == []
    finally:
        site.stop()


def test_typing_shows_until_it_expires_or_the_message_arrives(page: Any, glimpze: Glimpze) -> None:
    page.clock.install()
    session_id = start_chat(page, glimpze, "Anyone there?")
    typing = w(page, ".typing")
    assert typing.get_attribute("aria-live") == "polite"
    glimpze.post(f"/v1/sessions/{session_id}/typing", {"author": "Sam"}, status=200)
    expect(typing).to_have_text("Sam is typing…")
    glimpze.say(session_id, "agent", "Yes, Sam here.")
    expect(w(page, ".msg-agent .text")).to_have_text("Yes, Sam here.")
    expect(typing).to_have_text("")  # the message it announced arrived

    glimpze.post(f"/v1/sessions/{session_id}/typing", {"role": "assistant"}, status=200)
    expect(typing).to_have_text("Typing…")
    page.clock.run_for(7000)  # the signal lasts 6 s unless renewed
    expect(typing).to_have_text("")
    assert page.errors == []


def test_card_buttons_say_their_own_label(page: Any, glimpze: Glimpze) -> None:
    session_id = start_chat(page, glimpze, "Which plans fit me?")
    glimpze.say(session_id, "assistant", "These plans may fit.")
    expect(w(page, ".msg-assistant .card")).to_have_count(3)
    buttons = w(page, ".card .card-open")
    expect(buttons).to_have_text(SHOWN)
    for label, button in zip(SHOWN, buttons.all(), strict=True):
        assert button.get_attribute("aria-label") is None
        # Found by its role and visible text alone: the accessible name is exactly the label.
        expect(page.get_by_role("link", name=label, exact=True)).to_have_count(1)
        expect(button).to_have_accessible_name(label)
        expect(button).to_have_accessible_description(f"{label}: it takes a minute. Opens in a new tab")
    assert page.errors == []


def test_the_dashboard_loads_its_css_and_script_compressed(browser: Any, glimpze: Glimpze) -> None:
    """The dashboard's static files through glimpze.routes.static in a real browser: gzip on the
    wire, applied and run (the script registers the service worker, itself served the same way)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        answers: dict[str, Any] = {}
        page.on("response", lambda r: answers.setdefault(urlsplit(r.url).path, r))
        page.goto(f"{glimpze.server.url}/login")
        # app.js ran, and registered /sw.js, which the browser fetched and started
        assert page.evaluate("() => navigator.serviceWorker.ready.then((r) => r.active.scriptURL)").endswith("/sw.js")
        for path in ("/static/app.css", "/static/app.js"):
            answer = answers[path]
            assert answer.status == 200, path
            assert answer.header_value("content-encoding") == "gzip" and answer.header_value("etag"), path
        styled = page.evaluate("() => [...document.styleSheets].some((s) => s.href && s.cssRules.length > 20)")
        assert styled  # app.css decoded and applied
    finally:
        context.close()


def test_only_what_can_succeed_later_is_retried(page: Any, glimpze: Glimpze) -> None:
    """A 503 from the site's token endpoint is retried (after its Retry-After); a 403 is final."""
    answers = [(503, {"Retry-After": "5"}), (403, {})]
    asked: list[int] = []

    def token_endpoint(route: Any) -> None:
        status, headers = answers[min(len(asked), len(answers) - 1)]
        asked.append(status)
        route.fulfill(status=status, headers=headers, body="{}", content_type="application/json")

    page.route("**/glimpze-token", token_endpoint)
    page.clock.install()
    page.goto(glimpze.site.url + "/")
    w(page, ".launcher").click()
    expect(w(page, ".notice")).to_have_text("Chat is unavailable right now. Retrying…")
    assert asked == [503]
    page.clock.run_for(4000)
    page.evaluate("() => new Promise((resolve) => requestAnimationFrame(() => resolve(null)))")
    assert asked == [503]  # not before its Retry-After (5 s)
    page.clock.run_for(2000)
    expect(w(page, ".notice")).to_contain_text("Chat is not available.")
    expect(w(page, ".notice")).to_contain_text("/glimpze-token answered HTTP 403")
    page.clock.run_for(3600 * 1000)
    page.evaluate("() => new Promise((resolve) => requestAnimationFrame(() => resolve(null)))")
    assert asked == [503, 403]
    assert page.errors == []
