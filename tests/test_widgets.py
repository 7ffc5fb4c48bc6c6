"""Widget readers: read tokens, /w/{id}.json, and rendered PNGs of every schema, size and theme."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from glimpze.feeds.events import ApprovalView
from glimpze.feeds.images import WIDGET_PIXELS, vips
from tests import imagefiles as img
from tests.conftest import Api

pytestmark = pytest.mark.anyio

SEEDS = Path(__file__).parent / "seed_examples"
SIZES = tuple(WIDGET_PIXELS)
THEMES = ("light", "dark")
EXAMPLES = {
    "summary": "summary_stripe_revenue.json",
    "status": "status_critical_alert.json",
    "counter": "counter_user_signups.json",
    "approval": "approval_deployment.json",
}


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR (and the bytes must be a PNG)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def example(schema: str) -> dict[str, Any]:
    return json.loads((SEEDS / EXAMPLES[schema]).read_text())


async def read(api: Api, feed: dict[str, Any], path: str, **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {feed['read_token']}", **kw.pop("headers", {})}
    return await api.client.get(f"/w/{feed['id']}{path}", headers=headers, **kw)


async def test_read_token_comes_with_the_feed_and_rotates(api: Api) -> None:
    feed = await api.feed("summary")
    token = feed["read_token"]
    assert token.startswith("gzr_") and len(token) == 44
    assert (await api.get(f"/v1/feeds/{feed['id']}")).json()["read_token"] == token
    assert (await read(api, feed, ".json")).status_code == 200
    assert (await api.client.get(f"/w/{feed['id']}.json?token={token}")).status_code == 200

    rotated = await api.post(f"/v1/feeds/{feed['id']}/rotate-read-token")
    assert rotated.status_code == 200
    new = rotated.json()["read_token"]
    assert new != token and new.startswith("gzr_")
    assert (await read(api, feed, ".json")).status_code == 401
    assert (await read(api, {**feed, "read_token": new}, "/small.png")).status_code == 200


@pytest.mark.parametrize(
    "how,status,code",
    [
        ({}, 401, "invalid_read_token"),
        ({"headers": {"Authorization": "Bearer gzr_" + "a" * 40}}, 401, "invalid_read_token"),
        ({"params": {"token": "nope"}}, 401, "invalid_read_token"),
        ({"write_key": True}, 401, "invalid_read_token"),
        ({"feed": "fd_unknown", "headers": {"Authorization": "Bearer gzr_" + "a" * 40}}, 404, "not_found"),
    ],
)
async def test_wrong_or_missing_read_tokens_are_refused(api: Api, how: dict[str, Any], status: int, code: str) -> None:
    feed = await api.feed("summary")
    headers = how.get("headers", {})
    if how.get("write_key"):
        headers = {"Authorization": f"Bearer {feed['write_key']}"}
    for path in (".json", "/small.png"):
        response = await api.client.get(
            f"/w/{how.get('feed', feed['id'])}{path}", headers=headers, params=how.get("params")
        )
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == code


async def test_guessing_read_tokens_hits_the_failed_authentication_limiter(api: Api) -> None:
    feed = await api.feed("summary")
    statuses = [
        (await api.client.get(f"/w/{feed['id']}.json", params={"token": f"gzr_guess{i}"})).status_code
        for i in range(21)
    ]
    assert statuses == [401] * 20 + [429]


async def test_the_json_document_follows_the_widget_state(api: Api) -> None:
    feed = await api.feed("counter")
    empty = (await read(api, feed, ".json")).json()
    assert empty == {"feed_id": feed["id"], "name": "Test feed", "schema_type": "counter", "event": None}
    sent = {**example("counter"), "metadata": {"internal": "not for devices"}}
    event_id = (await api.ingest(feed, sent)).json()["id"]
    document = await read(api, feed, ".json")
    assert document.headers["cache-control"] == "private, no-cache"
    event = document.json()["event"]
    assert set(event) == {"id", "schema_type", "content", "received_at"}  # no metadata, no callback
    assert event["id"] == event_id and event["content"] == sent["content"]
    assert (await read(api, feed, ".txt")).status_code == 404


async def test_placeholders_before_the_first_event_have_the_exact_sizes(api: Api) -> None:
    feed = await api.feed("status")
    for size in SIZES:
        for theme in THEMES:
            response = await read(api, feed, f"/{size}.png", params={"theme": theme})
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/png"
            assert png_size(response.content) == WIDGET_PIXELS[size]


@pytest.mark.parametrize("schema", sorted(EXAMPLES))
async def test_every_schema_renders_at_every_size_and_theme_and_follows_the_state(api: Api, schema: str) -> None:
    feed = await api.feed(schema)
    sent = example(schema)
    assert (await api.ingest(feed, sent)).status_code == 202
    first: dict[tuple[str, str], bytes] = {}
    for size in SIZES:
        for theme in THEMES:
            response = await read(api, feed, f"/{size}.png", params={"theme": theme})
            assert response.status_code == 200
            assert png_size(response.content) == WIDGET_PIXELS[size]
            first[size, theme] = response.content
    assert len(set(first.values())) == len(first)  # every size and theme is its own picture

    changed = json.loads(json.dumps(sent))
    key = {"summary": "primary_value", "status": "message", "counter": "count", "approval": "description"}[schema]
    changed["content"][key] = 98765 if key == "count" else "Something else entirely"
    assert (await api.ingest(feed, changed)).status_code == 202
    for (size, theme), before in first.items():
        after = (await read(api, feed, f"/{size}.png", params={"theme": theme})).content
        assert png_size(after) == WIDGET_PIXELS[size]
        assert after != before, (size, theme)


async def test_rendered_pngs_revalidate_with_etags(api: Api) -> None:
    feed = await api.feed("summary")
    await api.ingest(feed, example("summary"))
    first = await read(api, feed, "/medium.png")
    etag = first.headers["etag"]
    again = await read(api, feed, "/medium.png", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert (
        await read(api, feed, "/medium.png", params={"theme": "dark"}, headers={"If-None-Match": etag})
    ).status_code == 200
    await api.ingest(feed, {**example("summary"), "content": {"title": "t", "primary_value": "2"}})
    assert (await read(api, feed, "/medium.png", headers={"If-None-Match": etag})).status_code == 200


async def test_long_text_is_cut_to_fit(api: Api) -> None:
    feed = await api.feed("status")
    long = {"title": "T" * 1000, "status": "warning", "message": "word " * 199, "details": "x" * 1000}
    assert (await api.ingest(feed, {"schema_type": "status", "content": long})).status_code == 202
    for size in SIZES:
        assert png_size((await read(api, feed, f"/{size}.png")).content) == WIDGET_PIXELS[size]


async def test_bad_sizes_and_themes(api: Api) -> None:
    feed = await api.feed("summary")
    assert (await read(api, feed, "/huge.png")).status_code == 404
    assert (await read(api, feed, "/small.jpg")).status_code == 404
    bad_theme = await read(api, feed, "/small.png", params={"theme": "sepia"})
    assert bad_theme.status_code == 422 and bad_theme.json()["errors"][0]["path"] == "query.theme"


async def test_approval_widgets_show_the_state_the_approvals_service_reports(api: Api) -> None:
    feed = await api.feed("approval")
    await api.ingest(feed, example("approval"))
    pending = (await read(api, feed, "/small.png")).content
    seen = api.glimpze.approvals.widget

    async def approved(feed_id: str) -> Any:
        found = await seen(feed_id)
        assert found is not None
        return found[0], ApprovalView("approved", 0)

    api.glimpze.approvals.widget = approved  # type: ignore[method-assign]
    assert (await read(api, feed, "/small.png")).content != pending


async def test_custom_widgets_serve_the_uploaded_image_for_each_size_and_theme(api: Api) -> None:
    feed = await api.feed("custom", plan="pro")
    small, small_dark = img.widget("small", seed=1), img.widget("small", seed=2)
    medium = img.widget("medium", "jpg", seed=3)
    response = await api.upload(feed, {"small_image": small, "small_image_dark": small_dark, "medium_image": medium})
    assert response.status_code == 202

    assert (await read(api, feed, "/small.png")).content == small
    assert (await read(api, feed, "/small.png", params={"theme": "dark"})).content == small_dark
    # No dark medium: the light one, and a JPEG is served as a PNG of the same size.
    for theme in THEMES:
        png = (await read(api, feed, "/medium.png", params={"theme": theme})).content
        assert png_size(png) == WIDGET_PIXELS["medium"]
        decoded = vips().Image.new_from_buffer(png, "")
        original = vips().Image.new_from_buffer(medium, "")
        assert (decoded - original).abs().max() == 0
    # No large image at all: a placeholder of the exact size.
    large = await read(api, feed, "/large.png")
    assert large.status_code == 200 and png_size(large.content) == WIDGET_PIXELS["large"]
    etag = (await read(api, feed, "/small.png")).headers["etag"]
    assert (await read(api, feed, "/small.png", headers={"If-None-Match": etag})).status_code == 304


async def test_hosted_custom_images_are_redirects_never_fetched(api: Api) -> None:
    feed = await api.feed("custom", plan="pro")
    content = {
        "small": {"image_url": "https://cdn.example.com/s.png", "image_url_dark": "https://cdn.example.com/s-dark.png"},
        "large": {"image_url": "https://cdn.example.com/l.png"},
    }
    assert (await api.ingest(feed, {"schema_type": "custom", "content": content})).status_code == 202
    cases = [("small", "light", "s.png"), ("small", "dark", "s-dark.png"), ("large", "dark", "l.png")]
    for size, theme, name in cases:
        response = await read(api, feed, f"/{size}.png", params={"theme": theme}, follow_redirects=False)
        assert response.status_code == 302
        assert response.headers["location"] == f"https://cdn.example.com/{name}"
    medium = await read(api, feed, "/medium.png")
    assert medium.status_code == 200 and png_size(medium.content) == WIDGET_PIXELS["medium"]


async def test_a_stored_image_that_cannot_be_read_gives_a_placeholder(api: Api) -> None:
    feed = await api.feed("custom", plan="pro")
    answer = (await api.upload(feed, {"small_image": img.widget("small", "webp")})).json()
    name = answer["content"]["small"]["image_url"].rsplit("/", 1)[1]
    api.glimpze.media.path(name).write_bytes(b"RIFF\x00\x00\x00\x00WEBPgarbage")  # damaged on disk
    response = await read(api, feed, "/small.png")
    assert response.status_code == 200 and png_size(response.content) == WIDGET_PIXELS["small"]


async def test_the_openapi_document_shows_the_upload_and_the_readers(api: Api) -> None:
    spec = (await api.client.get("/schema/openapi.json")).json()
    upload = spec["paths"]["/ingest/{feed_id}/upload"]["post"]
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert set(form) == {
        "small_image",
        "small_image_dark",
        "medium_image",
        "medium_image_dark",
        "large_image",
        "large_image_dark",
        "widget_url",
        "intent",
        "metadata",
    }
    assert form["small_image"]["format"] == "binary"
    assert "202" in upload["responses"] and "default" in upload["responses"]
    assert "/w/{feed_id}/{image}" in spec["paths"] and "/w/{target}" in spec["paths"]
    media = spec["paths"]["/media/{name}"]["get"]["responses"]["200"]["content"]
    assert set(media) == {"image/png", "image/jpeg", "image/webp"}
    assert {"readToken", "readTokenQuery"} <= set(spec["components"]["securitySchemes"])
