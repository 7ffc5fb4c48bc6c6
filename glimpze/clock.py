"""Time as a dependency: the app reads its clock; tests pass a `FakeClock` and move it.

A clock gives three readings, each for one kind of question:

- `now()`: wall-clock seconds since the Unix epoch. Every time Glimpze stores or shows
  (`received_at`, `created_at`, an attempt's `at`, a signature's `t=`) is a wall time: it is
  what people and other machines mean by "when".
- `monotonic()`: seconds on a clock that never jumps (Linux's CLOCK_BOOTTIME, which also counts
  a suspend), meaningful only as a difference. Every elapsed time measured in memory uses it:
  token buckets refill by it, caches age by it, the failed-authentication limiter forgets by it.
  Stepping the wall clock back an hour therefore neither stops a bucket's refill nor keeps a
  cached (possibly revoked) key alive for an hour.
- `due()`: the time scheduled work is compared against and scheduled from — a delivery's
  `next_attempt_at` and `lease_until`, a push's `send_at`. It is the wall time, except that it
  never runs backwards: `due = max(wall, last due + monotonic time elapsed since)`. After the
  wall clock steps back an hour, `due()` keeps counting from where it was, so a retry planned
  for "in 5 s" still goes out 5 s later and a lease taken for 60 s still ends 60 s later
  (rows scheduled meanwhile hold times up to an hour ahead of the stepped wall clock, and the
  offset lasts until the wall clock catches up). A forward step moves it forward with the wall
  clock: what fell due in between is sent at once, as the clock says it is late. `due()` is
  never earlier than `now()`, so anything stamped "due now" with a wall time is due at once.

What crosses a restart can only be measured in wall time: a feed's bucket levels are stored with
its last event and refilled, at load, by the wall time since (limits.FeedBuckets), and `due()`
starts again at the wall time, so an offset built up by a backward step ends with the process.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Protocol

# CLOCK_BOOTTIME keeps counting while the machine is suspended; CLOCK_MONOTONIC (elsewhere) does not.
_STEADY = getattr(time, "CLOCK_BOOTTIME", None)


class Clock(Protocol):
    # True when time passes by itself, so the server's periodic jobs run (scheduler.py). A test's
    # FakeClock moves only when told: an app built with one starts no scheduler, and the test calls
    # the jobs itself with its `now`.
    ticks: bool

    def now(self) -> float:
        """Wall-clock seconds since the Unix epoch: what is stored and shown."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never steps; only differences mean anything."""
        ...

    def due(self) -> float:
        """The wall time that scheduled work is compared against; never runs backwards."""
        ...


class DueTime:
    """`due()` for a clock with `now()` and `monotonic()`: see the module docstring."""

    _due: float | None = None
    _due_steady: float = 0.0

    def now(self) -> float:
        raise NotImplementedError

    def monotonic(self) -> float:
        raise NotImplementedError

    def due(self) -> float:
        wall, steady = self.now(), self.monotonic()
        due = wall if self._due is None else max(wall, self._due + (steady - self._due_steady))
        self._due, self._due_steady = due, steady
        return due


class SystemClock(DueTime):
    """The machine's clocks."""

    ticks = True

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic() if _STEADY is None else time.clock_gettime(_STEADY)


class FakeClock(DueTime):
    """A clock that only moves when told to. `advance(s)` is time passing (both clocks move);
    `step_wall(s)` is someone setting the wall clock (NTP, an operator): only `now()` jumps."""

    ticks = False

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start
        self.steady = 1000.0

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.steady

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.steady += seconds

    def step_wall(self, seconds: float) -> None:
        """Set the wall clock `seconds` forward (negative: back) without time passing."""
        self.t += seconds


# The text of the last second `iso` formatted: an event's times fall in the same second as the
# one before, and formatting the date and time afresh was ~5 µs of each call (several per event).
_iso_second: tuple[int, str] = (0, "1970-01-01T00:00:00.")


def iso(ts: float) -> str:
    """ISO-8601 UTC with millisecond precision: 2026-11-23T17:53:00.123Z.

    The same text as `datetime.fromtimestamp(ts, UTC)` gives (microseconds rounded half to even,
    then cut to milliseconds)."""
    global _iso_second
    fraction, whole = math.modf(ts)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        micros -= 1_000_000
        whole += 1
    elif micros < 0:
        micros += 1_000_000
        whole -= 1
    second, text = _iso_second
    if int(whole) != second:
        second = int(whole)
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _iso_second = (second, text)
    return f"{text}{micros // 1000:03d}Z"


def parse_iso(text: str) -> float:
    """The inverse of `iso`, lenient about precision and offsets; raises ValueError."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
