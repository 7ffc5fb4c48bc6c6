"""Uploads to a real `glimpze serve`: seed 002's Python `requests` example, unchanged but for the
URL, and a 10 MB upload that must stream to disk rather than sit in the server's memory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests

from glimpze.feeds.images import WIDGET_PIXELS
from tests import imagefiles as img
from tests.server import UNLIMITED_PLAN, Server

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path)
    server.config.write_text(f'public_url = "{server.url}"\n' + UNLIMITED_PLAN)
    server.start()
    yield server
    server.kill()


def test_the_seed_requests_example_uploads_and_the_urls_serve_the_same_bytes(server: Server, tmp_path: Path) -> None:
    admin = {"Authorization": f"Bearer {server.admin_key()}"}
    feed = httpx.post(f"{server.url}/v1/feeds", json={"name": "Graphs", "schema_type": "custom"}, headers=admin).json()
    (tmp_path / "graph-small.png").write_bytes(img.widget("small", seed=1))
    (tmp_path / "graph-medium.png").write_bytes(img.widget("medium", seed=2))
    base = server.url

    # --- seed 002, "Example: Python Script Uploading a Generated Graph" (api.glance.app → base) ---
    feed_id = feed["id"]
    write_key = feed["write_key"]

    with open(tmp_path / "graph-small.png", "rb") as sm, open(tmp_path / "graph-medium.png", "rb") as md:
        response = requests.post(
            f"{base}/ingest/{feed_id}/upload",
            headers={"Authorization": f"Bearer {write_key}"},
            files={
                "small_image": ("graph-small.png", sm, "image/png"),
                "medium_image": ("graph-medium.png", md, "image/png"),
            },
            data={
                "widget_url": "https://grafana.acme.com/d/xyz",
                "intent": '{"update_widget":true,"send_push":false}',
                "metadata": '{"source":"morning-cron"}',
            },
        )
    print(response.json())
    # --- end of the seed's example ---

    assert response.status_code == 202
    answer = response.json()
    assert answer["feed_id"] == feed_id and answer["status"] == "accepted" and answer["widget_updated"] is True
    content = answer["content"]
    assert set(content) == {"small", "medium", "widget_url"}
    assert content["widget_url"] == "https://grafana.acme.com/d/xyz"
    for size, name in (("small", "graph-small.png"), ("medium", "graph-medium.png")):
        url = content[size]["image_url"]
        assert url.startswith(f"{base}/media/") and url.endswith(".png")
        served = requests.get(url)
        assert served.status_code == 200
        assert served.content == (tmp_path / name).read_bytes()
        assert served.headers["Content-Type"] == "image/png"
        assert served.headers["X-Content-Type-Options"] == "nosniff"
    event = httpx.get(f"{base}/v1/feeds/{feed_id}/widget", headers=admin).json()["event"]
    assert event["content"] == content and event["metadata"] == {"source": "morning-cron"}
    widget = requests.get(f"{base}/w/{feed_id}/small.png", params={"token": feed["read_token"]})
    assert widget.status_code == 200 and widget.content == (tmp_path / "graph-small.png").read_bytes()


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's peak RSS from /proc")
def test_a_large_upload_streams_to_disk(server: Server) -> None:
    admin = {"Authorization": f"Bearer {server.admin_key()}"}
    feed = httpx.post(f"{server.url}/v1/feeds", json={"name": "Big", "schema_type": "custom"}, headers=admin).json()
    upload = f"{server.url}/ingest/{feed['id']}/upload"
    auth = {"Authorization": f"Bearer {feed['write_key']}"}
    # Warm up: the first upload imports pyvips and grows the thread pool.
    assert httpx.post(
        upload, files={"small_image": ("s.png", img.widget("small"), "image/png")}, headers=auth
    ).is_success
    files = {
        f"{size}_image{dark}": img.noise_png(*WIDGET_PIXELS[size], fraction={"large": 0.55}.get(size, 1.0), seed=i)
        for i, (size, dark) in enumerate((s, d) for s in WIDGET_PIXELS for d in ("", "_dark"))
    }
    body = sum(len(data) for data in files.values())
    assert body > 7_000_000 and all(len(data) < 2 * 1024 * 1024 for data in files.values())
    before = peak_rss_kib(server.proc.pid)

    response = httpx.post(upload, files={k: (f"{k}.png", v, "image/png") for k, v in files.items()}, headers=auth)

    assert response.status_code == 202, response.text
    grew = (peak_rss_kib(server.proc.pid) - before) * 1024
    assert grew < body * 0.8, f"peak RSS grew {grew / 1e6:.1f} MB for a {body / 1e6:.1f} MB upload"
