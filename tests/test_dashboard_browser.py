"""The dashboard in a real browser: Playwright driving Debian's Chromium against a real `glimpze serve`.

One server, one receiver and one browser for the whole module (Playwright's sync API owns the
thread while it runs, so every test here is a plain sync test). Each test saves a screenshot
under the run's temporary directory (`<basetemp>/screenshots/`); a failure's report says where.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from glimpze.delivery.signing import verify_glimpze_signature
from tests.browser import CHROMIUM_FLAGS, need_browser
from tests.dashboard import PASSWORD, approval_event
from tests.receiver import Receiver
from tests.screenshots import SCREENSHOT
from tests.server import UNLIMITED_PLAN, Server
from tests.webpush_browser import Browser

pytestmark = pytest.mark.slow

WAIT_MS = 10_000  # the longest any single browser wait may take


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("dashboard-server"))
    # public_url is this very address, so the webhook URLs and setup links the pages show work as they are.
    server.config.write_text(
        f'public_url = "{server.url}"\n{UNLIMITED_PLAN}\n[webhooks]\nallow_targets = ["127.0.0.1"]\n'
    )
    server.start()
    yield server
    server.terminate()


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    """What earlier tests made (the password, a feed), for later tests that need one."""
    return {}


@pytest.fixture(scope="module")
def context(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The administrator's browser. A persistent profile, as a phone's browser is: Chromium does not
    offer to install apps from incognito profiles, and the session cookie carries from test to test."""
    executable = need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=executable,
            args=CHROMIUM_FLAGS,
            base_url=server.url,
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(WAIT_MS)
        context.grant_permissions(["notifications", "clipboard-read", "clipboard-write"], origin=server.url)
        yield context
        context.close()


def _screenshots(request: pytest.FixtureRequest) -> Path:
    folder = request.config._tmp_path_factory.getbasetemp() / "screenshots"  # type: ignore[attr-defined]
    folder.mkdir(exist_ok=True)
    return folder


