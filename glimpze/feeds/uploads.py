"""`POST /ingest/{feed_id}/upload`: a multipart form of widget images, streamed to disk and checked.

The form has at most the nine fields of seed 002: `small_image`, `medium_image`, `large_image`,
their `_dark` variants, and the text fields `widget_url`, `intent` and `metadata` (JSON strings).
Image parts are written to spool files as they arrive (never held whole in memory), hashed on
the way, and refused with a 413 naming the field once one passes 2 MiB. The checks that follow
(images.py) run in a worker thread; the request is all-or-nothing: one bad field stores nothing.
An accepted upload becomes an ordinary `custom` event whose content holds the images' URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import msgspec
from multipart import MultipartError, MultipartSegment, ParserLimitReached, PushMultipartParser

from glimpze.errors import (
    BadRequest,
    FieldError,
    PayloadTooLarge,
    SchemaTypeMismatch,
    UnsupportedMediaType,
    ValidationFailed,
)
from glimpze.feeds.events import Accepted, NewEvent
from glimpze.feeds.feeds import FeedState
from glimpze.feeds.images import CONTENT_TYPES, WIDGET_PIXELS, CheckedImage, ImageRejected, check_image, widget_size
from glimpze.feeds.media import Media, MediaFile
from glimpze.feeds.schemas import (
    METADATA_MAX_BYTES,
    WIDGET_SIZES,
    CustomContent,
    CustomEvent,
    CustomImage,
    Intent,
    url_problem,
)
from glimpze.ops.datadir import reason
from glimpze.push.buttons import Button
from glimpze.store.database import StorageError
from glimpze.validation import Decoder

T = TypeVar("T")

MiB = 1024 * 1024
UPLOAD_MAX_BYTES = 13 * MiB
IMAGE_MAX_BYTES = 2 * MiB
TEXT_MAX_BYTES = 64 * 1024

# field -> (widget size, dark variant)
IMAGE_FIELDS: dict[str, tuple[str, bool]] = {
    f"{size}_image{suffix}": (size, dark) for size in WIDGET_SIZES for suffix, dark in (("", False), ("_dark", True))
}
TEXT_FIELDS = ("widget_url", "intent", "metadata")
FIELDS = (*IMAGE_FIELDS, *TEXT_FIELDS)

INTENT = Decoder(Intent, prefix="$.intent")
METADATA = Decoder(dict[str, Any], prefix="$.metadata")


@dataclass(slots=True)
class Part:
    """One received form field: an image's spool file, or a text field's bytes."""

    name: str
    filename: str | None
    sha256: str = ""
    size: int = 0
    path: Path | None = None
    text: bytes = b""


@dataclass(slots=True)
class UploadForm:
    """The fields of an upload as received (not yet checked)."""

    parts: dict[str, Part] = field(default_factory=dict)

    def digest(self) -> str:
        """What an Idempotency-Key is bound to: the fields and their content hashes, in any order
        and whatever the multipart boundary (a retry by another client library still matches)."""
        lines = "".join(f"{name}:{self.parts[name].sha256}\n" for name in sorted(self.parts))
        return hashlib.sha256(lines.encode()).hexdigest()


@asynccontextmanager
async def image_form(data: bytes, media: Media, path: str = "attachment") -> AsyncIterator[UploadForm]:
    """A form of one image sent whole (an ntfy attachment), as the field of the widget size its
    header declares; a 422 naming `path` when no size fits. The spool file goes on exit."""
    size = await asyncio.to_thread(widget_size, data)
    if size is None:
        sizes = ", ".join(f"{w}×{h}" for w, h in WIDGET_PIXELS.values())
        raise ValidationFailed.at(path, f"is not a PNG, JPEG or WebP image of a widget size ({sizes} px)")
    if len(data) > IMAGE_MAX_BYTES:
        raise PayloadTooLarge.over(IMAGE_MAX_BYTES)
    part = Part(f"{size}_image", "attachment", hashlib.sha256(data).hexdigest(), len(data), media.new_incoming())
    form = UploadForm({part.name: part})
    try:
        assert part.path is not None
        try:
            part.path.write_bytes(data)
        except OSError as exc:
            raise StorageError(f"cannot write {exc.filename or media.incoming}: {reason(exc)}") from None
        yield form
    finally:
        if part.path is not None:
            part.path.unlink(missing_ok=True)


def multipart_boundary(content_type: str | None) -> str:
    """The boundary of a `multipart/form-data` body; 415 for anything else."""
    media, _, params = (content_type or "").partition(";")
    if media.strip().lower() == "multipart/form-data":
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "boundary" and value.strip('"'):
                return value.strip('"')
        raise BadRequest("The multipart/form-data Content-Type has no boundary parameter.")
    raise UnsupportedMediaType(
        f"Uploads are sent as multipart/form-data, not {media.strip() or 'without a Content-Type'}: "
        "with curl use -F 'small_image=@widget.png', with Python requests use files={…}."
    )


def check_upload_feed(feed: FeedState) -> None:
    """Images go to custom feeds only."""
    if feed.schema_type != "custom":
        raise SchemaTypeMismatch.at(
            "$",
            f'this feed takes "{feed.schema_type}" events, not image uploads; uploads are for custom feeds. '
            f"Send JSON to /ingest/{feed.id} instead",
        )


@asynccontextmanager
async def receive_form(boundary: str, chunks: AsyncIterator[bytes], media: Media) -> AsyncIterator[UploadForm]:
    """Parse the body into a UploadForm, spooling images to disk; the spool files go on exit."""
    form = UploadForm()
    try:
        await _parse(boundary, chunks, media, form)
        yield form
    finally:
        for part in form.parts.values():
            if part.path is not None:
                part.path.unlink(missing_ok=True)


async def _parse(boundary: str, chunks: AsyncIterator[bytes], media: Media, form: UploadForm) -> None:
    parser = PushMultipartParser(boundary, max_segment_count=len(FIELDS), strict=False)
    part: Part | None = None
    sink: IO[bytes] | None = None
    digest = hashlib.sha256()  # the current part's, started afresh at each part
    text: list[bytes] = []
    try:
        async for chunk in chunks:
            for item in parser.parse(chunk):
                if isinstance(item, MultipartSegment):
                    part = _start(item, form)
                    digest, text = hashlib.sha256(), []
                    if part.name in IMAGE_FIELDS:
                        part.path = media.new_incoming()
                        sink = part.path.open("wb")
                elif item:
                    assert part is not None
                    part.size += len(item)
                    _check_part_size(part)
                    digest.update(item)
                    if sink is not None:
                        sink.write(item)
                    else:
                        text.append(item)
                else:  # the end of a part
                    assert part is not None
                    if sink is not None:
                        sink.close()
                        sink = None
                    part.sha256, part.text = digest.hexdigest(), b"".join(text)
                    if part.size == 0 and part.filename == "":
                        _drop(form, part)  # a browser form's file input left empty
        parser.close()
    except ParserLimitReached as exc:
        if "segment count" not in str(exc):
            raise BadRequest(f"The body is not valid multipart/form-data ({exc}).") from None
        raise ValidationFailed.at("$", f"an upload has at most {len(FIELDS)} fields: {', '.join(FIELDS)}") from None
    except MultipartError as exc:
        raise BadRequest(f"The body is not valid multipart/form-data ({exc}).") from None
    except OSError as exc:  # only the spool files touch the disk here: a full disk is the server's, a 503
        raise StorageError(f"cannot write {exc.filename or media.incoming}: {reason(exc)}") from None
    finally:
        if sink is not None:
            with contextlib.suppress(OSError):  # already failing; receive_form() removes the file
                sink.close()


def _start(segment: MultipartSegment, form: UploadForm) -> Part:
    name = segment.name or ""
    if name not in FIELDS:
        suggestion = difflib.get_close_matches(name, FIELDS, n=1, cutoff=0.6)
        hint = f"did you mean {suggestion[0]!r}?" if suggestion else f"allowed fields: {', '.join(FIELDS)}"
        raise ValidationFailed.at(f"$.{name}" if name.isidentifier() else "$", f"unknown field {name!r}; {hint}")
    if name in form.parts:
        raise ValidationFailed.at(f"$.{name}", f"{name} is given more than once")
    part = Part(name, segment.filename)
    form.parts[name] = part
    return part


def _drop(form: UploadForm, part: Part) -> None:
    del form.parts[part.name]
    if part.path is not None:
        part.path.unlink(missing_ok=True)


def _check_part_size(part: Part) -> None:
    limit = IMAGE_MAX_BYTES if part.name in IMAGE_FIELDS else TEXT_MAX_BYTES
    if part.size > limit:
        what = f"{limit // MiB} MiB" if limit >= MiB else f"{limit // 1024} KiB"
        message = f"{part.name} is larger than {what}, the most an upload field may hold"
        raise PayloadTooLarge(f"$.{part.name}: {message}", errors=[FieldError(f"$.{part.name}", message)])


class Upload:
    """An upload form as an ingest submission (see `Ingest.submit`): checked into a custom event."""

    def __init__(self, form: UploadForm, media: Media) -> None:
        self.form = form
        self.media_store = media
        self.media: list[MediaFile] = []
        self.buttons: list[Button] = []

    def digest(self) -> str:
        return self.form.digest()

    def answer(self, new: NewEvent, accepted: Accepted) -> tuple[int, bytes]:
        """The 202 answer, repeating the content: the stored images' URLs."""
        accepted.content = msgspec.Raw(new.content)
        return 202, msgspec.json.encode(accepted)

    async def decode(self) -> CustomEvent:
        """Check every field (all errors at once), then adopt the images and build the event."""
        parts = self.form.parts
        errors: list[FieldError] = []
        intent = Intent()
        metadata: dict[str, Any] = {}
        widget_url: str | None = None
        try:
            if "intent" in parts:
                intent = _json_field(INTENT, parts["intent"])
            if "metadata" in parts:
                metadata = _json_field(METADATA, parts["metadata"])
                if len(msgspec.json.encode(metadata)) > METADATA_MAX_BYTES:
                    raise ValidationFailed.at(
                        "$.metadata", f"is larger than {METADATA_MAX_BYTES // 1024} KiB once encoded"
                    )
            if "widget_url" in parts:
                widget_url = _widget_url(parts["widget_url"])
        except ValidationFailed as exc:
            errors += exc.errors
        images = {name: parts[name] for name in IMAGE_FIELDS if name in parts}
        errors += _missing_light(images)
        try:
            checked, image_errors = await asyncio.to_thread(_check_images, images)
        except OSError as exc:  # a spool file that cannot be read back (a failing disk)
            raise StorageError(f"cannot read {exc.filename}: {reason(exc)}") from None
        errors += image_errors
        if errors:
            raise ValidationFailed("; ".join(f"{e.path}: {e.message}" for e in errors), errors=errors)
        self.media = [
            MediaFile(part.sha256, image.ext, CONTENT_TYPES[image.ext], part.size, image.width, image.height, part.path)
            for part, image in checked
            if part.path is not None
        ]
        await self.media_store.adopt(self.media)
        urls = {part.name: self.media_store.url(f"{part.sha256}.{image.ext}") for part, image in checked}
        sizes = {
            size: CustomImage(urls[f"{size}_image"], urls.get(f"{size}_image_dark"))
            for size in WIDGET_SIZES
            if f"{size}_image" in urls
        }
        return CustomEvent(content=CustomContent(**sizes, widget_url=widget_url), metadata=metadata, intent=intent)


