"""Seed 002's Python `requests` upload example, unchanged but for the URL, against `glimpze serve`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests

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
