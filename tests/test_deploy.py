"""deploy/: the proxy snippets, the unit and the Dockerfile agree with the app they deploy.

The body limits in nginx.conf are the app's own, the streaming locations cover every
Server-Sent Events route of the OpenAPI document and wait longer than the app's heartbeat and
long-poll limits, the proxy's 413 has the app's error shape; the unit and the container stop
later than the app's shutdown limit, and the unit opens files enough for every connection.
"""

from __future__ import annotations

import json
import re

import pytest

from glimpze.app import API_MAX_BODY_BYTES
from glimpze.chat.streams import HEARTBEAT_SECONDS
from glimpze.config import HttpConfig
from glimpze.delivery.outbox import MAX_WAIT_SECONDS
from glimpze.feeds.schemas import EVENT_MAX_BYTES
from glimpze.feeds.uploads import UPLOAD_MAX_BYTES
from glimpze.ops.http_limits import RESERVED_FILES
from glimpze.ops.server import SHUTDOWN_LIMIT
from glimpze.web.openapi import Problem
from tests.conftest import Api
from tests.server import REPO

DEPLOY = REPO / "deploy"
UNITS = {"k": 1024, "m": 1024**2, "": 1}
SECONDS = {"s": 1, "m": 60, "h": 3600, "": 1}


def nginx_locations() -> dict[str, str]:
    """The server block's locations (their match → their body), and "server" → what is outside them."""
    text = (DEPLOY / "nginx.conf").read_text()
    server = text[text.index("listen 443") :]
    locations = dict(re.findall(r"\n    location ([^{]+?) \{\n(.*?)\n    \}", server, re.S))
    outside = re.sub(r"\n    location [^{]+\{.*?\n    \}", "", server, flags=re.S)
    return {**locations, "server": outside}


def directive(block: str, name: str) -> str | None:
    found = re.findall(rf"^\s*{name} ([^;]+);", block, re.M)
    assert len(found) <= 1, (name, found)
    return found[0] if found else None


def size(value: str | None) -> int:
    assert value is not None
    number, unit = re.fullmatch(r"(\d+)([km]?)", value).groups()  # type: ignore[union-attr]
    return int(number) * UNITS[unit]


def duration(value: str | None) -> int:
    assert value is not None
    number, unit = re.fullmatch(r"(\d+)([smh]?)", value).groups()  # type: ignore[union-attr]
    return int(number) * SECONDS[unit]


def location_for(locations: dict[str, str], path: str) -> str:
    """The location nginx picks for `path`: an exact match, else the first regex, else "/"."""
    for match, block in locations.items():
        if match == f"= {path}":
            return block
    for match, block in locations.items():
        if match.startswith("~ ") and re.search(match[2:], path):
            return block
    return locations["/"]


def test_nginx_body_limits_are_the_apps() -> None:
    locations = nginx_locations()
    assert size(directive(locations["server"], "client_max_body_size")) == API_MAX_BODY_BYTES
    event = location_for(locations, "/ingest/fd_x")
    assert size(directive(event, "client_max_body_size")) == EVENT_MAX_BYTES
    upload = location_for(locations, "/ingest/fd_x/upload")
    assert size(directive(upload, "client_max_body_size")) == UPLOAD_MAX_BYTES
    assert directive(upload, "proxy_request_buffering") == "off"  # streamed to the app as it arrives
    for path in ("/v1/feeds", "/widget/v1/sessions", "/w/fd_x/small.png"):
        assert directive(location_for(locations, path), "client_max_body_size") is None  # the server's 1 MiB


def test_the_proxies_413_has_the_apps_error_shape() -> None:
    locations = nginx_locations()
    assert directive(locations["server"], "error_page") == "413 = @payload_too_large"
    block = locations["@payload_too_large"]
    assert directive(block, "default_type") == "application/problem+json"
    body = json.loads(re.search(r"return 413 '(.*)';", block).group(1))  # type: ignore[union-attr]
    assert set(body) == set(Problem.__struct_fields__)
    assert body["code"] == "payload_too_large" and body["status"] == 413
    assert body["type"] == "urn:glimpze:error:payload_too_large"


