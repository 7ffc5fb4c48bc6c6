"""A fake TRMNL device follows the protocol end to end against a real `glimpze serve`, approved in the
dashboard by a real browser; the Screens and Devices pages and the kiosk page, live, in Chromium.

The device (tests/trmnl_device.py) calls `/api/setup`, `/api/display` and `/api/log` as the firmware
does and checks every image as the firmware would: waiting before approval (no content), the
setup logo, then 800×480 1-bit and 2-bit PNGs and a 1-bit BMP; the filename stays while nothing
changes and changes at the first poll after an event. Wrong tokens get the protocol's failure answer
and count as failed authentications; log lines are stored and bounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from glimpze.displays.devices import MAX_LOG_LINES
from tests.browser import chromium, sign_in_first_time
from tests.dashboard import PASSWORD
from tests.server import UNLIMITED_PLAN, Server
from tests.trmnl_device import FakeDevice, bmp_ink, decode, png_header

pytestmark = pytest.mark.slow

WAIT_MS = 10_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("displays"))
    # Requests may name their client in X-Forwarded-For, so the wrong-token client is one of its own.
    server.config.write_text(f'public_url = "{server.url}"\ntrusted_proxies = ["127.0.0.1"]\n{UNLIMITED_PLAN}')
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


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key()}"}) as client:
        yield client


@pytest.fixture(scope="module")
def signed_in(server: Server, browser: Any) -> dict[str, Any]:
    """A browser state signed in through the first-start setup link."""
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    sign_in_first_time(page, server.url, server.output(), PASSWORD)
    state: dict[str, Any] = context.storage_state()
    context.close()
    return state


def made(response: httpx.Response) -> Any:
    assert response.status_code in (200, 201, 202), response.text
    return response.json()


def send(api: httpx.Client, feed: dict[str, Any], status: str, message: str) -> None:
    body = {"schema_type": "status", "content": {"title": feed["name"], "status": status, "message": message}}
    made(
        httpx.post(
            f"{api.base_url}/ingest/{feed['id']}", json=body, headers={"Authorization": f"Bearer {feed['write_key']}"}
        )
    )


def new_page(browser: Any, server: Server, state: dict[str, Any], errors: list[str]) -> Any:
    context = browser.new_context(base_url=server.url, storage_state=state, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return page


def axe_violations(page: Any, name: str) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{name}: {v['id']}: {v['help']}" for v in results.response["violations"]]


def test_a_device_follows_the_protocol_from_approval_in_the_dashboard_to_its_images(
    server: Server, browser: Any, api: httpx.Client, signed_in: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    feed = made(api.post("/v1/feeds", json={"name": "Backups", "schema_type": "status"}))
    send(api, feed, "success", "All 12 volumes backed up")
    made(api.post("/v1/screens", json={"name": "Hallway", "feeds": [feed["id"]], "theme": "eink"}))
    device = FakeDevice(httpx.Client(base_url=server.url))

    # Before approval: no token, no content.
    waiting = device.setup()
    assert (waiting["status"], waiting["api_key"], device.downloads) == (404, None, 0)
    assert device.display(token="a-token-glimpze-never-gave")["status"] == 202
    assert device.downloads == 0
    code = made(api.get("/v1/devices"))["data"][0]["friendly_id"]
    assert code in waiting["message"]

    # The operator accepts it in the dashboard, with the screen to show.
    errors: list[str] = []
    page = new_page(browser, server, signed_in, errors)
    page.goto("/devices")
    card = page.locator("[data-device]").filter(has_text=code)
    expect(card.get_by_text("waiting for approval")).to_be_visible()
    problems = axe_violations(page, "devices")
    card.get_by_label(re.compile("First screen for")).select_option(label="Hallway")
    card.get_by_role("button", name=re.compile("^Accept")).click()
    expect(page.get_by_text("accepted", exact=False).first).to_be_visible()
    page.wait_for_url(re.compile(r"/devices/dev_"))
    device_id = page.url.rsplit("/", 1)[1]

    # Setup now hands over the token and the logo; display gives the screen as a 1-bit PNG.
    assert device.setup()["status"] == 200 and device.api_key and device.downloads == 1
    answer = device.display()
    assert answer["status"] == 0 and answer["refresh_rate"] == 900
    header = png_header(device.image or b"")
    assert (header.width, header.height, header.bit_depth, header.colour_type) == (800, 480, 1, 0)
    pixels = decode(device.image or b"")
    assert (pixels.width, pixels.height) == (800, 480)
    first = device.filename

    # The same picture keeps its filename: the device downloads nothing.
    device.display()
    assert (device.filename, device.downloads) == (first, 2)
    # An event changes it at the very next poll.
    send(api, feed, "error", "Disk full on nas-2")
    device.display()
    assert device.filename != first and device.downloads == 3

    # Four greys, then the BMP older firmware reads.
    made(api.patch(f"/v1/devices/{device_id}", json={"bit_depth": 2}))
    device.display()
    header = png_header(device.image or b"")
    assert (header.width, header.height, header.bit_depth) == (800, 480, 2)
    decode(device.image or b"")
    made(api.patch(f"/v1/devices/{device_id}", json={"format": "bmp"}))
    assert device.display()["image_url"].endswith(".bmp")
    dark, light = bmp_ink(device.image or b"")
    assert dark > 0 and light > 0  # a picture, not a blank page

    # The device page shows what it reported.
    page.goto(f"/devices/{device_id}")
    state = page.locator("#state-live")
    for text in ("4.01 V", "-58 dBm", "1.6.9", "800 × 480"):
        expect(state).to_contain_text(text)
    problems += axe_violations(page, "device")

    # Log lines are stored (and shown), and only the newest are kept.
    assert device.log([{"message": "Wi-Fi reconnected", "level": "warn", "created_at": 1760000000}]).status_code == 200
    page.reload()
    expect(page.locator("#log-live")).to_contain_text("Wi-Fi reconnected")
    for batch in range(6):
        lines = [{"message": f"line {batch}.{n}", "level": "info", "created_at": 1760000001} for n in range(100)]
        assert device.log(lines).json() == {"status": 200, "stored": 100}
    kept, cursor = 0, None
    while True:
        logs = made(
            api.get(f"/v1/devices/{device_id}/logs", params={"limit": 100, **({"cursor": cursor} if cursor else {})})
        )
        kept += len(logs["data"])
        if not (cursor := logs["next_cursor"]):
            break
    assert kept == MAX_LOG_LINES

    # A wrong token gets the protocol's failure answer, and counts: the 21st try is refused.
    intruder = {"X-Forwarded-For": "10.9.8.7"}
    for _ in range(20):
        assert device.display(token="gzd_guessed", extra=intruder) == {
            "status": 500,
            "reset_firmware": True,
            "error": "Device not found",
        }
    refused = device.client.get("/api/display", headers={**device.headers(), **intruder})
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
    assert device.display()["status"] == 0  # the device itself, from its own address, carries on
    assert device.log([{"message": "x"}], token="gzd_guessed").status_code == 401

    assert problems == [], "\n".join(problems)
    assert errors == [], errors
    page.context.close()


def test_the_screen_preview_and_the_kiosk_page_follow_a_feed_live(
    server: Server, browser: Any, api: httpx.Client, signed_in: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    feed = made(api.post("/v1/feeds", json={"name": "Deploys", "schema_type": "status"}))
    send(api, feed, "success", "v2.3.0 is live")
    screen = made(api.post("/v1/screens", json={"name": "Office", "feeds": [feed["id"]], "size": [1024, 600]}))

    errors: list[str] = []
    page = new_page(browser, server, signed_in, errors)
    page.goto(f"/screens/{screen['id']}")
    expect(page.locator("body")).to_have_attribute("data-live-state", "open")
    preview = page.locator("img[data-preview]")
    before = preview.get_attribute("data-version")
    problems = axe_violations(page, "screen")
    page.goto("/screens")
    problems += axe_violations(page, "screens")
    page.goto(f"/screens/{screen['id']}")
    expect(page.locator("body")).to_have_attribute("data-live-state", "open")
    send(api, feed, "warning", "v2.3.1 rolling back")
    expect(preview).not_to_have_attribute("data-version", before or "")

    # The kiosk page: full screen, swaps the picture when the screen changes, never reloads.
    kiosk = page.context.new_page()
    kiosk.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    kiosk.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    kiosk.goto(screen["kiosk_url"])
    image = kiosk.locator("img[data-screen]")
    expect(image).to_be_visible()
    kiosk.evaluate("window.stayed = true")
    shown = image.get_attribute("data-etag")
    expect(kiosk.locator("[data-note]")).to_be_hidden()
    send(api, feed, "error", "v2.3.1 failed")
    expect(image).not_to_have_attribute("data-etag", shown or "")
    assert kiosk.evaluate("window.stayed") is True
    assert kiosk.evaluate("[innerWidth, document.documentElement.scrollWidth <= innerWidth]")[1] is True
    made(api.post(f"/v1/screens/{screen['id']}/rotate-read-token"))
    send(api, feed, "success", "fixed")
    expect(kiosk.locator("[data-note]")).to_contain_text("link changed")

    assert problems == [], "\n".join(problems)
    assert errors == [], errors
    page.context.close()


def test_the_screens_and_devices_pages_fit_a_phone_in_the_dark(
    server: Server, browser: Any, api: httpx.Client, signed_in: dict[str, Any]
) -> None:
    feed = made(api.post("/v1/feeds", json={"name": "Queue", "schema_type": "counter"}))
    screen = made(api.post("/v1/screens", json={"name": "Phone check", "feeds": [feed["id"]]}))
    FakeDevice(httpx.Client(base_url=server.url), mac="A0:B7:65:00:00:99").setup()
    device = made(api.get("/v1/devices"))["data"][-1]
    context = browser.new_context(
        base_url=server.url,
        storage_state=signed_in,
        viewport={"width": 390, "height": 844},
        color_scheme="dark",
        device_scale_factor=2,
    )
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    problems = []
    for path in ("/screens", "/screens?new=1", f"/screens/{screen['id']}", "/devices", f"/devices/{device['id']}"):
        page.goto(path)
        page.wait_for_load_state("load")
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if width[0] > width[1]:
            problems.append(f"{path} is {width[0]} px wide in a {width[1]} px window")
        problems += axe_violations(page, path)
    context.close()
    assert problems == [], "\n".join(problems)
