"""Quiet hours: a daily window per project, in its own time zone, when pushes stay silent.

`PUT /v1/settings/quiet-hours {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"}`;
a window may cross midnight; DELETE turns quiet hours off. Inside the window a push is
suppressed (logged, and the ingest answer says `"push": "suppressed"`) and an approval's push is
held until the window ends (push.release_quiet_hours). Times are local wall-clock times, so the
window follows daylight saving time. Windows are kept in memory: ingest asks on every push.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo

import msgspec

from glimpze.accounts.settings import ProjectSettings, Setting
from glimpze.clock import Clock, iso
from glimpze.errors import ValidationFailed
from glimpze.store.sql import Store

_HH_MM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class QuietHoursSpec(msgspec.Struct, forbid_unknown_fields=True):
    """The body of PUT /v1/settings/quiet-hours: local times and an IANA time zone."""

    start: str
    end: str
    timezone: str


QUIET_HOURS = Setting("quiet_hours", QuietHoursSpec)  # the project setting


class QuietHoursState(msgspec.Struct, kw_only=True):
    """Quiet hours as GET shows them: off (`enabled: false`), or the window and whether it is on now."""

    enabled: bool
    start: str | None = None
    end: str | None = None
    timezone: str | None = None
    active_now: bool = False
    next_end: str | None = None  # while active: when held approvals go out


@dataclass(frozen=True, slots=True)
class Window:
    """A daily window [start, end) of local time in `zone`; end before start crosses midnight."""

    start: time
    end: time
    zone: zoneinfo.ZoneInfo

    def active(self, now: float) -> bool:
        local = datetime.fromtimestamp(now, self.zone).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_end(self, now: float) -> float:
        """The first end of the window after `now` (a unix time)."""
        local = datetime.fromtimestamp(now, self.zone)
        end = datetime.combine(local.date(), self.end, self.zone)
        if end.timestamp() <= now:
            end = datetime.combine(local.date() + timedelta(days=1), self.end, self.zone)
        return end.timestamp()


def parse(spec: QuietHoursSpec) -> Window:
    """A checked window; raises ValidationFailed naming the field."""
    times = []
    for field in ("start", "end"):
        match = _HH_MM.match(getattr(spec, field))
        if match is None:
            raise ValidationFailed.at(f"$.{field}", "must be a 24-hour local time HH:MM, e.g. 22:00")
        times.append(time(int(match[1]), int(match[2])))
    if times[0] == times[1]:
        raise ValidationFailed.at("$.end", "must differ from start (to turn quiet hours off, DELETE them)")
    return Window(times[0], times[1], zone(spec.timezone))


def zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed.at(
            "$.timezone",
            f"{name!r} is not a known IANA time zone, e.g. Europe/Berlin or America/New_York "
            "(if none is known, install the system's tzdata package)",
        ) from None


class QuietHours:
    """Each project's window, stored as a project setting and kept in memory."""

    def __init__(self, db: Store, clock: Clock, settings: ProjectSettings) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self._windows: dict[str, tuple[QuietHoursSpec, Window]] = {}

    async def load(self) -> None:
        """Read every project's window (at start)."""
        windows = {}
        for project_id, spec in await self.settings.all(QUIET_HOURS):
            try:
                windows[project_id] = (spec, parse(spec))
            except ValidationFailed:  # e.g. a time zone this system no longer knows: quiet hours off
                continue
        self._windows = windows

    def active(self, project_id: str, now: float) -> bool:
        """Whether `now` falls in the project's quiet hours (cheap: ingest asks)."""
        entry = self._windows.get(project_id)
        return entry is not None and entry[1].active(now)

    def projects(self) -> list[str]:
        return list(self._windows)

    def time_zone(self, project_id: str) -> tzinfo:
        """The project's time zone: its quiet hours' (the one zone a project sets), else UTC.
        Pictures say when they were updated in it (feeds/freshness.py)."""
        entry = self._windows.get(project_id)
        return UTC if entry is None else entry[1].zone

    def state(self, project_id: str) -> QuietHoursState:
        entry = self._windows.get(project_id)
        if entry is None:
            return QuietHoursState(enabled=False)
        spec, window = entry
        now = self.clock.now()
        active = window.active(now)
        return QuietHoursState(
            enabled=True,
            start=spec.start,
            end=spec.end,
            timezone=spec.timezone,
            active_now=active,
            next_end=iso(window.next_end(now)) if active else None,
        )

    async def set(self, project_id: str, spec: QuietHoursSpec) -> QuietHoursState:
        window = parse(spec)
        now = self.clock.now()
        await self.db.write(lambda tx: self.settings.put(tx, project_id, QUIET_HOURS, spec, now))
        self._windows[project_id] = (spec, window)
        return self.state(project_id)

    async def clear(self, project_id: str) -> None:
        await self.db.write(lambda tx: self.settings.delete(tx, project_id, QUIET_HOURS))
        self._windows.pop(project_id, None)
