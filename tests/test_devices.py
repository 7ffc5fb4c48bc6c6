"""E-ink devices over the TRMNL protocol, in the app: pairing, playlists, failures, logs, `/v1/devices`,
the Devices pages and `glimpze devices`. The whole protocol against a real server, with the approval
given in a browser, is tests/test_displays_browser.py."""

from __future__ import annotations

from typing import Any

import pytest

from glimpze.displays.playlists import PlaylistItem, turn
from glimpze.displays.trmnl import MAX_PENDING
from tests.conftest import Api
from tests.dashboard import Dash, audit
from tests.server import run_cli
from tests.trmnl_device import check_bmp, png_header

pytestmark = pytest.mark.anyio

MAC = "AA:BB:CC:DD:EE:01"


async def setup(api: Api, mac: str = MAC, **headers: str) -> dict[str, Any]:
    response = await api.client.get("/api/setup", headers={"ID": mac, "FW-Version": "1.8.2", **headers})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def display(api: Api, token: str, mac: str = MAC, **headers: str) -> Any:
    return await api.client.get(
        "/api/display", headers={"ID": mac, "Access-Token": token, "Width": "800", "Height": "480", **headers}
    )


async def paired(api: Api, seconds: list[int] | None = None) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    """A device accepted with a playlist of screens (one per entry of `seconds`) and its token."""
    feed = await api.feed("status", name="Backups")
    await api.ingest(
        feed, {"schema_type": "status", "content": {"title": "Backups", "status": "success", "message": "ok"}}
    )
    screens = []
    for n, _ in enumerate(seconds or [900]):
        theme = ("light", "dark", "eink")[n % 3]  # screens that look different
        made = await api.post("/v1/screens", json={"name": f"Screen {n}", "feeds": [feed["id"]], "theme": theme})
        screens.append(made.json())
    await setup(api)
    device = (await api.get("/v1/devices")).json()["data"][0]
    playlist = [{"screen_id": s["id"], "seconds": t} for s, t in zip(screens, seconds or [900], strict=True)]
    changed = await api.patch(f"/v1/devices/{device['id']}", json={"accepted": True, "playlist": playlist})
    assert changed.status_code == 200, changed.text
    answer = await setup(api)
    assert answer["status"] == 200
    return device, answer["api_key"], screens


async def test_an_unknown_device_waits_for_approval_and_gets_its_token_once_accepted(api: Api) -> None:
    waiting = await setup(api, Model="og_png")
    assert (waiting["status"], waiting["api_key"], waiting["image_url"]) == (404, None, None)
    device = (await api.get("/v1/devices")).json()["data"][0]
    assert device["friendly_id"] in waiting["message"] and MAC in waiting["message"]
    assert (device["mac"], device["accepted"], device["paired"], device["firmware"]) == (MAC, False, False, "1.8.2")
    assert device["id"].startswith("dev_") and device["model"] == "og_png"
    # Asking again changes nothing: still waiting, still one device.
    assert (await setup(api))["status"] == 404
    assert len((await api.get("/v1/devices")).json()["data"]) == 1

    accepted = (await api.patch(f"/v1/devices/{device['id']}", json={"accepted": True})).json()
    token = accepted["access_token"]
    assert token.startswith("gzd_") and accepted["accepted"] and not accepted["paired"]
    answer = await setup(api)
    assert (answer["status"], answer["api_key"], answer["friendly_id"]) == (200, token, device["friendly_id"])
    logo = await api.client.get(answer["image_url"].removeprefix("http://localhost:8080"))
    assert logo.headers["content-type"] == "image/bmp"
    check_bmp(logo.content)  # what every firmware takes as its setup logo


