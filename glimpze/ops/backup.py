"""Online backups (`glimpze backup PATH`) and the health report (`glimpze check`).

A backup is a directory (mode 0700) holding what the data directory holds that matters
(DESIGN §6): `glimpze.db`, `media/` and the VAPID key files. The database is copied with
`VACUUM INTO` in one read transaction, so the copy is one consistent moment of it, taken while
the server keeps writing (WAL readers never block the writer); it holds everything committed
before the backup began. The images copied are exactly those the copy's `media` table lists
(content-addressed files never change, so copying them afterwards is safe). Restoring is
copying those back into an empty data directory.

Both run in the CLI process on their own connections, beside a running server.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from glimpze.config import Config, ConfigError
from glimpze.delivery.dispatcher import SQL_QUEUE_STATS
from glimpze.errors import GlimpzeError
from glimpze.feeds.media import fsync
from glimpze.ops.datadir import DataDirError, check_writable
from glimpze.store.database import BUSY_TIMEOUT_MS
from glimpze.store.migrations import MIGRATIONS

DB_NAME = "glimpze.db"
MEDIA_DIR = "media"
VAPID_GLOB = "vapid*"  # the push issue keeps its key pair in the data dir under this name

# SQLite's answers that mean the file itself is damaged (any other refusal is "cannot open").
DAMAGED = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}

SQL_MEDIA_NAMES = "SELECT sha256 || '.' || ext FROM media ORDER BY sha256"


class BackupError(GlimpzeError):
    """The backup could not be made; the message says why and what to do."""


@dataclass
class BackupReport:
    path: Path
    database_bytes: int
    events: int
    images: int
    image_bytes: int
    missing_images: list[str]
    vapid_files: list[str]
    seconds: float


@dataclass
class CheckReport:
    integrity_ok: bool
    pending: int = 0
    leased: int = 0
    data_bytes: int = 0
    problems: list[str] = field(default_factory=list)
    unchecked: str | None = None  # why the database was not checked (none there, cannot open it)
    backend: str = "sqlite"  # or "postgresql" ([database] url)

    @property
    def sound(self) -> bool:
        return self.integrity_ok and not self.problems

    def lines(self) -> list[str]:
        """The report as `glimpze check` prints it. A database that cannot be opened is "not
        checked", never "FAILED": that word means damage, and its remedy is restoring a backup."""
        if self.unchecked is not None:
            return [
                f"integrity: not checked ({self.unchecked})",
                "queue: unknown",
                self._data_line(),
                f"database: {self.backend}",
            ]
        return [
            f"integrity: {'ok' if self.integrity_ok else 'FAILED'}",
            f"queue: {self.pending} pending, {self.leased} leased",
            self._data_line(),
            f"database: {self.backend}",
        ]

    def _data_line(self) -> str:
        return f"data: {self.data_bytes / 1e6:.1f} MB"


def backup(config: Config, target: Path) -> BackupReport:
    """Copy the database, the stored images and the VAPID keys of `config`'s data dir to `target`."""
    started = time.monotonic()
    if config.postgres_url is not None:
        raise BackupError(
            "The database is PostgreSQL: back it up with PostgreSQL's own tools, e.g. "
            'pg_dump --format=custom --file=glimpze.dump "$GLIMPZE_DATABASE_URL" (or continuous archiving), '
            f"and copy {config.data_path.resolve()}/media and the vapid* files beside it."
        )
    data, database = config.data_path.resolve(), config.db_path.resolve()
    target = target.resolve()
    if not database.is_file():
        raise BackupError(f"There is no database at {database}: nothing to back up (check --data-dir).")
    if target == data or data in target.parents:
        raise BackupError(f"{target} is inside the data directory {data}; back up to another place.")
    _prepare(target)

    copy = target / DB_NAME
    with _open(database) as conn:
        conn.execute("VACUUM INTO ?", (str(copy),))
    copy.chmod(0o600)  # webhook signing secrets are in it
    fsync(copy)  # VACUUM INTO and shutil do not sync: the backup must be on disk before we say so
    with _open(copy) as conn:
        problems = _integrity_problems(conn)
        if problems:
            raise BackupError(f"The copy at {copy} failed its integrity check: {'; '.join(problems[:5])}")
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        names = [row[0] for row in conn.execute(SQL_MEDIA_NAMES)]

    images = target / MEDIA_DIR
    images.mkdir(mode=0o700)
    copied, missing = 0, []
    for name in names:
        try:
            copied += _copy(data / MEDIA_DIR / name, images / name)
        except FileNotFoundError:
            missing.append(name)  # deleted by retention since the copy was taken
    fsync(images)
    vapid = []
    for source in sorted(data.glob(VAPID_GLOB)):
        if source.is_file():
            _copy(source, target / source.name)
            vapid.append(source.name)
    fsync(target)
    return BackupReport(
        path=target,
        database_bytes=copy.stat().st_size,
        events=events,
        images=len(names) - len(missing),
        image_bytes=copied,
        missing_images=missing,
        vapid_files=vapid,
        seconds=time.monotonic() - started,
    )


