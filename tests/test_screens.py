"""Screens: `/v1/screens`, the picture URL Home Assistant polls, the kiosk page and its live channel,
the dashboard's Screens pages, and `glimpze screens`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Api, SseReader
from tests.dashboard import Dash, audit
from tests.trmnl_device import png_header

pytestmark = pytest.mark.anyio


async def summary(api: Api, name: str = "Revenue", value: str = "$1") -> dict[str, Any]:
    feed = await api.feed("summary", name=name)
    response = await api.ingest(feed, {"schema_type": "summary", "content": {"title": name, "primary_value": value}})
    assert response.status_code == 202, response.text
    return feed


async def screen(api: Api, feeds: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    body = {"name": "Wall", "feeds": [f["id"] for f in feeds], **fields}
    response = await api.post("/v1/screens", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_screen_is_created_listed_changed_and_deleted(api: Api) -> None:
    one, two = await summary(api, "One"), await summary(api, "Two")
    made = await screen(api, [one])
    assert made["id"].startswith("scr_") and made["read_token"].startswith("gzr_")
    assert (made["size"], made["layout"], made["theme"], made["show_updated"]) == ([800, 480], "full", "light", True)
    assert made["image_url"] == f"http://localhost:8080/s/{made['id']}.png?token={made['read_token']}"
    assert made["kiosk_url"] == f"http://localhost:8080/s/{made['id']}?token={made['read_token']}"

    listed = (await api.get("/v1/screens")).json()
    assert [s["id"] for s in listed["data"]] == [made["id"]] and listed["next_cursor"] is None

    # Two feeds and no layout: the layout that fits two.
    changed = await api.patch(f"/v1/screens/{made['id']}", json={"feeds": [one["id"], two["id"]], "size": [480, 800]})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["layout"], changed.json()["size"]) == ("halves", [480, 800])
    assert (await api.get(f"/v1/screens/{made['id']}")).json()["feeds"] == [one["id"], two["id"]]

    assert (await api.delete(f"/v1/screens/{made['id']}")).status_code == 204
    assert (await api.get(f"/v1/screens/{made['id']}")).status_code == 404


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"size": [99, 480]}, "$.size[0]"),
        ({"size": [800, 2049]}, "$.size[1]"),
        ({"layout": "grid"}, "$.feeds"),
        ({"feeds": []}, "$.feeds"),
        ({"feeds": ["fd_nope"]}, "$.feeds[0]"),
        ({"theme": "sepia"}, "$.theme"),
        ({"colour": "red"}, "$.colour"),
        ({"name": " "}, "$.name"),
    ],
)
async def test_a_bad_screen_is_refused_naming_the_field(api: Api, body: dict[str, Any], path: str) -> None:
    feed = await summary(api)
    response = await api.post("/v1/screens", json={"name": "Wall", "feeds": [feed["id"]], **body})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["path"] == path
    assert (await api.get("/v1/screens")).json()["data"] == []


async def test_a_feed_twice_on_a_screen_is_refused(api: Api) -> None:
    feed = await summary(api)
    response = await api.post("/v1/screens", json={"name": "Wall", "feeds": [feed["id"], feed["id"]]})
    assert response.status_code == 422
    assert response.json()["errors"][0] == {"path": "$.feeds[1]", "message": "is already on the screen"}


async def test_the_picture_url_revalidates_with_its_etag_for_home_assistant(api: Api) -> None:
    feed = await summary(api)
    made = await screen(api, [feed], size=[1024, 600])
    url = f"/s/{made['id']}.png"
    first = await api.client.get(url, params={"token": made["read_token"]})
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    assert first.headers["cache-control"] == "private, no-cache"
    assert (png_header(first.content).width, png_header(first.content).height) == (1024, 600)
    etag = first.headers["etag"]
    again = await api.client.get(url, params={"token": made["read_token"]}, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    # The token as a Bearer header works too; e-ink bit depths on request.
    one_bit = await api.client.get(
        url, params={"bit_depth": "1"}, headers={"Authorization": f"Bearer {made['read_token']}"}
    )
    assert png_header(one_bit.content).bit_depth == 1

    await api.ingest(feed, {"schema_type": "summary", "content": {"title": "Revenue", "primary_value": "$2"}})
    changed = await api.client.get(url, params={"token": made["read_token"]}, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag


async def test_the_picture_needs_the_screens_own_read_token(api: Api) -> None:
    feed = await summary(api)
    made = await screen(api, [feed])
    url = f"/s/{made['id']}.png"
    assert (await api.client.get(url)).json()["code"] == "invalid_read_token"
    assert (await api.client.get(url, params={"token": feed["read_token"]})).status_code == 401
    assert (await api.client.get("/s/scr_nope.png", params={"token": made["read_token"]})).status_code == 404
    rotated = (await api.post(f"/v1/screens/{made['id']}/rotate-read-token")).json()
    assert (await api.client.get(url, params={"token": made["read_token"]})).status_code == 401
    assert (await api.client.get(url, params={"token": rotated["read_token"]})).status_code == 200


async def test_wrong_screen_tokens_count_as_failed_authentications(api: Api) -> None:
    feed = await summary(api)
    made = await screen(api, [feed])
    for _ in range(20):
        assert (await api.client.get(f"/s/{made['id']}.png", params={"token": "gzr_wrong"})).status_code == 401
    blocked = await api.client.get(f"/s/{made['id']}.png", params={"token": made["read_token"]})
    assert blocked.status_code == 429 and blocked.json()["code"] == "rate_limited"


async def test_the_kiosk_page_is_csp_clean_and_follows_its_live_channel(api: Api) -> None:
    feed = await summary(api)
    made = await screen(api, [feed], theme="dark")
    page = await api.client.get(f"/s/{made['id']}", params={"token": made["read_token"]})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    assert audit(page.text) == []
    assert '<script src="/static/kiosk.js' in page.text
    assert f'data-live="/s/{made["id"]}/live?token={made["read_token"]}"' in page.text
    assert (await api.client.get("/static/kiosk.js")).status_code == 200


async def named(events: SseReader) -> Any:
    """The next event with a name (comments and the retry hint skipped)."""
    while (event := await events.next(5)) is not None and event.event is None:
        pass
    return event


async def test_the_kiosk_channel_sends_the_new_picture_when_a_feed_on_the_screen_changes(live: Api) -> None:
    feed = await summary(live)
    other = await summary(live, "Elsewhere")
    made = await screen(live, [feed])
    params = {"token": made["read_token"]}
    async with live.client.stream("GET", f"/s/{made['id']}/live", params=params) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = SseReader(response)
        first = await named(events)
        assert first is not None and first.event == "screen"
        shown = (await live.client.get(f"/s/{made['id']}.png", params=params)).headers["etag"]
        assert f'"{first.json()["etag"]}"' == shown
        # A feed that is not on the screen changes nothing; one that is sends the new picture.
        await live.ingest(other, {"schema_type": "summary", "content": {"title": "x", "primary_value": "9"}})
        await live.ingest(feed, {"schema_type": "summary", "content": {"title": "Revenue", "primary_value": "$7"}})
        second = await named(events)
        assert second is not None and second.event == "screen" and second.json()["etag"] != first.json()["etag"]
        # Deleting the screen ends the page's stream with `gone`.
        assert (await live.delete(f"/v1/screens/{made['id']}")).status_code == 204
        gone = await named(events)
        assert gone is not None and gone.event == "gone"


async def test_a_deleted_screen_leaves_every_playlist(api: Api) -> None:
    feed = await summary(api)
    kept, dropped = await screen(api, [feed], name="Kept"), await screen(api, [feed], name="Dropped")
    await api.client.get("/api/setup", headers={"ID": "AA:BB:CC:00:00:01"})
    device = (await api.get("/v1/devices")).json()["data"][0]
    playlist = [{"screen_id": kept["id"], "seconds": 60}, {"screen_id": dropped["id"], "seconds": 60}]
    assert (await api.patch(f"/v1/devices/{device['id']}", json={"playlist": playlist})).status_code == 200
    await api.delete(f"/v1/screens/{dropped['id']}")
    assert (await api.get(f"/v1/devices/{device['id']}")).json()["playlist"] == [playlist[0]]


async def test_the_dashboard_creates_a_screen_and_previews_it(api: Api) -> None:
    feed = await summary(api)
    dash = Dash(api.client)
    await dash.set_up(api.announced)
    listing = await dash.open("/screens")
    assert audit(listing.text) == []
    refused = await dash.submit("/screens", {"name": "Wall", "feed": "", "width": "800", "height": "480"})
    assert refused.status_code == 422 and "feed" in refused.text.lower()
    done = await dash.submit(
        "/screens",
        {"name": "Kitchen", "feed": [feed["id"], "", "", ""], "width": "800", "height": "480", "theme": "eink"},
        on="/screens",
    )
    page = await dash.follow(done)
    assert audit(page.text) == [] and "Kitchen" in page.text
    made = (await api.get("/v1/screens")).json()["data"][0]
    assert (made["layout"], made["theme"], made["show_updated"]) == ("full", "eink", False)
    assert f'data-live-on="screen:{made["id"]} tile:{feed["id"]}"' in page.text
    preview = await api.client.get(f"/screens/{made['id']}/preview.png", params={"bit_depth": "2"})
    assert preview.status_code == 200 and png_header(preview.content).bit_depth == 2
    # Signed out, the preview is not served.
    outsider = httpx.AsyncClient(transport=api.client._transport, base_url=str(api.client.base_url))
    async with outsider:
        assert (await outsider.get(f"/screens/{made['id']}/preview.png")).status_code in (303, 401)
