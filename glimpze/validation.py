"""Strict decoding of request bodies into Structs, with errors that name the bad field.

msgspec stops at the first error and reports unknown or missing fields at the parent object;
`field_error()` moves the path onto the field itself and suggests the nearest known name. Once a
body has failed, `every_field_error()` checks it again field by field, so a 422 names every bad
field (the first one msgspec found stays first); a valid body never pays for that second pass.

Every JSON document that comes from outside (a body, an upload's JSON field, a token's or a
cursor's payload) is decoded by a `Decoder`, which first refuses arrays and objects nested more
than `MAX_JSON_DEPTH` levels: msgspec (and later the encoders, Jinja's `tojson`, the CTA context
walk) recurse once per level, and Python's limit of ~1,000 frames would turn a deep document
into a `RecursionError` (a 500) instead of a clear 400.
"""

from __future__ import annotations

import difflib
import itertools
import re
import types
import typing
from typing import Any, Literal, TypeVar, Union, overload

import msgspec

from glimpze.errors import BadRequest, FieldError, InvalidJson, ValidationFailed

T = TypeVar("T")

# Levels of arrays and objects in one JSON document, the document itself included (docs/sending-events.md,
# "Limits"). Far below Python's recursion limit, so anything stored can be encoded, delivered
# and rendered again; far above what a real event, lead or context needs.
MAX_JSON_DEPTH = 32
DEPTH_PATH_SCAN_BYTES = 64 * 1024  # how far the error's path is looked for (beyond: the document)

_AT = re.compile(r"^(?P<message>.*) - at `(?P<path>\$[^`]*)`$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]*)`$")
_ENUM = re.compile(r"^Invalid enum value (?P<value>.*)$")
# A __post_init__ check names its field as "[field] message"; the path is then extended.
_OWN = re.compile(r"^\[(?P<field>[^\]]+)\] (?P<message>.*)$", re.S)


class Decoder(typing.Generic[T]):
    """A strict JSON decoder for one request type, built once at import time."""

    @overload
    def __init__(self: Decoder[T], type_: type[T], *, prefix: str = "$") -> None: ...

    @overload  # a hint that is not a class (`Any`, a union): decodes to what the hint says, unchecked
    def __init__(self: Decoder[Any], type_: object, *, prefix: str = "$") -> None: ...

    def __init__(self, type_: object, *, prefix: str = "$") -> None:
        self.type = type_
        self.prefix = prefix  # where the decoded document sits in the request, for error paths
        self._decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(type_)

    def decode(self, body: bytes) -> T:
        if not body.strip():
            raise InvalidJson("The request body is empty; send a JSON object.")
        if too_deep(body):
            raise nested_too_deep(body, self.prefix)
        try:
            return self._decoder.decode(body)
        except msgspec.ValidationError as exc:
            first = field_error(str(exc), self.type, self.prefix)
            raise failed([first, *every_field_error(body, self.type, self.prefix)]) from None
        except msgspec.DecodeError as exc:
            raise invalid_json(exc) from None


def invalid_json(exc: Exception) -> BadRequest:
    return InvalidJson(
        f"The body is not valid JSON ({exc}). Check quotes and commas; n8n, Zapier and Make "
        "need the body type set to JSON."
    )


# Escapes inside strings, blanked at the same length so that every `"` left delimits a string.
_ESCAPED_BACKSLASH, _ESCAPED_QUOTE = b"\\\\", b'\\"'
# Brackets as +1 / -1 (signed bytes), everything else deleted.
_SIGNS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_JSON_TOKEN = re.compile(rb'"[^"]*"|[\[\]{},:]')


def _unescaped(body: bytes) -> bytes:
    return body.replace(_ESCAPED_BACKSLASH, b"__").replace(_ESCAPED_QUOTE, b"__")


