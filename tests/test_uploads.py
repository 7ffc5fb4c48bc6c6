"""POST /ingest/{feed_id}/upload: real images of every format and size, every refusal, the pipeline."""

from __future__ import annotations

import hashlib
import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from glimpze.app import create_app
from glimpze.clock import FakeClock
from glimpze.config import load
from glimpze.feeds.images import WIDGET_PIXELS
from tests import imagefiles as img
from tests.conftest import Api, admin_key_from, row_counts, stored_files

pytestmark = pytest.mark.anyio

SIZES = tuple(WIDGET_PIXELS)


@pytest.fixture
async def feed(api: Api) -> dict[str, Any]:
    return await api.feed("custom", plan="pro")


def snapshot(api: Api) -> tuple[dict[str, int], list[str]]:
    """Rows of every table and every file under media/: nothing may change after a refusal."""
    config = api.glimpze.config
    return row_counts(Path(config.db_path)), stored_files(config.data_path)


@pytest.mark.parametrize("fmt", img.FORMATS)
async def test_every_format_at_every_size_is_stored_and_served(api: Api, feed: dict[str, Any], fmt: str) -> None:
    files = {f"{size}_image": img.widget(size, fmt, seed=i) for i, size in enumerate(SIZES)}
    files |= {f"{size}_image_dark": img.widget(size, fmt, seed=10 + i) for i, size in enumerate(SIZES)}
    sent = {name: (f"{name}.{fmt}", data, img.CONTENT_TYPES[fmt]) for name, data in files.items()}

    response = await api.upload(feed, sent, {"widget_url": "https://dash.example.com/x", "metadata": '{"run": 7}'})

    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "accepted" and answer["widget_updated"] is True and answer["push"] == "none"
    content = answer["content"]
    assert content["widget_url"] == "https://dash.example.com/x"
    for size in SIZES:
        for field, key in ((f"{size}_image", "image_url"), (f"{size}_image_dark", "image_url_dark")):
            url = content[size][key]
            assert url == f"http://localhost:8080/media/{hashlib.sha256(files[field]).hexdigest()}.{fmt}"
            served = await api.client.get(url.removeprefix("http://localhost:8080"))
            assert served.status_code == 200
            assert served.content == files[field]
            assert served.headers["content-type"] == img.CONTENT_TYPES[fmt]
            assert served.headers["x-content-type-options"] == "nosniff"
            assert "immutable" in served.headers["cache-control"]
    event = (await api.get(f"/v1/feeds/{feed['id']}/widget")).json()["event"]
    assert event["id"] == answer["id"] and event["content"] == content and event["metadata"] == {"run": 7}
    rows, files_on_disk = snapshot(api)
    assert rows["media"] == 6 and rows["event_media"] == 6
    assert files_on_disk == sorted(f"{url.rsplit('/', 1)[1]}" for s in SIZES for url in content[s].values())


async def test_the_same_image_twice_is_stored_once(api: Api, feed: dict[str, Any]) -> None:
    small = img.widget("small")
    first = await api.upload(feed, {"small_image": small, "small_image_dark": small})
    second = await api.upload(feed, {"small_image": small})
    assert first.status_code == second.status_code == 202
    rows, files = snapshot(api)
    assert rows["media"] == 1 and rows["event_media"] == 3 and len(files) == 1


WRONG_SIZES = [
    ("small_image", (500, 500), "small_image is 500×500 px; small widgets need exactly 474×474 px"),
    ("medium_image", (474, 1014), "medium_image is 474×1014 px; medium widgets need exactly 1014×474 px"),
    ("large_image", (1014, 1061), "large_image is 1014×1061 px; large widgets need exactly 1014×1062 px"),
    ("small_image_dark", (948, 948), "small_image_dark is 948×948 px; small widgets need exactly 474×474 px"),
]


@pytest.mark.parametrize("field,pixels,message", WRONG_SIZES, ids=[w[0] for w in WRONG_SIZES])
async def test_a_wrong_size_names_the_field_and_both_sizes(
    api: Api, feed: dict[str, Any], field: str, pixels: tuple[int, int], message: str
) -> None:
    files = {field: img.picture(*pixels)}
    if field.endswith("_dark"):
        files[field.removesuffix("_dark")] = img.widget(field.split("_")[0])
    before = snapshot(api)
    response = await api.upload(feed, files)
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [{"path": f"$.{field}", "message": message}]
    assert snapshot(api) == before