def _json_field(decoder: Decoder[T], part: Part) -> T:
    """A JSON text field: malformed JSON is a 422 naming the field (the body itself was fine)."""
    try:
        return decoder.decode(part.text)
    except BadRequest as exc:
        if exc.errors:  # nested too deeply: the error names the place
            raise ValidationFailed(exc.detail, errors=exc.errors) from None
        raise ValidationFailed.at(f"$.{part.name}", f"is not a JSON object such as {_EXAMPLES[part.name]}") from None


_EXAMPLES = {"intent": '{"update_widget":true}', "metadata": '{"source":"cron"}'}


def _widget_url(part: Part) -> str:
    try:
        url = part.text.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValidationFailed.at("$.widget_url", "is not UTF-8 text") from None
    problem = url_problem(url)
    if problem is not None:
        raise ValidationFailed.at("$.widget_url", problem)
    return url


def _missing_light(images: dict[str, Part]) -> list[FieldError]:
    errors = []
    if not images:
        errors.append(FieldError("$", "send at least one image: small_image, medium_image or large_image"))
    for name in images:
        size, dark = IMAGE_FIELDS[name]
        if dark and f"{size}_image" not in images:
            errors.append(
                FieldError(f"$.{name}", f"{name} is given without {size}_image; a dark variant needs its light image")
            )
    return errors


def _check_images(images: dict[str, Part]) -> tuple[list[tuple[Part, CheckedImage]], list[FieldError]]:
    """Runs in a worker thread: each file is read (at most 2 MiB) and checked."""
    checked: list[tuple[Part, CheckedImage]] = []
    errors: list[FieldError] = []
    for name, part in images.items():
        assert part.path is not None
        try:
            checked.append((part, check_image(part.path.read_bytes(), name, IMAGE_FIELDS[name][0])))
        except ImageRejected as exc:
            errors.append(FieldError(f"$.{name}", str(exc)))
    return checked, errors
