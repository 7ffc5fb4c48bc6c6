"""How the benchmarks share the machine: the server on one core, the load on another; and the WAL's size.

On two cores, a server and its load generator left to the scheduler trade places and rounds swing
by ±20 %. `pin_load()` keeps this process (and wrk, which inherits it) on the last core;
`pin_server(pid)` keeps every thread of a server process on the first. `WalWatch` samples the
size of a database's `-wal` file in a thread while a round runs and keeps its peak.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import TracebackType

from glimpze.store.database import wal_path

MIB = 1024 * 1024
SAMPLE_SECONDS = 0.02


def _cores() -> tuple[set[int], set[int]]:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    return {cpus[0]}, {cpus[-1]}


SERVER_CORES, LOAD_CORES = _cores()


def pin_load() -> None:
    """Pin this process (and what it starts from now on: wrk) to the load generator's core."""
    if hasattr(os, "sched_setaffinity") and LOAD_CORES:
        os.sched_setaffinity(0, LOAD_CORES)


def pin_server(pid: int) -> None:
    """Pin every thread of process `pid` to the server's core (threads it starts later inherit it)."""
    if not hasattr(os, "sched_setaffinity") or not SERVER_CORES:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), SERVER_CORES)
        except ProcessLookupError:  # a thread that just ended
            pass


def cores_line() -> str:
    return f"server on CPU {sorted(SERVER_CORES)}, load generator on CPU {sorted(LOAD_CORES)}"


def wal_bytes(db: Path) -> int:
    try:
        return wal_path(db).stat().st_size
    except FileNotFoundError:
        return 0


class WalWatch:
    """`with WalWatch(db) as watch: …` → `watch.peak`: the largest size the WAL file had meanwhile."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="wal-watch", daemon=True)

    def __enter__(self) -> WalWatch:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, wal_bytes(self.db))
            if self._stop.wait(SAMPLE_SECONDS):
                return

    @property
    def peak_mib(self) -> float:
        return self.peak / MIB


def wal_settles(db: Path, below: int = 16 * MIB, limit: float = 30.0) -> float | None:
    """Seconds until the WAL file is smaller than `below` (the load has ended), or None after `limit`."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if wal_bytes(db) < below:
            return time.monotonic() - start
        time.sleep(0.1)
    return None
