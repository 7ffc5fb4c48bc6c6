"""ntfy's publishing dialect (docs.ntfy.sh/publish): a message to a topic, read as ntfy reads it.

Each parameter comes from a header (any case; RFC 2047 encoded words decoded) or else a query
parameter (lower case), under ntfy's name or an alias (`Title`, `X-Title`, `t`…); a JSON publish
(`POST /` with `{"topic": …}`) says the same in a body. The body is the message, unless the
message is templated (`tpl=yes`: the body is JSON data for `{{.field}}` placeholders), or the
body is a file (a `Filename`, or bytes that are not UTF-8 text of at most 4,096 bytes).

The message becomes a `status` event (DESIGN §10): title (default: the topic), message, and a
status from the tags that clearly say one, else from the priority; priority ≥ 4 asks for a push,
whose buttons are the `view` and `http` actions. What was sent is kept in `metadata.source`. A
file goes to a `custom` feed only, as its widget's image. What Glimpze does not offer (fetching
an `Attach` URL, e-mail, phone calls, scheduled delivery) is a 422 naming each.
"""

from __future__ import annotations

import email.header
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from glimpze.errors import FieldError, SchemaTypeMismatch, ValidationFailed
from glimpze.feeds.dialects import DialectSubmission, most_severe, refused, status_event
from glimpze.feeds.events import NewEvent
from glimpze.feeds.feeds import FeedState
from glimpze.feeds.ntfy_actions import ActionError, check_actions, parse_actions
from glimpze.feeds.uploads import Upload
from glimpze.push.buttons import Button, HttpRequest
from glimpze.validation import Decoder, failed

TOPIC = re.compile(r"[-_A-Za-z0-9]{1,64}")
MESSAGE_MAX_BYTES = 4096  # a longer body is a file, as in ntfy
EMPTY_MESSAGE = "triggered"  # ntfy's message when none is given
PRIORITIES = {
    "1": 1,
    "min": 1,
    "2": 2,
    "low": 2,
    "3": 3,
    "default": 3,
    "4": 4,
    "high": 4,
    "5": 5,
    "max": 5,
    "urgent": 5,
}
PRIORITY_STATUS = {5: "error", 4: "warning"}  # lower: info
PUSH_PRIORITY = 4
TAG_STATUS = {
    "white_check_mark": "success",
    "heavy_check_mark": "success",
    "+1": "success",
    "tada": "success",
    "warning": "warning",
    "rotating_light": "error",
    "x": "error",
    "skull": "error",
}
# ntfy's parameters and their aliases, headers first (docs: "List of all parameters").
PARAMETERS: dict[str, tuple[str, ...]] = {
    "message": ("x-message", "message", "m"),
    "title": ("x-title", "title", "t"),
    "priority": ("x-priority", "priority", "prio", "p"),
    "tags": ("x-tags", "tags", "tag", "ta"),
    "delay": ("x-delay", "delay", "x-at", "at", "x-in", "in"),
    "actions": ("x-actions", "actions", "action"),
    "click": ("x-click", "click"),
    "attach": ("x-attach", "attach", "a"),
    "markdown": ("x-markdown", "markdown", "md"),
    "icon": ("x-icon", "icon"),
    "filename": ("x-filename", "filename", "file", "f"),
    "email": ("x-email", "x-e-mail", "email", "e-mail", "mail", "e"),
    "call": ("x-call", "call"),
    "template": ("x-template", "template", "tpl"),
    "content_type": ("content-type",),
}
_RFC9218 = re.compile(r"^u=\d(,\s*(i|\d))?$")  # the HTTP Priority header some proxies add, not ntfy's
_PLACEHOLDER = re.compile(r"\{\{\s*\.([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)\s*\}\}")
_UNSUPPORTED = {
    "attach": "Glimpze does not download attachments; PUT the image itself to a custom feed",
    "email": "Glimpze sends no e-mail; add a push target (an Apprise mailto:// URL) to the project instead",
    "call": "Glimpze makes no phone calls",
    "delay": "Glimpze shows a message when it arrives; schedule the call in the sending app instead",
}
# Paths of the mapped event, named as ntfy names them in errors.
PATHS = {"$.content.title": "title", "$.content.message": "message", "$.metadata": "metadata", "$": "attachment"}