def too_deep(body: bytes) -> bool:
    """True when arrays and objects in `body` nest more than MAX_JSON_DEPTH levels.

    Linear and in C: strings are cut out, the brackets left are summed as +1/-1, and the
    highest running sum is the depth (unclosed brackets count: msgspec recurses into them too)."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return False  # fewer containers than levels: the common case costs two scans
    outside = b"".join(_unescaped(body).split(b'"')[::2])
    signs = memoryview(outside.translate(_SIGNS, _NOT_BRACKETS)).cast("b")
    return max(itertools.accumulate(signs), default=0) > MAX_JSON_DEPTH


def nested_too_deep(body: bytes, prefix: str = "$") -> BadRequest:
    """The 400 for a document nested too deeply, naming the first array or object too deep."""
    path = _too_deep_path(body, prefix)
    message = f"nests arrays and objects more than {MAX_JSON_DEPTH} levels deep"
    return InvalidJson(
        f"{path}: {message}. JSON documents may nest at most {MAX_JSON_DEPTH} levels (the document itself "
        "counts as one); flatten the value.",
        errors=[FieldError(path, message)],
    )


def _too_deep_path(body: bytes, prefix: str) -> str:
    """The path of the first container one level too deep, found by following the tokens (only in
    the first DEPTH_PATH_SCAN_BYTES: this runs for refused documents only, and stays cheap)."""
    stack: list[str | int] = []  # per open container: the current key (object) or index (array)
    last = b""
    for m in _JSON_TOKEN.finditer(_unescaped(body[:DEPTH_PATH_SCAN_BYTES])):
        first = m[0][:1]
        if first == b'"':
            last = body[m.start() : m.end()]  # the key as sent, escapes included
        elif first == b":":
            if stack:
                stack[-1] = _key(last)
        elif first == b",":
            if stack and isinstance(stack[-1], int):
                stack[-1] += 1
        elif first in (b"[", b"{"):
            if len(stack) == MAX_JSON_DEPTH:
                path = prefix
                for part in stack:
                    path = f"{path}[{part}]" if isinstance(part, int) else member_path(path, part)
                return path
            stack.append(0 if first == b"[" else "")
        elif stack:
            stack.pop()
    return prefix


def _key(token: bytes) -> str:
    try:
        return str(msgspec.json.decode(token))
    except msgspec.DecodeError:
        return token[1:-1].decode("utf-8", "replace")


def validation_failed(exc: msgspec.ValidationError, root: object, prefix: str = "$") -> ValidationFailed:
    error = field_error(str(exc), root, prefix)
    return ValidationFailed(f"{error.path}: {error.message}", errors=[error])


def failed(errors: list[FieldError]) -> ValidationFailed:
    """One 422 for `errors` in order, each path once (the first error for a path is kept)."""
    unique: dict[str, FieldError] = {}
    for error in errors:
        unique.setdefault(error.path, error)
    return ValidationFailed("; ".join(f"{e.path}: {e.message}" for e in unique.values()), errors=[*unique.values()])


def every_field_error(body: bytes, root: object, prefix: str = "$") -> list[FieldError]:
    """Every bad field of a JSON document that failed to decode into `root`, found by checking
    each member of each object against its field's type (only called after a failure)."""
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return []
    return _check(document, root, prefix)


def _check(value: object, hint: object, path: str) -> list[FieldError]:
    """The errors of `value` as `hint` at `path`: an object's members one by one, then the object."""
    options = _unwrap(hint)
    if value is None and type(None) in options:
        return []
    structs = [t for t in options if isinstance(t, type) and issubclass(t, msgspec.Struct)]
    if len(structs) == 1 and isinstance(value, dict) and len(options) - (type(None) in options) == 1:
        errors = _check_members(value, structs[0], path)
        return errors or _convert(value, structs[0], path)
    origin = typing.get_origin(hint)
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(hint) or (Any,)
        return [e for i, v in enumerate(value) for e in _check(v, item, f"{path}[{i}]")]
    if origin is dict and isinstance(value, dict):
        _, item = typing.get_args(hint) or (str, Any)
        errors = [e for k, v in value.items() for e in _check(v, item, member_path(path, str(k)))]
        return errors or _convert(value, hint, path)
    return _convert(value, hint, path)


def _check_members(value: dict[str, Any], struct: type[msgspec.Struct], path: str) -> list[FieldError]:
    config = struct.__struct_config__
    hints = typing.get_type_hints(struct, include_extras=True)
    fields = {f.encode_name: f for f in msgspec.structs.fields(struct)}
    errors: list[FieldError] = []
    for name, member in value.items():  # in the document's order, as msgspec reads it
        if name in fields:
            errors += _check(member, hints[fields[name].name], member_path(path, name))
        elif name != config.tag_field and config.forbid_unknown_fields:
            errors.append(field_error(f"Object contains unknown field `{name}` - at `$`", struct, path))
    for name, field in fields.items():
        if field.required and name not in value:
            errors.append(field_error(f"Object missing required field `{name}` - at `$`", struct, path))
    return errors


