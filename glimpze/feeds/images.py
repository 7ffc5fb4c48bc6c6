"""Uploaded image checks: PNG, JPEG or WebP only, single frame, exact widget size, nothing appended.

Three independent checks, cheapest first, none of which decodes pixels:
1. the magic number says which format the bytes are (never the filename or Content-Type);
2. the container is walked to its end (PNG chunks with their CRCs up to IEND, JPEG segments and
   entropy-coded data up to EOI, WebP's RIFF chunks), so a truncated file, an animation, or
   bytes after the end (a polyglot: an image that is also a ZIP or an HTML page) is refused;
3. libvips reads the header alone (`access="sequential"`, `fail_on="error"`) with every loader
   but PNG, JPEG and WebP blocked, and the declared size must be exactly the widget's. A file
   that declares 100000×100000 pixels is refused here, before anything is allocated for it.

pyvips is imported on first use (`vips()`): it costs ~30 MB of RSS that an idle server on a
Raspberry Pi should not pay.
"""

from __future__ import annotations

import re
import struct
import threading
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

# Widget sizes in pixels (seed 002: @3x of the iOS widget sizes).
WIDGET_PIXELS: dict[str, tuple[int, int]] = {"small": (474, 474), "medium": (1014, 474), "large": (1014, 1062)}
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
_NAMES = {"png": "PNG", "jpg": "JPEG", "webp": "WebP"}
_LOADERS = {"png": "pngload_buffer", "jpg": "jpegload_buffer", "webp": "webpload_buffer"}
# The only libvips loaders left unblocked (class names of the nicknames above).
_ALLOWED_LOADER_CLASSES = ("VipsForeignLoadPngBuffer", "VipsForeignLoadJpegBuffer", "VipsForeignLoadWebpBuffer")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# After an SOS segment: the next 0xFF that is neither byte stuffing (FF 00), a restart marker
# (FF D0-D7) nor a fill byte (FF FF) starts the next marker.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# Formats people try to upload, named in the error so they know what they sent.
_OTHER_FORMATS: list[tuple[re.Pattern[bytes], str]] = [
    (re.compile(rb"GIF8[79]a"), "a GIF image"),
    (re.compile(rb"II\*\x00|MM\x00\*"), "a TIFF image"),
    (re.compile(rb"%PDF-"), "a PDF document"),
    (re.compile(rb"BM"), "a BMP image"),
    (re.compile(rb"....ftyp(avif|avis)", re.S), "an AVIF image"),
    (re.compile(rb"....ftyp(heic|heix|hevc|heim|heis|mif1|msf1)", re.S), "a HEIF/HEIC image"),
    (re.compile(rb"\x00\x00\x01\x00"), "an ICO icon"),
    (re.compile(rb"\xff\x0a|\x00\x00\x00\x0cJXL "), "a JPEG XL image"),
    (re.compile(rb"(\xef\xbb\xbf)?\s*(<\?xml|<svg|<!--|<!DOCTYPE svg)", re.I), "an SVG or XML document"),
    (re.compile(rb"PK\x03\x04"), "a ZIP archive"),
]


class ImageRejected(Exception):
    """The image is refused; the message names the form field and says why."""


@dataclass(frozen=True, slots=True)
class CheckedImage:
    """What the checks learnt about an accepted image."""

    ext: str  # png | jpg | webp
    width: int
    height: int

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.ext]


class VipsImage(Protocol):
    """What Glimpze uses of a `pyvips.Image` between functions (pyvips has no type information)."""

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def xoffset(self) -> int: ...

    @property
    def yoffset(self) -> int: ...

    def draw_mask(self, ink: list[int], mask: VipsImage, x: int, y: int) -> VipsImage: ...

    def pngsave_buffer(self, *, compression: int) -> bytes: ...


_vips: Any = None  # the pyvips module, untyped
_vips_lock = threading.Lock()


