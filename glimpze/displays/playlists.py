"""A device's playlist: screens in turn, each shown for its `seconds`, and whose turn it is now.

The position is kept on the device row (`playlist_index`, `shown_since`): each poll moves on once
the screen on show has had its time, so a device that wakes late or early still shows every
screen in order. Deleting a screen takes it out of every playlist, in the same transaction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import msgspec

from glimpze.errors import ValidationFailed
from glimpze.store.sql import Tx

MAX_ITEMS = 20
MIN_SECONDS = 10
MAX_SECONDS = 86_400
EARLY_WAKE_SECONDS = 30  # a device waking this much early (at most a tenth of the item) still moves on

# The playlist columns of devices (devices.py owns the table).
SQL_PLAYLISTS_OF_PROJECT = "SELECT id, playlist FROM devices WHERE project_id = ?"
SQL_SET_PLAYLIST = """
    UPDATE devices SET playlist = ?, playlist_index = 0, shown_since = NULL, updated_at = ? WHERE id = ?
"""


class PlaylistItem(msgspec.Struct, forbid_unknown_fields=True):
    """One screen of a playlist and how long it is shown (seconds)."""

    screen_id: str
    seconds: int


PLAYLIST = msgspec.json.Decoder(list[PlaylistItem])


def check_playlist(items: list[PlaylistItem], known_screens: set[str], path: str = "$.playlist") -> list[PlaylistItem]:
    """`items` when every screen exists in the project and every time is in bounds, else a 422."""
    if len(items) > MAX_ITEMS:
        raise ValidationFailed.at(path, f"may hold at most {MAX_ITEMS} screens")
    for n, item in enumerate(items):
        if item.screen_id not in known_screens:
            raise ValidationFailed.at(f"{path}[{n}].screen_id", f"no screen with id {item.screen_id!r} in this project")
        if not MIN_SECONDS <= item.seconds <= MAX_SECONDS:
            raise ValidationFailed.at(f"{path}[{n}].seconds", f"must be between {MIN_SECONDS} and {MAX_SECONDS}")
    return items


@dataclass(frozen=True, slots=True)
class Turn:
    """Whose turn it is: the item's position, since when it is on show, and the seconds until the next turn."""

    index: int
    since: float
    seconds_left: int


def turn(items: list[PlaylistItem], index: int, since: float | None, now: float) -> Turn | None:
    """The item to show at `now`, given the one on show since `since`; None for an empty playlist."""
    if not items:
        return None
    index %= len(items)
    if since is None or since > now:  # a new playlist, or the wall clock was set back
        return Turn(index, now, items[index].seconds)
    item = items[index]
    elapsed = now - since
    if elapsed + min(EARLY_WAKE_SECONDS, item.seconds / 10) >= item.seconds:
        index = (index + 1) % len(items)
        return Turn(index, now, items[index].seconds)
    return Turn(index, since, max(1, math.ceil(item.seconds - elapsed)))


def drop_screen(tx: Tx, project_id: str, screen_id: str, now: float) -> None:
    """Take a deleted screen out of every playlist of the project (inside the delete's write job)."""
    for row in tx.execute(SQL_PLAYLISTS_OF_PROJECT, (project_id,)).fetchall():
        items = PLAYLIST.decode(row["playlist"])
        kept = [item for item in items if item.screen_id != screen_id]
        if len(kept) != len(items):
            set_playlist(tx, row["id"], kept, now)


def set_playlist(tx: Tx, device_id: str, items: list[PlaylistItem], now: float) -> None:
    """A new playlist starts at its first screen, at the device's next poll."""
    tx.execute(SQL_SET_PLAYLIST, (msgspec.json.encode(items).decode(), now, device_id))
