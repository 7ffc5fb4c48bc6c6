"""Gotify's publishing dialect (gotify.net/docs/pushmsg): `POST /message` of an application.

The application is a feed, its token the feed's write key. The body is JSON or a form
(urlencoded or multipart) with `title`, `message` (required), `priority` (0–10) and, in JSON,
`extras` (`client::display`'s content type, `client::notification`'s click URL). It becomes a
`status` event (DESIGN §10): priority 8–10 → error, 5–7 → warning, 0–4 → info; 8 and up ask for a
push. The answer is Gotify's message object, its `id` the event's row number and `appid` the
feed's.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import msgspec
from multipart import MultipartError, MultipartSegment, PushMultipartParser

from glimpze.clock import iso
from glimpze.errors import BadRequest, SchemaTypeMismatch, ValidationFailed
from glimpze.feeds.dialects import DialectSubmission, status_event
from glimpze.feeds.events import NewEvent
from glimpze.feeds.feeds import FeedState
from glimpze.feeds.uploads import multipart_boundary
from glimpze.validation import Decoder

PUSH_PRIORITY = 8
FORM_FIELDS = ("title", "message", "priority")
PATHS = {"$.content.title": "$.title", "$.content.message": "$.message", "$.metadata": "$.extras"}


class GotifyMessage(msgspec.Struct, forbid_unknown_fields=True):
    """Gotify's message body (null where a client sends one for a field it leaves unset)."""

    message: str
    title: str | None = None
    priority: int | None = None
    extras: dict[str, Any] | None = None


GOTIFY_MESSAGE = Decoder(GotifyMessage)


def read_body(content_type: str | None, body: bytes) -> GotifyMessage:
    """The message in a JSON or form body; raises BadRequest or ValidationFailed."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        return _form(dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)))
    if media == "multipart/form-data":
        return _form(_multipart(multipart_boundary(content_type), body))
    message = GOTIFY_MESSAGE.decode(body)
    if message.priority is not None and not 0 <= message.priority <= 10:
        raise ValidationFailed.at("$.priority", "must be 0 to 10")
    return message


def status(priority: int) -> str:
    """Gotify's priority as a status: 8–10 error, 5–7 warning, 0–4 info."""
    return "error" if priority >= 8 else "warning" if priority >= 5 else "info"


def submission(message: GotifyMessage, feed: FeedState) -> DialectSubmission:
    """The message as a status event for `feed` (whose name is the default title, as Gotify
    titles a message with its application's name)."""
    if feed.schema_type != "status":
        raise SchemaTypeMismatch.at(
            "$", f"Gotify messages become status events, and this feed takes {feed.schema_type} events"
        )
    priority = message.priority or 0
    source: dict[str, Any] = {"protocol": "gotify", "priority": priority}
    extras = message.extras or {}
    if extras:
        source["extras"] = extras
    click = ((extras.get("client::notification") or {}).get("click") or {}).get("url")
    if isinstance(click, str):
        source["click"] = click
    title = message.title or feed.name
    event = status_event(title, status(priority), message.message, source, priority >= PUSH_PRIORITY)
    return DialectSubmission(event, "status", lambda new: answer(new, message, title, priority), PATHS)


def answer(new: NewEvent, message: GotifyMessage, title: str, priority: int) -> bytes:
    """Gotify's message object."""
    body: dict[str, Any] = {
        "id": new.seq,
        "appid": new.feed.number,
        "message": message.message,
        "title": title,
        "priority": priority,
        "date": iso(new.received_at),
    }
    if message.extras:
        body["extras"] = message.extras
    return msgspec.json.encode(body)


def _form(fields: dict[str, str]) -> GotifyMessage:
    unknown = [name for name in fields if name not in FORM_FIELDS]
    if unknown:
        raise ValidationFailed.at(f"$.{unknown[0]}", f"unknown field; a form has {', '.join(FORM_FIELDS)}")
    if not fields.get("message"):
        raise ValidationFailed.at("$.message", "required field is missing")
    priority = fields.get("priority", "").strip()
    if priority and not (priority.isdigit() and 0 <= int(priority) <= 10):
        raise ValidationFailed.at("$.priority", "must be 0 to 10")
    return GotifyMessage(fields["message"], fields.get("title") or None, int(priority) if priority else None)


def _multipart(boundary: str, body: bytes) -> dict[str, str]:
    """The text fields of a small multipart form (Gotify's docs publish with `curl -F`)."""
    parser = PushMultipartParser(boundary, max_segment_count=len(FORM_FIELDS) + 1, strict=False)
    fields: dict[str, str] = {}
    name, chunks = "", list[bytes]()
    try:
        for item in [*parser.parse(body), *parser.parse(b"")]:
            if isinstance(item, MultipartSegment):
                name, chunks = item.name or "", []
            elif item:
                chunks.append(item)
            else:
                fields[name] = b"".join(chunks).decode("utf-8", "replace")
        parser.close()
    except MultipartError as exc:
        raise BadRequest(f"The body is not valid multipart/form-data ({exc}).") from None
    return fields
