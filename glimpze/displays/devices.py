"""E-ink devices (`dev_…`) as the operator sees them: accept, name, playlist, image format, state, logs.

A device is known by its MAC address. It is recorded as pending the first time it calls the device
protocol (trmnl.py) and gets no content until it is accepted. Accepting it mints its access
token, which `/api/setup` hands out until the device first uses it; from then on only the
token's hash is kept. Turning `accepted` off pauses a device (it keeps its token); deleting it
forgets the device, its logs and its images, so it starts over as pending.

What a device last reported (battery voltage, Wi-Fi signal, firmware, size) and when it was last
seen are kept on its row, with the refresh rate it was told: the dashboard warns when a device
has not been seen for a few of its refresh periods.
"""

from __future__ import annotations

import secrets
from typing import Literal

import msgspec

from glimpze.clock import Clock, iso
from glimpze.displays.playlists import PLAYLIST, PlaylistItem, check_playlist, set_playlist
from glimpze.displays.screens import Screens
from glimpze.errors import not_found
from glimpze.ids import hash_secret, new_secret
from glimpze.names import check_name
from glimpze.store.changes import Changes
from glimpze.store.pagination import Page, page
from glimpze.store.sql import Row, Store, Tx

MAX_LOG_LINES = 500  # kept per device, newest first
LATE_PERIODS = 3  # "not seen for N × its refresh rate": the dashboard's warning
FRIENDLY_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's: read aloud off a screen
DEFAULT_BIT_DEPTH = 1
DEFAULT_FORMAT = "png"

SQL_DEVICE_COLUMNS = """
    seq, id, project_id, mac, friendly_id, name, accepted, token_hash, token, playlist, playlist_index, shown_since,
    bit_depth, format, model, width, height, battery_voltage, rssi, firmware, refresh_rate, last_seen_at,
    setup_asked_at, last_filename, created_at, updated_at
"""
SQL_GET_DEVICE = f"SELECT {SQL_DEVICE_COLUMNS} FROM devices WHERE id = ?"
SQL_DEVICE_BY_MAC = f"SELECT {SQL_DEVICE_COLUMNS} FROM devices WHERE mac = ?"
SQL_LIST_DEVICES = f"SELECT {SQL_DEVICE_COLUMNS} FROM devices WHERE project_id = ? AND seq > ? ORDER BY seq LIMIT ?"
SQL_UPDATE_DEVICE = """
    UPDATE devices SET name = :name, accepted = :accepted, token_hash = :token_hash, token = :token,
        bit_depth = :bit_depth, format = :format, updated_at = :now
    WHERE id = :id
"""
SQL_DELETE_DEVICE = "DELETE FROM devices WHERE project_id = ? AND id = ?"
SQL_INSERT_LOG = """
    INSERT INTO device_logs (device_id, received_at, logged_at, level, message, entry) VALUES (?, ?, ?, ?, ?, ?)
"""
SQL_TRIM_LOGS = """
    DELETE FROM device_logs WHERE device_id = :device AND seq <= (
        SELECT seq FROM device_logs WHERE device_id = :device ORDER BY seq DESC LIMIT 1 OFFSET :keep
    )
"""
SQL_DEVICE_LOGS = """
    SELECT seq, received_at, logged_at, level, message, entry FROM device_logs
    WHERE device_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?
"""


class DevicePatch(msgspec.Struct, forbid_unknown_fields=True):
    """The body of PATCH /v1/devices/{id}: the fields to change."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    playlist: list[PlaylistItem] | msgspec.UnsetType = msgspec.UNSET
    accepted: bool | msgspec.UnsetType = msgspec.UNSET
    bit_depth: Literal[1, 2] | msgspec.UnsetType = msgspec.UNSET
    format: Literal["png", "bmp"] | msgspec.UnsetType = msgspec.UNSET


class Device(msgspec.Struct, kw_only=True):
    """A device as the API shows it. `paired`: it has fetched its access token and used it."""

    id: str
    name: str
    mac: str
    friendly_id: str
    accepted: bool
    paired: bool
    playlist: list[PlaylistItem]
    bit_depth: int
    format: str
    model: str | None
    width: int | None
    height: int | None
    battery_voltage: float | None
    rssi: int | None
    firmware: str | None
    refresh_rate: int | None
    last_seen_at: str | None
    setup_asked_at: str | None  # it asked /api/setup for its token again after using it: delete it to re-pair
    created_at: str
    updated_at: str


class DeviceLog(msgspec.Struct):
    """One line a device posted to /api/log: when it arrived, the device's own time and level, the message,
    and the whole line as the firmware sent it."""

    received_at: str
    logged_at: str | None
    level: str | None
    message: str
    entry: dict[str, object]


class DeviceLogPage(msgspec.Struct):
    """A page of a device's log, newest first."""

    data: list[DeviceLog]
    next_cursor: str | None


