"""The data directory: proven writable before use, and owned by one server process at a time.

On SQLite one `glimpze serve` owns a data directory: a second one would keep its own token buckets,
never wake the first one's long polls, and clear its delivery leases at start. `claim()` takes an
exclusive `flock` on `glimpze.lock` in the directory and writes the holder's PID there. The
kernel releases the lock when the holder exits, however it dies (a SIGKILLed server never blocks
its restart). CLI commands that write beside a running server (keys, feeds, backup) do not take
it: SQLite's own locking covers them. (A database that several processes share, such as
PostgreSQL, would skip `claim()`; the images in the data directory need no lock.)

Errors here are one line that names the path and says what is wrong, e.g.
`cannot write /srv/glimpze/data: read-only file system`.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from glimpze.errors import GlimpzeError

LOCK_NAME = "glimpze.lock"


class DataDirError(GlimpzeError):
    """The data directory cannot be used (not writable, or in use by another server)."""


class DataDirLock:
    """A held `claim()`: the open lock file; `release()` (or the process's exit) lets it go."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def reason(exc: OSError) -> str:
    """`read-only file system`, `permission denied`, `no space left on device`…"""
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)


def check_writable(path: Path) -> None:
    """Create `path` if missing and prove a file can be created in it and its database files
    written; raises DataDirError naming the path that is not writable."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataDirError(f"cannot create {Path(exc.filename or path).resolve()}: {reason(exc)}") from None
    probe = path / f".glimpze-write-test-{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        probe.unlink()
    except OSError as exc:
        raise DataDirError(f"cannot write {path.resolve()}: {reason(exc)}") from None
    for name in ("glimpze.db", "glimpze.db-wal", "glimpze.db-shm", "media", "media/.incoming"):
        existing = path / name
        if existing.exists() and not os.access(existing, os.W_OK | (os.X_OK if existing.is_dir() else 0)):
            raise DataDirError(f"cannot write {existing.resolve()}: {os.strerror(errno.EACCES).lower()}")


def claim(path: Path) -> DataDirLock:
    """Check `path` is writable and take it for this server process; raises DataDirError when it
    is not writable or another server holds it (naming the directory and that server's PID)."""
    check_writable(path)
    lock = path / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise DataDirError(f"cannot write {lock.resolve()}: {reason(exc)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DataDirError(
            f"{path.resolve()} is in use by another Glimpze server (PID {holder}); "
            "stop it first, or give this one its own --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DataDirLock(lock, fd)