def _open_page(context: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    path = _screenshots(request) / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', request.node.name)}.png"

    def shoot() -> Path:
        page.screenshot(path=str(path), full_page=True)
        return path

    request.node.stash[SCREENSHOT] = shoot
    yield page
    page.close()
    assert errors == [], f"script errors on the page: {errors}"


@pytest.fixture
def page(context: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _open_page(context, request)


def set_password_once(page: Any, server: Server, state: dict[str, Any]) -> None:
    """The first-run setup, through the link the server printed."""
    if state.get("password"):
        return
    link = re.search(r"http://\S+/setup/\S+", server.output())
    assert link, server.output()
    page.goto(link.group(0))
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("Repeat it").fill(PASSWORD)
    page.get_by_role("button", name="Save and sign in").click()
    page.wait_for_url(f"{server.url}/")
    state["password"] = PASSWORD


def signed_in(page: Any, server: Server, state: dict[str, Any]) -> None:
    set_password_once(page, server, state)


def admin_key(server: Server) -> str:
    return server.admin_key()


def make_feed(
    server: Server, state: dict[str, Any], name: str = "Revenue", schema: str = "summary", key: str = "feed"
) -> dict[str, Any]:
    """A feed made through the API once per module (`state[key]`), with its write key."""
    if key not in state:
        response = httpx.post(
            f"{server.url}/v1/feeds",
            headers={"Authorization": f"Bearer {admin_key(server)}"},
            json={"name": name, "schema_type": schema},
        )
        assert response.status_code == 201, response.text
        state[key] = response.json()
    return state[key]  # type: ignore[no-any-return]


# The acceptance tests, in the order a new user meets them


def test_first_run_setup(page: Any, server: Server, state: dict[str, Any]) -> None:
    page.goto("/")
    page.wait_for_url("**/login")
    assert "setup link" in page.locator("main").inner_text()
    set_password_once(page, server, state)
    assert page.get_by_role("heading", name="Home", exact=True).is_visible()
    assert page.get_by_role("navigation", name="Main").is_visible()


def test_sign_in(page: Any, context: Any, server: Server, state: dict[str, Any]) -> None:
    set_password_once(page, server, state)
    context.clear_cookies()
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto("/feeds")
    page.wait_for_url("**/login?next=%2Ffeeds")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert "not right" in page.get_by_role("alert").inner_text()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/feeds")
    assert page.get_by_role("heading", name="Feeds", exact=True).is_visible()
    # Usable on a phone: nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_create_a_summary_feed_in_the_dialog_and_read_its_write_key(
    page: Any, server: Server, state: dict[str, Any]
) -> None:
    signed_in(page, server, state)
    page.goto("/feeds")
    page.get_by_role("link", name="New feed").first.click()
    dialog = page.get_by_role("dialog", name="New feed")
    assert dialog.is_visible()
    dialog.get_by_label("Name").fill("Daily revenue")
    dialog.get_by_label("Summary", exact=True).check()
    dialog.get_by_label("Plan", exact=True).select_option("unlimited")
    dialog.get_by_role("button", name="Create feed").click()

    ready = page.get_by_role("dialog", name="Your feed is ready")
    ready.wait_for()
    write_key = ready.locator("#write-key").inner_text().strip()
    webhook_url = ready.locator("#webhook-url").inner_text().strip()
    assert write_key.startswith("gzw_") and webhook_url.startswith(f"{server.url}/ingest/fd_")
    assert f"Bearer {write_key}" in ready.locator("#snippet-curl").inner_text()
    ready.get_by_role("button", name="Copy Write key").click()
    assert page.evaluate("navigator.clipboard.readText()") == write_key

    event = {"schema_type": "summary", "content": {"title": "Daily revenue", "primary_value": "$12,345"}}
    response = httpx.post(webhook_url, json=event, headers={"Authorization": f"Bearer {write_key}"})
    assert response.status_code == 202, response.text
    state["feed"] = {"id": webhook_url.rsplit("/", 1)[1], "write_key": write_key, "webhook_url": webhook_url}
    ready.get_by_role("button", name="Done").click()
    page.reload()
    assert "$12,345" in page.get_by_role("list", name="Events, newest first").inner_text()  # the event log
    assert write_key not in page.content()  # shown once


def test_a_posted_event_updates_the_widget_without_reloading(page: Any, server: Server, state: dict[str, Any]) -> None:
    signed_in(page, server, state)
    feed = make_feed(server, state)
    page.emulate_media(color_scheme="dark")
    page.goto(f"/feeds/{feed['id']}")  # the feed page: its tile, and its pictures
    page.locator('.live-status[data-state="open"]').wait_for()
    page.evaluate("window.notReloaded = true")
    page.get_by_text("The widget's pictures").click()
    image = page.locator(".size-preview img").first
    before = image.get_attribute("src")

    event = {
        "schema_type": "summary",
        "content": {"title": "Revenue", "primary_value": "$99,000", "secondary_value": "+42%"},
    }
    response = httpx.post(
        f"{server.url}/ingest/{feed['id']}", json=event, headers={"Authorization": f"Bearer {feed['write_key']}"}
    )
    assert response.status_code == 202
    event_id = response.json()["id"]
    tile = page.locator(f'[data-tile][data-feed="{feed["id"]}"]')
    page.wait_for_function(
        "([selector, id]) => document.querySelector(selector).dataset.eventId === id",
        arg=[f'[data-tile][data-feed="{feed["id"]}"]', event_id],
        timeout=WAIT_MS,
    )
    assert "$99,000" in tile.inner_text()
    page.wait_for_function(
        "([selector, id]) => document.querySelector(selector).getAttribute('src').includes(id)",
        arg=[".size-preview img", event_id],
        timeout=WAIT_MS,
    )
    assert page.evaluate("window.notReloaded") is True
    assert image.get_attribute("src") != before
    assert "$99,000" in (image.get_attribute("alt") or "")
    # The picture shown is the dark one (the system's theme), and it loaded.
    page.wait_for_function(
        "el => el.complete && el.naturalWidth > 0 && el.currentSrc.includes('theme=dark')",
        arg=image.element_handle(),
        timeout=WAIT_MS,
    )


def test_add_a_webhook_and_see_a_delivery_in_its_log(
    page: Any, server: Server, state: dict[str, Any], receiver: Receiver
) -> None:
    signed_in(page, server, state)
    page.goto("/webhooks")
    page.get_by_role("link", name="Add webhook").first.click()
    dialog = page.get_by_role("dialog", name="Add a webhook")
    dialog.get_by_label("URL").fill(receiver.url)
    dialog.get_by_label("All events").uncheck()
    dialog.get_by_label("webhook.test").check()
    dialog.get_by_label("Custom headers").fill("X-From: glimpze-dashboard")
    dialog.get_by_role("button", name="Add webhook").click()
    page.wait_for_url(re.compile(r".*/webhooks/wh_\w+$"))
    secret = page.locator("[data-secret]").first.inner_text().strip()
    assert secret.startswith("whsec_")

    already = len(receiver.requests)
    page.get_by_role("button", name="Send a test event").click()
    assert receiver.wait_for_sync(already + 1, timeout=WAIT_MS / 1000)
    delivery = receiver.requests[-1]
    assert delivery.headers["x-from"] == "glimpze-dashboard"
    assert json.loads(delivery.body)["event"] == "webhook.test"
    stamp, _, signature = delivery.headers["x-glimpze-signature"].partition(",v1=")
    expected = hmac.new(secret.encode(), f"{stamp.removeprefix('t=')}.".encode() + delivery.body, hashlib.sha256)
    assert hmac.compare_digest(signature, expected.hexdigest())

    # The log shows it once the dispatcher has recorded the attempt (a moment after the receiver saw it).
    row = page.locator('#deliveries tr[data-status="delivered"]')
    deadline = time.monotonic() + WAIT_MS / 1000
    while row.count() == 0 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        page.reload()
    assert row.count() == 1, page.locator("main").inner_text()
    cells = row.first.inner_text()
    assert "webhook.test" in cells and "200" in cells and " ms" in cells


def test_the_manifest_and_the_service_worker_register(
    page: Any, context: Any, server: Server, state: dict[str, Any]
) -> None:
    signed_in(page, server, state)
    page.goto("/")
    script = page.evaluate(
        "navigator.serviceWorker.ready.then(r => new Promise(done => {"
        "  const w = r.active; if (w.state === 'activated') return done(w.scriptURL);"
        "  w.addEventListener('statechange', () => w.state === 'activated' && done(w.scriptURL)); }))"
    )
    assert script == f"{server.url}/sw.js"
    assert page.evaluate("caches.match('/static/offline.html').then(r => !!r)")
    manifest = page.evaluate("fetch(document.querySelector('link[rel=manifest]').href).then(r => r.json())")
    assert manifest["display"] == "standalone"

    cdp = context.new_cdp_session(page)
    page.reload()  # now controlled by the worker, as an installed app would be
    assert page.evaluate("navigator.serviceWorker.controller !== null")
    errors = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
    assert errors == [], errors
    manifest_info = cdp.send("Page.getAppManifest")
    assert manifest_info["errors"] == [] and manifest_info["url"] == f"{server.url}/manifest.webmanifest"

    # A push message (Chromium here reaches no push service: the DevTools protocol delivers it).
    push = {
        "title": "Deploy v2.3.0 to production?",
        "body": "Approval requested by the CI feed",
        "url": "/feeds",
        "tag": "approval-evt_1",
        "actions": [
            {"action": "approve", "title": "Approve", "url": "/feeds?approve=1"},
            {"action": "reject", "title": "Reject", "url": "/feeds?reject=1"},
        ],
    }
    worker, shown = deliver_push(page, cdp, server, push)
    assert len(shown) == 1, shown
    assert shown[0]["title"] == push["title"] and shown[0]["body"] == push["body"]
    assert shown[0]["tag"] == "approval-evt_1" and shown[0]["requireInteraction"] is True
    assert shown[0]["icon"] == "/static/icons/icon-192.png" and shown[0]["badge"] == "/static/icons/badge-96.png"
    assert shown[0]["actions"] == [{"action": "approve", "title": "Approve"}, {"action": "reject", "title": "Reject"}]
    assert shown[0]["data"] == {"url": "/feeds", "links": {"approve": "/feeds?approve=1", "reject": "/feeds?reject=1"}}
    # Tapping it opens its page in the app's window (the worker's handler, run directly).
    worker.evaluate("openPage('/feeds?from=notification')")
    page.wait_for_url(f"{server.url}/feeds?from=notification")
    # Only this site's pages open, whatever name the link uses for it.
    assert worker.evaluate("sameSite('https://elsewhere.example/approvals/evt_1?x=1')") == (
        f"{server.url}/approvals/evt_1?x=1"
    )
    assert worker.evaluate("sameSite('https://elsewhere.example//evil.example/x')") == f"{server.url}//evil.example/x"
    assert worker.evaluate("sameSite('javascript:alert(1)')") == f"{server.url}/alert(1)"
    cdp.detach()


def approval_feed(server: Server, state: dict[str, Any]) -> dict[str, Any]:
    return make_feed(server, state, "Deploys", "approval", key="approval_feed")


def ask(feed: dict[str, Any], description: str, callback: str | None = None) -> str:
    """Post an approval event to the feed; returns its event id."""
    body = approval_event(description, callback)
    response = httpx.post(feed["webhook_url"], json=body, headers={"Authorization": f"Bearer {feed['write_key']}"})
    assert response.status_code == 202, response.text
    return response.json()["id"]  # type: ignore[no-any-return]


def api_get(server: Server, path: str) -> Any:
    response = httpx.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {admin_key(server)}"})
    assert response.status_code == 200, response.text
    return response.json()


def test_answer_an_approval_and_see_the_callback_arrive(page: Any, server: Server, state: dict[str, Any]) -> None:
    signed_in(page, server, state)
    feed = approval_feed(server, state)
    page.goto("/approvals")
    page.locator('.live-status[data-state="open"]').wait_for()
    page.evaluate("window.notReloaded = true")
    with Receiver() as callback:
        event_id = ask(feed, "Deploy v2.3.0 to production?", callback.url)
        pending = page.locator(f"#approval-{event_id}")
        pending.wait_for()  # it arrived live, without reloading
        assert page.evaluate("window.notReloaded") is True
        assert "Deploy v2.3.0 to production?" in pending.inner_text()
        pending.get_by_role("button", name="Approve").click()
        page.get_by_role("status").filter(has_text="Approved").wait_for()

        assert callback.wait_for_sync(1, timeout=WAIT_MS / 1000), "no callback arrived"
        [request] = callback.requests
        body = json.loads(request.body)
        assert list(body) == ["feed_id", "action_type", "event_id", "timestamp", "metadata"]  # seed 002
        assert (body["feed_id"], body["action_type"], body["event_id"]) == (feed["id"], "approve", event_id)
        assert body["metadata"] == {"deployment_id": "deploy-123"}
        signature = request.headers["x-glimpze-signature"]
        assert verify_glimpze_signature(feed["callback_secret"], signature, request.body, time.time())

    decided = page.locator(f'#decided tr[data-approval="{event_id}"]')
    assert decided.get_attribute("data-status") == "approved" and "dashboard" in decided.inner_text()
    assert api_get(server, f"/v1/approvals/{event_id}")["decided_by"] == "dashboard"

    # One answered elsewhere (the API) leaves the pending list and joins the decided ones, live.
    other = ask(feed, "Run the migration?")
    page.locator(f"#approval-{other}").wait_for()
    page.evaluate("window.notReloaded = true")
    response = httpx.post(
        f"{server.url}/v1/approvals/{other}/respond",
        json={"action_type": "reject"},
        headers={"Authorization": f"Bearer {admin_key(server)}"},
    )
    assert response.status_code == 200
    page.locator(f'#decided tr[data-approval="{other}"][data-status="rejected"]').wait_for()
    assert page.locator(f"#approval-{other}").count() == 0
    assert page.evaluate("window.notReloaded") is True


PUSH_STUB = """
(() => {
  // Chromium here reaches no push service: PushManager answers with the test's subscription keys.
  const KEYS = %s;
  const STORED = "stub-push-subscription";
  const make = (data) => ({
    endpoint: data.endpoint,
    expirationTime: null,
    toJSON: () => ({ endpoint: data.endpoint, expirationTime: null, keys: { p256dh: data.p256dh, auth: data.auth } }),
    unsubscribe: async () => { localStorage.removeItem(STORED); return true; },
  });
  PushManager.prototype.getSubscription = async function () {
    const stored = localStorage.getItem(STORED);
    return stored ? make(JSON.parse(stored)) : null;
  };
  PushManager.prototype.subscribe = async function (options) {
    const key = String.fromCharCode(...new Uint8Array(options.applicationServerKey));
    localStorage.setItem("stub-server-key", btoa(key).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, ""));
    localStorage.setItem(STORED, JSON.stringify(KEYS));
    return make(KEYS);
  };
})();
"""


def test_this_browser_subscribes_gets_a_test_push_and_answers_an_approval_from_it(
    page: Any, context: Any, server: Server, state: dict[str, Any]
) -> None:
    signed_in(page, server, state)
    browser = Browser()
    with Receiver() as push_service:
        keys = browser.subscription(f"{push_service.url}/push/this-browser")
        page.add_init_script(PUSH_STUB % json.dumps({"endpoint": keys["endpoint"], **keys["keys"]}))
        page.goto("/settings/push")
        browser_card = page.locator("#browser")
        browser_card.get_by_text("does not get push notifications").wait_for()
        browser_card.get_by_role("button", name="Turn on notifications").click()
        browser_card.get_by_text("This browser gets push notifications.").wait_for()
        vapid = api_get(server, "/v1/push/vapid-public-key")["public_key"]
        assert page.evaluate("localStorage.getItem('stub-server-key')") == vapid  # subscribed with main's key
        [target] = api_get(server, "/v1/push/targets")["data"]
        row = page.locator(f'tr[data-target="{target["id"]}"]')
        assert target["kind"] == "webpush" and row.locator("[data-this-browser]").is_visible()

        row.get_by_role("button", name=re.compile("^Send a test")).click()
        page.get_by_role("status").filter(has_text="Sent a test notification").wait_for()
        assert push_service.wait_for_sync(1, timeout=WAIT_MS / 1000)
        test_push = browser.decrypt(push_service.requests[0].body)
        assert test_push["title"] == "Test from Glimpze"

        # An approval reaches the phone with Approve and Reject; its Approve link decides it.
        feed = approval_feed(server, state)
        event_id = ask(feed, "Restart the database?")
        assert push_service.wait_for_sync(2, timeout=WAIT_MS / 1000)
        payload = browser.decrypt(push_service.requests[1].body)
        assert payload["url"] == f"{server.url}/approvals/{event_id}"
        cdp = context.new_cdp_session(page)
        worker, shown = deliver_push(page, cdp, server, payload)
        assert len(shown) == 1, shown
        assert shown[0]["title"] == "Approval needed: Deploys" and shown[0]["body"] == "Restart the database?"
        assert [a["action"] for a in shown[0]["actions"]] == ["approve", "reject"]
        assert shown[0]["data"]["url"] == f"{server.url}/approvals/{event_id}"
        approve_link = shown[0]["data"]["links"]["approve"]
        assert approve_link.startswith(f"{server.url}/a/gza_")
        # A tap on the notification opens the approval; a tap on its Approve button, the action link.
        tap = """([action, data]) => notificationClicked({
            action, notification: {data, close() {}}, waitUntil(promise) { self.opened = promise; }})"""
        worker.evaluate(tap, ["", shown[0]["data"]])
        page.wait_for_url(f"{server.url}/approvals/{event_id}")
        assert "Restart the database?" in page.get_by_role("heading", level=1).inner_text()
        worker.evaluate(tap, ["approve", shown[0]["data"]])
        page.wait_for_url(approve_link)
        assert api_get(server, f"/v1/approvals/{event_id}")["status"] == "pending"  # opening decides nothing
        page.get_by_role("button", name="Approve").click()
        page.get_by_text("Approved.").wait_for()
        decided = api_get(server, f"/v1/approvals/{event_id}")
        assert decided["status"] == "approved" and decided["decided_by"] == "push"
        cdp.detach()

        page.goto("/settings/push")
        page.locator("#browser").get_by_role("button", name="Turn off notifications").click()
        page.locator("#browser").get_by_text("does not get push notifications").wait_for()
        assert api_get(server, "/v1/push/targets")["data"] == []


def test_apprise_targets_and_quiet_hours(page: Any, server: Server, state: dict[str, Any]) -> None:
    signed_in(page, server, state)
    page.goto("/settings")
    page.get_by_role("link", name="Push notifications").click()
    page.wait_for_url("**/settings/push")
    with Receiver() as ntfy:
        page.get_by_label("Apprise URL").fill(f"json://glimpze:s3cret@127.0.0.1:{ntfy.port}/notify")
        page.get_by_role("button", name="Add target").click()
        page.get_by_role("status").filter(has_text="Added the JSON target").wait_for()
        row = page.locator('tr[data-kind="apprise"]')
        assert "json://glimpze:****@127.0.0.1" in row.inner_text() and "s3cret" not in page.content()
        row.get_by_role("button", name="Send a test to JSON").click()
        page.get_by_role("status").filter(has_text="Sent a test notification").wait_for()
        assert ntfy.wait_for_sync(1, timeout=WAIT_MS / 1000)
        assert json.loads(ntfy.requests[0].body)["title"] == "Test from Glimpze"
        row = page.locator('tr[data-kind="apprise"]')
        row.get_by_text("Remove…").click()
        row.get_by_role("button", name="Remove JSON now").click()
        page.get_by_role("status").filter(has_text="Removed the push target").wait_for()
        assert page.locator('tr[data-kind="apprise"]').count() == 0

    quiet = page.locator("#quiet")
    assert quiet.get_by_label("Time zone").input_value() == page.evaluate(
        "Intl.DateTimeFormat().resolvedOptions().timeZone"
    )  # the browser's own, to start with
    quiet.get_by_label("From").fill("22:30")
    quiet.get_by_label("Until").fill("06:45")
    quiet.get_by_label("Time zone").select_option("Europe/Berlin")  # a picker, not free text
    quiet.get_by_role("button", name="Turn on quiet hours").click()
    page.get_by_role("status").filter(has_text="Quiet hours are 22:30–06:45 (Europe/Berlin)").wait_for()
    saved = api_get(server, "/v1/settings/quiet-hours")
    assert (saved["start"], saved["end"], saved["timezone"]) == ("22:30", "06:45", "Europe/Berlin")
    page.get_by_role("button", name="Turn quiet hours off").click()
    page.get_by_role("status").filter(has_text="Quiet hours are off").wait_for()
    assert api_get(server, "/v1/settings/quiet-hours")["enabled"] is False


def deliver_push(page: Any, cdp: Any, server: Server, payload: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """Hand `payload` to the service worker as a push message would (ServiceWorker.deliverPushMessage)
    and return the worker and what its push handler asked the browser to show."""
    registrations: list[dict[str, Any]] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: registrations.extend(e["registrations"]))
    cdp.send("ServiceWorker.enable")
    deadline = time.monotonic() + WAIT_MS / 1000
    while not any(r["scopeURL"] == f"{server.url}/" for r in registrations) and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    registration = next(r for r in registrations if r["scopeURL"] == f"{server.url}/" and not r["isDeleted"])
    worker = next(w for w in page.context.service_workers if w.url == f"{server.url}/sw.js")
    # Headless Chromium sometimes drops a shown notification from getNotifications() at once, so the
    # test records what the worker's push handler asks the browser to show, and that it was shown.
    worker.evaluate(
        """() => {
          self.shown = [];
          if (!self.realShow) self.realShow = self.registration.showNotification.bind(self.registration);
          self.registration.showNotification = (title, options) =>
            self.realShow(title, options).then(() => { self.shown.push({title, ...options}); });
        }"""
    )
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": server.url, "registrationId": registration["registrationId"], "data": json.dumps(payload)},
    )
    deadline = time.monotonic() + WAIT_MS / 1000
    while not worker.evaluate("self.shown.length") and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    return worker, worker.evaluate("self.shown")


def test_the_icons_are_what_the_manifest_says(server: Server) -> None:
    manifest = httpx.get(f"{server.url}/manifest.webmanifest").json()
    for icon in manifest["icons"]:
        data = httpx.get(f"{server.url}{icon['src']}").content
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert f"{width}x{height}" == icon["sizes"]
    assert base64  # (kept for the approval test's signed payloads)
