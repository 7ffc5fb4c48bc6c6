"""Every dashboard page in a real browser, on a desktop (1280×800) and a phone (390×844), light and dark.

Playwright drives Debian's Chromium against one real `glimpze serve` for the module. Each page is
checked for sideways scrolling (`scrollWidth <= innerWidth`) and with axe-core (zero violations),
and photographed under `<basetemp>/screenshots/pages/`. Then the live parts: an event posted
with httpx highlights its tile within a second, a visitor message shows in the open inbox, two
pending approvals say "2 waiting" until both are decided, and a webhook answering 500 says
"failing" while its inspector shows the body that was sent.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import chromium
from tests.dashboard import PASSWORD, approval_event
from tests.receiver import Receiver
from tests.server import UNLIMITED_PLAN, Server

pytestmark = pytest.mark.slow

WAIT_MS = 10_000
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
SCHEMES = ("light", "dark")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as receiver:
        receiver.default.status = 500  # the webhook below fails
        yield receiver


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("dashboard-pages"))
    server.config.write_text(
        f'public_url = "{server.url}"\n{UNLIMITED_PLAN}\n[webhooks]\nallow_targets = ["127.0.0.1"]\n'
    )
    server.start()
    yield server
    server.terminate()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = chromium(playwright)
        yield browser
        browser.close()


class Api:
    """The project's `/v1` API with the admin key the server printed."""

    def __init__(self, server: Server) -> None:
        self.client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key()}"})

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.client.post(path, json=body)
        assert response.status_code in (200, 201, 202), response.text
        return response.json()

    def get(self, path: str) -> Any:
        return self.client.get(path).json()

    def feed(self, name: str, schema: str) -> dict[str, Any]:
        return self.post("/v1/feeds", {"name": name, "schema_type": schema})  # type: ignore[no-any-return]

    def ingest(self, feed: dict[str, Any], body: dict[str, Any]) -> str:
        response = httpx.post(
            f"{self.client.base_url}/ingest/{feed['id']}",
            json=body,
            headers={"Authorization": f"Bearer {feed['write_key']}"},
        )
        assert response.status_code == 202, response.text
        return response.json()["id"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def world(server: Server, browser: Any, receiver: Receiver) -> dict[str, Any]:
    """The data every page shows, and a signed-in browser state to open them with."""
    api = Api(server)
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    link = re.search(r"http://\S+/setup/\S+", server.output())
    assert link, server.output()
    page.goto(link.group(0))
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("Repeat it").fill(PASSWORD)
    page.get_by_role("button", name="Save and sign in").click()
    page.wait_for_url(f"{server.url}/")
    state = context.storage_state()
    context.close()

    feeds = {}
    examples = [
        ("Revenue", "summary", {"title": "Revenue", "primary_value": "$12,345", "secondary_value": "+15%"}),
        ("API", "status", {"title": "API", "status": "success", "message": "All systems operational"}),
        ("Backups", "status", {"title": "Backups", "status": "error", "message": "Disk full on nas-2"}),
        (
            "Signups",
            "counter",
            {"title": "Signups", "count": 127, "unit": "users", "trend": "up", "trendValue": "+23%"},
        ),
        (
            "Queue",
            "counter",
            {"title": "Queue", "count": 12, "trend": "down", "trendValue": "-4", "trendSemantic": "positive"},
        ),
        ("Cert expiry", "status", {"title": "Cert", "status": "warning", "message": "Renews in 5 days"}),
        ("MRR", "summary", {"title": "MRR", "primary_value": "€8.2k"}),
        ("Disk", "summary", {"title": "Disk", "primary_value": "71%", "secondary_value": "of 2 TB"}),
    ]
    for name, schema, content in examples:
        feeds[name] = api.feed(name, schema)
        api.ingest(feeds[name], {"schema_type": schema, "content": content})
    feeds["Deploys"] = api.feed("Deploys", "approval")
    first = api.ingest(feeds["Deploys"], approval_event("Deploy v2.3.0 to production?"))
    api.feed("Nightly report", "summary")  # no event yet

    session = api.post("/v1/sessions", {"visitor": {"id": "v-1", "name": "Ada", "email": "ada@example.com"}})
    api.post(f"/v1/sessions/{session['id']}/messages", {"role": "visitor", "text": "Hi! Is the Pro plan monthly?"})
    api.post(f"/v1/sessions/{session['id']}/messages", {"role": "agent", "text": "Yes, and you can cancel any time."})
    api.post("/v1/leads", {"session_id": session["id"], "fields": {"name": "Ada", "email": "ada@example.com"}})

    hook = api.post("/v1/webhooks", {"url": receiver.url, "events": ["webhook.test"]})
    api.post(f"/v1/webhooks/{hook['id']}/test", {})
    deadline = time.monotonic() + 10
    while not api.get(f"/v1/webhooks/{hook['id']}/deliveries")["data"][0]["attempts"] and time.monotonic() < deadline:
        time.sleep(0.05)
    delivery = api.get(f"/v1/webhooks/{hook['id']}/deliveries")["data"][0]
    return {
        "api": api,
        "state": state,
        "feeds": feeds,
        "approval": first,
        "session": session,
        "hook": hook,
        "delivery": delivery,
    }


def open_context(browser: Any, server: Server, world: dict[str, Any], size: str, scheme: str, **extra: Any) -> Any:
    context = browser.new_context(
        base_url=server.url,
        viewport=SIZES[size],
        color_scheme=scheme,
        storage_state=world["state"],
        reduced_motion="reduce",
        **extra,
    )
    context.set_default_timeout(WAIT_MS)
    return context


def shots(request: pytest.FixtureRequest) -> Path:
    folder = request.config._tmp_path_factory.getbasetemp() / "screenshots" / "pages"  # type: ignore[attr-defined]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def pages(world: dict[str, Any]) -> dict[str, str]:
    feeds = world["feeds"]
    return {
        "home": "/",
        "arrange": "/?arrange=1",
        "feeds": "/feeds",
        "new-feed": "/feeds?new=1",
        "feed": f"/feeds/{feeds['Revenue']['id']}",
        "approval-feed": f"/feeds/{feeds['Deploys']['id']}",
        "approvals": "/approvals",
        "approval": f"/approvals/{world['approval']}",
        "webhooks": "/webhooks",
        "new-webhook": "/webhooks?new=1",
        "webhook": f"/webhooks/{world['hook']['id']}",
        "delivery": f"/deliveries/{world['delivery']['id']}",
        "conversations": "/conversations",
        "conversation": f"/conversations/{world['session']['id']}",
        "leads": "/leads",
        "settings": "/settings",
        "push": "/settings/push",
    }


def check_page(page: Any, name: str, folder: Path, size: str, scheme: str) -> list[str]:
    """Problems of the page shown now: sideways scrolling and axe-core's violations."""
    from axe_playwright_python.sync_playwright import Axe

    problems = []
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if width[0] > width[1]:
        problems.append(f"{name} ({size}, {scheme}) is {width[0]} px wide in a {width[1]} px window")
    # axe's experimental check that a control's accessible name contains its visible text, too.
    options = {"resultTypes": ["violations"], "rules": {"label-content-name-mismatch": {"enabled": True}}}
    results = Axe().run(page, options=options)
    for violation in results.response["violations"]:
        targets = [node["target"] for node in violation["nodes"]][:3]
        problems.append(f"{name} ({size}, {scheme}): {violation['id']}: {violation['help']} at {targets}")
    page.screenshot(path=str(folder / f"{name}-{size}-{scheme}.png"), full_page=True)
    return problems


@pytest.mark.parametrize("size", SIZES)
def test_every_page_fits_the_screen_and_has_no_accessibility_violations(
    browser: Any, server: Server, world: dict[str, Any], size: str, request: pytest.FixtureRequest
) -> None:
    folder = shots(request)
    problems: list[str] = []
    errors: list[str] = []
    for scheme in SCHEMES:
        context = open_context(browser, server, world, size, scheme)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        for name, path in pages(world).items():
            page.goto(path)
            page.wait_for_load_state("load")
            problems += check_page(page, name, folder, size, scheme)
        signed_out = browser.new_context(base_url=server.url, viewport=SIZES[size], color_scheme=scheme)
        login = signed_out.new_page()
        login.goto("/login")
        problems += check_page(login, "login", folder, size, scheme)
        signed_out.close()
        context.close()
        assert errors == [], errors
    assert problems == [], "\n".join(problems)


def test_home_shows_at_least_six_small_tiles_in_the_first_phone_screen(
    browser: Any, server: Server, world: dict[str, Any]
) -> None:
    context = open_context(browser, server, world, "phone", "light")
    page = context.new_page()
    page.goto("/")
    seen = page.evaluate(
        """() => {
          const bar = document.querySelector('.tabbar').getBoundingClientRect().top;
          return [...document.querySelectorAll('.tile-small')].filter((tile) => {
            const box = tile.getBoundingClientRect();
            return box.top >= 0 && box.bottom <= Math.min(bar, innerHeight) && box.width >= 44;
          }).length;
        }"""
    )
    assert seen >= 6
    # The navigation is the tab bar, with counts, and every tap target is at least 44 px tall.
    tabs = page.get_by_role("navigation", name="Sections")
    assert tabs.is_visible() and not page.get_by_role("navigation", name="Main").is_visible()
    assert re.fullmatch(r"Approvals\s*1", tabs.get_by_role("link", name=re.compile("^Approvals")).inner_text().strip())
    small = page.evaluate(
        """() => [...document.querySelectorAll('.tabbar a, .tabbar summary, main button, main .btn')]
            .filter((el) => el.offsetParent !== null && el.getBoundingClientRect().height < 44)
            .map((el) => el.textContent.trim())"""
    )
    assert small == []
    context.close()


@pytest.mark.parametrize("size", SIZES)
def test_a_posted_event_highlights_its_tile_and_resets_updated_within_a_second(
    browser: Any, server: Server, world: dict[str, Any], size: str
) -> None:
    feed = world["feeds"]["Revenue"]
    context = open_context(browser, server, world, size, "light")
    page = context.new_page()
    page.goto("/")
    page.wait_for_function("() => document.body.dataset.liveState === 'open'")
    page.evaluate("window.notReloaded = true")
    value = f"${int(time.time()) % 100000:,}"
    started = time.monotonic()
    event_id = world["api"].ingest(
        feed, {"schema_type": "summary", "content": {"title": "Revenue", "primary_value": value}}
    )
    page.wait_for_function(
        """([feed, id]) => {
          const tile = document.querySelector(`[data-tile][data-feed="${feed}"]`);
          return tile && tile.dataset.eventId === id && tile.classList.contains('tile-fresh')
            && tile.querySelector('.tile-updated').textContent.includes('just now');
        }""",
        arg=[feed["id"], event_id],
        timeout=1000,
    )
    elapsed = time.monotonic() - started
    tile = page.locator(f'[data-tile][data-feed="{feed["id"]}"]')
    assert value in tile.inner_text() and elapsed < 1.0
    assert page.evaluate("window.notReloaded") is True
    context.close()


@pytest.mark.parametrize("size", SIZES)
def test_a_visitor_message_appears_in_the_open_conversations_list(
    browser: Any, server: Server, world: dict[str, Any], size: str
) -> None:
    api = world["api"]
    session = world["session"]
    context = open_context(browser, server, world, size, "light")
    page = context.new_page()
    page.goto("/conversations")
    page.wait_for_function("() => document.body.dataset.liveState === 'open'")
    page.evaluate("window.notReloaded = true")
    text = f"Do you ship to Norway? ({size})"
    api.post(f"/v1/sessions/{session['id']}/messages", {"role": "visitor", "text": text})
    item = page.locator(f'[data-session="{session["id"]}"]')
    item.filter(has_text=text).wait_for()
    assert "is-unread" in (item.get_attribute("class") or "")
    page.wait_for_function("() => document.querySelector('[data-count=conversations]').textContent === '1'")
    # A new conversation shows too.
    other = api.post("/v1/sessions", {"visitor": {"id": f"v-{size}", "name": f"Grace {size}"}})
    page.locator(f'[data-session="{other["id"]}"]').wait_for()
    assert page.evaluate("window.notReloaded") is True
    # The conversation is a chat, and reads it: the unread marker goes.
    page.goto(f"/conversations/{session['id']}")
    bubble = page.locator(".bubble-theirs").filter(has_text=text)
    assert bubble.is_visible()
    page.goto("/conversations")
    assert "is-unread" not in (page.locator(f'[data-session="{session["id"]}"]').get_attribute("class") or "")
    context.close()


@pytest.mark.parametrize("size", SIZES)
def test_two_pending_approvals_show_two_waiting_until_both_are_decided(
    browser: Any, server: Server, world: dict[str, Any], size: str
) -> None:
    api = world["api"]
    feed = api.feed(f"Releases {size}", "approval")
    context = open_context(browser, server, world, size, "light")
    page = context.new_page()
    page.goto("/")
    tile = page.locator(f'[data-tile][data-feed="{feed["id"]}"]')
    page.wait_for_function("() => document.body.dataset.liveState === 'open'")
    first = api.ingest(feed, approval_event("A: ship the release?"))
    second = api.ingest(feed, approval_event("B: run the migration?"))
    tile.filter(has_text="2 waiting").wait_for()
    assert "A: ship the release?" in tile.inner_text()
    api.post(f"/v1/approvals/{second}/respond", {"action_type": "approve"})
    tile.filter(has_text="1 waiting").wait_for()
    assert "A: ship the release?" in tile.inner_text()  # the oldest still waits: not "Approved"
    api.post(f"/v1/approvals/{first}/respond", {"action_type": "reject"})
    tile.filter(has_text="Rejected").wait_for()
    assert "waiting" not in tile.inner_text()
    context.close()


@pytest.mark.parametrize("size", SIZES)
def test_a_failing_webhook_says_so_and_its_inspector_shows_the_body_sent(
    browser: Any, server: Server, world: dict[str, Any], receiver: Receiver, size: str
) -> None:
    hook = world["hook"]
    context = open_context(browser, server, world, size, "light")
    page = context.new_page()
    page.goto("/webhooks")
    card = page.locator(f'[data-webhook="{hook["id"]}"]')
    assert card.get_attribute("data-state") == "failing"
    badge = card.locator("[data-hook-state]")
    assert badge.inner_text().strip() == "failing" and "badge-danger" in (badge.get_attribute("class") or "")
    assert "failing, retrying" in card.inner_text() and "attempt" not in card.inner_text()
    # A test send updates the open page's delivery log, live.
    page.goto(f"/webhooks/{hook['id']}")
    page.wait_for_function("() => document.body.dataset.liveState === 'open'")
    rows = page.locator("#deliveries tr[data-delivery]")
    before = rows.count()
    sent_before = len(receiver.requests)
    world["api"].post(f"/v1/webhooks/{hook['id']}/test", {})
    assert receiver.wait_for_sync(sent_before + 1, timeout=WAIT_MS / 1000)
    page.locator('#deliveries tr[data-status="failed"] >> text=500').nth(before).wait_for()
    assert rows.count() == before + 1
    # The inspector: the request as sent, each attempt's answer, a replay button.
    rows.first.get_by_role("link").click()
    page.wait_for_url(re.compile(r".*/deliveries/dlv_\w+$"))
    body = page.locator("#sent-body").inner_text()
    delivered = receiver.requests[-1].body
    assert json.loads(body) == json.loads(delivered)
    headers = page.locator(".headers").inner_text()
    assert "X-Glimpze-Event" in headers and "webhook.test" in headers
    assert "HTTP 500" in page.locator(".attempts").inner_text()
    assert page.get_by_role("button", name="Replay").is_visible()
    context.close()


def test_tiles_are_arranged_by_keyboard_and_by_drag_and_the_order_is_kept(
    browser: Any, server: Server, world: dict[str, Any]
) -> None:
    context = open_context(browser, server, world, "desktop", "light")
    page = context.new_page()
    page.goto("/?arrange=1")
    order = page.evaluate("[...document.querySelectorAll('[data-tile]')].map((t) => t.dataset.feed)")
    first_name = page.locator("[data-tile] .tile-name").first.inner_text()
    with page.expect_response("**/tiles/order") as saved:
        page.get_by_role("button", name=f"Move {first_name} later").focus()
        page.keyboard.press("Enter")
    assert saved.value.status == 204
    with page.expect_response("**/tiles/order"):
        page.keyboard.press("ArrowRight")  # the focused tile's button: one more place later
    page.goto("/")
    now = page.evaluate("[...document.querySelectorAll('[data-tile]')].map((t) => t.dataset.feed)")
    assert now == [order[1], order[2], order[0], *order[3:]]
    # Drag the last tile onto the first one.
    page.goto("/?arrange=1")
    last = page.locator("[data-tile]").last
    first = page.locator("[data-tile]").first
    grip = last.locator("[data-grip]").bounding_box()
    target = first.bounding_box()
    with page.expect_response("**/tiles/order"):
        page.mouse.move(grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2)
        page.mouse.down()
        page.mouse.move(target["x"] + 10, target["y"] + 10, steps=8)
        page.mouse.up()
    page.goto("/")
    dragged = page.evaluate("[...document.querySelectorAll('[data-tile]')].map((t) => t.dataset.feed)")
    assert dragged[0] == now[-1]
    context.close()


def test_the_feed_created_dialog_waits_for_the_first_event(browser: Any, server: Server, world: dict[str, Any]) -> None:
    context = open_context(browser, server, world, "phone", "dark")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    page.goto("/feeds?new=1")
    dialog = page.get_by_role("dialog", name="New feed")
    assert dialog.locator(".schema-preview").count() == 5  # a preview of each widget
    plans = dialog.get_by_label("Plan", exact=True).locator("option").all_inner_texts()
    assert [p.split(" ")[0] for p in plans] == ["free", "pro", "power", "unlimited"]  # tier order
    dialog.get_by_label("Name").fill("Door sensor")
    dialog.get_by_label("Status", exact=True).check()
    dialog.get_by_role("button", name="Create feed").click()
    ready = page.get_by_role("dialog", name="Your feed is ready")
    ready.get_by_text("Waiting for your first event").wait_for()
    # The Copy button sits above the snippet, never over its first line.
    button = ready.get_by_role("button", name="Copy curl").bounding_box()
    snippet = ready.locator("#snippet-curl").bounding_box()
    assert button["y"] + button["height"] <= snippet["y"]
    key = ready.locator("#write-key").inner_text().strip()
    url = ready.locator("#webhook-url").inner_text().strip()
    body = {"schema_type": "status", "content": {"title": "Door", "status": "info", "message": "Opened"}}
    assert httpx.post(url, json=body, headers={"Authorization": f"Bearer {key}"}).status_code == 202
    ready.get_by_text("Your first event arrived").wait_for()
    assert "Opened" in ready.locator("[data-tile-slot] [data-tile]").inner_text()
    context.close()


def test_forms_name_the_bad_field_and_focus_it(browser: Any, server: Server, world: dict[str, Any]) -> None:
    context = open_context(browser, server, world, "desktop", "light")
    page = context.new_page()
    page.goto("/webhooks?new=1")
    dialog = page.get_by_role("dialog", name="Add a webhook")
    dialog.get_by_label("URL").fill("ftp://files.example.com/in")
    dialog.get_by_role("button", name="Add webhook").click()
    page.wait_for_load_state("load")
    dialog = page.get_by_role("dialog", name="Add a webhook")
    assert page.evaluate("document.activeElement.id") == "new-url"
    error = dialog.locator("#new-url-error").inner_text()
    assert error and not error.startswith(("Url", "url", "$."))
    context.close()


def test_without_javascript_hidden_controls_stay_hidden(browser: Any, server: Server, world: dict[str, Any]) -> None:
    context = open_context(browser, server, world, "desktop", "light", java_script_enabled=False)
    page = context.new_page()
    page.goto("/settings/push")
    assert not page.locator("[data-push-toggle]").is_visible()
    assert "need JavaScript" in page.locator("[data-push-status]").inner_text()
    context.close()