def vips() -> Any:
    """pyvips, imported on first use and locked down: untrusted operations and every loader
    other than PNG, JPEG and WebP blocked, and no operation cache (uploads are not reused)."""
    global _vips
    if _vips is None:
        with _vips_lock:
            if _vips is None:
                import pyvips

                pyvips.block_untrusted_set(True)
                pyvips.operation_block_set("VipsForeignLoad", True)
                for name in _ALLOWED_LOADER_CLASSES:
                    pyvips.operation_block_set(name, False)
                pyvips.cache_set_max(0)
                _vips = pyvips
    return _vips


def sniff(head: bytes) -> str | None:
    """The accepted format these first bytes start, or None."""
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def describe(head: bytes) -> str:
    """What a refused file looks like, for the error message."""
    for pattern, name in _OTHER_FORMATS:
        if pattern.match(head):
            return name
    return "not a PNG, JPEG or WebP image"


def check_image(data: bytes, field: str, size: str) -> CheckedImage:
    """Check one uploaded image for the `size` widget; raises ImageRejected naming `field`."""
    if not data:
        raise ImageRejected(f"{field} is empty")
    ext = sniff(data[:16])
    if ext is None:
        raise ImageRejected(f"{field} is {describe(data[:64])}; only PNG, JPEG and WebP images are accepted")
    name = _NAMES[ext]
    try:
        _WALKERS[ext](data)
    except _Truncated as exc:
        raise ImageRejected(f"{field} is a truncated {name} file ({exc}); send the whole file") from None
    except _Trailing as exc:
        raise ImageRejected(
            f"{field} has {exc} byte(s) after the end of its {name} data; send the image alone, with nothing appended"
        ) from None
    except _Animated:
        raise ImageRejected(f"{field} is an animated {name}; only single-frame images are accepted") from None
    except _Damaged as exc:
        raise ImageRejected(f"{field} is not a valid {name} file ({exc})") from None
    width, height = _header(data, ext, field)
    want_w, want_h = WIDGET_PIXELS[size]
    if (width, height) != (want_w, want_h):
        raise ImageRejected(f"{field} is {width}×{height} px; {size} widgets need exactly {want_w}×{want_h} px")
    return CheckedImage(ext, width, height)


def widget_size(data: bytes) -> str | None:
    """The widget size whose pixels an image's header declares, or None (not a PNG, JPEG or WebP
    image, or of no widget's size); `check_image` then checks it for that size."""
    ext = sniff(data[:16])
    if ext is None:
        return None
    try:
        width, height = _header(data, ext, "the image")
    except ImageRejected:
        return None
    return next((size for size, pixels in WIDGET_PIXELS.items() if pixels == (width, height)), None)


def _header(data: bytes, ext: str, field: str) -> tuple[int, int]:
    """Width and height from the header, read by the format's own libvips loader only."""
    pyvips = vips()
    name = _NAMES[ext]
    try:
        image = pyvips.Image.new_from_buffer(data, "", access="sequential", fail_on="error")
        loader = image.get("vips-loader")
        fields = set(image.get_fields())
        pages = image.get("n-pages") if "n-pages" in fields else 1
        orientation = image.get("orientation") if "orientation" in fields else 1
    except pyvips.Error as exc:
        reason = str(exc).strip().splitlines()[-1].strip() if str(exc).strip() else "unreadable"
        raise ImageRejected(f"{field} could not be read as a {name} image ({reason})") from None
    if loader != _LOADERS[ext]:
        raise ImageRejected(f"{field} is not a valid {name} file (read as {loader})")
    if pages != 1:
        raise ImageRejected(f"{field} has {pages} frames; only single-frame images are accepted")
    if orientation not in (0, 1):
        raise ImageRejected(
            f"{field} is marked as rotated or mirrored (EXIF orientation {orientation}); save it upright "
            "(orientation 1) at the widget's size"
        )
    return image.width, image.height


class _Truncated(Exception):
    pass


class _Trailing(Exception):
    pass


class _Animated(Exception):
    pass


class _Damaged(Exception):
    pass


