"""The TRMNL firmware's device protocol: `/api/setup`, `/api/display`, `/api/log`, as the firmware calls them.

Read from the firmware itself (usetrmnl/firmware 1.5, usetrmnl/trmnl-firmware 1.8) and the BYOS
servers (byos_hanami, byos_laravel, byos_django):

- `GET /api/setup` with `ID` (the MAC address), `FW-Version`, `Model`. The firmware reads the JSON
  `status`: 200 stores `api_key` and `friendly_id` and downloads `image_url` as its logo (a 1-bit
  800×480 BMP of exactly 48,062 bytes, or a PNG on newer firmware); 404 shows `message` on its
  "MAC address not registered" screen and asks again after its default sleep. Glimpze records an
  unknown MAC as pending and answers 404 until the device is accepted, then 200 with the token,
  until the device has used it (a device asking again after that is told how to re-pair).
- `GET /api/display` with `ID`, `Access-Token`, `Refresh-Rate`, `Battery-Voltage`, `FW-Version`,
  `RSSI`, `Width`, `Height` (and more the newest firmware adds). The HTTP status must be 200; the
  JSON `status` decides: 0 shows `image_url` unless `filename` is the one on show (so an unchanged
  picture costs no redraw), sleeping `refresh_rate` seconds; 202 is "not registered yet" (the
  firmware polls again soon); 500 makes it erase its credentials and start over, which is TRMNL's
  answer to an unknown access token (`reset_firmware: true` beside it). `update_firmware`,
  `firmware_url`, `reset_firmware` and `special_function` are always "no update".
- `POST /api/log` with `ID` and `Access-Token`: `{"logs": [...]}` (1.6+) or
  `{"log": {"logs_array": [...]}}` (older); 200 or 204 makes the firmware drop what it sent.

The image a display answer points at is stored (`display_images`, the newest few per device) under
its filename, the first 16 hex of its SHA-256, at `/s/img/{filename}.{png|bmp}`: immutable.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from glimpze.clock import Clock, iso
from glimpze.config import Config
from glimpze.displays.devices import (
    DEFAULT_BIT_DEPTH,
    DEFAULT_FORMAT,
    SQL_DEVICE_BY_MAC,
    Devices,
    new_friendly_id,
    playlist_of,
)
from glimpze.displays.playlists import turn
from glimpze.displays.render import BitDepth, ImageFormat, Panel, ScreenSpec
from glimpze.displays.screens import MAX_SIDE, MIN_SIDE, ScreenPicture, Screens
from glimpze.errors import InvalidDeviceToken, NotFound, ValidationFailed
from glimpze.feeds.events import Event, Widget
from glimpze.feeds.limits import AuthFailureLimiter, too_many_failures
from glimpze.ids import hash_secret, new_id, same
from glimpze.store.changes import Changes
from glimpze.store.sql import Row, Store, Tx, one
from glimpze.validation import Decoder

SETUP_SIZE = (800, 480)  # the setup logo: what every firmware can take (a 1-bit BMP)
NO_PLAYLIST_REFRESH = 300  # an accepted device with nothing to show asks again this often
IMAGES_KEPT = 3  # per device: the one on show, and a couple a slow download may still ask for
MAX_PENDING = 20  # unknown devices waiting in a project; the longest unseen goes first
MAX_LOG_ENTRIES = 100  # in one POST /api/log
MAX_LOG_ENTRY_BYTES = 8192
MAX_TEXT_HEADER = 64  # FW-Version, Model
_MAC = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")

SQL_INSERT_PENDING = """
    INSERT INTO devices (id, project_id, mac, friendly_id, name, accepted, playlist, playlist_index, bit_depth, format,
                         created_at, updated_at)
    VALUES (:id, :project_id, :mac, :friendly_id, :name, 0, '[]', 0, :bit_depth, :format, :now, :now)
    ON CONFLICT (mac) DO NOTHING
"""
SQL_PENDING_COUNT = "SELECT count(*) FROM devices WHERE project_id = ? AND accepted = 0 AND token_hash IS NULL"
SQL_FORGET_LONGEST_PENDING = """
    DELETE FROM devices WHERE id = (
        SELECT id FROM devices WHERE project_id = ? AND accepted = 0 AND token_hash IS NULL
        ORDER BY coalesce(last_seen_at, created_at) LIMIT 1
    )
