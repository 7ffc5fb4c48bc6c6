"""Stored images: content-addressed files under `data/media/`, the `media` table, and their references.

A file is `media/{sha256}.{ext}`; its row in `media` says it is in use, and `event_media` says
which events link to it (by the URLs in their content, uploads and JSON alike). The rules that
keep files and rows in step with one writer and no locks on disk:
- an upload is written to `media/.incoming/`, checked, fsynced and hard-linked into place
  before its event is written (`adopt`); the event's write job inserts the row and links the
  file again if it went missing meanwhile (`link`);
- an image no kept event references loses its row, and its file is unlinked by a later write
  job that sees no row for it (`collect`), so a concurrent upload of the same image, whose job
  runs in the same serial writer, either comes first (the row stays) or after (it relinks);
- a file with no row (a crash between link and commit, a throttled upload that was only
  counted) is an orphan, deleted once it is older than ORPHAN_GRACE_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from glimpze.feeds.schemas import WIDGET_SIZES, CustomEvent
from glimpze.store.database import StorageError
from glimpze.store.sql import Store, Tx

if TYPE_CHECKING:
    from glimpze.feeds.events import NewEvent

log = logging.getLogger("glimpze.media")

ORPHAN_GRACE_SECONDS = 3600.0
INCOMING = ".incoming"
NAME = re.compile(r"^(?P<sha256>[0-9a-f]{64})\.(?P<ext>png|jpg|webp)$")

SQL_INSERT_MEDIA = """
    INSERT OR IGNORE INTO media (sha256, ext, content_type, bytes, width, height, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)
"""
# Only images that exist are referenced: a JSON event may link to an image that is long gone.
SQL_REFERENCE = """
    INSERT OR IGNORE INTO event_media (event_seq, slot, sha256)
    SELECT ?, ?, sha256 FROM media WHERE sha256 = ? AND ext = ?
"""
SQL_FIND = "SELECT sha256, ext, content_type FROM media WHERE sha256 = ? AND ext = ?"
SQL_EVENT_IMAGES = """
    SELECT em.slot, m.sha256, m.ext, m.content_type FROM event_media em JOIN media m USING (sha256)
    WHERE em.event_seq = ?
"""
SQL_DELETE_UNREFERENCED = """
    DELETE FROM media WHERE NOT EXISTS (SELECT 1 FROM event_media em WHERE em.sha256 = media.sha256)
    RETURNING sha256, ext
