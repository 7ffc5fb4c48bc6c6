"""Real ntfy and Gotify clients publish to a real `glimpze serve`, and its widget shows the message:
Apprise's ntfy:// and gotify:// plugins, the `gotify` and `ntfy-api` packages, and every curl
example of ntfy's own publishing docs (tests/ntfy_docs/publish_curl.sh) with the host changed."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apprise
import httpx
import pytest
from gotify import Gotify
from ntfy_api import Message, NtfyPublisher, Priority, ViewAction

from tests.server import UNLIMITED_PLAN, Server, free_port

EXAMPLES = Path(__file__).parent / "ntfy_docs" / "publish_curl.sh"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("ntfy-clients")
    ntfy_port = free_port()
    toml = f'{UNLIMITED_PLAN}\n[ntfy]\nlisten = "127.0.0.1:{ntfy_port}"\nauto_create = true\n'
    running = Server(root, toml)
    running.ntfy_port = ntfy_port  # type: ignore[attr-defined]
    running.start()
    try:
        yield running
    finally:
        running.kill()


def v1(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key()}"})


def new_feed(server: Server, name: str, topic: str | None = None) -> dict[str, Any]:
    body = {"name": name, "schema_type": "status", **({"topic": topic} if topic else {})}
    with v1(server) as client:
        response = client.post("/v1/feeds", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def widget(server: Server, feed: dict[str, Any]) -> dict[str, Any]:
    """What the feed's widget shows (its JSON, read with the read token)."""
    response = httpx.get(f"{server.url}/w/{feed['id']}.json", params={"token": feed["read_token"]})
    assert response.status_code == 200, response.text
    return dict(response.json())


def shown(server: Server, feed: dict[str, Any]) -> dict[str, Any]:
    document = widget(server, feed)
    return dict(document.get("event", document)["content"])


def test_apprise_ntfy_plugin_publishes_at_the_ntfy_listeners_root(server: Server) -> None:
    port = server.ntfy_port  # type: ignore[attr-defined]
    feed = new_feed(server, "Apprise ntfy", topic="apprise-ntfy")
    for url in (
        f"ntfy://glimpze:{feed['write_key']}@127.0.0.1:{port}/apprise-ntfy?priority=high",  # Basic auth
        f"ntfy://127.0.0.1:{port}/apprise-ntfy?auth=token&token={feed['write_key']}",  # Bearer
    ):
        notifier = apprise.Apprise()
        assert notifier.add(url), url
        assert notifier.notify(title="Backup", body=f"sent by {url[:12]}"), url

    content = shown(server, feed)
    assert content["title"] == "Backup" and content["message"] == "sent by ntfy://127.0"


def test_apprise_gotify_plugin_publishes_under_gotify(server: Server) -> None:
    feed = new_feed(server, "Apprise gotify")
    notifier = apprise.Apprise()
    assert notifier.add(f"gotify://127.0.0.1:{server.port}/gotify/{feed['write_key']}?priority=high")
    assert notifier.notify(title="Disk", body="Disk almost full")

    assert shown(server, feed) == {"title": "Disk", "status": "error", "message": "Disk almost full"}


def test_the_gotify_package_publishes_and_reads_its_message_back(server: Server) -> None:
    feed = new_feed(server, "Gotify client")
    with Gotify(base_url=f"{server.url}/gotify", app_token=feed["write_key"]) as client:
        message = client.create_message("Backup finished", title="Backups", priority=5)

    assert isinstance(message["id"], int) and message["title"] == "Backups" and message["priority"] == 5
    assert shown(server, feed) == {"title": "Backups", "status": "warning", "message": "Backup finished"}


def test_the_ntfy_api_package_publishes_with_headers_and_as_json(server: Server) -> None:
    feed = new_feed(server, "ntfy-api", topic="ntfy-api")
    publisher = NtfyPublisher(url=f"{server.url}/ntfy", bearer=feed["write_key"])
    try:
        sent = Message(
            topic="ntfy-api",
            message="Disk is full\nclean up",
            title="Disk",
            priority=Priority.urgent,
            tags=["rotating_light"],
            actions=[ViewAction(label="Open", url="https://example.com/disk")],
        )
        response = publisher.publish(sent)
        assert response.status_code == 200, response.text
        assert response.json()["event"] == "message"
        assert shown(server, feed) == {"title": "Disk", "status": "error", "message": "Disk is full\nclean up"}

        response = publisher.publish_json({"topic": "ntfy-api", "message": "All clear", "tags": ["white_check_mark"]})
        assert response.status_code == 200, response.text
        assert shown(server, feed) == {"title": "ntfy-api", "status": "success", "message": "All clear"}
    finally:
        publisher.close()


