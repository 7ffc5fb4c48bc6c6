"""What a name may be: the one rule for everything a person names (feeds, agents, projects, API keys,
a webhook's description, CTA labels, visitors, authors, teams).

A name is shown in lists, pages, notifications and logs, so it must be text a person can see and
tell apart: no control characters (Unicode category Cc: NUL, line breaks, escape sequences…),
nothing that is not valid Unicode text (a lone surrogate, from undecodable command-line bytes),
and at least one visible character — a name made only of spaces, zero-width or other format
characters (Cf), combining marks, or the blank "filler" letters would show as nothing.
"""

from __future__ import annotations

import unicodedata

import msgspec

from glimpze.errors import ValidationFailed

DEFAULT_MAX_CHARS = 100
# Letters and symbols that are drawn as blank space (Hangul fillers, the blank Braille pattern).
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def name_problem(text: str, *, max_chars: int = DEFAULT_MAX_CHARS, optional: bool = False) -> str | None:
    """What makes `text` (already trimmed) unfit as a name, or None. `optional`: "" is fine."""
    if not text and optional:
        return None
    for char in text:
        category = unicodedata.category(char)
        if category == "Cc":
            return f"must not contain control characters (it holds U+{ord(char):04X})"
        if category == "Cs":
            return "must be valid Unicode text (it holds bytes that are not UTF-8)"
    if not 1 <= len(text) <= max_chars:
        return f"must be 1 to {max_chars} characters"
    if not any(unicodedata.category(c)[0] in "LNPS" and c not in BLANK_LETTERS for c in text):
        return "must contain at least one visible character"
    return None


def check_name(text: str, path: str = "$.name", *, max_chars: int = DEFAULT_MAX_CHARS, optional: bool = False) -> str:
    """`text` trimmed, or a 422 naming `path` (services: API, dashboard and CLI alike)."""
    trimmed = text.strip()
    problem = name_problem(trimmed, max_chars=max_chars, optional=optional)
    if problem is not None:
        raise ValidationFailed.at(path, problem)
    return trimmed


def check_fields(struct: msgspec.Struct, *fields: str) -> None:
    """Trim and check the name fields of a Struct, from its `__post_init__` (None and UNSET pass):
    the ValueError names the field, and decoding turns it into a 422 at the field's full path
    (`$.visitor.name`), for an API body and a dashboard form alike."""
    for field in fields:
        value = getattr(struct, field)
        if isinstance(value, str):
            trimmed = value.strip()
            problem = name_problem(trimmed)
            if problem is not None:
                raise ValueError(f"[{field}] {problem}")
            setattr(struct, field, trimmed)
