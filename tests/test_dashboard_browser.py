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
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard import PASSWORD
from tests.receiver import Receiver
from tests.screenshots import SCREENSHOT
from tests.server import UNLIMITED_PLAN, Server

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
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
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: `bash .ci/run` installs it (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
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


def make_feed(server: Server, state: dict[str, Any]) -> dict[str, Any]:
    if "feed" not in state:
        response = httpx.post(
            f"{server.url}/v1/feeds",
            headers={"Authorization": f"Bearer {admin_key(server)}"},
            json={"name": "Revenue", "schema_type": "summary"},
        )
        assert response.status_code == 201, response.text
        state["feed"] = response.json()
    return state["feed"]  # type: ignore[no-any-return]


# The acceptance tests, in the order a new user meets them


def test_first_run_setup(page: Any, server: Server, state: dict[str, Any]) -> None:
    page.goto("/")
    page.wait_for_url("**/login")
    assert "setup link" in page.locator("main").inner_text()
    set_password_once(page, server, state)
    assert page.get_by_role("heading", name="Widgets", exact=True).is_visible()
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
    assert "$12,345" in page.get_by_role("table").inner_text()  # the event log
    assert write_key not in page.content()  # shown once


def test_a_posted_event_updates_the_widget_without_reloading(page: Any, server: Server, state: dict[str, Any]) -> None:
    signed_in(page, server, state)
    feed = make_feed(server, state)
    page.emulate_media(color_scheme="dark")
    page.goto("/")
    page.locator('.live-status[data-state="open"]').wait_for()
    page.evaluate("window.notReloaded = true")
    image = page.locator(f"#widget-{feed['id']} img").first
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
    page.wait_for_function(
        "([selector, id]) => document.querySelector(selector).getAttribute('src').includes(id)",
        arg=[f"#widget-{feed['id']} img", event_id],
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
    registrations: list[dict[str, Any]] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: registrations.extend(e["registrations"]))
    cdp.send("ServiceWorker.enable")
    deadline = time.monotonic() + WAIT_MS / 1000
    while not registrations and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    registration = next(r for r in registrations if r["scopeURL"] == f"{server.url}/" and not r["isDeleted"])
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
    worker = next(w for w in context.service_workers if w.url == f"{server.url}/sw.js")
    # Headless Chromium sometimes drops a shown notification from getNotifications() at once, so the
    # test records what the worker's push handler asks the browser to show, and that it was shown.
    worker.evaluate(
        """() => {
          self.shown = [];
          const show = self.registration.showNotification.bind(self.registration);
          self.registration.showNotification = (title, options) =>
            show(title, options).then(() => { self.shown.push({title, ...options}); });
        }"""
    )
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": server.url, "registrationId": registration["registrationId"], "data": json.dumps(push)},
    )
    deadline = time.monotonic() + WAIT_MS / 1000
    while not worker.evaluate("self.shown.length") and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    shown = worker.evaluate("self.shown")
    assert len(shown) == 1, shown
    assert shown[0]["title"] == push["title"] and shown[0]["body"] == push["body"]
    assert shown[0]["tag"] == "approval-evt_1" and shown[0]["requireInteraction"] is True
    assert shown[0]["icon"] == "/static/icons/icon-192.png" and shown[0]["badge"] == "/static/icons/badge-96.png"
    assert shown[0]["actions"] == [{"action": "approve", "title": "Approve"}, {"action": "reject", "title": "Reject"}]
    assert shown[0]["data"] == {"url": "/feeds", "links": {"approve": "/feeds?approve=1", "reject": "/feeds?reject=1"}}
    # Tapping it opens its page in the app's window (the worker's handler, run directly).
    worker.evaluate("openPage('/feeds?from=notification')")
    page.wait_for_url(f"{server.url}/feeds?from=notification")
    assert worker.evaluate("sameSite('https://evil.example/x')") == f"{server.url}/"
    cdp.detach()


def test_the_icons_are_what_the_manifest_says(server: Server) -> None:
    manifest = httpx.get(f"{server.url}/manifest.webmanifest").json()
    for icon in manifest["icons"]:
        data = httpx.get(f"{server.url}{icon['src']}").content
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert f"{width}x{height}" == icon["sizes"]
    assert base64  # (kept for the approval test's signed payloads)