"""
SQL_SEEN = """
    UPDATE devices SET last_seen_at = :now,
        model = coalesce(:model, model), width = coalesce(:width, width), height = coalesce(:height, height),
        battery_voltage = coalesce(:battery_voltage, battery_voltage), rssi = coalesce(:rssi, rssi),
        firmware = coalesce(:firmware, firmware)
    WHERE id = :id
"""
SQL_SHOWN = """
    UPDATE devices SET refresh_rate = :refresh_rate, last_filename = :filename, token = NULL
    WHERE id = :id
"""
# The playlist position moves only if the playlist is still the one the turn was worked out from.
SQL_TURNED = "UPDATE devices SET playlist_index = ?, shown_since = ? WHERE id = ? AND playlist = ?"
SQL_SETUP_ASKED = "UPDATE devices SET setup_asked_at = ? WHERE id = ?"
SQL_INSERT_IMAGE = """
    INSERT INTO display_images (device_id, filename, format, data, created_at) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (device_id, filename) DO UPDATE SET created_at = excluded.created_at
"""
# The image just answered always stays; of the others, the newest.
SQL_TRIM_IMAGES = """
    DELETE FROM display_images WHERE device_id = :device AND filename <> :current AND filename NOT IN (
        SELECT filename FROM display_images WHERE device_id = :device ORDER BY created_at DESC LIMIT :keep
    )
"""
SQL_FIND_IMAGE = "SELECT format, data FROM display_images WHERE filename = ? LIMIT 1"
SQL_LAST_IMAGE = """
    SELECT i.filename, i.format FROM devices d
    JOIN display_images i ON i.device_id = d.id AND i.filename = d.last_filename
    WHERE d.id = ?
"""


class SetupAnswer(msgspec.Struct):
    """`GET /api/setup`: `status` 200 with the device's token, or 404 (not accepted yet) with why."""

    status: int
    api_key: str | None
    friendly_id: str | None
    image_url: str | None
    message: str


class DisplayAnswer(msgspec.Struct, omit_defaults=True):
    """`GET /api/display`: `status` 0 (an image), 202 (not accepted yet) or 500 (unknown token: start over)."""

    status: int
    image_url: str | msgspec.UnsetType = msgspec.UNSET
    filename: str | msgspec.UnsetType = msgspec.UNSET
    refresh_rate: int | msgspec.UnsetType = msgspec.UNSET
    reset_firmware: bool | msgspec.UnsetType = msgspec.UNSET
    update_firmware: bool | msgspec.UnsetType = msgspec.UNSET
    firmware_url: str | None | msgspec.UnsetType = msgspec.UNSET
    special_function: str | msgspec.UnsetType = msgspec.UNSET
    message: str | msgspec.UnsetType = msgspec.UNSET
    error: str | msgspec.UnsetType = msgspec.UNSET


class LogAnswer(msgspec.Struct):
    """`POST /api/log`: how many lines were stored."""

    status: int
    stored: int