"""
SQL_ALL_NAMES = "SELECT sha256 || '.' || ext FROM media"
SQL_HAS_ROW = "SELECT 1 FROM media WHERE sha256 = ? AND ext = ?"


@dataclass(frozen=True, slots=True)
class MediaFile:
    """An accepted upload, still at `incoming` until its event is stored."""

    sha256: str
    ext: str
    content_type: str
    size: int
    width: int
    height: int
    incoming: Path

    @property
    def name(self) -> str:
        return f"{self.sha256}.{self.ext}"


@dataclass(frozen=True, slots=True)
class StoredImage:
    """A stored image an event links to."""

    sha256: str
    ext: str
    content_type: str

    @property
    def name(self) -> str:
        return f"{self.sha256}.{self.ext}"


class Media:
    """The image store under `root` (the data dir's `media/`)."""

    def __init__(self, root: Path, db: Store, base_url: str) -> None:
        self.root = root
        self.incoming = root / INCOMING
        self.db = db
        self.base_url = base_url
        self._own_url = re.compile(re.escape(f"{base_url}/media/") + r"(?P<sha256>[0-9a-f]{64})\.(?P<ext>png|jpg|webp)")
        self._collecting = asyncio.Lock()

    def open(self) -> None:
        """Create the folders. (Spool files a crash left behind are swept by `collect` once old:
        not here, since the CLI opens the store too while the server may be receiving uploads.)"""
        self.incoming.mkdir(parents=True, exist_ok=True)

    def url(self, name: str) -> str:
        return f"{self.base_url}/media/{name}"

    def path(self, name: str) -> Path:
        return self.root / name

    def new_incoming(self) -> Path:
        """A fresh spool file name for an upload's part."""
        return self.incoming / secrets.token_hex(16)

    async def adopt(self, files: list[MediaFile]) -> None:
        """Make the files durable and link them into place, ahead of their event's write; a disk
        that refuses (full, failing) is a StorageError. A file already placed stays an orphan
        until `collect` (another upload of the same image may be counting on it)."""
        try:
            await asyncio.to_thread(self._adopt, files)
        except OSError as exc:
            raise StorageError(f"cannot store an image in {self.root}: {exc}") from None

    def _adopt(self, files: list[MediaFile]) -> None:
        for file in files:
            fd = os.open(file.incoming, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._place(file)
        fsync(self.root)

    def _place(self, file: MediaFile) -> bool:
        """Link the spool file to its content address; False when it was already there."""
        final = self.path(file.name)
        try:
            os.link(file.incoming, final)
        except FileExistsError:
            return False
        except OSError:
            # A filesystem without hard links (FAT on a USB stick): copy, then rename into place.
            partial = self.incoming / (secrets.token_hex(8) + ".part")
            try:
                shutil.copyfile(file.incoming, partial)
                os.replace(partial, final)
            finally:
                partial.unlink(missing_ok=True)  # left only when the copy failed (a full disk)
        return True

    def link(self, tx: Tx, stored: NewEvent) -> None:
        """Inside an event's write job: rows for the images it brings, references for every image
        of ours its content links to (uploaded now or earlier)."""
        event = stored.event
        if not isinstance(event, CustomEvent):
            return
        for file in stored.media:
            tx.execute(
                SQL_INSERT_MEDIA,
                (file.sha256, file.ext, file.content_type, file.size, file.width, file.height, stored.received_at),
            )
            if not self.path(file.name).exists() and self._place(file):  # collect() took it meanwhile
                fsync(self.root)
        refs = list(self.references(event))
        if refs:
            tx.executemany(SQL_REFERENCE, [(stored.seq, slot, sha, ext) for slot, sha, ext in refs])

    def references(self, event: CustomEvent) -> list[tuple[str, str, str]]:
        """(slot, sha256, ext) of each content URL that points at this server's media."""
        found = []
        for size in WIDGET_SIZES:
            image = getattr(event.content, size)
            if image is None:
                continue
            for slot, url in ((size, image.image_url), (f"{size}_dark", image.image_url_dark)):
                match = self._own_url.fullmatch(url or "")
                if match:
                    found.append((slot, match["sha256"], match["ext"]))
        return found

    async def find(self, name: str) -> StoredImage | None:
        """The stored image served at /media/{name}, if any."""
        match = NAME.match(name)
        if match is None:
            return None
        row = await self.db.fetch_one(SQL_FIND, (match["sha256"], match["ext"]))
        return None if row is None else StoredImage(row["sha256"], row["ext"], row["content_type"])

    async def event_images(self, event_seq: int) -> dict[str, StoredImage]:
        """The stored images an event links to, by slot (`small`, `small_dark`, …)."""
        rows = await self.db.fetch_all(SQL_EVENT_IMAGES, (event_seq,))
        return {r["slot"]: StoredImage(r["sha256"], r["ext"], r["content_type"]) for r in rows}

    async def collect(self, now: float) -> int:
        """Delete images no event references any more, and orphan files; returns files deleted."""
        async with self._collecting:
            gone = await self.db.write(lambda tx: tx.execute(SQL_DELETE_UNREFERENCED).fetchall())
            candidates = {f"{row['sha256']}.{row['ext']}" for row in gone}
            known = {row[0] for row in await self.db.fetch_all(SQL_ALL_NAMES)}
            old = await asyncio.to_thread(self._old_files, now - ORPHAN_GRACE_SECONDS)
            candidates |= old - known
            if not candidates:
                return 0
            deleted = await self.db.write(lambda tx: self._unlink_unreferenced(tx, sorted(candidates)))
        if deleted:
            log.info("deleted %d unreferenced image(s)", deleted)
        return deleted

    def _unlink_unreferenced(self, tx: Tx, names: list[str]) -> int:
        """Inside a write job, so no upload's job can interleave between the check and the unlink."""
        deleted = 0
        for name in names:
            sha, _, ext = name.partition(".")
            if tx.execute(SQL_HAS_ROW, (sha, ext)).fetchone() is None:
                try:
                    self.path(name).unlink()
                    deleted += 1
                except FileNotFoundError:
                    pass
        return deleted

    def _old_files(self, cutoff: float) -> set[str]:
        """Media files and spool files last changed before `cutoff`; stale spool files go at once."""
        names = set()
        for entry in os.scandir(self.root):
            if not entry.is_file(follow_symlinks=False) or entry.stat().st_mtime >= cutoff:
                continue
            if NAME.match(entry.name):
                names.add(entry.name)
        for entry in os.scandir(self.incoming):
            if entry.stat().st_mtime < cutoff:
                Path(entry.path).unlink(missing_ok=True)
        return names


def fsync(path: Path) -> None:
    """Make a file's bytes, or a directory's new entries, durable (a link is not on disk until its
    folder is synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
