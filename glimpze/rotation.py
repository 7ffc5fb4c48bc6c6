"""Rotating a secret with a grace period: the one rule behind API keys, write keys, webhook and
callback signing secrets, and the CTA context secret.

A rotation makes a new secret current and keeps the one it replaces as `previous` until
`previous_until` = now + grace (no grace: the old one stops at once). While `previous` is still
good, it is accepted (keys) or signs and verifies beside the new one (secrets). The SQL of each
table's rotation is written beside its table with `previous_columns()`, so the rule is stated once.
"""

from __future__ import annotations

from glimpze.errors import ValidationFailed

DAY = 24 * 3600


def check_grace(seconds: int, maximum: int, path: str = "$.grace_seconds") -> int:
    """`seconds` when it is a grace period between 0 and `maximum`, else a 422 naming `path`."""
    if not 0 <= seconds <= maximum:
        days = f"{maximum / DAY:g} day" + ("" if maximum == DAY else "s")
        raise ValidationFailed.at(path, f"must be between 0 and {maximum} ({days})")
    return seconds


def previous_columns(current: str, previous: str, until: str) -> str:
    """The SET clause that keeps `current` as `previous` until `:now + :grace` (only when :grace > 0)."""
    return (
        f"{previous} = CASE WHEN :grace > 0 THEN {current} END, {until} = CASE WHEN :grace > 0 THEN :now + :grace END"
    )


def still_good(previous: object, until: float | None, now: float) -> bool:
    """Whether a previous secret is still within its grace period at `now`."""
    return previous is not None and until is not None and now < until