@pytest.mark.anyio
async def test_every_event_stream_and_the_long_poll_pass_unbuffered(api: Api) -> None:
    spec = (await api.client.get("/schema/openapi.json")).json()
    streams = [
        re.sub(r"{[^}]+}", "x_1", path)
        for path, methods in spec["paths"].items()
        if "text/event-stream" in methods.get("get", {}).get("responses", {}).get("200", {}).get("content", {})
    ]
    assert streams, "the visitor's session stream is documented as text/event-stream"
    locations = nginx_locations()
    caddy = (DEPLOY / "Caddyfile").read_text()
    caddy_stream = re.search(r"@stream path_regexp stream (\S+)", caddy).group(1)  # type: ignore[union-attr]
    for path in streams:
        block = location_for(locations, path)
        assert directive(block, "proxy_buffering") == "off", path
        assert duration(directive(block, "proxy_read_timeout")) > 2 * HEARTBEAT_SECONDS, path
        assert re.search(caddy_stream, path), path
    poll = location_for(locations, "/v1/events")
    assert directive(poll, "proxy_buffering") == "off"
    assert duration(directive(poll, "proxy_read_timeout")) > MAX_WAIT_SECONDS
    assert "@poll path /v1/events" in caddy
    assert caddy.count("flush_interval -1") == 2


def test_caddy_leaves_body_limits_to_the_app() -> None:
    """Caddy 2.6 answers a body over `request_body max_size` with a bare 502 (checked by hand
    against a real Caddy); the app answers 413 problem+json at the same limits."""
    lines = [line.strip() for line in (DEPLOY / "Caddyfile").read_text().splitlines()]
    assert not [line for line in lines if line.startswith(("request_body", "max_size"))]


def forwarded_for_trusted(text: str) -> None:
    assert 'trusted_proxies = ["127.0.0.1"]' in text and 'host = "127.0.0.1"' in text


def test_the_proxies_say_how_glimpze_trusts_them() -> None:
    forwarded_for_trusted((DEPLOY / "nginx.conf").read_text())
    forwarded_for_trusted((DEPLOY / "Caddyfile").read_text())
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in (DEPLOY / "nginx.conf").read_text()


def test_the_unit_and_the_container_stop_after_the_apps_own_limit() -> None:
    unit = (DEPLOY / "glimpze.service").read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
    assert settings["ExecStart"].split()[1:2] == ["serve"]
    assert settings["KillSignal"] == "SIGTERM" and int(settings["TimeoutStopSec"]) > SHUTDOWN_LIMIT
    assert settings["User"] != "root" and settings["StateDirectoryMode"] == "0700"
    for hardening in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes"):
        assert hardening in unit

    docker = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER glimpze$", docker, re.M)
    assert 'VOLUME ["/data"]' in docker and "GLIMPZE_DATA_DIR=/data" in docker
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", docker, re.M)
    assert "STOPSIGNAL SIGTERM" in docker
    ignored = [line for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines() if line[:1] not in "#"]
    assert ignored[:4] == ["*", "!pyproject.toml", "!README.md", "!glimpze/"]  # no data/, .venv or .git


def test_the_unit_opens_files_enough_for_every_connection() -> None:
    """systemd's default LimitNOFILE (1,024) is fewer files than the default connection cap needs."""
    settings = dict(re.findall(r"^(\w+)=(.*)$", (DEPLOY / "glimpze.service").read_text(), re.M))
    assert "LimitNOFILE" in settings, "deploy/glimpze.service sets LimitNOFILE"
    assert int(settings["LimitNOFILE"]) >= HttpConfig().max_connections + RESERVED_FILES