class Devices:
    """Device records: listing, accepting, playlists, deleting, and their logs."""

    def __init__(self, db: Store, clock: Clock, screens: Screens, changes: Changes) -> None:
        self.db = db
        self.clock = clock
        self.screens = screens  # a playlist names screens of the device's project
        self.changes = changes

    async def page(self, project_id: str, *, after: tuple[int] | None, limit: int) -> Page[Device]:
        """A project's devices, in the order they were first seen."""
        rows = await self.db.fetch_all(SQL_LIST_DEVICES, (project_id, after[0] if after else 0, limit + 1))
        return page(rows, limit, device_out, lambda r: (r["seq"],))

    async def row(self, project_id: str, device_id: str) -> Row:
        row = await self.db.fetch_one(SQL_GET_DEVICE, (device_id,))
        if row is None or row["project_id"] != project_id:
            raise not_found("device", device_id)
        return row

    async def get(self, project_id: str, device_id: str) -> Device:
        return device_out(await self.row(project_id, device_id))

    async def update(self, project_id: str, device_id: str, patch: DevicePatch) -> tuple[Device, str | None]:
        """Change a device; accepting one that has no token yet mints it, returned beside the device
        (it is also what /api/setup hands the device)."""
        row = await self.row(project_id, device_id)
        playlist = None
        if patch.playlist is not msgspec.UNSET:
            playlist = check_playlist(patch.playlist, await self.screens.ids(project_id))
        accepted = bool(row["accepted"]) if patch.accepted is msgspec.UNSET else patch.accepted
        token_hash, token, minted = row["token_hash"], row["token"], None
        if accepted and token_hash is None:
            minted = token = new_secret("gzd_")
            token_hash = hash_secret(token)
        params = {
            "id": device_id,
            "name": row["name"] if patch.name is msgspec.UNSET else check_name(patch.name),
            "accepted": int(accepted),  # 0 | 1 in an INTEGER column: the same on PostgreSQL
            "token_hash": token_hash,
            "token": token,
            "bit_depth": row["bit_depth"] if patch.bit_depth is msgspec.UNSET else patch.bit_depth,
            "format": row["format"] if patch.format is msgspec.UNSET else patch.format,
            "now": self.clock.now(),
        }

        def job(tx: Tx) -> Row | None:
            if tx.execute(SQL_UPDATE_DEVICE, params).rowcount == 0:
                return None
            if playlist is not None:
                set_playlist(tx, device_id, playlist, params["now"])
            self.changes.note(project_id, "device", device_id)
            return tx.execute(SQL_GET_DEVICE, (device_id,)).fetchone()

        updated = await self.db.write(job)
        if updated is None:
            raise not_found("device", device_id)
        return device_out(updated), minted

    async def delete(self, project_id: str, device_id: str) -> None:
        """Forget a device, its logs and its images: if it calls again it is pending, as if new."""

        def job(tx: Tx) -> bool:
            if tx.execute(SQL_DELETE_DEVICE, (project_id, device_id)).rowcount == 0:  # logs and images cascade
                return False
            self.changes.note(project_id, "device", device_id)
            return True

        if not await self.db.write(job):
            raise not_found("device", device_id)

    async def logs(self, project_id: str, device_id: str, *, before: int | None, limit: int) -> DeviceLogPage:
        """A device's log lines, newest first, from the one before `before`."""
        await self.row(project_id, device_id)
        rows = await self.db.fetch_all(SQL_DEVICE_LOGS, (device_id, before or 2**63 - 1, limit + 1))
        result = page(rows, limit, _log_out, lambda r: (r["seq"],))
        return DeviceLogPage(result.data, result.next_cursor)

    def add_logs(self, tx: Tx, device_id: str, lines: list[tuple[float | None, str | None, str, bytes]]) -> None:
        """Store log lines (the device's time, level, message, the line as JSON) and keep the newest
        MAX_LOG_LINES of the device (inside a write job)."""
        now = self.clock.now()
        tx.executemany(
            SQL_INSERT_LOG,
            [(device_id, now, at, level, message, entry.decode()) for at, level, message, entry in lines],
        )
        tx.execute(SQL_TRIM_LOGS, {"device": device_id, "keep": MAX_LOG_LINES})


def new_friendly_id() -> str:
    """Six characters that name a device on its own screen and in the dashboard."""
    return "".join(secrets.choice(FRIENDLY_ALPHABET) for _ in range(6))


def playlist_of(row: Row) -> list[PlaylistItem]:
    return PLAYLIST.decode(row["playlist"])


def device_out(row: Row) -> Device:
    return Device(
        id=row["id"],
        name=row["name"],
        mac=row["mac"],
        friendly_id=row["friendly_id"],
        accepted=bool(row["accepted"]),
        paired=row["token_hash"] is not None and row["token"] is None,
        playlist=playlist_of(row),
        bit_depth=row["bit_depth"],
        format=row["format"],
        model=row["model"],
        width=row["width"],
        height=row["height"],
        battery_voltage=row["battery_voltage"],
        rssi=row["rssi"],
        firmware=row["firmware"],
        refresh_rate=row["refresh_rate"],
        last_seen_at=None if row["last_seen_at"] is None else iso(row["last_seen_at"]),
        setup_asked_at=None if row["setup_asked_at"] is None else iso(row["setup_asked_at"]),
        created_at=iso(row["created_at"]),
        updated_at=iso(row["updated_at"]),
    )


def _log_out(row: Row) -> DeviceLog:
    return DeviceLog(
        received_at=iso(row["received_at"]),
        logged_at=None if row["logged_at"] is None else iso(row["logged_at"]),
        level=row["level"],
        message=row["message"],
        entry=msgspec.json.decode(row["entry"]),
    )