async def test_the_token_is_handed_out_until_the_device_uses_it(api: Api) -> None:
    device, token, _ = await paired(api)
    assert (await display(api, token)).json()["status"] == 0
    shown = (await api.get(f"/v1/devices/{device['id']}")).json()
    assert shown["paired"] and shown["setup_asked_at"] is None
    # Someone (or the device, after a reset) asking for the token now is not given it.
    again = await setup(api)
    assert (again["status"], again["api_key"]) == (404, None)
    assert "delete it" in again["message"]
    assert (await api.get(f"/v1/devices/{device['id']}")).json()["setup_asked_at"] is not None
    row = await api.glimpze.db.fetch_one("SELECT token, token_hash FROM devices WHERE id = ?", (device["id"],))
    assert row["token"] is None and row["token_hash"] != token  # only the hash is kept


async def test_display_answers_an_image_and_every_firmware_field_as_no_update(api: Api) -> None:
    device, token, screens = await paired(api)
    answer = (await display(api, token, **{"Battery-Voltage": "3.92", "RSSI": "-71", "FW-Version": "1.8.2"})).json()
    assert answer == {
        "status": 0,
        "image_url": f"http://localhost:8080/s/img/{answer['filename']}.png",
        "filename": answer["filename"],
        "refresh_rate": 900,
        "reset_firmware": False,
        "update_firmware": False,
        "firmware_url": None,
        "special_function": "none",
    }
    image = await api.client.get(f"/s/img/{answer['filename']}.png")
    assert image.headers["cache-control"] == "public, max-age=31536000, immutable"
    header = png_header(image.content)
    assert (header.width, header.height, header.bit_depth, header.colour_type) == (800, 480, 1, 0)
    assert (await api.client.get(f"/s/img/{answer['filename']}.bmp")).status_code == 404
    seen = (await api.get(f"/v1/devices/{device['id']}")).json()
    assert (seen["battery_voltage"], seen["rssi"], seen["firmware"], seen["refresh_rate"]) == (3.92, -71, "1.8.2", 900)
    assert (seen["width"], seen["height"]) == (800, 480)


async def test_telemetry_that_does_not_parse_is_left_out(api: Api) -> None:
    device, token, _ = await paired(api)
    assert (await display(api, token, **{"Battery-Voltage": "4.1", "RSSI": "-60"})).status_code == 200
    response = await display(api, token, **{"Battery-Voltage": "nan", "RSSI": "loud", "Width": "-5"})
    assert response.json()["status"] == 0
    seen = (await api.get(f"/v1/devices/{device['id']}")).json()
    assert (seen["battery_voltage"], seen["rssi"], seen["width"]) == (4.1, -60, 800)  # the last good values


async def test_the_filename_changes_with_the_picture_only(api: Api, clock: Any) -> None:
    device, token, _ = await paired(api)
    first = (await display(api, token)).json()["filename"]
    clock.advance(30)
    assert (await display(api, token)).json()["filename"] == first
    feed = (await api.get("/v1/feeds")).json()["data"][0]
    feed_key = (await api.post(f"/v1/feeds/{feed['id']}/rotate-key")).json()["write_key"]
    event = {"schema_type": "status", "content": {"title": "Backups", "status": "error", "message": "Disk full"}}
    assert (await api.ingest({**feed, "write_key": feed_key}, event)).status_code == 202
    assert (await display(api, token)).json()["filename"] != first


async def test_each_poll_shows_the_screen_whose_turn_it_is(api: Api, clock: Any) -> None:
    device, token, screens = await paired(api, seconds=[60, 120])
    first = (await display(api, token)).json()
    assert first["refresh_rate"] == 60
    clock.advance(20)
    assert (await display(api, token)).json()["refresh_rate"] == 40  # still the first screen
    clock.advance(40)
    second = (await display(api, token)).json()
    assert second["refresh_rate"] == 120 and second["filename"] != first["filename"]
    clock.advance(115)  # a device waking a few seconds early still moves on
    assert (await display(api, token)).json()["filename"] == first["filename"]


