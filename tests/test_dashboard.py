"""The dashboard over HTTP: sign-in and setup, sessions, CSRF, security headers, and every page's
forms acting through the same services as the API."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from litestar.routes import HTTPRoute

from glimpze.clock import FakeClock
from glimpze.config import Config, load
from glimpze.web.dashboard.snippets import example_event, snippets
from glimpze.web.dashboard.web import PUBLIC
from tests.conftest import Api, SseReader, running
from tests.dashboard import PASSWORD, Dash, audit, csrf_of, setup_token
from tests.pg import stored_bytes
from tests.receiver import Receiver

pytestmark = pytest.mark.anyio

API_PREFIXES = ("/v1", "/ingest", "/widget", "/w/", "/media", "/healthz", "/schema", "/a/", "/api/")


@pytest.fixture
async def dash(api: Api) -> AsyncIterator[Dash]:
    """A browser-like client already signed in (the password set through the first-start link)."""
    client = Dash(api.client)
    await client.set_up(api.announced)
    yield client


def dashboard_posts(app: Any) -> list[str]:
    """Every dashboard POST route, path parameters filled in."""
    paths = []
    for route in app.routes:
        if isinstance(route, HTTPRoute) and "POST" in route.methods and not route.path.startswith(API_PREFIXES):
            paths.append(re.sub(r"\{[^}]+\}", "x", route.path))
    return sorted(set(paths))


# Sign-in, setup, sessions


async def test_login_renders_before_setup_and_says_where_the_link_was_printed(api: Api) -> None:
    announced = "\n".join(api.announced)
    assert "/setup/" in announced and "reset-password" in announced
    response = await api.client.get("/login")
    assert response.status_code == 200
    assert "setup link" in response.text and "glimpze serve" in response.text
    assert "glimpze admin reset-password" in response.text
    assert 'name="password"' not in response.text  # nothing to sign in with yet
    response = await api.client.get("/")
    assert response.status_code == 303 and response.headers["location"] == "/login"


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/feeds",
        "/feeds?new=1",
        "/feeds/fd_x",
        "/feeds/fd_x/widget/small.png",
        "/webhooks",
        "/webhooks/wh_x",
        "/conversations",
        "/conversations/ses_x",
        "/leads",
        "/settings",
        "/approvals",
        "/approvals/evt_x",
        "/settings/push",
    ],
)
async def test_pages_without_a_session_redirect_to_sign_in(api: Api, path: str) -> None:
    response = await api.client.get(path)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location == "/login" if path == "/" else location.startswith("/login?next=%2F")


async def test_sign_in_returns_to_the_page_asked_for(api: Api) -> None:
    dash = Dash(api.client)
    await dash.set_up(api.announced)
    await dash.submit("/logout", on="/settings")
    response = await api.client.get("/settings")
    assert response.headers["location"] == "/login?next=%2Fsettings"
    await dash.open(response.headers["location"])
    response = await dash.submit("/login", {"password": PASSWORD, "next": "/settings"})
    assert response.status_code == 303 and response.headers["location"] == "/settings"
    # Never another site, whatever `next` says.
    await dash.submit("/logout", on="/settings")
    await dash.open("/login")
    response = await dash.submit("/login", {"password": PASSWORD, "next": "//evil.example/x"})
    assert response.headers["location"] == "/"


async def test_the_live_stream_without_a_session_is_401(api: Api) -> None:
    assert (await api.client.get("/live")).status_code == 401


async def test_only_pages_behind_the_session_are_given_the_viewer(api: Api) -> None:
    """`viewer` is injected after `before_request` has turned away every request without a session;
    a public route (sign-in, setup, the PWA files) never asks for it, so it never runs without one."""
    handlers = [
        handler
        for route in api.app.routes
        if isinstance(route, HTTPRoute) and not route.path.startswith(API_PREFIXES)
        for handler in route.route_handlers
    ]
    asking = {h.handler_name for h in handlers if "viewer" in h.parsed_fn_signature.parameters}
    public = {h.handler_name for h in handlers if h.opt.get(PUBLIC)}
    assert "feed_page" in asking and "login" in public
    assert not asking & public


async def test_setup_sets_the_password_once_and_signs_in(api: Api, config: Config) -> None:
    dash = Dash(api.client)
    token = setup_token(api.announced)
    await dash.open(f"/setup/{token}")
    short = await dash.submit(f"/setup/{token}", {"password": "short", "confirm": "short"})
    assert short.status_code == 422 and "at least 10 characters" in short.text
    mismatch = await dash.submit(f"/setup/{token}", {"password": PASSWORD, "confirm": PASSWORD + "x"})
    assert mismatch.status_code == 422 and "does not match" in mismatch.text
    response = await dash.submit(f"/setup/{token}", {"password": PASSWORD, "confirm": PASSWORD})
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("glimpze_session=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # public_url is http
    assert (await api.client.get("/")).status_code == 200
    # The link is used up, and the password is stored as an argon2 hash only.
    again = await api.client.get(f"/setup/{token}")
    assert again.status_code == 404 and "does not work" in again.text
    stored = stored_bytes(config.db_path)
    assert PASSWORD.encode() not in stored and b"$argon2id$" in stored


async def test_sign_in_with_the_password_and_sign_out(api: Api) -> None:
    dash = Dash(api.client)
    await dash.set_up(api.announced)
    await dash.submit("/logout", on="/")
    assert (await api.client.get("/")).status_code == 303
    wrong = await dash.sign_in("not the password")
    assert wrong.status_code == 401 and "not right" in wrong.text
    right = await dash.sign_in()
    assert right.status_code == 303 and right.headers["location"] == "/"
    assert (await api.client.get("/")).status_code == 200
    # Signing in again while signed in goes home.
    assert (await api.client.get("/login")).headers["location"] == "/"


async def test_sign_in_attempts_are_rate_limited(api: Api, clock: FakeClock) -> None:
    dash = Dash(api.client)
    await dash.set_up(api.announced)
    await dash.submit("/logout", on="/")
    for _ in range(5):
        assert (await dash.sign_in("wrong password!")).status_code == 401
    blocked = await dash.sign_in()  # even the right password waits
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    assert "retry in" in blocked.text
    clock.advance(61)
    assert (await dash.sign_in()).status_code == 303


async def test_wrong_setup_tokens_are_rate_limited(api: Api) -> None:
    for i in range(5):
        assert (await api.client.get(f"/setup/wrong-{i}")).status_code == 404
    assert (await api.client.get(f"/setup/{setup_token(api.announced)}")).status_code == 429


async def test_a_new_setup_link_at_every_start_until_a_password_exists(config: Config, clock: FakeClock) -> None:
    async with running(config, clock) as first:
        old = setup_token(first.announced)
    async with running(config, clock, key=first.key) as second:
        new = setup_token(second.announced)
        assert new != old
        assert (await second.client.get(f"/setup/{old}")).status_code == 404  # only the newest works
        dash = Dash(second.client)
        await dash.set_up(second.announced)
    async with running(config, clock, key=first.key) as third:
        assert not any("/setup/" in text for text in third.announced)
        login = await third.client.get("/login")
        assert login.status_code == 200 and 'name="password"' in login.text


async def test_sessions_expire_after_a_month_without_use(api: Api, clock: FakeClock) -> None:
    dash = Dash(api.client)
    await dash.set_up(api.announced)
    clock.advance(29 * 86400)
    assert (await api.client.get("/")).status_code == 200  # used: the month starts again
    clock.advance(29 * 86400)
    assert (await api.client.get("/")).status_code == 200
    clock.advance(31 * 86400)
    assert (await api.client.get("/")).status_code == 303


async def test_cookies_are_secure_when_public_url_is_https(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "glimpze.toml"
    path.write_text('public_url = "https://glimpze.example.com"\n')
    config = load(path, env={}, overrides={"data_dir": str(tmp_path / "data")})
    async with running(config, clock) as api:
        assert "https://glimpze.example.com/setup/" in "\n".join(api.announced)
        login = await api.client.get("/login")
        assert login.headers["set-cookie"].startswith("__Host-glimpze_csrf=")
        assert "Secure" in login.headers["set-cookie"]
        token = setup_token(api.announced)
        page = await api.client.get(f"/setup/{token}")
        api.client.cookies.set("__Host-glimpze_csrf", csrf_of(page.text))  # httpx keeps Secure cookies off http
        response = await api.client.post(
            f"/setup/{token}", data={"csrf": csrf_of(page.text), "password": PASSWORD, "confirm": PASSWORD}
        )
        assert response.status_code == 303
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("__Host-glimpze_session=") and "Secure" in cookie and "HttpOnly" in cookie
        assert "strict-transport-security" not in response.headers  # only with [tls] hsts = true


# CSRF


async def test_every_dashboard_form_post_without_the_csrf_token_is_refused(api: Api, dash: Dash) -> None:
    posts = dashboard_posts(api.app)
    assert {"/login", "/logout", "/setup/x", "/feeds", "/webhooks", "/settings/keys"} <= set(posts)
    for path in posts:
        for data in ({}, {"csrf": "forged"}):
            response = await api.client.post(path, data={**data, "password": PASSWORD, "name": "x"})
            assert response.status_code == 403, f"POST {path} {data}: {response.status_code}"
            assert "This form has expired" in response.text
    # A valid token of another browser (the pre-session cookie's) does not pass either.
    assert (await api.client.get("/feeds")).status_code == 200  # still signed in: nothing happened


async def test_login_checks_csrf_before_the_password(api: Api) -> None:
    dash = Dash(api.client)
    await dash.set_up(api.announced)
    await dash.submit("/logout", on="/")
    response = await api.client.post("/login", data={"password": PASSWORD})
    assert response.status_code == 403 and "set-cookie" not in response.headers
    cross = await api.client.post(
        "/login",
        data={"password": PASSWORD, "csrf": csrf_of((await api.client.get("/login")).text)},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403


async def test_csrf_never_applies_to_the_api_ingest_and_widget_routes(api: Api, dash: Dash) -> None:
    # The browser's session cookie rides along; Bearer credentials are what counts there.
    response = await api.post("/v1/feeds", json={"name": "No CSRF here", "schema_type": "summary"})
    assert response.status_code == 201
    feed = response.json()
    body = {"schema_type": "summary", "content": {"title": "t", "primary_value": "1"}}
    assert (await api.ingest(feed, body)).status_code == 202
    assert (await api.client.post("/widget/v1/sessions")).status_code == 401  # a widget token, not a CSRF 403


# Headers, markup, static files


async def test_security_headers_on_pages_errors_and_static_files(api: Api, dash: Dash) -> None:
    for path, status in [
        ("/", 200),
        ("/login", 303),
        ("/feeds/fd_missing", 404),
        ("/static/app.css", 200),
        ("/manifest.webmanifest", 200),
        ("/sw.js", 200),
    ]:
        response = await api.client.get(path)
        assert response.status_code == status, path
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        assert "strict-transport-security" not in response.headers
    page = await api.client.get("/")
    assert page.headers["cache-control"] == "no-store"
    missing = await api.client.get("/feeds/fd_missing")
    assert missing.headers["content-type"].startswith("text/html") and "Not found" in missing.text
    # The API keeps its own shape: problem+json, no dashboard headers.
    api_missing = await api.get("/v1/feeds/fd_missing")
    assert api_missing.headers["content-type"] == "application/problem+json"
    assert "content-security-policy" not in api_missing.headers


async def test_pwa_files_need_no_sign_in(api: Api) -> None:
    manifest = await api.client.get("/manifest.webmanifest")
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    data = manifest.json()
    assert data["display"] == "standalone" and data["start_url"] == "/" and data["scope"] == "/"
    sizes = {icon["sizes"] for icon in data["icons"]}
    assert {"192x192", "512x512"} <= sizes
    assert any(icon["purpose"] == "maskable" for icon in data["icons"])
    for icon in data["icons"]:
        response = await api.client.get(icon["src"])
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        width, height = _png_size(response.content)
        assert f"{width}x{height}" == icon["sizes"], icon["src"]
    worker = await api.client.get("/sw.js")
    assert worker.headers["content-type"].startswith("text/javascript")
    assert worker.headers["cache-control"] == "no-cache"
    assert "__VERSION__" not in worker.text and "notificationclick" in worker.text
    login = (await api.client.get("/login")).text
    assert '<link rel="manifest" href="/manifest.webmanifest">' in login
    assert re.search(r'<script src="/static/app\.js\?v=\w+" defer></script>', login)
    script = await api.client.get("/static/app.js")
    assert 'register("/sw.js"' in script.text
    assert "max-age=" in script.headers["cache-control"]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


async def test_every_page_has_no_inline_script_or_style_and_labels_every_field(api: Api, dash: Dash) -> None:
    hostile = '<script>alert(1)</script><img src=x onerror="alert(2)" style="x">'  # escaped everywhere
    feed = await api.feed("summary", name=hostile)
    await api.ingest(feed, {"schema_type": "summary", "content": {"title": hostile, "primary_value": hostile}})
    hook = await api.post("/v1/webhooks", json={"url": "https://example.com/hook", "events": ["*"]})
    session = await api.post("/v1/sessions", json={"visitor": {"id": "v1", "name": hostile[:100]}})
    await api.post(f"/v1/sessions/{session.json()['id']}/messages", json={"role": "visitor", "text": hostile})
    await api.post(f"/v1/sessions/{session.json()['id']}/notes", json={"text": hostile})
    await api.post("/v1/leads", json={"fields": {"email": "ada@example.com", "plan": hostile}})
    approvals = await api.feed("approval", name=hostile)
    pending = {"schema_type": "approval", "content": {"description": hostile}, "metadata": {"x": hostile}}
    approval_id = (await api.ingest(approvals, pending)).json()["id"]
    decided_id = (await api.ingest(approvals, pending)).json()["id"]
    await api.post(f"/v1/approvals/{decided_id}/respond", json={"action_type": "approve"})
    await api.put("/v1/settings/quiet-hours", json={"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"})
    pages = [
        "/",
        "/feeds",
        "/feeds?new=1",
        f"/feeds/{feed['id']}",
        "/webhooks",
        "/webhooks?new=1",
        f"/webhooks/{hook.json()['id']}",
        "/conversations",
        f"/conversations/{session.json()['id']}",
        "/leads",
        "/settings",
        "/approvals",
        f"/approvals/{approval_id}",
        f"/approvals/{decided_id}",
        f"/feeds/{approvals['id']}",
        "/settings/push",
    ]
    for path in pages:
        html = (await dash.open(path)).text
        assert audit(html) == [], path
        assert "<script>alert" not in html
    await dash.submit("/logout", on="/")
    assert audit((await api.client.get("/login")).text) == []


# Feeds


async def test_create_a_feed_in_the_dialog_and_see_its_write_key_once(api: Api, dash: Dash) -> None:
    page = await dash.open("/feeds?new=1")
    assert '<dialog id="new-feed"' in page.text and "open data-modal" in page.text
    response = await dash.submit("/feeds", {"name": "Daily revenue", "schema_type": "summary", "plan": "free"})
    feed_page = await dash.follow(response)
    key = re.search(r'id="write-key"[^>]*>(gzw_\w+)<', feed_page.text)
    assert key, feed_page.text
    feed_id = feed_page.url.path.rsplit("/", 1)[1]
    assert f"http://localhost:8080/ingest/{feed_id}" in feed_page.text
    # The snippets use the real key: this is the body they send, with it.
    assert f"Bearer {key.group(1)}" in feed_page.text and "genericCredentialType" in feed_page.text
    event = {"schema_type": "summary", "content": {"title": "Daily revenue", "primary_value": "$5"}}
    assert (await api.ingest({"id": feed_id, "write_key": key.group(1)}, event)).status_code == 202
    again = await dash.open(f"/feeds/{feed_id}")
    assert key.group(1) not in again.text and "YOUR_WRITE_KEY" in again.text
    assert "$5" in again.text  # the event log


async def test_create_feed_errors_reopen_the_dialog_with_the_values(api: Api, dash: Dash) -> None:
    await dash.open("/feeds")
    empty = await dash.submit("/feeds", {"name": " ", "schema_type": "status", "plan": "free"})
    assert empty.status_code == 422 and "open data-modal" in empty.text
    assert "must be 1 to 100 characters" in empty.text and 'value="status" checked' in empty.text
    custom = await dash.submit("/feeds", {"name": "Chart", "schema_type": "custom", "plan": "free"})
    assert custom.status_code == 403 and "does not include custom" in custom.text
    assert 'value="Chart"' in custom.text
    odd = await dash.submit("/feeds", {"name": "X", "schema_type": "gauge", "plan": "free"})
    assert odd.status_code == 422
    assert (await api.get("/v1/feeds")).json()["data"] == []


async def test_feed_page_log_usage_links_and_actions(api: Api, dash: Dash, clock: FakeClock) -> None:
    feed = await api.feed("counter", name="Signups")
    for count in range(8):  # the free plan takes 6 a minute
        await api.ingest(feed, {"schema_type": "counter", "content": {"title": "Signups", "count": count}})
    page = await dash.open(f"/feeds/{feed['id']}")
    assert page.text.count('is-throttled"') == 2
    assert "6 of 6 events" in page.text  # this minute's usage
    assert f"/w/{feed['id']}.json?token=gzr_" in page.text and f"/w/{feed['id']}/large.png?token=gzr_" in page.text
    throttled = await dash.open(f"/feeds/{feed['id']}?status=throttled")
    assert throttled.text.count("data-event=") == 2

    response = await dash.submit(f"/feeds/{feed['id']}/rotate-key")
    rotated = await dash.follow(response)
    new_key = re.search(r'id="write-key"[^>]*>(gzw_\w+)<', rotated.text).group(1)  # type: ignore[union-attr]
    assert new_key != feed["write_key"] and "New write key" in rotated.text
    clock.advance(60)
    body = {"schema_type": "counter", "content": {"title": "Signups", "count": 9}}
    assert (await api.ingest(feed, body)).status_code == 401
    assert (await api.ingest({**feed, "write_key": new_key}, body)).status_code == 202

    old_token = (await api.get(f"/v1/feeds/{feed['id']}")).json()["read_token"]
    await dash.follow(await dash.submit(f"/feeds/{feed['id']}/rotate-read-token"))
    assert (await api.get(f"/v1/feeds/{feed['id']}")).json()["read_token"] != old_token

    saved = await dash.follow(await dash.submit(f"/feeds/{feed['id']}", {"name": "Sign-ups", "plan": "pro"}))
    assert "Saved “Sign-ups” (plan pro)" in saved.text
    bad = await dash.follow(await dash.submit(f"/feeds/{feed['id']}", {"name": "Sign-ups", "plan": "gold"}))
    assert "no plan named" in bad.text

    tested = await dash.follow(await dash.submit(f"/feeds/{feed['id']}/test-event"))
    assert "Sent a test event" in tested.text
    widget = (await api.get(f"/v1/feeds/{feed['id']}/widget")).json()
    assert widget["event"]["content"]["title"] == "Sign-ups" and widget["event"]["content"]["count"] == 127

    listing = await dash.follow(await dash.submit(f"/feeds/{feed['id']}/delete"))
    assert "Deleted the feed" in listing.text
    assert (await api.get(f"/v1/feeds/{feed['id']}")).status_code == 404


async def test_home_tiles_and_the_feed_pages_pictures(api: Api, dash: Dash) -> None:
    empty = await dash.open("/")
    assert "No widgets yet" in empty.text
    feed = await api.feed("status", name="API")
    body = {"schema_type": "status", "content": {"title": "API", "status": "error", "message": "Down"}}
    event = (await api.ingest(feed, body)).json()
    page = await dash.open("/")
    tile = re.search(rf'<li class="([^"]*)"\s+id="tile-{feed["id"]}".*?</li>', page.text, re.S)
    assert tile is not None and "tile-small" in tile.group(1) and "tile-state-error" in tile.group(1)
    assert f'data-event-id="{event["id"]}"' in tile.group(0) and f'href="/feeds/{feed["id"]}"' in tile.group(0)
    assert "<svg" in tile.group(0) and "Error" in tile.group(0) and "Down" in tile.group(0)  # colour, icon and word
    assert 'data-live="/live"' in page.text
    feed_page = await dash.open(f"/feeds/{feed['id']}")  # the three sizes moved to the feed page
    for size in ("small", "medium", "large"):
        assert f"/feeds/{feed['id']}/widget/{size}.png?v={event['id']}&amp;theme=dark" in feed_page.text
    assert 'alt="API widget, small: API: error, Down"' in feed_page.text
    picture = await api.client.get(f"/feeds/{feed['id']}/widget/medium.png?theme=dark")
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    assert _png_size(picture.content) == (1014, 474)
    cached = await api.client.get(
        f"/feeds/{feed['id']}/widget/medium.png?theme=dark", headers={"If-None-Match": picture.headers["etag"]}
    )
    assert cached.status_code == 304
    assert (await api.client.get(f"/feeds/{feed['id']}/widget/huge.png")).status_code == 404

    custom = await api.feed("custom", plan="pro", name="Chart")
    content = {"medium": {"image_url": "https://cdn.example.com/m.png"}, "widget_url": "https://bi.example.com/d"}
    await api.ingest(custom, {"schema_type": "custom", "content": content})
    page = await dash.open(f"/feeds/{custom['id']}")
    assert 'href="https://bi.example.com/d" target="_blank" rel="noopener noreferrer"' in page.text
    hosted = await api.client.get(f"/feeds/{custom['id']}/widget/medium.png")
    assert hosted.status_code == 302 and hosted.headers["location"] == "https://cdn.example.com/m.png"


# Webhooks


async def test_webhooks_add_test_log_replay_rotate_and_delete(config: Config, clock: FakeClock) -> None:
    config.webhooks.allow_targets = ["127.0.0.1"]
    with Receiver() as receiver:
        async with running(config, clock) as api:
            await api.glimpze.dispatcher.stop_runner()
            dash = Dash(api.client)
            await dash.set_up(api.announced)
            await dash.open("/webhooks?new=1")
            bad = await dash.submit("/webhooks", {"url": "ftp://x", "events": ["feed.event"], "active": "on"})
            assert bad.status_code == 422 and "open data-modal" in bad.text and "ftp://x" in bad.text
            bad_headers = await dash.submit(
                "/webhooks", {"url": receiver.url, "events": ["*"], "headers": "no colon here", "active": "on"}
            )
            assert bad_headers.status_code == 422 and "line 1" in bad_headers.text
            response = await dash.submit(
                "/webhooks",
                {
                    "url": receiver.url,
                    "description": "n8n",
                    "events": ["feed.event", "webhook.test"],
                    "headers": "X-Token: abc\n\nX-Env: test",
                    "active": "on",
                },
            )
            page = await dash.follow(response)
            assert "Signing secret" in page.text and re.search(r">whsec_[^<]+<", page.text)
            hook_id = page.url.path.rsplit("/", 1)[1]
            hook = (await api.get(f"/v1/webhooks/{hook_id}")).json()
            assert hook["events"] == ["feed.event", "webhook.test"]
            assert hook["headers"] == {"X-Token": "abc", "X-Env": "test"}

            await dash.follow(await dash.submit(f"/webhooks/{hook_id}/test"))
            await api.glimpze.dispatcher.deliver_due(clock.now())
            assert receiver.requests[-1].headers["x-token"] == "abc"
            page = await dash.open(f"/webhooks/{hook_id}")
            row = re.search(r'<tr data-delivery="(dlv_\w+)" data-status="delivered">.*?</tr>', page.text, re.S)
            assert row, page.text
            assert "webhook.test" in row.group(0) and ">200<" in row.group(0) and " ms<" in row.group(0)

            replay = await dash.follow(await dash.submit(f"/deliveries/{row.group(1)}/replay"))
            assert f"Queued delivery {row.group(1)} again" in replay.text
            await api.glimpze.dispatcher.deliver_due(clock.now())
            assert len(receiver.requests) == 2
            receiver.script([])
            receiver.default.status = 500
            await dash.submit(f"/webhooks/{hook_id}/test")
            await api.glimpze.dispatcher.deliver_due(clock.now())
            failed = await dash.open(f"/webhooks/{hook_id}?status=failed")
            assert failed.text.count('data-status="failed"') == 1 and ">500<" in failed.text
            receiver.default.status = 200
            queued = await dash.follow(await dash.submit(f"/webhooks/{hook_id}/replay", {"status": "failed"}))
            assert "Queued 1 delivery again" in queued.text

            secret_before = (await api.get(f"/v1/webhooks/{hook_id}/secret")).json()["secret"]
            rotated = await dash.follow(await dash.submit(f"/webhooks/{hook_id}/rotate-secret"))
            secret_after = (await api.get(f"/v1/webhooks/{hook_id}/secret")).json()
            assert secret_after["secret"] != secret_before and secret_after["previous_secret"] == secret_before
            assert secret_after["secret"] in rotated.text

            edited = await dash.follow(
                await dash.submit(f"/webhooks/{hook_id}", {"url": receiver.url, "events": ["*"], "headers": ""})
            )
            assert "Saved the webhook" in edited.text
            hook = (await api.get(f"/v1/webhooks/{hook_id}")).json()
            assert hook["events"] == ["*"] and hook["headers"] == {} and hook["active"] is False
            inactive = await dash.follow(await dash.submit(f"/webhooks/{hook_id}/test"))
            assert "inactive" in inactive.text

            gone = await dash.follow(await dash.submit(f"/webhooks/{hook_id}/delete"))
            assert "Deleted the webhook" in gone.text
            assert (await api.get(f"/v1/webhooks/{hook_id}")).status_code == 404


# Conversations and leads


async def test_conversations_notes_replies_handoffs_and_close(api: Api, dash: Dash) -> None:
    session = (
        await api.post("/v1/sessions", json={"visitor": {"id": "v1", "name": "Ada", "email": "ada@example.com"}})
    ).json()
    await api.post(f"/v1/sessions/{session['id']}/messages", json={"role": "visitor", "text": "Do you ship to Oslo?"})
    listing = await dash.open("/conversations")
    assert f"/conversations/{session['id']}" in listing.text and "Ada" in listing.text
    assert "Ada" not in (await dash.open("/conversations?status=closed")).text.split("<main", 1)[1]
    sid = session["id"]
    await dash.open(f"/conversations/{sid}")
    await dash.follow(await dash.submit(f"/conversations/{sid}/notes", {"text": "VIP customer"}))
    await dash.follow(await dash.submit(f"/conversations/{sid}/reply", {"text": "Yes, we do!", "author": "Bo"}))
    handed = await dash.follow(
        await dash.submit(f"/conversations/{sid}/handoff", {"to_team": "sales", "reason": "Wants a quote"})
    )
    assert "Do you ship to Oslo?" in handed.text and "Yes, we do!" in handed.text and "VIP customer" in handed.text
    assert "Wants a quote" in handed.text
    messages = (await api.get(f"/v1/sessions/{sid}/messages")).json()["data"]
    assert [(m["role"], m["author"]) for m in messages] == [("visitor", None), ("agent", "Bo")]
    notes = (await api.get(f"/v1/sessions/{sid}/notes")).json()["data"]
    assert notes[0]["author"] == "dashboard"
    assert (await api.get(f"/v1/sessions/{sid}")).json()["team"] == "sales"
    empty = await dash.follow(await dash.submit(f"/conversations/{sid}/notes", {"text": ""}))
    assert "notice-error" in empty.text
    pending = await dash.follow(await dash.submit(f"/conversations/{sid}/status", {"status": "pending"}))
    assert "pending now" in pending.text
    closed = await dash.follow(await dash.submit(f"/conversations/{sid}/close", {"resolution": "Quoted"}))
    assert "Closed the conversation" in closed.text and "Reopen" in closed.text
    refused = await dash.follow(await dash.submit(f"/conversations/{sid}/reply", {"text": "late"}))
    assert "notice-error" in refused.text and "closed" in refused.text
    reopened = await dash.follow(await dash.submit(f"/conversations/{sid}/status", {"status": "open"}))
    assert (await api.get(f"/v1/sessions/{sid}")).json()["status"] == "open" and "open now" in reopened.text


async def test_leads_list(api: Api, dash: Dash) -> None:
    assert "No leads yet" in (await dash.open("/leads")).text
    await api.post("/v1/leads", json={"fields": {"name": "Ada", "email": "ada@example.com", "budget": 5000}})
    page = await dash.open("/leads")
    assert "ada@example.com" in page.text and '<th scope="col">budget</th>' in page.text and "5000" in page.text


# Settings


async def test_api_keys_create_once_rotate_and_revoke(api: Api, dash: Dash) -> None:
    await dash.open("/settings")
    created = await dash.follow(await dash.submit("/settings/keys", {"name": "n8n"}))
    key = re.search(r">(gzp_\w+)<", created.text).group(1)  # type: ignore[union-attr]
    assert (await api.client.get("/v1/feeds", headers={"Authorization": f"Bearer {key}"})).status_code == 200
    again = await dash.open("/settings")
    assert key not in again.text and key[:12] in again.text  # the prefix only, from now on
    key_id = re.search(r'data-key="(key_\w+)">\s*<td>n8n', again.text).group(1)  # type: ignore[union-attr]
    rotated = await dash.follow(await dash.submit(f"/settings/keys/{key_id}/rotate"))
    new_key = re.search(r">(gzp_\w+)<", rotated.text).group(1)  # type: ignore[union-attr]
    assert new_key != key and "24 hours" in rotated.text
    await dash.follow(await dash.submit(f"/settings/keys/{key_id}/revoke"))
    assert (await api.client.get("/v1/feeds", headers={"Authorization": f"Bearer {new_key}"})).status_code == 401
    admin_id = (await api.get("/v1/keys")).json()["data"][0]["id"]
    last = await dash.follow(await dash.submit(f"/settings/keys/{admin_id}/revoke"))
    assert "last API key" in last.text


async def test_widget_origins(api: Api, dash: Dash) -> None:
    await dash.open("/settings")
    saved = await dash.follow(
        await dash.submit(
            "/settings/widget-origins", {"origins": "https://Shop.example.com\n\nhttps://b.example.com:8443"}
        )
    )
    assert "Saved 2 widget origins" in saved.text
    origins = (await api.get("/v1/settings/widget-origins")).json()["origins"]
    assert origins == ["https://b.example.com:8443", "https://shop.example.com"]
    bad = await dash.follow(await dash.submit("/settings/widget-origins", {"origins": "shop.example.com/path"}))
    assert "is not an origin" in bad.text


async def test_change_password_signs_other_browsers_out(api: Api, dash: Dash) -> None:
    other = Dash(httpx.AsyncClient(transport=api.client._transport, base_url=str(api.client.base_url)))
    async with other.client:
        assert (await other.sign_in()).status_code == 303
        await dash.open("/settings")
        wrong = await dash.follow(
            await dash.submit("/settings/password", {"current": "nope", "password": "x" * 12, "confirm": "x" * 12})
        )
        assert "not changed" in wrong.text and "current password is not right" in wrong.text
        response = await dash.submit(
            "/settings/password", {"current": PASSWORD, "password": "a new passphrase", "confirm": "a new passphrase"}
        )
        changed = await dash.follow(response)
        assert "Changed the password" in changed.text
        assert (await other.client.get("/")).status_code == 303
        assert (await other.sign_in(PASSWORD)).status_code == 401
        assert (await other.sign_in("a new passphrase")).status_code == 303
        await dash.submit("/settings/sign-out-everywhere", on="/settings")
        assert (await other.client.get("/")).status_code == 303
        assert (await api.client.get("/")).status_code == 303


# Live updates and snippets, against the app served on a real port


async def test_the_live_stream_tells_what_changed_and_ends_at_shutdown(live: Api) -> None:
    dash = Dash(live.client)
    await dash.set_up(live.announced)
    feed = await live.feed("summary", name="Revenue")
    page = await dash.open("/")
    assert 'data-live="/live"' in page.text
    body = {"schema_type": "summary", "content": {"title": "Revenue", "primary_value": "$1"}}
    async with live.client.stream("GET", "/live") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = SseReader(response)
        ready = await reader.next(timeout=5)  # subscribed: what changes from now on is told
        assert ready is not None and ready.event == "ready"
        silent = (await live.ingest(feed, {**body, "intent": {"update_widget": False}})).json()
        message = await reader.next(timeout=5)
        assert message is not None and message.event == "change"
        assert message.json() == {"kind": "event", "id": silent["id"], "of": feed["id"]}  # ids only, no data
        # The outgoing feed.event is told too (webhook pages redraw on it); the tile is not: it did not change.
        outgoing = await reader.next(timeout=5)
        assert outgoing is not None and outgoing.json()["kind"] == "outgoing"
        event = (await live.ingest(feed, body)).json()
        heard = [(await reader.next(timeout=5)).json() for _ in range(3)]  # type: ignore[union-attr]
        assert {"kind": "event", "id": event["id"], "of": feed["id"]} in heard
        assert {"kind": "tile", "id": feed["id"]} in heard
        live.app.state.server.should_exit = True
        with anyio.fail_after(5):
            while await reader.next(timeout=5, comments=True) is not None:
                pass


@pytest.mark.parametrize("schema", ["summary", "status", "counter", "approval", "custom"])
async def test_snippets_run_as_written(live: Api, schema: str) -> None:
    feed = await live.feed(schema, plan="pro", name="It's live")  # a quote in the name, for the shell
    base = str(live.client.base_url).rstrip("/")
    url = f"{base}/ingest/{feed['id']}"
    made = snippets(schema, feed["name"], url, base, feed["write_key"])
    runs = [[sys.executable, "-c", made.python]]
    if shutil.which("curl"):
        runs.append(["bash", "-c", made.curl + " --silent --show-error --fail"])
    for argv in runs:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, (argv[0], out, err)
        assert b'"status":"accepted"' in out, out
    events = (await live.get(f"/v1/feeds/{feed['id']}/events")).json()["data"]
    assert len(events) == len(runs)
    assert events[0]["content"] == example_event(schema, "It's live", base)["content"]
    node = json.loads(made.n8n)["nodes"][0]
    assert node["type"] == "n8n-nodes-base.httpRequest" and node["parameters"]["url"] == url
    assert node["parameters"]["authentication"] == "genericCredentialType"
    assert node["parameters"]["genericAuthType"] == "httpHeaderAuth"
    assert json.loads(node["parameters"]["jsonBody"])["schema_type"] == schema


async def test_unknown_paths_are_a_page_for_browsers_and_problem_json_for_the_api(api: Api) -> None:
    page = await api.client.get("/feedz", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    for path in ("/feedz", "/v1/nothing"):
        response = await api.client.get(path, headers={"Accept": "application/json"})
        assert response.headers["content-type"] == "application/problem+json", path
    api_path = await api.client.get("/v1/nothing", headers={"Accept": "text/html"})
    assert api_path.headers["content-type"] == "application/problem+json"


async def test_switch_between_projects(api: Api, dash: Dash) -> None:
    await api.feed("summary", name="Default feed")
    project, key = await api.glimpze.keys.create_project("Client site")
    await api.client.post(
        "/v1/feeds",
        json={"name": "Client feed", "schema_type": "status"},
        headers={"Authorization": f"Bearer {key.key}"},
    )
    assert "Default feed" in (await dash.open("/feeds")).text
    settings = await dash.open("/settings")
    assert 'option value="' + project.id in settings.text
    switched = await dash.follow(await dash.submit("/settings/project", {"project": project.id}))
    assert "Client site" in switched.text
    feeds = await dash.open("/feeds")
    assert "Client feed" in feeds.text and "Default feed" not in feeds.text
    missing = await dash.submit("/settings/project", {"project": "prj_missing"}, on="/settings")
    assert missing.status_code == 404
