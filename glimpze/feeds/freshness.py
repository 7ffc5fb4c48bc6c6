"""How fresh a picture is: the "updated 14:05" stamp drawn on widget PNGs and screens.

A picture on a wall is looked at long after it was drawn, so the stamp is absolute (when the feed
last changed, in the project's time zone) rather than relative: "3 h ago" would be wrong an hour
later on a screen that is not redrawn, and redrawing for it would cost an e-ink panel a refresh.
The stamp changes only when the feed does, or when the day it names is no longer today.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

WEEK_SECONDS = 6 * 24 * 3600  # within this, a weekday names the day unambiguously
# English names whatever the process's locale (strftime's %a and %b follow LC_TIME).
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def updated_stamp(at: float, now: float, tz: tzinfo) -> str:
    """ "updated 14:05" today, "updated Tue 14:05" within the last six days, "updated 3 Mar 14:05"
    this year, "updated 3 Mar 2025" before (all in `tz`, 24-hour clock)."""
    when, today = datetime.fromtimestamp(at, tz), datetime.fromtimestamp(now, tz)
    clock = f"{when.hour:02d}:{when.minute:02d}"
    if when.date() == today.date() or at > now:  # a clock a little ahead: still "today"
        return f"updated {clock}"
    if now - at < WEEK_SECONDS:
        return f"updated {WEEKDAYS[when.weekday()]} {clock}"
    day = f"{when.day} {MONTHS[when.month - 1]}"
    if when.year == today.year:
        return f"updated {day} {clock}"
    return f"updated {day} {when.year}"
