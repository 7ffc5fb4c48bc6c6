"""`/v1/devices`: e-ink devices — list, read, accept and change (name, playlist, image format), delete, logs."""

from __future__ import annotations

import msgspec
from litestar import Router, delete, get, patch
from litestar.params import FromPath, FromQuery

from glimpze.displays.devices import Device, DeviceLogPage, DevicePatch
from glimpze.store.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor
from glimpze.validation import Decoder
from glimpze.web.common import AnyRequest, App, Caller, read_json

DEVICE_PATCH = Decoder(DevicePatch)


class ChangedDevice(Device, kw_only=True):
    """A changed device; `access_token` is set only by the change that accepted it the first time
    (the device itself fetches it from /api/setup; clients configured by hand need it here)."""

    access_token: str | None


@get("/", summary="List devices, in the order they were first seen (pending ones included)")
async def list_devices(
    glimpze: App, principal: Caller, limit: FromQuery[int] = DEFAULT_LIMIT, cursor: FromQuery[str | None] = None
) -> Page[Device]:
    after = decode_cursor(cursor, int)
    return await glimpze.devices.page(principal.project_id, after=after, limit=check_limit(limit))


@get("/{device_id:str}", summary="Read a device: its state, playlist and what it last reported")
async def get_device(device_id: FromPath[str], glimpze: App, principal: Caller) -> Device:
    return await glimpze.devices.get(principal.project_id, device_id)


@patch(
    "/{device_id:str}",
    opt={"body": DevicePatch},
    summary="Accept a device, or change its name, playlist, bit depth or image format",
)
async def update_device(
    device_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller
) -> ChangedDevice:
    data = await read_json(request, DEVICE_PATCH)
    device, token = await glimpze.devices.update(principal.project_id, device_id, data)
    return ChangedDevice(**msgspec.structs.asdict(device), access_token=token)


@delete("/{device_id:str}", summary="Forget a device, its logs and images (if it calls again, it is pending)")
async def delete_device(device_id: FromPath[str], glimpze: App, principal: Caller) -> None:
    await glimpze.devices.delete(principal.project_id, device_id)


@get("/{device_id:str}/logs", summary="The device's log lines (POST /api/log), newest first")
async def device_logs(
    device_id: FromPath[str],
    glimpze: App,
    principal: Caller,
    limit: FromQuery[int] = DEFAULT_LIMIT,
    cursor: FromQuery[str | None] = None,
) -> DeviceLogPage:
    before = decode_cursor(cursor, int)
    return await glimpze.devices.logs(
        principal.project_id, device_id, before=before[0] if before else None, limit=check_limit(limit)
    )


router = Router(
    "/devices",
    route_handlers=[list_devices, get_device, update_device, delete_device, device_logs],
    tags=["devices"],
)
