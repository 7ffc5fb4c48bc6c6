"""Real image files for the tests, made at test time with pyvips (and a few by hand)."""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib

from glimpze.feeds.images import WIDGET_PIXELS, vips

FORMATS = ("png", "jpg", "webp")
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


def picture(width: int, height: int, fmt: str = "png", seed: int = 1) -> bytes:
    """A small, distinct image: a colour from `seed` with a diagonal gradient."""
    pyvips = vips()
    rng = random.Random(seed)
    colour = [rng.randrange(256) for _ in range(3)]
    xyz = pyvips.Image.xyz(width, height)
    ramp = (xyz[0] + xyz[1]) * (255 / (width + height))
    image = (ramp.bandjoin([ramp, ramp]) * 0.3 + [c * 0.7 for c in colour]).cast("uchar")
    image = image.copy(interpretation="srgb")
    return {"png": image.pngsave_buffer, "jpg": image.jpegsave_buffer, "webp": image.webpsave_buffer}[fmt]()


def widget(size: str, fmt: str = "png", seed: int = 1) -> bytes:
    """A valid image for a widget size."""
    return picture(*WIDGET_PIXELS[size], fmt=fmt, seed=seed)


def noise_png(width: int, height: int, fraction: float = 1.0, seed: int = 0) -> bytes:
    """Noise in the top `fraction` of the rows, flat below: a file as large as wanted at a valid
    size (1014×1062 all noise is ~3.4 MB; `fraction` 0.55 is just under 2 MiB)."""
    pyvips = vips()
    rows = max(1, int(height * fraction))
    bands = [pyvips.Image.gaussnoise(width, rows, sigma=80, mean=128, seed=seed * 3 + band) for band in range(3)]
    noise = bands[0].bandjoin(bands[1:])
    image = noise.embed(0, 0, width, height, extend="black")
    return image.cast("uchar").copy(interpretation="srgb").pngsave_buffer(compression=1)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims `width`×`height` (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def apng(size: str) -> bytes:
    """A PNG with an animation control chunk (APNG) after its header."""
    data = widget(size)
    end_of_ihdr = 8 + 25
    return data[:end_of_ihdr] + _chunk(b"acTL", struct.pack(">II", 2, 0)) + data[end_of_ihdr:]


def bad_crc(size: str) -> bytes:
    """A PNG with one bit flipped in the data of its second chunk."""
    data = bytearray(widget(size))
    (length,) = struct.unpack_from(">I", data, 33)  # the chunk after the signature and IHDR
    data[41 + length // 2] ^= 0x01
    return bytes(data)


def svg(width: int = 474, height: int = 474) -> bytes:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<rect width="{width}" height="{height}" fill="red"/></svg>'
    ).encode()


def gif(size: str) -> bytes:
    pyvips = vips()
    width, height = WIDGET_PIXELS[size]
    return (pyvips.Image.black(width, height, bands=3) + 40).cast("uchar").gifsave_buffer()


def tiff(size: str) -> bytes:
    pyvips = vips()
    width, height = WIDGET_PIXELS[size]
    return (pyvips.Image.black(width, height, bands=3) + 40).cast("uchar").tiffsave_buffer()


def avif(size: str) -> bytes:
    pyvips = vips()
    width, height = WIDGET_PIXELS[size]
    return (pyvips.Image.black(width, height, bands=3) + 40).cast("uchar").heifsave_buffer(compression="av1")


def pdf() -> bytes:
    """A minimal one-page PDF."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 474 474] >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def zip_archive() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("payload.html", "<script>alert(1)</script>")
    return out.getvalue()
