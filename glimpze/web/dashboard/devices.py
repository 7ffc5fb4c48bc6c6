"""Devices: e-ink displays that speak the TRMNL protocol — waiting ones to accept (with a first screen),
each one's battery, signal, firmware and last visit, a warning when it has not been seen for a few of
its refresh periods; a device's page: its playlist, image format, the picture it shows, its log.

The list is live (`device` notices: a device called, was accepted or changed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Response, get, post
from litestar.params import FromPath
from litestar.response import Template

from glimpze.clock import parse_iso
from glimpze.displays.devices import LATE_PERIODS, Device, DevicePatch
from glimpze.displays.screens import Screen
from glimpze.services import Services
from glimpze.store.pagination import DEFAULT_LIMIT, MAX_LIMIT, all_pages
from glimpze.web.common import AnyRequest, App
from glimpze.web.dashboard.web import SignedIn, attempt, convert, form_of, notify, page, redirect

DEFAULT_SECONDS = 900
SECONDS_CHOICES = [
    (60, "1 minute"),
    (300, "5 minutes"),
    (900, "15 minutes"),
    (1800, "30 minutes"),
    (3600, "1 hour"),
    (10800, "3 hours"),
    (21600, "6 hours"),
    (86400, "1 day"),
]
EMPTY_ROWS = 2  # playlist rows offered beyond the screens it has


@dataclass(frozen=True, slots=True)
class DeviceView:
    """A device as the pages show it: its state in words and whether it is overdue."""

    device: Device
    state: str  # pending | accepted (token not fetched yet) | paired | paused
    late_periods: int  # how many refresh periods since it was last seen (0 when not late)
    signal: str  # the Wi-Fi signal in words
    size_mismatch: list[str]  # screens of its playlist whose size is not the device's


def view(device: Device, now: float, screens: dict[str, Screen]) -> DeviceView:
    if not device.accepted:
        state = "paused" if device.paired else "pending"
    else:
        state = "paired" if device.paired else "accepted"
    late = 0
    if device.last_seen_at and device.refresh_rate and device.accepted:
        periods = int((now - parse_iso(device.last_seen_at)) // device.refresh_rate)
        late = periods if periods >= LATE_PERIODS else 0
    rssi = device.rssi
    signal = (
        ""
        if rssi is None
        else "strong"
        if rssi >= -60
        else "good"
        if rssi >= -70
        else "fair"
        if rssi >= -80
        else "weak"
    )
    mismatch = []
    if device.width and device.height:
        for item in device.playlist:
            screen = screens.get(item.screen_id)
            if screen is not None and tuple(screen.size) != (device.width, device.height):
                mismatch.append(screen.name)
    return DeviceView(device, state, late, signal, mismatch)


async def _screens(glimpze: Services, project_id: str) -> dict[str, Screen]:
    listed = await all_pages(lambda after: glimpze.screens.page(project_id, after=after, limit=MAX_LIMIT))
    return {screen.id: screen for screen in listed}


@get("/devices")
async def devices_page(request: AnyRequest, glimpze: App, viewer: SignedIn) -> Template:
    devices = await all_pages(lambda after: glimpze.devices.page(viewer.project_id, after=after, limit=MAX_LIMIT))
    screens = await _screens(glimpze, viewer.project_id)
    now = glimpze.clock.now()
    views = [view(device, now, screens) for device in devices]
    return page(
        request,
        "devices.html",
        title="Devices",
        section="devices",
        waiting=[d for d in views if d.state == "pending"],
        known=[d for d in views if d.state != "pending"],
        screens=list(screens.values()),
        screen_names={screen.id: screen.name for screen in screens.values()},
        base_url=glimpze.config.base_url,
    )


@get("/devices/{device_id:str}")
async def device_page(request: AnyRequest, glimpze: App, viewer: SignedIn, device_id: FromPath[str]) -> Template:
    device = await glimpze.devices.get(viewer.project_id, device_id)
    screens = await _screens(glimpze, viewer.project_id)
    logs = await glimpze.devices.logs(viewer.project_id, device_id, before=None, limit=DEFAULT_LIMIT)
    rows = [(item.screen_id, item.seconds) for item in device.playlist]
    rows += [("", DEFAULT_SECONDS)] * EMPTY_ROWS
    return page(
        request,
        "device.html",
        title=device.name,
        section="devices",
        d=view(device, glimpze.clock.now(), screens),
        screens=list(screens.values()),
        screen_names={screen.id: screen.name for screen in screens.values()},
        playlist_rows=rows,
        seconds_choices=SECONDS_CHOICES,
        logs=logs.data,
        image=await glimpze.trmnl.last_image(device_id),
    )


def _playlist(form: Any) -> list[dict[str, Any]]:
    """The playlist rows of a form (`screen` and `seconds` side by side; rows without a screen are skipped)."""
    screens = form.data.getall("screen", [])
    seconds = form.data.getall("seconds", [])
    items = []
    for screen_id, time in zip(screens, seconds, strict=False):
        if isinstance(screen_id, str) and screen_id.strip():
            value = time.strip() if isinstance(time, str) else ""
            items.append({"screen_id": screen_id.strip(), "seconds": int(value) if value.isdigit() else value})
    return items


@post("/devices/{device_id:str}/accept")
async def accept_device(request: AnyRequest, glimpze: App, viewer: SignedIn, device_id: FromPath[str]) -> Response[Any]:
    """Accept a waiting device, with its first screen when one was chosen."""
    form = await form_of(request)

    async def accept() -> str:
        values: dict[str, Any] = {"accepted": True}
        if form["screen"]:
            values["playlist"] = [{"screen_id": form["screen"], "seconds": DEFAULT_SECONDS}]
        device, _ = await glimpze.devices.update(viewer.project_id, device_id, convert(values, DevicePatch))
        return f"Accepted “{device.name}”. It fetches its token and first picture at its next wake-up."

    return await attempt(request, accept, then=f"/devices/{device_id}", failed="Not accepted.")


@post("/devices/{device_id:str}")
async def update_device(request: AnyRequest, glimpze: App, viewer: SignedIn, device_id: FromPath[str]) -> Response[Any]:
    form = await form_of(request)

    async def save() -> str:
        values: dict[str, Any] = {
            "name": form["name"],
            "playlist": _playlist(form),
            "accepted": form.checked("accepted"),
        }
        if form["bit_depth"]:
            values["bit_depth"] = int(form["bit_depth"]) if form["bit_depth"].isdigit() else form["bit_depth"]
        if form["format"]:
            values["format"] = form["format"]
        device, _ = await glimpze.devices.update(viewer.project_id, device_id, convert(values, DevicePatch))
        return f"Saved “{device.name}”."

    return await attempt(request, save, then=f"/devices/{device_id}", failed="Not saved.")


@post("/devices/{device_id:str}/delete")
async def delete_device(request: AnyRequest, glimpze: App, viewer: SignedIn, device_id: FromPath[str]) -> Response[Any]:
    device = await glimpze.devices.get(viewer.project_id, device_id)
    await glimpze.devices.delete(viewer.project_id, device_id)
    notify(request, f"Deleted “{device.name}”. If it calls again, it waits for approval as a new device.")
    return redirect("/devices")


ROUTES = [devices_page, device_page, accept_device, update_device, delete_device]