class JsonPublish(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """ntfy's JSON publish body (docs: "Publish as JSON")."""

    topic: str
    message: str = ""
    title: str = ""
    tags: list[str] = msgspec.field(default_factory=list)
    priority: int = 0
    actions: list[dict[str, Any]] = msgspec.field(default_factory=list)
    click: str = ""
    attach: str = ""
    markdown: bool = False
    icon: str = ""
    filename: str = ""
    delay: str = ""
    email: str = ""
    call: str = ""
    cache: str = ""
    firebase: str = ""


JSON_PUBLISH = Decoder(JsonPublish)


@dataclass(slots=True)
class NtfyMessage:
    """An ntfy message as read from a request."""

    topic: str
    message: str = ""
    title: str = ""
    priority: int | None = None
    tags: list[str] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    click: str = ""
    icon: str = ""
    markdown: bool = False
    file: bytes | None = None  # the body, when it is a file
    filename: str = ""
    unsupported: dict[str, str] = field(default_factory=dict)  # parameter -> value


def read_request(topic: str, headers: Mapping[str, str], query: str, body: bytes) -> NtfyMessage:
    """The message of `POST|PUT /{topic}` (or `GET /{topic}/publish`); raises ValidationFailed
    naming every parameter it cannot read. `headers` has lower-case names."""
    params = dict(parse_qsl(query, keep_blank_values=True))

    def read(name: str) -> str:
        for alias in PARAMETERS[name]:
            value = _decoded(headers.get(alias, ""))
            if alias == "priority" and _RFC9218.match(value):
                continue
            if value:
                return value
        return next((params[alias].strip() for alias in PARAMETERS[name] if params.get(alias, "").strip()), "")

    errors: list[FieldError] = []
    message = NtfyMessage(topic, read("message").replace("\\n", "\n"), read("title"), click=read("click"))
    message.icon, message.filename = read("icon"), read("filename")
    message.tags = [tag.strip() for tag in read("tags").split(",") if tag.strip()]
    message.markdown = _yes(read("markdown")) or read("content_type").lower().startswith("text/markdown")
    message.unsupported = {name: read(name) for name in _UNSUPPORTED if read(name)}
    priority = read("priority")
    if priority:
        message.priority = PRIORITIES.get(priority.lower())
        if message.priority is None:
            errors.append(
                FieldError(
                    "priority", f"{priority!r} is not a priority: 1 to 5, min, low, default, high, max or urgent"
                )
            )
    if actions := read("actions"):
        try:
            message.actions = parse_actions(actions)
        except ActionError as exc:
            errors.append(FieldError("actions", str(exc)))
    if _yes(read("template")):
        _fill_templates(message, body, errors)
    elif (message.filename and "attach" not in message.unsupported) or not _is_text(body):
        message.file = body  # with an Attach URL, the body is the message (as in ntfy)
    elif body.strip():
        message.message = body.decode("utf-8").strip()
    if errors:
        raise failed(errors)
    return message


def read_json(body: bytes) -> NtfyMessage:
    """The message of a JSON publish (`POST /`); raises BadRequest or ValidationFailed."""
    sent = JSON_PUBLISH.decode(body)
    if not TOPIC.fullmatch(sent.topic):
        raise ValidationFailed.at("$.topic", "must be 1 to 64 letters, digits, '-' or '_'")
    if sent.priority and sent.priority not in range(1, 6):
        raise ValidationFailed.at("$.priority", "must be 1 (min) to 5 (max)")
    try:
        actions = check_actions(sent.actions)
    except ActionError as exc:
        raise ValidationFailed.at("$.actions", str(exc)) from None
    unsupported = {name: getattr(sent, name) for name in _UNSUPPORTED if getattr(sent, name)}
    return NtfyMessage(
        sent.topic,
        sent.message,
        sent.title,
        sent.priority or None,
        sent.tags,
        actions,
        sent.click,
        sent.icon,
        sent.markdown,
        unsupported=unsupported,
    )


def submission(
    message: NtfyMessage, feed: FeedState, expires_after: float, upload: Upload | None = None
) -> DialectSubmission:
    """The message as a submission to `feed`: a status event, or for a custom feed the `upload`
    of its file (spooled by the caller). Raises ValidationFailed for what Glimpze does not offer."""
    refused([FieldError(name, _UNSUPPORTED[name]) for name in message.unsupported])
    push = (message.priority or 3) >= PUSH_PRIORITY
    if feed.schema_type == "custom":
        if upload is None:
            raise SchemaTypeMismatch.at(
                "attachment",
                "this feed is custom: it shows images; PUT a PNG, JPEG or WebP image of a widget size "
                "(474×474, 1014×474 or 1014×1062 px) as the body",
            )
        return DialectSubmission(
            b"",
            "custom",
            lambda new: answer(new, message, message.message, expires_after),
            PATHS,
            buttons(message.actions),
            upload=upload,
            source=source(message),
            push=push,
        )
    if message.file is not None:
        what = (
            f"a file ({message.filename})"
            if message.filename
            else "a file (the body is not UTF-8 text of at most 4 KiB)"
        )
        raise ValidationFailed.at(
            "attachment",
            f"{what} is shown only by a custom feed, as an image of a widget size; this feed is {feed.schema_type}",
        )
    if feed.schema_type != "status":
        raise SchemaTypeMismatch.at(
            "topic",
            f"ntfy messages become status events, and this feed takes {feed.schema_type} events; "
            "publish to a status feed",
        )
    text = message.message or EMPTY_MESSAGE
    status = most_severe([TAG_STATUS[t] for t in message.tags if t in TAG_STATUS])
    status = status or PRIORITY_STATUS.get(message.priority or 3, "info")
    event = status_event(message.title or message.topic, status, text, source(message), push)
    return DialectSubmission(
        event, "status", lambda new: answer(new, message, text, expires_after), PATHS, buttons(message.actions)
    )


def source(message: NtfyMessage) -> dict[str, Any]:
    """What was sent, for `metadata.source`: the parameters given, under ntfy's names."""
    kept: dict[str, Any] = {"protocol": "ntfy", "topic": message.topic, "tags": message.tags}
    if message.priority is not None:
        kept["priority"] = message.priority
    for name in ("click", "icon", "actions", "filename"):
        if value := getattr(message, name):
            kept[name] = value
    if message.markdown:
        kept["markdown"] = True
    return kept


def buttons(actions: list[dict[str, Any]]) -> list[Button]:
    """A push's buttons: `view` opens its URL, `http` sends its request (broadcast is Android's alone)."""
    made = []
    for action in actions:
        if action["action"] == "view":
            made.append(Button(action["label"], url=action["url"]))
        elif action["action"] == "http":
            request = HttpRequest(
                action["url"], action.get("method") or "POST", action.get("headers", {}), action.get("body", "")
            )
            made.append(Button(action["label"], request=request))
    return made


def answer(new: NewEvent, message: NtfyMessage, text: str, expires_after: float) -> bytes:
    """ntfy's message object: Glimpze's event id as `id`, empty fields left out as ntfy does."""
    body: dict[str, Any] = {
        "id": new.id,
        "time": int(new.received_at),
        "expires": int(new.received_at + expires_after),
        "event": "message",
        "topic": message.topic,
        "title": message.title,
        "message": text,
        "priority": message.priority,
        "tags": message.tags,
        "click": message.click,
        "icon": message.icon,
        "actions": message.actions,
        "content_type": "text/markdown" if message.markdown else "",
    }
    return msgspec.json.encode({k: v for k, v in body.items() if v})


def _fill_templates(message: NtfyMessage, body: bytes, errors: list[FieldError]) -> None:
    """`{{.field.sub}}` placeholders in the title and message, from the JSON body (ntfy's Go
    templates beyond plain placeholders are refused)."""
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        errors.append(FieldError("template", "the body must be JSON when templating is on"))
        return
    for name in ("title", "message"):
        text = getattr(message, name)
        if "{{" not in text and "}}" not in text:
            continue
        if "{{" in _PLACEHOLDER.sub("", text) or "}}" in _PLACEHOLDER.sub("", text):
            errors.append(
                FieldError(name, "Glimpze fills {{.field}} placeholders only (no functions, conditions or loops)")
            )
            continue
        setattr(message, name, _PLACEHOLDER.sub(lambda m: _value(data, m[1]), text))


def _value(data: Any, path: str) -> str:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return "<no value>"  # what Go's templates print for a missing key
        data = data[part]
    if isinstance(data, bool):
        return "true" if data else "false"
    if isinstance(data, float) and data.is_integer():
        return str(int(data))
    return data if isinstance(data, str) else msgspec.json.encode(data).decode()


def _decoded(value: str) -> str:
    """A header's value with RFC 2047 encoded words (`=?UTF-8?B?…?=`) decoded, trimmed."""
    value = value.strip()
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value))).strip()
    except (ValueError, LookupError, UnicodeDecodeError):
        return value


def _yes(value: str) -> bool:
    return value.lower() in ("1", "yes", "true")


def _is_text(body: bytes) -> bool:
    if len(body) > MESSAGE_MAX_BYTES:
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