REFUSED = [
    ("svg renamed .png", lambda: img.svg(), "an SVG or XML document"),
    ("gif", lambda: img.gif("small"), "a GIF image"),
    ("tiff", lambda: img.tiff("small"), "a TIFF image"),
    ("pdf", lambda: img.pdf(), "a PDF document"),
    ("avif (heif)", lambda: img.avif("small"), "an AVIF image"),
    ("zip", lambda: img.zip_archive(), "a ZIP archive"),
    ("truncated png", lambda: img.widget("small")[:-300], "is a truncated PNG file"),
    ("truncated jpeg", lambda: img.widget("small", "jpg")[:-300], "is a truncated JPEG file"),
    ("truncated webp", lambda: img.widget("small", "webp")[:-100], "is a truncated WebP file"),
    ("png + zip polyglot", lambda: img.widget("small") + img.zip_archive(), "byte(s) after the end of its PNG data"),
    ("jpeg + html polyglot", lambda: img.widget("small", "jpg") + b"<html>\xff\xd9", "after the end of its JPEG"),
    ("webp + trailing bytes", lambda: img.widget("small", "webp") + b"PK\x03\x04", "after the end of its WebP"),
    ("png with a bad crc", lambda: img.bad_crc("small"), "fails its CRC check"),
    ("animated png", lambda: img.apng("small"), "is an animated PNG"),
    ("empty file", lambda: b"", "small_image is empty"),
]


@pytest.mark.parametrize("name,make,says", REFUSED, ids=[r[0] for r in REFUSED])
async def test_refused_files_are_422_and_store_nothing(api: Api, feed: dict[str, Any], name: str, make: Any, says: str):
    before = snapshot(api)
    # Named and labelled as a PNG: only the bytes count.
    response = await api.upload(feed, {"small_image": ("widget.png", make(), "image/png")})
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["path"] == "$.small_image"
    assert says in error["message"], error
    assert snapshot(api) == before


async def test_an_image_over_2_mib_is_413_naming_the_field(api: Api, feed: dict[str, Any]) -> None:
    big = img.noise_png(1014, 1062)
    assert len(big) > 2 * 1024 * 1024
    before = snapshot(api)
    response = await api.upload(feed, {"small_image": img.widget("small"), "large_image": big})
    assert response.status_code == 413, response.text
    problem = response.json()
    assert problem["code"] == "payload_too_large"
    assert [e["path"] for e in problem["errors"]] == ["$.large_image"]
    assert "large_image is larger than 2 MiB" in problem["detail"]
    assert snapshot(api) == before


async def test_a_header_declaring_100000_by_100000_is_refused_fast_in_bounded_memory(
    api: Api, feed: dict[str, Any]
) -> None:
    bomb = img.png_declaring(100_000, 100_000)
    assert len(bomb) < 100
    before = snapshot(api)
    tracemalloc.start()
    started = time.perf_counter()
    response = await api.upload(feed, {"small_image": bomb})
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert response.status_code == 422
    assert response.json()["errors"][0]["message"] == (
        "small_image is 100000×100000 px; small widgets need exactly 474×474 px"
    )
    assert elapsed < 1.0
    assert peak < 50 * 1024 * 1024  # Python's side; libvips' side: test_image_checks (RSS)
    assert snapshot(api) == before


async def test_one_bad_file_stores_none_of_them(api: Api, feed: dict[str, Any]) -> None:
    before = snapshot(api)
    response = await api.upload(
        feed,
        {
            "small_image": img.widget("small"),
            "medium_image": img.widget("medium", "webp"),
            "large_image": img.picture(1014, 1000),
            "large_image_dark": img.gif("large"),
        },
    )
    assert response.status_code == 422
    assert [e["path"] for e in response.json()["errors"]] == ["$.large_image", "$.large_image_dark"]
    assert snapshot(api) == before


GOOD = {"small_image": "small"}  # a size: a valid image of it is sent

