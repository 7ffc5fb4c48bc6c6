"""A fake TRMNL device: calls the device protocol the way the firmware does, and checks images as it does.

Modelled on usetrmnl/firmware (1.5) and usetrmnl/trmnl-firmware (1.8): `setup()` sends `ID`,
`FW-Version` and `Model`, stores `api_key` and `friendly_id` when `status` is 200 and downloads the
setup logo (it must be a 48,062-byte BMP or a PNG); `display()` sends the headers of
`buildDisplayHeaders`, requires HTTP 200, and on `status` 0 downloads `image_url` only when
`filename` differs from the one on show, then checks the image as `parseBMPHeader` and the PNG
decoder do (800×480, 1-bit BMP with a black-and-white palette; PNG of the expected bit depth).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import httpx

BMP_SIZE = 48062  # DISPLAY_BMP_IMAGE_SIZE: 62 bytes of header and palette, 48,000 of pixels


@dataclass
class Png:
    width: int
    height: int
    bit_depth: int
    colour_type: int


def png_header(data: bytes) -> Png:
    """The IHDR of a PNG, after checking the signature and the chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16:29]
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(kind + body)
    width, height, depth, colour = struct.unpack(">IIBB", body[:10])
    return Png(width, height, depth, colour)


def check_bmp(data: bytes) -> None:
    """The checks of the firmware's parseBMPHeader (lib/trmnl/src/bmp.cpp), and the file's size."""
    assert data[:2] == b"BM", "not a BMP"
    assert len(data) == BMP_SIZE, len(data)
    width, height = struct.unpack("<ii", data[18:26])
    bits, compression, image_size = struct.unpack("<HII", data[28:38])
    colours = struct.unpack("<I", data[46:50])[0]
    offset = struct.unpack("<I", data[10:14])[0]
    assert (width, height, bits, image_size, colours) == (800, 480, 1, 48000, 2)
    assert compression == 0 and offset == 62
    assert data[54:62] in (bytes([0, 0, 0, 0, 255, 255, 255, 0]), bytes([255, 255, 255, 0, 0, 0, 0, 0]))


def decode(data: bytes) -> Any:
    """The image's pixels, fully decoded by libvips (a PNG; a truncated or broken one raises); it must
    hold a picture, not one flat colour."""
    import pyvips

    image = pyvips.Image.new_from_buffer(data, "", fail_on="error")
    assert image.min() < image.max(), "the image is blank"
    return image


def bmp_ink(data: bytes) -> tuple[int, int]:
    """A checked 1-bit BMP's pixels decoded row by row: (dark pixels, light pixels)."""
    check_bmp(data)
    dark_index = 0 if data[54:58] == bytes([0, 0, 0, 0]) else 1
    rows = [data[62 + y * 100 : 62 + (y + 1) * 100] for y in range(480)]
    light_bits = sum(bin(byte).count("1") for row in rows for byte in row)
    dark = 800 * 480 - light_bits if dark_index == 0 else light_bits
    return dark, 800 * 480 - dark


@dataclass
class FakeDevice:
    """One device with its MAC address, battery and signal; `client` is an httpx.Client on the server."""

    client: httpx.Client
    mac: str = "A0:B7:65:12:34:56"
    firmware: str = "1.6.9"
    model: str = "og_png"
    battery: float = 4.01
    rssi: int = -58
    refresh_rate: int = 900
    api_key: str | None = None
    friendly_id: str | None = None
    filename: str | None = None  # the image on show
    image: bytes | None = None
    downloads: int = 0
    answers: list[dict[str, Any]] = field(default_factory=list)

    def setup(self) -> dict[str, Any]:
        response = self.client.get(
            "/api/setup", headers={"ID": self.mac, "FW-Version": self.firmware, "Model": self.model}
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        if answer["status"] == 200:
            self.api_key, self.friendly_id = answer["api_key"], answer["friendly_id"]
            logo = self._download(answer["image_url"])
            if logo[:2] == b"BM":
                check_bmp(logo)
            else:
                png_header(logo)
        return answer

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {
            "ID": self.mac,
            "Content-Type": "application/json",
            "Access-Token": token if token is not None else self.api_key or "",
            "Refresh-Rate": str(self.refresh_rate),
            "Battery-Voltage": f"{self.battery:.2f}",
            "FW-Version": self.firmware,
            "Model": self.model,
            "RSSI": str(self.rssi),
            "Width": "800",
            "Height": "480",
        }

    def display(self, *, token: str | None = None, extra: dict[str, str] | None = None) -> dict[str, Any]:
        """One wake-up: ask what to show, and fetch the image when its filename is new."""
        response = self.client.get("/api/display", headers={**self.headers(token), **(extra or {})})
        assert response.status_code in (200, 429), response.text  # the firmware accepts only these
        answer: dict[str, Any] = response.json()
        self.answers.append(answer)
        if response.status_code == 200 and answer["status"] == 0:
            assert answer["update_firmware"] is False and answer["reset_firmware"] is False
            assert answer["firmware_url"] is None and answer["special_function"] == "none"
            if answer["filename"] != self.filename:
                self.image = self._download(answer["image_url"])
                self.filename = answer["filename"]
            self.refresh_rate = int(answer["refresh_rate"])
        return answer

    def log(self, lines: list[dict[str, Any]], token: str | None = None) -> httpx.Response:
        headers = {"ID": self.mac, "Access-Token": token if token is not None else self.api_key or ""}
        return self.client.post("/api/log", json={"logs": lines}, headers=headers)

    def _download(self, url: str) -> bytes:
        response = self.client.get(url, headers={"ID": self.mac, "Access-Token": self.api_key or ""})
        assert response.status_code == 200, response.text
        assert int(response.headers["content-length"]) == len(response.content)
        self.downloads += 1
        return response.content