def _convert(value: object, hint: object, path: str) -> list[FieldError]:
    try:
        msgspec.convert(value, hint, strict=True)
    except msgspec.ValidationError as exc:
        return [field_error(str(exc), hint, path)]
    return []


def field_error(text: str, root: object, prefix: str = "$") -> FieldError:
    """Translate one msgspec error message into a FieldError with the field's own path."""
    match = _AT.match(text)
    message, path = (match["message"], match["path"]) if match else (text, "$")
    if prefix != "$":
        path = prefix + path[1:]
    parts = path_parts(path[len(prefix) :]) if path.startswith(prefix) else []
    if m := _UNKNOWN.match(message):
        known = _fields_at(root, parts)
        message = f"unknown field {m['field']!r}"
        close = difflib.get_close_matches(m["field"], known, n=1, cutoff=0.6)
        if close:
            message += f"; did you mean {close[0]!r}?"
        elif known:
            message += f"; allowed fields: {', '.join(repr(k) for k in known)}"
        path = member_path(path, m["field"])
    elif m := _MISSING.match(message):
        message = "required field is missing"
        path = member_path(path, m["field"])
    elif m := _OWN.match(message):
        path = member_path(path, m["field"])
        message = m["message"]
    elif m := _ENUM.match(message):
        allowed = _literals_at(root, parts)
        message = f"invalid value {m['value']}"
        if allowed:
            message += f"; expected one of {', '.join(repr(a) for a in allowed)}"
    else:
        message = _soften(message)
    return FieldError(path=path, message=message)


_TYPE_WORDS = {
    "str | int | float | null": "a string or a number",
    "str | int | float": "a string or a number",
    "int | float | str": "a number",
    "int | float": "a number",
}


def _soften(message: str) -> str:
    """msgspec's "Expected `str`, got `int`" reads fine once the backticks go."""
    for words, plain in _TYPE_WORDS.items():
        message = message.replace(f"`{words}`", plain)
    message = message.replace("`", "")
    return message[0].lower() + message[1:] if message else message


def member_path(path: str, field: str) -> str:
    """`path` extended by an object member: `$.a.b` for a name, `$.a['b-c']` for anything else."""
    return f"{path}.{field}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", field) else f"{path}[{field!r}]"


def path_parts(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for m in re.finditer(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[(['\"])(.*?)\3\]", path):
        if m[1] is not None:
            parts.append(m[1])
        elif m[2] is not None:
            parts.append(int(m[2]))
        else:
            parts.append(m[4])
    return parts


def _unwrap(tp: object) -> list[object]:
    """The concrete types a hint may stand for (Optional, unions, Annotated removed)."""
    if typing.get_origin(tp) is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (Union, types.UnionType):
        return [t for arg in typing.get_args(tp) for t in _unwrap(arg)]
    return [tp]


def _types_at(root: object, parts: list[str | int]) -> list[object]:
    current = _unwrap(root)
    for part in parts:
        following: list[object] = []
        for tp in current:
            if isinstance(tp, type) and issubclass(tp, msgspec.Struct) and isinstance(part, str):
                hints = typing.get_type_hints(tp, include_extras=True)
                for field in msgspec.structs.fields(tp):
                    if field.encode_name == part:
                        following.extend(_unwrap(hints[field.name]))
            elif typing.get_origin(tp) in (list, tuple) and isinstance(part, int):
                following.extend(_unwrap(typing.get_args(tp)[0]))
            elif typing.get_origin(tp) is dict:
                following.extend(_unwrap(typing.get_args(tp)[1]))
        current = following
    return current


def _fields_at(root: object, parts: list[str | int]) -> list[str]:
    names: list[str] = []
    for tp in _types_at(root, parts):
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            names.extend(f.encode_name for f in msgspec.structs.fields(tp) if f.encode_name not in names)
    return names


def _literals_at(root: object, parts: list[str | int]) -> list[object]:
    return [value for tp in _types_at(root, parts) if typing.get_origin(tp) is Literal for value in typing.get_args(tp)]