def test_the_playlist_moves_on_once_a_screen_has_had_its_time() -> None:
    items = [PlaylistItem("scr_a", 60), PlaylistItem("scr_b", 600)]
    assert turn([], 0, None, 100) is None
    start = turn(items, 0, None, 100)
    assert start is not None and (start.index, start.since, start.seconds_left) == (0, 100, 60)
    middle = turn(items, 0, 100, 130)
    assert middle is not None and (middle.index, middle.since, middle.seconds_left) == (0, 100, 30)
    moved = turn(items, 0, 100, 155)  # 5 s early is within a tenth of 60 s
    assert moved is not None and (moved.index, moved.since, moved.seconds_left) == (1, 155, 600)
    back = turn(items, 1, 155, 155 + 600)
    assert back is not None and back.index == 0
    stepped = turn(items, 1, 1000, 500)  # the wall clock was set back
    assert stepped is not None and (stepped.index, stepped.since) == (1, 500)


async def test_a_wrong_token_gets_the_failure_answer_and_counts_as_a_failed_authentication(api: Api) -> None:
    _, token, _ = await paired(api)
    for _ in range(19):  # the unknown MAC's first setup was one failure already
        wrong = await display(api, "gzd_not-this-one")
        assert wrong.status_code == 200
        assert wrong.json() == {"status": 500, "reset_firmware": True, "error": "Device not found"}
    blocked = await display(api, token)
    assert blocked.status_code == 429 and blocked.json()["code"] == "rate_limited"
    assert int(blocked.headers["retry-after"]) >= 1


async def test_an_unknown_device_polling_display_is_recorded_and_not_ready(api: Api) -> None:
    """A device set up with another server keeps its old token: it is recorded as pending and told
    "not registered" (the firmware polls again soon) with a picture saying what to do."""
    answer = (await display(api, "a-token-from-elsewhere", mac="11:22:33:44:55:66")).json()
    assert answer["status"] == 202 and "Waiting for approval" in answer["message"]
    picture = await api.client.get(answer["image_url"].removeprefix("http://localhost:8080"))
    check_bmp(picture.content)
    device = (await api.get("/v1/devices")).json()["data"][0]
    assert (device["mac"], device["accepted"]) == ("11:22:33:44:55:66", False)


async def test_a_paused_device_is_not_ready_until_accepted_again(api: Api) -> None:
    device, token, _ = await paired(api)
    assert (await display(api, token)).json()["status"] == 0
    await api.patch(f"/v1/devices/{device['id']}", json={"accepted": False})
    assert (await display(api, token)).json()["status"] == 202
    again = (await api.patch(f"/v1/devices/{device['id']}", json={"accepted": True})).json()
    assert again["access_token"] is None  # it keeps the token it has
    assert (await display(api, token)).json()["status"] == 0


async def test_an_accepted_device_without_screens_shows_what_to_do(api: Api) -> None:
    await setup(api)
    device = (await api.get("/v1/devices")).json()["data"][0]
    await api.patch(f"/v1/devices/{device['id']}", json={"accepted": True, "format": "bmp"})
    token = (await setup(api))["api_key"]
    answer = (await display(api, token)).json()
    assert (answer["status"], answer["refresh_rate"]) == (0, 300)
    check_bmp((await api.client.get(f"/s/img/{answer['filename']}.bmp")).content)


async def test_unknown_devices_waiting_are_bounded(api: Api, clock: Any) -> None:
    for n in range(MAX_PENDING + 3):
        clock.advance(1)
        await setup(api, mac=f"AA:BB:CC:00:00:{n:02X}", **{"X-Forwarded-For": f"10.0.0.{n}"})
    macs = [d["mac"] for d in (await api.get("/v1/devices?limit=100")).json()["data"]]
    assert len(macs) == MAX_PENDING and "AA:BB:CC:00:00:00" not in macs and "AA:BB:CC:00:00:16" in macs


