"""Disks that misbehave, for real: a read-only data directory, and a small disk that fills up.

Root (as on CI) gets real mounts: a read-only bind mount (EROFS) and a small tmpfs (ENOSPC).
Without root a read-only directory is one without write permission (EACCES); a test that needs
a mount it cannot make is skipped.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True, timeout=30).returncode == 0


def _unmount(path: Path) -> None:
    subprocess.run(["umount", "--lazy", str(path)], capture_output=True, timeout=30)


@contextmanager
def read_only(path: Path) -> Iterator[str]:
    """The directory `path` made read-only; yields the reason a write then fails with, in
    `os.strerror` words: "read-only file system" (a bind mount) or "permission denied"."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield "permission denied"
        finally:
            path.chmod(mode)
        return
    if not _mount("--bind", str(path), str(path)):
        pytest.skip("cannot bind-mount here (root without CAP_SYS_ADMIN?)")
    try:
        if not _mount("-o", "remount,bind,ro", str(path)):
            pytest.skip("cannot remount read-only here")
        yield "read-only file system"
    finally:
        _unmount(path)


@contextmanager
def small_disk(path: Path, size: str = "16m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at the (new) directory `path`; skips where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)):
        pytest.skip("mounting a tmpfs needs root here")
    try:
        yield path
    finally:
        _unmount(path)


def fill(disk: Path) -> Path:
    """Write a file on `disk` until it is full; returns it (delete it to free the space)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        for block in (1024 * 1024, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * block)
            except OSError:
                pass
    return filler