# ntfy's docs: each curl example, with `ntfy.sh` and `https://ntfy.example.com` changed to this
# server's /ntfy, and the admin API key added (as `Authorization: Bearer`, or in the example's own
# credentials). `[ntfy] auto_create` makes each topic a feed. What Glimpze does not offer is a 422
# naming the parameter (attachments to status feeds, e-mail, phone calls, scheduled delivery).
EXPECTED: list[tuple[int, str]] = [
    (200, "mytopic"),
    (200, "phil_alerts"),
    (422, "attach: "),  # Attach and Email
    *[(200, "controversial")] * 3,
    *[(200, "phil_alerts")] * 3,
    *[(200, "backups")] * 3,
    (200, "mytopic"),  # Markdown
    *[(422, "delay: ")] * 3,  # At, In, Delay
    (200, "mywebhook"),  # GET /trigger
    (200, "mywebhook"),  # GET /publish?message=…
    (200, "mytopic"),  # templating
    (422, "attach: "),  # the JSON publish names an attach URL
    *[(200, "myhome")] * 4,  # actions: header and JSON, view
    *[(200, "wifey")] * 2,  # broadcast: kept in metadata, no push button
    *[(200, "myhome")] * 2,  # http actions
    (200, "reddit_alerts"),
    (422, "attachment: "),  # curl -T flower.jpg to a status feed
    (422, "attach: "),
    (200, "tvshows"),
    (422, "email: "),
    (0, ""),  # ntfy's docs give this one no URL: curl itself refuses it
    (422, "email: "),
    (422, "call: "),
    *[(200, "mysecrets")] * 4,  # Basic, Bearer, Basic with the token as password, ?auth=
    *[(200, "mytopic")] * 4,  # Cache: no, Firebase: no
]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_every_curl_example_of_ntfys_publishing_docs(server: Server, tmp_path: Path) -> None:
    key = server.admin_key()
    base = f"{server.url}/ntfy"
    script = EXAMPLES.read_text()
    script = script.replace("https://ntfy.example.com", base).replace("ntfy.sh", base)
    script = script.replace("tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2", key).replace("testuser:fakepassword", f"testuser:{key}")
    auth = base64.urlsafe_b64encode(f"Basic {base64.b64encode(f'testuser:{key}'.encode()).decode()}".encode())
    script = script.replace("QmFzaWMgZEdWemRIVnpaWEk2Wm1GclpYQmhjM04zYjNKaw", auth.decode().rstrip("="))
    (tmp_path / "flower.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a flower")
    # Every call prints its status and answer; an example without credentials gets the key.
    wrapper = rf"""
curl() {{
  local has_url=0 has_auth=0
  for arg in "$@"; do
    case "$arg" in *"{base}"*) has_url=1;; esac
    case "$arg" in -u|Authorization:*|*[?\&]auth=*) has_auth=1;; esac
  done
  if [ $has_url = 0 ]; then echo "RESULT 0 no-url"; return; fi
  local extra=()
  if [ $has_auth = 0 ]; then extra=(-H "Authorization: Bearer {key}"); fi
  echo "RESULT $(command curl -sS -o answer.json -w '%{{http_code}}' "${{extra[@]}}" "$@") $(cat answer.json)"
}}
"""
    done = subprocess.run(
        ["bash", "-c", wrapper + script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    results = [line.split(" ", 2) for line in done.stdout.splitlines() if line.startswith("RESULT ")]

    assert len(results) == len(EXPECTED), done.stdout + done.stderr
    for (_, status, answer), (want, mark) in zip(results, EXPECTED):
        assert int(status) == want, (results.index([_, status, answer]), answer)
        if want == 200:
            assert re.search(rf'"topic":"{mark}"', answer) and '"event":"message"' in answer, answer
        elif want == 422:
            assert '"code":42201' in answer and mark in answer, answer
    with v1(server) as client:
        listed = client.get("/v1/feeds", params={"limit": 100}).json()["data"]
        feeds = {f["topic"]: f for f in listed if "topic" in f}  # feeds without a topic omit it
        for topic in {mark for want, mark in EXPECTED if want == 200}:
            events = client.get(f"/v1/feeds/{feeds[topic]['id']}/events").json()["data"]
            assert events and events[0]["metadata"]["source"]["protocol"] == "ntfy", topic
