"""Widget pictures that say how fresh they are: the `show_updated` feed setting, the absolute
"updated 14:05" stamp in the project's time zone, and ETags that change only with it."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from typing import Any

import pytest

from glimpze.clock import FakeClock
from glimpze.feeds.freshness import updated_stamp
from glimpze.feeds.images import WIDGET_PIXELS, vips
from tests import imagefiles as img
from tests.conftest import Api
from tests.test_widgets import example, png_size, read

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def at(text: str, tz: Any = UTC) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


@pytest.mark.parametrize(
    "updated,now,stamp",
    [
        ("2026-05-28 14:05", "2026-05-28 23:59", "updated 14:05"),
        ("2026-05-26 09:12", "2026-05-28 08:00", "updated Tue 09:12"),
        ("2026-05-20 09:12", "2026-05-28 08:00", "updated 20 May 09:12"),
        ("2025-12-31 22:00", "2026-05-28 08:00", "updated 31 Dec 2025"),
        ("2026-05-28 14:05", "2026-05-28 14:00", "updated 14:05"),  # a clock a little ahead: today
    ],
)
def test_the_stamp_is_absolute_and_names_the_day_when_not_today(updated: str, now: str, stamp: str) -> None:
    assert updated_stamp(at(updated, BERLIN), at(now, BERLIN), BERLIN) == stamp


def test_the_stamp_is_in_the_time_zone_given() -> None:
    when = at("2026-05-28 22:30")  # UTC
    assert updated_stamp(when, when + 60, UTC) == "updated 22:30"
    assert updated_stamp(when, when + 60, BERLIN) == "updated 00:30"
    assert updated_stamp(when, when + 60, zoneinfo.ZoneInfo("America/New_York")) == "updated 18:30"


pytestmark = pytest.mark.anyio


async def test_show_updated_is_a_feed_setting_off_by_default(api: Api) -> None:
    plain = await api.feed("summary")
    assert plain["show_updated"] is False
    created = await api.post("/v1/feeds", json={"name": "Wall", "schema_type": "status", "show_updated": True})
    assert created.status_code == 201 and created.json()["show_updated"] is True
    feed_id = created.json()["id"]
    assert (await api.get(f"/v1/feeds/{feed_id}")).json()["show_updated"] is True
    renamed = await api.patch(f"/v1/feeds/{feed_id}", json={"name": "Wall 2"})
    assert renamed.json()["show_updated"] is True  # left alone when not sent
    off = await api.patch(f"/v1/feeds/{feed_id}", json={"show_updated": False})
    assert off.status_code == 200 and off.json()["show_updated"] is False and off.json()["name"] == "Wall 2"
    listed = (await api.get("/v1/feeds")).json()["data"]
    assert {f["id"]: f["show_updated"] for f in listed} == {plain["id"]: False, feed_id: False}


@pytest.mark.parametrize("method,path", [("post", ""), ("patch", "/{id}")])
async def test_a_show_updated_that_is_not_a_boolean_is_refused(api: Api, method: str, path: str) -> None:
    feed = await api.feed("summary")
    body: dict[str, Any] = {"show_updated": "yes"}
    if method == "post":
        body |= {"name": "x", "schema_type": "summary"}
    response = await getattr(api, method)("/v1/feeds" + path.format(id=feed["id"]), json=body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["path"] == "$.show_updated"
    assert (await api.get(f"/v1/feeds/{feed['id']}")).json()["show_updated"] is False


async def test_widget_pngs_show_the_stamp_and_change_only_when_it_does(api: Api, clock: FakeClock) -> None:
    feed = await api.feed("status")
    assert (await api.ingest(feed, example("status"))).status_code == 202
    plain = await read(api, feed, "/small.png")
    await api.patch(f"/v1/feeds/{feed['id']}", json={"show_updated": True})
    stamped = await read(api, feed, "/small.png")
    assert stamped.content != plain.content and stamped.headers["etag"] != plain.headers["etag"]
    assert png_size(stamped.content) == WIDGET_PIXELS["small"]
    # An hour later the stamp still reads the same: a device polling gets a 304, nothing is drawn.
    clock.advance(3600)
    etag = stamped.headers["etag"]
    assert (await read(api, feed, "/small.png", headers={"If-None-Match": etag})).status_code == 304
    # A week later it names the date: a new picture.
    clock.advance(7 * 86400)
    later = await read(api, feed, "/small.png", headers={"If-None-Match": etag})
    assert later.status_code == 200 and later.content != stamped.content
    # Every size and theme carries it.
    for size in WIDGET_PIXELS:
        for theme in ("light", "dark"):
            response = await read(api, feed, f"/{size}.png", params={"theme": theme})
            assert response.status_code == 200 and png_size(response.content) == WIDGET_PIXELS[size]


async def test_the_stamp_is_in_the_project_s_time_zone(api: Api, clock: FakeClock) -> None:
    created = await api.post("/v1/feeds", json={"name": "Wall", "schema_type": "counter", "show_updated": True})
    feed = created.json()
    await api.ingest(feed, example("counter"))
    feeds = api.glimpze.feeds
    reader = await feeds.reader(feed["id"], feed["read_token"])
    row = {"received_at": clock.now()}
    utc = datetime.fromtimestamp(clock.now(), UTC).strftime("%H:%M")
    assert api.glimpze.widgets.stamp(reader, row) == f"updated {utc}"  # no time zone set: UTC
    before = await read(api, feed, "/medium.png")
    quiet = {"start": "22:00", "end": "07:00", "timezone": "Asia/Tokyo"}
    assert (await api.put("/v1/settings/quiet-hours", json=quiet)).status_code == 200
    tokyo = datetime.fromtimestamp(clock.now(), zoneinfo.ZoneInfo("Asia/Tokyo")).strftime("%H:%M")
    assert api.glimpze.widgets.stamp(reader, row) == f"updated {tokyo}" != f"updated {utc}"
    after = await read(api, feed, "/medium.png", headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200 and after.content != before.content


async def test_a_stored_custom_image_gets_the_stamp_drawn_on_it(api: Api) -> None:
    feed = await api.feed("custom", plan="pro")
    small = img.widget("small", seed=4)
    assert (await api.upload(feed, {"small_image": small})).status_code == 202
    assert (await read(api, feed, "/small.png")).content == small
    await api.patch(f"/v1/feeds/{feed['id']}", json={"show_updated": True})
    for theme in ("light", "dark"):
        stamped = (await read(api, feed, "/small.png", params={"theme": theme})).content
        assert stamped != small and png_size(stamped) == WIDGET_PIXELS["small"]
        pyvips = vips()
        changed = (pyvips.Image.new_from_buffer(stamped, "") - pyvips.Image.new_from_buffer(small, "")).abs()
        # Only the label at the bottom right is drawn over: the picture above it is untouched.
        assert changed.crop(0, 0, 474, 380).max() == 0 and changed.crop(200, 400, 274, 74).max() > 0
