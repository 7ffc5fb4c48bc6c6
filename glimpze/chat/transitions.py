"""Session statuses and THE table of allowed status transitions (DESIGN §7, Conversations).

`open`, `pending` and `snoozed` move freely between each other by PATCH (snoozed needs a future
`snoozed_until`); any of them is closed only through POST /close; a closed session is reopened only
by a PATCH that sets `status: "open"` and nothing else. A same-status PATCH is a no-op, decided by
the caller before asking here. Everything else is a 409.
"""

from __future__ import annotations

from typing import Literal

from glimpze.errors import Conflict, InvalidTransition, SessionClosed

Status = Literal["open", "pending", "snoozed", "closed"]
STATUSES: tuple[Status, ...] = ("open", "pending", "snoozed", "closed")

# How a status change is asked for: a PATCH, a PATCH that sets `status` and nothing else, or
# POST /close. THE table of allowed transitions: a pair missing here is a 409.
Via = Literal["patch", "patch_alone", "close"]
TRANSITIONS: dict[tuple[Status, Status], Via] = {
    ("open", "pending"): "patch",
    ("open", "snoozed"): "patch",
    ("pending", "open"): "patch",
    ("pending", "snoozed"): "patch",
    ("snoozed", "open"): "patch",
    ("snoozed", "pending"): "patch",
    ("open", "closed"): "close",
    ("pending", "closed"): "close",
    ("snoozed", "closed"): "close",
    ("closed", "open"): "patch_alone",  # a reopen changes nothing else
}


def session_closed(session_id: str) -> Conflict:
    return SessionClosed(
        f'Session {session_id!r} is closed. Reopen it first with PATCH {{"status": "open"}} and nothing else; '
        "notes and leads are still accepted."
    )


def check_transition(old: Status, new: Status, via: Via, session_id: str = "") -> None:
    """Raise unless TRANSITIONS lets `via` move a session from `old` to `new`."""
    rule = TRANSITIONS.get((old, new))
    if rule is not None and (rule == via or (rule == "patch" and via == "patch_alone")):
        return
    if old == "closed":
        raise session_closed(session_id)
    hint = "close it with POST /v1/sessions/{id}/close" if new == "closed" else "see the allowed transitions"
    raise InvalidTransition(f"A session cannot go from {old!r} to {new!r} this way; {hint}.")