def _walk_png(raw: bytes) -> None:
    """Every chunk's length and CRC, IHDR first, at least one IDAT, IEND last and at the very end."""
    data = memoryview(raw)
    size, pos, seen_data = len(data), len(_PNG_SIGNATURE), False
    first = True
    while True:
        if pos + 8 > size:
            raise _Truncated("it ends before its IEND chunk")
        length, kind = struct.unpack_from(">I4s", data, pos)
        if length > 0x7FFFFFFF or not kind.isalpha():
            raise _Damaged(f"bad chunk header at byte {pos}")
        end = pos + 12 + length
        if end > size:
            raise _Truncated(f"its {kind.decode('latin-1')} chunk is cut short")
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            raise _Damaged(f"the {kind.decode('latin-1')} chunk at byte {pos} fails its CRC check")
        if first and kind != b"IHDR":
            raise _Damaged("the first chunk is not IHDR")
        first = False
        if kind == b"acTL":
            raise _Animated()
        seen_data = seen_data or kind == b"IDAT"
        if kind == b"IEND":
            if not seen_data:
                raise _Damaged("it has no image data")
            if end != size:
                raise _Trailing(size - end)
            return
        pos = end


def _walk_jpeg(raw: bytes) -> None:
    """Marker segments by their lengths, entropy-coded scans up to the next marker, EOI at the end."""
    size, pos = len(raw), 2
    while True:
        if pos >= size:
            raise _Truncated("it ends before its EOI marker")
        if raw[pos] != 0xFF:
            raise _Damaged(f"expected a marker at byte {pos}")
        while pos < size and raw[pos] == 0xFF:  # fill bytes may precede a marker
            pos += 1
        if pos >= size:
            raise _Truncated("it ends before its EOI marker")
        marker = raw[pos]
        pos += 1
        if marker == 0xD9:  # EOI
            if pos != size:
                raise _Trailing(size - pos)
            return
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # standalone markers carry no length
            continue
        if marker in (0x00, 0xD8):
            raise _Damaged(f"unexpected marker 0x{marker:02X} at byte {pos - 1}")
        if pos + 2 > size:
            raise _Truncated("a segment is cut short")
        (length,) = struct.unpack_from(">H", raw, pos)
        if length < 2:
            raise _Damaged(f"bad segment length at byte {pos}")
        pos += length
        if pos > size:
            raise _Truncated("a segment is cut short")
        if marker == 0xDA:  # SOS: entropy-coded data runs until the next real marker
            match = _JPEG_MARKER.search(raw, pos)
            if match is None:
                raise _Truncated("it ends inside its image data")
            pos = match.start()


def _walk_webp(data: bytes) -> None:
    """The RIFF size equals the file size, and the chunks inside fill it exactly; no animation."""
    size = len(data)
    if size < 20:
        raise _Truncated("it ends inside its header")
    (riff,) = struct.unpack_from("<I", data, 4)
    if riff + 8 > size:
        raise _Truncated(f"its RIFF header declares {riff + 8} bytes but the file has {size}")
    if riff + 8 < size:
        raise _Trailing(size - riff - 8)
    pos, first = 12, True
    while pos < size:
        if pos + 8 > size:
            raise _Truncated("a chunk header is cut short")
        kind, length = struct.unpack_from("<4sI", data, pos)
        if first and kind not in (b"VP8 ", b"VP8L", b"VP8X"):
            raise _Damaged("the first chunk is not VP8, VP8L or VP8X")
        if first and kind == b"VP8X" and length >= 1 and pos + 9 <= size and data[pos + 8] & 0x02:
            raise _Animated()
        if kind in (b"ANIM", b"ANMF"):
            raise _Animated()
        first = False
        end = pos + 8 + length + (length & 1)
        if end > size and pos + 8 + length != size:  # the last pad byte is often left out
            raise _Truncated(f"its {kind.decode('latin-1').strip()} chunk is cut short")
        pos = end


_WALKERS = {"png": _walk_png, "jpg": _walk_jpeg, "webp": _walk_webp}
