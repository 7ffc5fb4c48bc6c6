"""The ingest event formats of seed 002 (summary, status, counter, approval, custom), decoded strictly.

Field names are the seed's own (`primary_value`, `trendValue`, `trendSemantic`, `image_url_dark`). Two friendly
coercions exist because n8n, Zapier and Make send strings and numbers interchangeably: a
counter's `count` accepts a plain decimal string, and display text accepts a JSON number.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Union

import msgspec

from glimpze.errors import FieldError, SchemaTypeMismatch, ValidationFailed
from glimpze.validation import Decoder, failed

SCHEMA_TYPES = ("summary", "status", "counter", "approval", "custom")
METADATA_MAX_BYTES = 8 * 1024
EVENT_MAX_BYTES = 64 * 1024
TEXT_MAX_CHARS = 1000
URL_MAX_CHARS = 2048
WIDGET_SIZES = ("small", "medium", "large")

# A display text field: a string, or a number that is stored as its string form.
Text = Union[str, int, float]
_DECIMAL = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)\s*")


def _text(value: Any, field: str) -> str:
    if isinstance(value, str):
        if len(value) > TEXT_MAX_CHARS:
            raise ValueError(f"[{field}] is {len(value)} characters long; at most {TEXT_MAX_CHARS} are allowed")
        return value
    return str(value)


_URL = re.compile(r"^https?://[^\s/?#]+", re.I)


def url_problem(value: str) -> str | None:
    """Why `value` is not an acceptable absolute http(s) URL, or None when it is."""
    if not _URL.match(value) or len(value) > URL_MAX_CHARS or any(c.isspace() for c in value):
        return f"must be an absolute http:// or https:// URL (at most {URL_MAX_CHARS} characters)"
    return None


def _check_url(value: str, field: str) -> None:
    problem = url_problem(value)
    if problem is not None:
        raise ValueError(f"[{field}] {problem}")


def _number(value: int | float | str, field: str) -> int | float:
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value):
            raise ValueError(f'[{field}] expected a number or a decimal string such as "127" or "-3.5", got {value!r}')
        value = float(value) if any(c in value for c in ".") else int(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


class _Content(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Content structs convert their Text fields to str once decoded."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name in _TEXT_FIELDS and value is not None:
                setattr(self, name, _text(value, name))


_TEXT_FIELDS = frozenset(
    {"title", "primary_value", "secondary_value", "message", "details", "unit", "trendValue", "subtitle", "description"}
)


class SummaryContent(_Content):
    title: Text
    primary_value: Text
    secondary_value: Text | None = None


class StatusContent(_Content):
    title: Text
    status: Literal["success", "warning", "info", "error"]
    message: Text
    details: Text | None = None


class CounterContent(_Content):
    title: Text
    count: int | float | str
    unit: Text | None = None
    trend: Literal["up", "down", "flat"] | None = None
    trendValue: Text | None = None
    trendSemantic: Literal["positive", "negative", "neutral"] | None = None
    subtitle: Text | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.count = _number(self.count, "count")


class ApprovalContent(_Content):
    description: Text


class CustomImage(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One widget size of a custom feed: a light image and an optional dark one."""

    image_url: str
    image_url_dark: str | None = None

    def __post_init__(self) -> None:
        _check_url(self.image_url, "image_url")
        if self.image_url_dark is not None:
            _check_url(self.image_url_dark, "image_url_dark")


class CustomContent(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Images per widget size (at least one) and the URL a tap opens."""

    small: CustomImage | None = None
    medium: CustomImage | None = None
    large: CustomImage | None = None
    widget_url: str | None = None

    def __post_init__(self) -> None:
        if self.small is None and self.medium is None and self.large is None:
            raise ValueError("at least one widget size is required: 'small', 'medium' or 'large'")
        if self.widget_url is not None:
            _check_url(self.widget_url, "widget_url")


class Intent(msgspec.Struct, forbid_unknown_fields=True):
    update_widget: bool = True
    send_push: bool = False


class Callback(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    method: Literal["POST", "PUT", "GET"] = "POST"

    def __post_init__(self) -> None:
        _check_url(self.url, "url")


class _Event(msgspec.Struct, forbid_unknown_fields=True, tag_field="schema_type", omit_defaults=True, kw_only=True):
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    intent: Intent = msgspec.field(default_factory=Intent)

    def __post_init__(self) -> None:
        if len(msgspec.json.encode(self.metadata)) > METADATA_MAX_BYTES:
            raise ValueError(f"[metadata] is larger than {METADATA_MAX_BYTES // 1024} KiB once encoded")


class SummaryEvent(_Event, tag="summary"):
    content: SummaryContent


class StatusEvent(_Event, tag="status"):
    content: StatusContent


class CounterEvent(_Event, tag="counter"):
    content: CounterContent


class ApprovalEvent(_Event, tag="approval"):
    content: ApprovalContent
    callback: Callback | None = None


class CustomEvent(_Event, tag="custom"):
    content: CustomContent


IngestEvent = Union[SummaryEvent, StatusEvent, CounterEvent, ApprovalEvent, CustomEvent]

EVENT_TYPES: dict[str, type[IngestEvent]] = {
    "summary": SummaryEvent,
    "status": StatusEvent,
    "counter": CounterEvent,
    "approval": ApprovalEvent,
    "custom": CustomEvent,
}
_DECODERS: dict[str, Decoder[IngestEvent]] = {name: Decoder(tp) for name, tp in EVENT_TYPES.items()}


class _Peek(msgspec.Struct):
    schema_type: object = None  # any JSON value: checked below, with a clearer message than msgspec's


_PEEK = Decoder(_Peek)


def decode_event(body: bytes, feed_schema: str) -> IngestEvent:
    """Decode an ingest body for a feed of `feed_schema`; raises BadRequest or ValidationFailed.

    The body is parsed once shallowly to check `schema_type` first, so an event sent to a feed of
    another schema gets a clear mismatch error instead of a list of foreign fields.
    """
    schema_type = _PEEK.decode(body).schema_type
    if schema_type is None:
        raise ValidationFailed.at("$.schema_type", f'required field is missing; this feed takes "{feed_schema}" events')
    if not isinstance(schema_type, str) or schema_type not in EVENT_TYPES:  # an array or object is no name either
        message = f"invalid value {schema_type!r}; expected one of {', '.join(map(repr, SCHEMA_TYPES))}"
        raise ValidationFailed.at("$.schema_type", message)
    if schema_type != feed_schema:
        raise SchemaTypeMismatch.at("$.schema_type", f'this feed takes "{feed_schema}" events, not "{schema_type}"')
    try:
        return _DECODERS[feed_schema].decode(body)
    except ValidationFailed as exc:
        if any(error.path == "$.callback" for error in exc.errors):
            only = FieldError("$.callback", "callback is allowed on approval events only")
            raise failed([only if error.path == "$.callback" else error for error in exc.errors]) from None
        raise