# (name, files, form data, headers, status, code, error path)
FORM_ERRORS: list[tuple[str, dict[str, Any], dict[str, str], dict[str, str], int, str, str | None]] = [
    ("dark without light", {"medium_image_dark": "medium"}, {}, {}, 422, "validation_failed", "$.medium_image_dark"),
    ("no image", {"widget_url": (None, b"https://x.example")}, {}, {}, 422, "validation_failed", "$"),
    ("unknown field", {"small_imag": "small"}, {}, {}, 422, "validation_failed", "$.small_imag"),
    ("bad intent json", GOOD, {"intent": "{update_widget: true}"}, {}, 422, "validation_failed", "$.intent"),
    (
        "unknown intent field",
        GOOD,
        {"intent": '{"send_pushh": true}'},
        {},
        422,
        "validation_failed",
        "$.intent.send_pushh",
    ),
    (
        "intent flag as string",
        GOOD,
        {"intent": '{"send_push": "yes"}'},
        {},
        422,
        "validation_failed",
        "$.intent.send_push",
    ),
    ("metadata not an object", GOOD, {"metadata": "[1, 2]"}, {}, 422, "validation_failed", "$.metadata"),
    (
        "metadata over 8 KiB",
        GOOD,
        {"metadata": json.dumps({"x": "y" * 9000})},
        {},
        422,
        "validation_failed",
        "$.metadata",
    ),
    ("widget_url not http", GOOD, {"widget_url": "javascript:alert(1)"}, {}, 422, "validation_failed", "$.widget_url"),
    ("text field over 64 KiB", GOOD, {"metadata": "x" * 70_000}, {}, 413, "payload_too_large", "$.metadata"),
    ("wrong key", GOOD, {}, {"Authorization": "Bearer gzw_" + "x" * 40}, 401, "invalid_write_key", None),
    ("no key", GOOD, {}, {"Authorization": ""}, 401, "invalid_write_key", None),
    ("declared body over 13 MiB", GOOD, {}, {"Content-Length": str(14 * 1024 * 1024)}, 413, "payload_too_large", None),
    ("json instead of a form", {}, {}, {"Content-Type": "application/json"}, 415, "unsupported_media_type", None),
]