@pytest.mark.parametrize("mac", ["", "AA:BB:CC:DD:EE", "not a mac", "AA-BB-CC-DD-EE-FF"])
async def test_a_malformed_id_header_is_refused_naming_it(api: Api, mac: str) -> None:
    response = await api.client.get("/api/setup", headers={"ID": mac} if mac else {})
    assert response.status_code == 422 and response.json()["errors"][0]["path"] == "header.ID"
    assert (await api.get("/v1/devices")).json()["data"] == []


async def test_log_lines_are_stored_and_bounded(api: Api) -> None:
    device, token, _ = await paired(api)
    headers = {"ID": MAC, "Access-Token": token}
    old_format = {"log": {"logs_array": [{"log_message": "wifi weak", "creation_timestamp": 1700000000}]}}
    assert (await api.client.post("/api/log", json=old_format, headers=headers)).json() == {"status": 200, "stored": 1}
    for batch in range(6):
        lines = [{"message": f"line {batch * 100 + n}", "level": "info", "created_at": 1700000001} for n in range(100)]
        assert (await api.client.post("/api/log", json={"logs": lines}, headers=headers)).status_code == 200
    count = await api.glimpze.db.fetch_value("SELECT count(*) FROM device_logs WHERE device_id = ?", (device["id"],))
    assert count == 500
    newest = (await api.get(f"/v1/devices/{device['id']}/logs?limit=2")).json()
    assert [line["message"] for line in newest["data"]] == ["line 599", "line 598"] and newest["next_cursor"]
    assert newest["data"][0]["level"] == "info" and newest["data"][0]["logged_at"] == "2023-11-14T22:13:21.000Z"


async def test_log_posts_need_the_devices_token_and_a_well_formed_body(api: Api) -> None:
    _, token, _ = await paired(api)
    wrong = await api.client.post("/api/log", json={"logs": []}, headers={"ID": MAC, "Access-Token": "nope"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_device_token"
    headers = {"ID": MAC, "Access-Token": token}
    for body, path in [
        ({"logs": [{"level": "info"}]}, "$.logs[0].message"),
        ({"logs": "text"}, "$.logs"),
        ({}, "$.logs"),
        ({"logs": [{"message": "x"}] * 101}, "$.logs"),
    ]:
        response = await api.client.post("/api/log", json=body, headers=headers)
        assert response.status_code == 422 and response.json()["errors"][0]["path"] == path, response.text
    too_big = await api.client.post("/api/log", content=b"{" + b" " * 70_000 + b"}", headers=headers)
    assert too_big.status_code == 413


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"playlist": [{"screen_id": "scr_nope", "seconds": 60}]}, "$.playlist[0].screen_id"),
        ({"bit_depth": 4}, "$.bit_depth"),
        ({"format": "jpeg"}, "$.format"),
        ({"name": ""}, "$.name"),
        ({"token": "x"}, "$.token"),
    ],
)
async def test_a_bad_device_change_is_refused_naming_the_field(api: Api, body: dict[str, Any], path: str) -> None:
    await setup(api)
    device = (await api.get("/v1/devices")).json()["data"][0]
    response = await api.patch(f"/v1/devices/{device['id']}", json=body)
    assert response.status_code == 422 and response.json()["errors"][0]["path"] == path, response.text
    assert (await api.get(f"/v1/devices/{device['id']}")).json() == device


async def test_a_playlist_time_out_of_bounds_is_refused(api: Api) -> None:
    device, _, screens = await paired(api)
    response = await api.patch(
        f"/v1/devices/{device['id']}", json={"playlist": [{"screen_id": screens[0]["id"], "seconds": 5}]}
    )
    assert response.status_code == 422 and response.json()["errors"][0]["path"] == "$.playlist[0].seconds"


async def test_a_deleted_device_starts_over_as_pending(api: Api) -> None:
    device, token, _ = await paired(api)
    await display(api, token)
    assert (await api.delete(f"/v1/devices/{device['id']}")).status_code == 204
    assert await api.glimpze.db.fetch_value("SELECT count(*) FROM display_images") == 0
    answer = (await display(api, token)).json()
    assert answer["status"] == 202
    assert (await api.get("/v1/devices")).json()["data"][0]["id"] != device["id"]


