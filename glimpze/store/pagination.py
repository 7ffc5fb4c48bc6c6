"""Cursor pagination: `?limit=&cursor=` → `{"data": [...], "next_cursor": ... | null}`.

A cursor is opaque to clients: base64url of the sort key of the last item returned.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar, overload

import msgspec

from glimpze.errors import GlimpzeError, ValidationFailed
from glimpze.validation import Decoder

DEFAULT_LIMIT = 50
MAX_LIMIT = 100

T = TypeVar("T")
R = TypeVar("R")
CURSOR: Decoder[Any] = Decoder(Any)  # a cursor comes back from a client: decoded like a body


class Page(msgspec.Struct, Generic[T]):
    """One page of a list: its items and the cursor of the next page (null on the last)."""

    data: list[T]
    next_cursor: str | None


def encode_cursor(*key: int | float) -> str:
    """The cursor of a page that ends at the item with sort key `key`."""
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode().rstrip("=")


# The sort keys lists use: a seq or an id number, a (position, seq), a (time, seq).
@overload
def decode_cursor(cursor: str | None, first: type[int], /) -> tuple[int] | None: ...
@overload
def decode_cursor(cursor: str | None, first: type[int], second: type[int], /) -> tuple[int, int] | None: ...
@overload
def decode_cursor(cursor: str | None, first: type[float], second: type[int], /) -> tuple[float, int] | None: ...


def decode_cursor(cursor: str | None, *types: type) -> tuple[int | float, ...] | None:
    """The sort key a cursor holds, checked against the expected types; None for no cursor."""
    if cursor is None or cursor == "":
        return None
    try:
        key = CURSOR.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, GlimpzeError):
        key = None
    numeric = (int, float)
    if (
        not isinstance(key, list)
        or len(key) != len(types)
        or not all(isinstance(v, numeric if t is float else t) and not isinstance(v, bool) for v, t in zip(key, types))
    ):
        raise ValidationFailed.at("query.cursor", "is not a cursor this list gave out; start again without it")
    return tuple(key)


def check_limit(limit: int | None) -> int:
    """A list's `limit` query parameter: DEFAULT_LIMIT when absent, else 1 to MAX_LIMIT."""
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed.at("query.limit", f"must be between 1 and {MAX_LIMIT}")
    return limit


def page(
    rows: Sequence[R], limit: int, convert: Callable[[R], T], key: Callable[[R], tuple[int | float, ...]]
) -> Page[T]:
    """`rows` were fetched with `limit + 1`: the extra one tells whether a next page exists."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([convert(row) for row in rows], encode_cursor(*key(rows[-1])) if more else None)


async def all_pages(fetch: Callable[[tuple[int] | None], Awaitable[Page[T]]], *, most: int | None = None) -> list[T]:
    """Every item of a list ordered by one integer key (`fetch(after)` reads the page after it),
    or the first `most` of them: for the CLI's listings and the dashboard's pages."""
    items: list[T] = []
    after = None
    while most is None or len(items) < most:
        result = await fetch(after)
        items.extend(result.data)
        if result.next_cursor is None:
            break
        after = decode_cursor(result.next_cursor, int)
    return items if most is None else items[:most]