def check(config: Config, now: float | None = None) -> CheckReport:
    """Integrity of the database, state of the delivery queue, size of the data directory, and
    whatever in the configuration cannot work (e.g. TLS files that do not match)."""
    now = time.time() if now is None else now
    database = config.db_path
    report = CheckReport(integrity_ok=False, data_bytes=_tree_bytes(config.data_path))
    if config.tls_enabled:
        from glimpze.ops.tls import server_context

        try:
            server_context(config.tls)
        except ConfigError as exc:
            report.problems.append(f"configuration: {exc}")
    if config.postgres_url is not None:
        _check_postgres(config.postgres_url, report, now)
        return report
    if not database.is_file():
        report.unchecked = "no database"
        report.problems.append(f"database: there is none at {database} (the server creates it on first start)")
        return report
    try:
        with _open(database, readonly=True) as conn:
            integrity = _integrity_problems(conn)
            report.integrity_ok = not integrity
            report.problems.extend(f"integrity: {line}" for line in integrity[:20])
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                newest = len(MIGRATIONS)
                report.problems.append(f"database: schema {version} is newer than this Glimpze's ({newest}); upgrade")
            if report.integrity_ok and version >= 2:  # the deliveries table came with schema 2
                queue = conn.execute(SQL_QUEUE_STATS, {"now": now}).fetchone()
                report.leased = queue["leased"]
                report.pending = queue["open"] - queue["leased"]
    except sqlite3.DatabaseError as exc:
        report.integrity_ok = False
        if getattr(exc, "sqlite_errorname", "") in DAMAGED:
            report.problems.append(f"database: {database.resolve()} is damaged: {exc} (restore a backup)")
        else:
            report.unchecked = "cannot open the database"
            report.problems.append(f"database: cannot open {database.resolve()}: {_why_unopenable(database, exc)}")
    return report


def _check_postgres(url: str, report: CheckReport, now: float) -> None:
    """PostgreSQL keeps its own pages sound (checksums, WAL): what is checked here is that the
    database answers, its schema version, and the delivery queue."""
    import psycopg

    from glimpze.store.dialect import for_postgres
    from glimpze.store.pg_schema import schema_version

    report.backend = "postgresql"
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            version = schema_version(conn)
            newest = len(MIGRATIONS)
            if version == 0:
                report.unchecked = "no database schema"
                report.problems.append("database: PostgreSQL has no Glimpze tables yet (the server creates them)")
                return
            report.integrity_ok = True
            if version > newest:
                report.problems.append(f"database: schema {version} is newer than this Glimpze's ({newest}); upgrade")
                return
            row = conn.execute(for_postgres(SQL_QUEUE_STATS), {"now": now}).fetchone()
            if row is not None:
                report.leased = int(row[1])
                report.pending = int(row[0]) - report.leased
    except psycopg.Error as exc:
        report.unchecked = "cannot reach the database"
        report.problems.append(f"database: cannot reach PostgreSQL: {str(exc).strip()}")


def _why_unopenable(database: Path, exc: sqlite3.Error) -> str:
    """What keeps a sound database from opening, in the operator's terms. Opening a WAL database,
    even read-only, needs its `-shm` file, which SQLite creates beside it when it is missing."""
    for path in (database.parent, database):
        if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
            return f"cannot read {path.resolve()}: {os.strerror(errno.EACCES).lower()}"
    if not database.with_name(database.name + "-shm").exists():
        try:
            check_writable(database.parent)
        except DataDirError as error:
            return f"{error.detail} (SQLite needs to create {database.name}-shm there)"
    return str(exc)


def _prepare(target: Path) -> None:
    """A new directory (0700), or an existing empty one; never one that holds anything."""
    if target.exists():
        if not target.is_dir():
            raise BackupError(f"{target} exists and is not a directory; give a new directory for the backup.")
        if any(target.iterdir()):
            raise BackupError(f"{target} is not empty; give a new or empty directory, so no backup is overwritten.")
    else:
        try:
            target.mkdir(parents=True, mode=0o700)
        except OSError as exc:
            raise BackupError(f"Cannot create {target}: {exc.strerror}.") from None
    target.chmod(0o700)


@contextmanager
def _open(path: Path, *, readonly: bool = False) -> Iterator[sqlite3.Connection]:
    uri = path.resolve().as_uri() + ("?mode=ro" if readonly else "")
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        yield conn
    finally:
        conn.close()


def _integrity_problems(conn: sqlite3.Connection) -> list[str]:
    rows = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    return [] if rows == ["ok"] else rows


def _copy(source: Path, destination: Path) -> int:
    """Copy one file with its mode and times, synced to disk; returns its size."""
    shutil.copy2(source, destination)
    fsync(destination)
    return destination.stat().st_size


def _tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:  # removed while we walked
                pass
    return total