async def test_the_devices_pages_accept_a_device_with_its_first_screen(api: Api, clock: Any) -> None:
    feed = await api.feed("summary", name="Revenue")
    made = (await api.post("/v1/screens", json={"name": "Kitchen", "feeds": [feed["id"]]})).json()
    await setup(api, **{"Model": "og_png"})
    device = (await api.get("/v1/devices")).json()["data"][0]
    dash = Dash(api.client)
    await dash.set_up(api.announced)
    listing = await dash.open("/devices")
    assert (
        audit(listing.text) == [] and device["friendly_id"] in listing.text and "Waiting for approval" in listing.text
    )
    done = await dash.submit(f"/devices/{device['id']}/accept", {"screen": made["id"]})
    page = await dash.follow(done)
    assert audit(page.text) == [] and "Accepted" in page.text
    shown = (await api.get(f"/v1/devices/{device['id']}")).json()
    assert shown["accepted"] and shown["playlist"] == [{"screen_id": made["id"], "seconds": 900}]
    token = (await setup(api))["api_key"]
    await display(api, token, **{"Battery-Voltage": "3.71", "RSSI": "-82"})
    # Not seen for three of its refresh periods: the list says so.
    clock.advance(3 * 900 + 1)
    listing = await dash.open("/devices")
    assert "not seen for 3 × its refresh rate" in listing.text and "3.71 V" in listing.text and "(weak)" in listing.text
    # The device page changes its settings like PATCH does.
    await dash.open(f"/devices/{device['id']}")
    saved = await dash.submit(
        f"/devices/{device['id']}",
        {
            "name": "Hall",
            "accepted": "on",
            "screen": [made["id"], ""],
            "seconds": ["60", "900"],
            "bit_depth": "2",
            "format": "png",
        },
    )
    assert saved.status_code == 303
    changed = (await api.get(f"/v1/devices/{device['id']}")).json()
    assert (changed["name"], changed["bit_depth"], changed["playlist"]) == (
        "Hall",
        2,
        [{"screen_id": made["id"], "seconds": 60}],
    )


async def test_the_cli_lists_accepts_and_sets_devices(api: Api, tmp_path: Any) -> None:
    feed = await api.feed("summary", name="Revenue")
    made = (await api.post("/v1/screens", json={"name": "Kitchen", "feeds": [feed["id"]]})).json()
    await setup(api)
    device = (await api.get("/v1/devices")).json()["data"][0]
    data = tmp_path / "data"
    listed = run_cli("devices", "list", data=data)
    assert listed.returncode == 0 and device["friendly_id"] in listed.stdout and "pending" in listed.stdout
    accepted = run_cli("devices", "accept", device["id"], "--screen", f"{made['id']}:120", data=data)
    assert accepted.returncode == 0, accepted.stderr
    shown = (await api.get(f"/v1/devices/{device['id']}")).json()
    assert shown["accepted"] and shown["playlist"] == [{"screen_id": made["id"], "seconds": 120}]
    refused = run_cli("devices", "set", device["id"], "--screen", "scr_nope", data=data)
    assert refused.returncode == 1 and "scr_nope" in refused.stderr
    screens = run_cli("screens", "list", "--json", data=data)
    assert made["id"] in screens.stdout
    created = run_cli("screens", "create", "--name", "Portrait", "--feed", feed["id"], "--size", "480x800", data=data)
    assert created.returncode == 0 and "/s/scr_" in created.stdout, created.stderr
    portrait = (await api.get("/v1/screens")).json()["data"][-1]
    assert (portrait["name"], portrait["size"], portrait["layout"]) == ("Portrait", [480, 800], "full")
    bad_size = run_cli("screens", "create", "--name", "X", "--feed", feed["id"], "--size", "big", data=data)
    assert bad_size.returncode == 1 and "WIDTHxHEIGHT" in bad_size.stderr