class LogBody(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What the firmware posts: `logs` (1.6 and later) or `log.logs_array` (before)."""

    logs: list[dict[str, Any]] | msgspec.UnsetType = msgspec.UNSET
    log: dict[str, list[dict[str, Any]]] | msgspec.UnsetType = msgspec.UNSET


LOG_BODY = Decoder(LogBody)


@dataclass(frozen=True, slots=True)
class DeviceHeaders:
    """What a device says about itself in its request headers (telemetry that does not parse is left out)."""

    mac: str
    token: str | None = None
    refresh_rate: int | None = None
    battery_voltage: float | None = None
    firmware: str | None = None
    rssi: int | None = None
    width: int | None = None
    height: int | None = None
    model: str | None = None

    @classmethod
    def read(cls, header: Callable[[str], str | None]) -> DeviceHeaders:
        """From a request's headers; a missing or malformed `ID` is a 422."""
        mac = (header("id") or "").strip()
        if not _MAC.fullmatch(mac):
            raise ValidationFailed.at("header.ID", "must be the device's MAC address, such as 'AA:BB:CC:DD:EE:FF'")
        width, height = _number(header("width"), int), _number(header("height"), int)
        return cls(
            mac=mac.upper(),
            token=(header("access-token") or "").strip() or None,
            refresh_rate=_number(header("refresh-rate"), int),
            battery_voltage=_number(header("battery-voltage"), float),
            firmware=_text(header("fw-version")),
            rssi=_number(header("rssi"), int),
            width=width if width is not None and MIN_SIDE <= width <= MAX_SIDE else None,
            height=height if height is not None and MIN_SIDE <= height <= MAX_SIDE else None,
            model=_text(header("model")),
        )


class Trmnl:
    """Answers devices in the TRMNL firmware's protocol."""

    def __init__(
        self,
        db: Store,
        config: Config,
        clock: Clock,
        *,
        devices: Devices,
        screens: Screens,
        default_project: Callable[[], Any],
        auth_failures: AuthFailureLimiter,
        changes: Changes,
    ) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.devices = devices
        self.screens = screens
        self.default_project = default_project  # an awaitable of the project unknown devices join
        self.auth_failures = auth_failures
        self.changes = changes

    # /api/setup

    async def setup(self, said: DeviceHeaders, client: str) -> SetupAnswer:
        self._check_blocked(client)
        row = await self._device(said, client)
        if not row["accepted"]:
            return SetupAnswer(404, None, None, None, _waiting(row))
        if row["token"] is None:
            await self.db.write(lambda tx: self._asked_again(tx, row))
            message = f"{row['friendly_id']} has its token already. To pair it again, delete it in Glimpze's Devices."
            return SetupAnswer(404, None, None, None, message)
        spec = ScreenSpec(SETUP_SIZE, "full", "eink", show_updated=False)
        title = f"{row['name']} is connected"
        words = "Glimpze shows this device's playlist from its next refresh."
        picture = await self._system(row, spec, title, "success", words, bit_depth=1, fmt="bmp")
        await self.db.write(lambda tx: self._keep_image(tx, row["id"], picture, "bmp"))
        return SetupAnswer(
            200, row["token"], row["friendly_id"], self._image_url(picture, "bmp"), "Connected to Glimpze"
        )

    # /api/display

    async def display(self, said: DeviceHeaders, client: str) -> DisplayAnswer:
        self._check_blocked(client)
        row = await self._device(said, client)
        if row["token_hash"] is not None and not (said.token and same(hash_secret(said.token), row["token_hash"])):
            self.auth_failures.failed(client)
            return DisplayAnswer(500, error="Device not found", reset_firmware=True)
        if not row["accepted"]:
            return await self._not_ready(row, said)
        return await self._content(row, said)

    async def _not_ready(self, row: Row, said: DeviceHeaders) -> DisplayAnswer:
        spec = ScreenSpec(_size(row, said), "full", "eink", show_updated=False)
        title = f"Accept {row['friendly_id']} in Glimpze"
        words = f"Open Glimpze's dashboard, Devices, and accept {row['mac']}."
        picture = await self._system(row, spec, title, "info", words, bit_depth=1, fmt="bmp")
        await self.db.write(lambda tx: self._shown(tx, row, said, picture, "bmp", None, keep_token=True))
        return DisplayAnswer(
            202,
            image_url=self._image_url(picture, "bmp"),
            filename=picture.filename,
            refresh_rate=NO_PLAYLIST_REFRESH,
            **_NO_UPDATE,
            message=_waiting(row),
        )

    async def _content(self, row: Row, said: DeviceHeaders) -> DisplayAnswer:
        now = self.clock.now()
        items = playlist_of(row)
        current = turn(items, row["playlist_index"], row["shown_since"], now)
        screen = None
        if current is not None:
            screen = await self.screens.screen_of(row["project_id"], items[current.index].screen_id)
        fmt, bit_depth = image_kind(row)
        if screen is None or current is None:
            spec = ScreenSpec(_size(row, said), "full", "eink", show_updated=False)
            words = "Add screens to its playlist in Glimpze's dashboard, Devices."
            picture = await self._system(
                row, spec, f"Nothing to show on {row['name']} yet", "info", words, bit_depth, fmt
            )
            refresh = NO_PLAYLIST_REFRESH
        else:
            picture = await self.screens.draw(screen, bit_depth=bit_depth, fmt=fmt)
            refresh = current.seconds_left
        await self.db.write(lambda tx: self._shown(tx, row, said, picture, fmt, refresh, current=current))
        return DisplayAnswer(
            0,
            image_url=self._image_url(picture, fmt),
            filename=picture.filename,
            refresh_rate=refresh,
            **_NO_UPDATE,
        )

    # /api/log

    async def log(self, said: DeviceHeaders, body: bytes, client: str) -> LogAnswer:
        self._check_blocked(client)
        row = await self.db.fetch_one(SQL_DEVICE_BY_MAC, (said.mac,))
        if row is None or row["token_hash"] is None:
            if row is None:
                self.auth_failures.failed(client)
            raise InvalidDeviceToken("This device is not paired with Glimpze yet: accept it in the dashboard first.")
        if not said.token or not same(hash_secret(said.token), row["token_hash"]):
            self.auth_failures.failed(client)
            raise InvalidDeviceToken("The Access-Token is not this device's.")
        lines = _log_lines(LOG_BODY.decode(body))

        def job(tx: Tx) -> None:
            self.devices.add_logs(tx, row["id"], lines)
            self._seen(tx, row, said)

        await self.db.write(job)
        return LogAnswer(200, len(lines))

    # /s/img/{filename}.{ext}

    async def image(self, name: str) -> tuple[bytes, str]:
        """A stored display image by its file name; NotFound when it is not (or no longer) kept."""
        filename, _, ext = name.partition(".")
        row = await self.db.fetch_one(SQL_FIND_IMAGE, (filename,))
        if row is None or row["format"] != ext:
            raise NotFound(f"No display image {name!r}: devices fetch the one /api/display names.")
        return bytes(row["data"]), ext

    async def last_image(self, device_id: str) -> str | None:
        """The path of the image a device was last sent to show, while it is kept."""
        row = await self.db.fetch_one(SQL_LAST_IMAGE, (device_id,))
        return None if row is None else f"/s/img/{row['filename']}.{row['format']}"

    # Shared steps

    def _check_blocked(self, client: str) -> None:
        wait = self.auth_failures.blocked(client)
        if wait > 0:
            raise too_many_failures(wait)

    async def _device(self, said: DeviceHeaders, client: str) -> Row:
        """The device of this MAC, seen now; an unknown one is recorded as pending (a failed
        authentication: guessing MACs is bounded like guessing keys)."""
        row = await self.db.fetch_one(SQL_DEVICE_BY_MAC, (said.mac,))
        if row is None:
            self.auth_failures.failed(client)
            project_id = await self.default_project()
        else:
            project_id = row["project_id"]
        params = {
            "id": new_id("dev_"),
            "project_id": project_id,
            "mac": said.mac,
            "friendly_id": new_friendly_id(),
            "name": f"{said.model or 'TRMNL'} {said.mac[-8:].replace(':', '')}",
            "bit_depth": DEFAULT_BIT_DEPTH,
            "format": DEFAULT_FORMAT,
            "now": self.clock.now(),
        }

        def job(tx: Tx) -> Row:
            if row is None:
                if one(tx.execute(SQL_PENDING_COUNT, (project_id,)))[0] >= MAX_PENDING:
                    tx.execute(SQL_FORGET_LONGEST_PENDING, (project_id,))
                tx.execute(SQL_INSERT_PENDING, params)
            found = one(tx.execute(SQL_DEVICE_BY_MAC, (said.mac,)))
            self._seen(tx, found, said)
            return one(tx.execute(SQL_DEVICE_BY_MAC, (said.mac,)))

        return await self.db.write(job)

    def _seen(self, tx: Tx, row: Row, said: DeviceHeaders) -> None:
        telemetry = {
            "model": said.model,
            "width": said.width,
            "height": said.height,
            "battery_voltage": said.battery_voltage,
            "rssi": said.rssi,
            "firmware": said.firmware,
        }
        tx.execute(SQL_SEEN, {**telemetry, "now": self.clock.now(), "id": row["id"]})
        self.changes.note(row["project_id"], "device", row["id"])

    def _asked_again(self, tx: Tx, row: Row) -> None:
        tx.execute(SQL_SETUP_ASKED, (self.clock.now(), row["id"]))
        self.changes.note(row["project_id"], "device", row["id"])

    def _shown(
        self,
        tx: Tx,
        row: Row,
        said: DeviceHeaders,
        picture: ScreenPicture,
        fmt: str,
        refresh: int | None,
        *,
        current: Any = None,
        keep_token: bool = False,
    ) -> None:
        """Record a display answer: the image kept for download, what the device was told, the
        playlist's position; the token is now used (only its hash stays)."""
        self._keep_image(tx, row["id"], picture, fmt)
        if not keep_token:
            tx.execute(SQL_SHOWN, {"refresh_rate": refresh, "filename": picture.filename, "id": row["id"]})
        if current is not None:
            tx.execute(SQL_TURNED, (current.index, current.since, row["id"], row["playlist"]))
        self.changes.note(row["project_id"], "device", row["id"])

    def _keep_image(self, tx: Tx, device_id: str, picture: ScreenPicture, fmt: str) -> None:
        tx.execute(SQL_INSERT_IMAGE, (device_id, picture.filename, fmt, picture.data, self.clock.now()))
        tx.execute(SQL_TRIM_IMAGES, {"device": device_id, "current": picture.filename, "keep": IMAGES_KEPT})

    async def _system(
        self, row: Row, spec: ScreenSpec, title: str, status: str, words: str, bit_depth: BitDepth, fmt: ImageFormat
    ) -> ScreenPicture:
        """A screen of Glimpze's own (setup, waiting for approval, empty playlist) drawn as a status widget."""
        content = {"title": title, "status": status, "message": words}
        event = Event(
            id=f"device-{row['id']}",
            feed_id="",
            status="accepted",
            schema_type="status",
            content=content,
            metadata={},
            intent={},
            received_at=iso(row["created_at"]),  # fixed: the same words give the same image (and filename)
            widget_updated=True,
            push="none",
        )
        panel = Panel("", "Glimpze", "status", Widget("", event))
        return await self.screens.draw_panels(row["project_id"], spec, [panel], bit_depth, fmt)

    def _image_url(self, picture: ScreenPicture, fmt: str) -> str:
        return f"{self.config.base_url}/s/img/{picture.filename}.{fmt}"


_NO_UPDATE: dict[str, Any] = {
    "reset_firmware": False,
    "update_firmware": False,
    "firmware_url": None,
    "special_function": "none",
}


def image_kind(row: Row) -> tuple[ImageFormat, BitDepth]:
    """The device's image format and bit depth (a BMP is always 1-bit: what older firmware reads)."""
    if row["format"] == "bmp":
        return "bmp", 1
    return "png", 2 if row["bit_depth"] == 2 else 1


def _waiting(row: Row) -> str:
    return f"Waiting for approval: accept {row['friendly_id']} ({row['mac']}) in Glimpze's dashboard, Devices."


def _size(row: Row, said: DeviceHeaders) -> tuple[int, int]:
    width, height = said.width or row["width"], said.height or row["height"]
    return (width, height) if width and height else SETUP_SIZE


def _number(text: str | None, kind: type[int] | type[float]) -> Any:
    """A telemetry header as a number; None when absent or not a plain number (never an error:
    a device must not fail to fetch its picture over a value it reports)."""
    if text is None:
        return None
    try:
        value = kind(text.strip())
    except ValueError:
        return None
    return value if value == value and abs(value) < 1e9 else None  # no NaN, no absurd values


def _text(text: str | None) -> str | None:
    text = (text or "").strip()
    return text[:MAX_TEXT_HEADER] if text and text.isprintable() else None


def _log_lines(body: LogBody) -> list[tuple[float | None, str | None, str, bytes]]:
    """Each posted line as (the device's time, level, message, the line as JSON)."""
    if body.logs is not msgspec.UNSET:
        entries, path = body.logs, "$.logs"
    elif body.log is not msgspec.UNSET and "logs_array" in body.log:
        entries, path = body.log["logs_array"], "$.log.logs_array"
    else:
        raise ValidationFailed.at("$.logs", 'send the lines as {"logs": [{"message": …}, …]}')
    if len(entries) > MAX_LOG_ENTRIES:
        raise ValidationFailed.at(path, f"at most {MAX_LOG_ENTRIES} lines per request")
    lines = []
    for n, entry in enumerate(entries):
        encoded = msgspec.json.encode(entry)
        if len(encoded) > MAX_LOG_ENTRY_BYTES:
            raise ValidationFailed.at(f"{path}[{n}]", f"a line may hold at most {MAX_LOG_ENTRY_BYTES} bytes of JSON")
        message = entry.get("message", entry.get("log_message"))
        if not isinstance(message, str):
            raise ValidationFailed.at(f"{path}[{n}].message", "must be the line's text")
        at = entry.get("created_at", entry.get("creation_timestamp"))
        level = entry.get("level")
        lines.append(
            (
                float(at) if isinstance(at, int | float) and not isinstance(at, bool) and 0 < at < 1e11 else None,
                level if isinstance(level, str) and len(level) <= 16 else None,
                message,
                encoded,
            )
        )
    return lines
