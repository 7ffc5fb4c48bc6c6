"""The pictures of docs/displays.md, made by a real `glimpze serve`: `python -m tests.display_shots docs/images`.

A few feeds with events, two screens, and a fake TRMNL device (tests/trmnl_device.py) that is
accepted and shows them: the images the device gets (1-bit and 2-bit), the picture Home Assistant
polls, and the dashboard's Devices page in Chromium (1280×490, light). Run it again whenever the
drawing changes; every file stays under 150 KB.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx

from tests.browser import chromium, sign_in_first_time
from tests.dashboard import PASSWORD
from tests.server import UNLIMITED_PLAN, Server
from tests.trmnl_device import FakeDevice

EXAMPLES = [
    ("Revenue", "summary", {"title": "Revenue", "primary_value": "$12,345", "secondary_value": "+15% this week"}),
    ("Backups", "status", {"title": "Backups", "status": "error", "message": "Disk full on nas-2"}),
    ("Signups", "counter", {"title": "Signups", "count": 127, "unit": "users", "trend": "up", "trendValue": "+23%"}),
    ("Deploys", "approval", {"description": "Deploy v2.3.0 to production?"}),
]


def make(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as root:
        server = Server(Path(root))
        server.config.write_text(f'public_url = "{server.url}"\n{UNLIMITED_PLAN}')
        server.start()
        try:
            return _shots(server, folder)
        finally:
            server.terminate()


def _shots(server: Server, folder: Path) -> list[Path]:
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key()}"})
    feeds = []
    for name, schema, content in EXAMPLES:
        feed = api.post("/v1/feeds", json={"name": name, "schema_type": schema}).json()
        body = {"schema_type": schema, "content": content}
        httpx.post(
            f"{server.url}/ingest/{feed['id']}", json=body, headers={"Authorization": f"Bearer {feed['write_key']}"}
        )
        feeds.append(feed["id"])
    wall = api.post("/v1/screens", json={"name": "Hallway", "feeds": feeds, "layout": "grid", "theme": "eink"}).json()
    office = api.post("/v1/screens", json={"name": "Office", "feeds": feeds[:3], "theme": "light"}).json()

    written = []
    device = FakeDevice(httpx.Client(base_url=server.url))
    device.setup()
    FakeDevice(httpx.Client(base_url=server.url), mac="A0:B7:65:00:00:02", model="xiao_epaper_display").setup()
    found = api.get("/v1/devices").json()["data"][0]
    playlist = [{"screen_id": wall["id"], "seconds": 900}]
    api.patch(f"/v1/devices/{found['id']}", json={"accepted": True, "playlist": playlist, "name": "Hallway TRMNL"})
    device.setup()
    for depth in (1, 2):
        api.patch(f"/v1/devices/{found['id']}", json={"bit_depth": depth})
        device.display()
        written.append(_save(folder / f"displays-trmnl-{depth}bit.png", device.image or b""))
    picture = httpx.get(office["image_url"])
    written.append(_save(folder / "displays-home-assistant.png", picture.content))
    written.append(_devices_page(server, folder / "displays-devices.png"))
    return written


def _devices_page(server: Server, path: Path) -> Path:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = chromium(playwright)
        context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 490})
        page = context.new_page()
        sign_in_first_time(page, server.url, server.output(), PASSWORD)
        page.goto("/devices")
        page.screenshot(path=str(path))
        browser.close()
    return path


def _save(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


if __name__ == "__main__":
    for made in make(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images")):
        size = made.stat().st_size
        print(f"{made} {size // 1024} KB")
        assert size < 150 * 1024, f"{made} is over 150 KB"