@pytest.mark.parametrize("name,files,data,headers,status,code,path", FORM_ERRORS, ids=[f[0] for f in FORM_ERRORS])
async def test_form_errors_are_problems_and_store_nothing(
    api: Api,
    feed: dict[str, Any],
    name: str,
    files: dict[str, Any],
    data: dict[str, str],
    headers: dict[str, str],
    status: int,
    code: str,
    path: str | None,
) -> None:
    parts = {k: img.widget(v) if isinstance(v, str) else v for k, v in files.items()}
    before = snapshot(api)
    if headers.get("Content-Type") == "application/json":
        response = await api.client.post(
            f"/ingest/{feed['id']}/upload",
            content=b"{}",
            headers={"Authorization": f"Bearer {feed['write_key']}", **headers},
        )
    else:
        response = await api.upload(feed, parts, data, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == code
    if path is not None:
        assert [e["path"] for e in problem["errors"]] == [path], problem
    assert snapshot(api) == before


async def test_a_repeated_field_and_more_than_nine_fields_are_refused(api: Api, feed: dict[str, Any]) -> None:
    small = img.widget("small")
    twice = [("small_image", ("a.png", small, "image/png")), ("small_image", ("b.png", small, "image/png"))]
    auth = {"Authorization": f"Bearer {feed['write_key']}"}
    response = await api.client.post(f"/ingest/{feed['id']}/upload", files=twice, headers=auth)
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "$.small_image"
    many = [(f"f{i}", ("a.png", b"x", "image/png")) for i in range(10)]
    response = await api.client.post(f"/ingest/{feed['id']}/upload", files=many, headers=auth)
    assert response.status_code == 422
    assert snapshot(api)[1] == []


async def test_uploads_go_to_custom_feeds_only(api: Api) -> None:
    status = await api.feed("status")
    response = await api.upload(status, {"small_image": img.widget("small")})
    assert response.status_code == 422
    assert response.json()["code"] == "schema_type_mismatch"
    unknown = await api.upload({"id": "fd_nope", "write_key": "gzw_" + "a" * 40}, {"small_image": img.widget("small")})
    assert unknown.status_code == 404


async def test_upload_goes_through_the_ingest_pipeline(api: Api, feed: dict[str, Any]) -> None:
    small = img.widget("small")
    intent = '{"update_widget": true, "send_push": false}'
    key = {"Idempotency-Key": "morning-cron-2026-02-08"}
    first = await api.upload(feed, {"small_image": small}, {"intent": intent}, headers=key)
    # A retry from another client library: another multipart boundary, fields in another order.
    again = await api.upload(
        feed, {"small_image": ("other-name.png", small, "application/octet-stream")}, {"intent": intent}, headers=key
    )
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert first.headers["ratelimit-limit"] == "60"
    reused = await api.upload(feed, {"small_image": img.widget("small", seed=5)}, headers=key)
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"

    quiet = await api.upload(feed, {"medium_image": img.widget("medium")}, {"intent": '{"update_widget": false}'})
    assert quiet.json()["widget_updated"] is False
    widget = (await api.get(f"/v1/feeds/{feed['id']}/widget")).json()["event"]
    assert widget["id"] == first.json()["id"]

    # feed.event is emitted for accepted uploads, with the image URLs in its content.
    rows = row_counts(Path(api.glimpze.config.db_path))
    assert rows["out_events"] == 2
    payload = await api.glimpze.db.fetch_value("SELECT payload FROM out_events WHERE id = ?", (first.json()["id"],))
    assert msgspec.json.decode(payload)["content"] == first.json()["content"]


async def test_throttled_uploads_get_429_and_are_logged(tmp_path: Path, clock: FakeClock) -> None:
    toml = tmp_path / "glimpze.toml"
    toml.write_text("[plans.tiny]\nevents_per_minute = 1\nevents_per_day = 100\nhistory_days = 1\ncustom_feeds = 1\n")
    config = load(toml, env={}, overrides={"data_dir": str(tmp_path / "data")})
    said: list[str] = []
    app = create_app(config, clock=clock, announce=said.append)
    async with AsyncTestClient(app) as client:
        api = Api(client, admin_key_from(said), app)
        feed = await api.feed("custom", plan="tiny")
        assert (await api.upload(feed, {"small_image": img.widget("small")})).status_code == 202
        refused = await api.upload(feed, {"small_image": img.widget("small", seed=2)})
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "60" and refused.headers["ratelimit-remaining"] == "0"
        assert refused.json()["limit"] == "minute"
        log = (await api.get(f"/v1/feeds/{feed['id']}/events?status=throttled")).json()["data"]
        assert [e["id"] for e in log] == [refused.json()["event_id"]]
        # The logged event's images stay readable for as long as the event is kept.
        url = log[0]["content"]["small"]["image_url"].removeprefix("http://localhost:8080")
        assert (await api.client.get(url)).content == img.widget("small", seed=2)


async def test_json_custom_events_with_hosted_urls(api: Api, feed: dict[str, Any]) -> None:
    body = {
        "schema_type": "custom",
        "content": {"small": {"image_url": "https://cdn.example.com/s.png"}, "widget_url": "https://x.example"},
    }
    assert (await api.ingest(feed, body)).status_code == 202
    bad = [
        ({"widget_url": "https://x.example"}, "$.content"),
        ({"small": {"image_url": "ftp://cdn.example.com/s.png"}}, "$.content.small.image_url"),
        (
            {"small": {"image_url": "https://a.example/s.png", "image_url_dark": "/s.png"}},
            "$.content.small.image_url_dark",
        ),
        ({"tiny": {"image_url": "https://a.example/s.png"}}, "$.content.tiny"),
    ]
    for content, path in bad:
        response = await api.ingest(feed, {"schema_type": "custom", "content": content})
        assert response.status_code == 422, content
        assert response.json()["errors"][0]["path"] == path


async def test_a_json_event_may_reuse_an_uploaded_image(api: Api, feed: dict[str, Any]) -> None:
    uploaded = (await api.upload(feed, {"small_image": img.widget("small")})).json()
    body = {"schema_type": "custom", "content": {"small": uploaded["content"]["small"]}}
    assert (await api.ingest(feed, body)).status_code == 202
    # Both events reference the stored image: it lives as long as either of them.
    assert row_counts(Path(api.glimpze.config.db_path))["event_media"] == 2
