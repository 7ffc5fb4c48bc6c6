"""The SQLite store: one writing connection doing group commit, aiosqlite readers, migrations.

Writes are plain functions `job(tx: Tx) -> T` handed to `Database.write()` (store/sql.py). The writer takes
every job queued so far, runs them in ONE `BEGIN IMMEDIATE` transaction, commits, and only then
resolves the callers' futures: an awaited `write()` means the data is on disk
(`synchronous=FULL`). While a commit is syncing, new jobs queue up and go out together in the
next one, so throughput grows with concurrency and a lone request never waits for a timer.
A job that raises fails alone: the batch is then run again with each job in its own savepoint.
So a job may run more than once, and only its last run counts: it must be a function of the
database and of what it captured, nothing else.

The statements run on the event loop's thread (microseconds of CPU each); only `COMMIT`, which
waits for fsync, goes to the writer's own thread. `BEGIN IMMEDIATE` is tried without waiting;
when another process (the CLI) holds the write lock it is retried with short sleeps, so the loop
never blocks on the lock. A thread running every statement was measured slower: each sqlite call
releases the GIL, and getting it back from a busy event loop costs up to the switch interval.
Reads go through aiosqlite connections (`query_only`), which see every committed write (WAL).

The WAL: a commit appends pages to the `-wal` file; a checkpoint copies them into the database
file, and the log starts over from its beginning only if a checkpoint copied all of it before the
next write began. A checkpoint running beside a busy writer never gets there (new pages arrive
while it copies), so the log would grow for as long as writes continue. So the writer checkpoints
the log in two steps once the `-wal` file passes `WAL_CHECKPOINT_BYTES`. First a PASSIVE
checkpoint on a connection and thread of its own copies the bulk of the log while commits go on;
then the writer, between two batches, copies the few pages committed meanwhile (jobs queued during
that short pause go in the next batch), after which the next commit starts the log over and
`journal_size_limit` cuts the file back to that size. Copying the whole log between two batches
held up every write queued meanwhile for 25-45 ms per 32 MiB, the p99 of a busy server. A TRUNCATE
checkpoint runs once no commit has come for
`WAL_IDLE_SECONDS`, which leaves an empty file. The WAL stays near that size under any sustained
load, unless a reader keeps an old snapshot open all along (a backup of a live server), which no
checkpoint can get past.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeAlias, TypeVar, cast

import aiosqlite
import msgspec

from glimpze.clock import iso
from glimpze.store.dialect import Sql, Statement
from glimpze.store.migrations import MIGRATIONS
from glimpze.store.sql import Params, Row, StoreReads, Tx

log = logging.getLogger("glimpze.db")

T = TypeVar("T")
WriteJob: TypeAlias = Callable[[Tx], T]
# A queued job and the future its caller awaits. The writer holds jobs of every result type
# together, so the pair is typed loosely here; `submit` ties each future to its job's result.
_Queued: TypeAlias = tuple[WriteJob[object], "asyncio.Future[Any]"]
# What running a job came to: (True, its result) or (False, the exception it raised).
_Outcome: TypeAlias = tuple[bool, Any]

BUSY_TIMEOUT_MS = 5000
DEFAULT_READERS = 2
# The writer checkpoints once the -wal file passes this (the bulk copied beside the commits, the
# rest between two batches); if the copy beside falls behind, it copies everything itself once the
# file is twice as large, which keeps the log within issue 15's 64 MiB however busy the writer is.
WAL_CHECKPOINT_BYTES = 16 * 1024 * 1024
WAL_IDLE_SECONDS = 2.0  # and empties it once no commit has come for this long
WAL_RETRY_SECONDS = 0.05  # after a checkpoint a reader kept from finishing; doubled each time
WAL_RETRY_MAX_SECONDS = 1.0  # up to this, while one keeps it from finishing
WAL_ERROR_RETRY_SECONDS = 10.0  # after a checkpoint that failed (a full disk)


class StorageError(Exception):
    """The database refused a commit, or an upload's file could not be written (disk full, I/O
    error); nothing was stored. Answered 503 `storage_unavailable` with Retry-After."""


def connect(path: Path | str, *, synchronous: str = "full", readonly: bool = False) -> sqlite3.Connection:
    """A configured sqlite3 connection (autocommit mode: transactions are explicit)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    _configure(conn, synchronous=synchronous, readonly=readonly)
    return conn


def _configure(conn: sqlite3.Connection, *, synchronous: str, readonly: bool) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        # The server's writer checkpoints between batches (Writer), so a commit never pays for
        # copying the WAL back into the database file.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    conn.execute("PRAGMA foreign_keys = ON")
    if readonly:
        conn.execute("PRAGMA query_only = ON")


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to the newest version; returns the version reached."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    newest = len(MIGRATIONS)
    if version > newest:
        raise StorageError(
            f"the database is at schema version {version}, newer than this Glimpze ({newest}); "
            "upgrade Glimpze or restore a backup"
        )
    for number, (name, script) in enumerate(MIGRATIONS[version:], start=version + 1):
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        log.info("migrated database schema to version %d (%s)", number, name)
    return newest


def wal_path(db: Path) -> Path:
    """The write-ahead log beside database file `db`."""
    return db.with_name(db.name + "-wal")


def _wal_checkpoint(conn: sqlite3.Connection, mode: str) -> tuple[int, int, int]:
    """SQLite's (busy, frames in the log, frames checkpointed)."""
    busy, frames, copied = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return int(busy), int(frames), int(copied)


class Writer:
    """The single writing connection: group commit of queued jobs, fsync and checkpoints off the
    event loop, a WAL kept near `checkpoint_bytes` and emptied after `idle_seconds` without commits."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        db: Path,
        *,
        synchronous: str = "full",
        checkpoint_bytes: int = WAL_CHECKPOINT_BYTES,
        idle_seconds: float = WAL_IDLE_SECONDS,
    ) -> None:
        self._conn = conn
        self._db = db
        self._wal = wal_path(db)
        self._synchronous = synchronous
        self.checkpoint_bytes = checkpoint_bytes
        self.idle_seconds = idle_seconds
        self._pending: list[_Queued] = []
        self._flushing: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="glimpze-writer")
        # The connection that copies the bulk of the log while the writer goes on (opened on first use).
        self._copier: sqlite3.Connection | None = None
        self._copier_thread = ThreadPoolExecutor(1, thread_name_prefix="glimpze-checkpoint")
        self._copying: asyncio.Future[tuple[int, int, int]] | None = None
        self._closed = False
        self._last_commit = time.monotonic()
        self._checkpoint_after = 0.0  # no PASSIVE checkpoint before (monotonic)
        self._retry = WAL_RETRY_SECONDS
        self._idle: asyncio.TimerHandle | None = None
        self.after_commit: list[Callable[[], None]] = []  # run on the loop after each commit
        self.checkpoints = 0

    @property
    def alive(self) -> bool:
        return not self._closed

    def submit(self, fn: WriteJob[T]) -> asyncio.Future[T]:
        if self._closed:
            raise StorageError("the database is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((fn, future))
        if self._flushing is None:
            self._flushing = loop.create_task(self._flush())
        return future

    async def close(self) -> None:
        """Commit what is queued, then close the connection."""
        if self._flushing is not None:
            await asyncio.shield(self._flushing)
        self._closed = True
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        if self._copying is not None:
            await asyncio.gather(self._copying, return_exceptions=True)
        if self._copier is not None:
            await loop.run_in_executor(self._copier_thread, self._copier.close)
        self._copier_thread.shutdown()
        await loop.run_in_executor(self._thread, self._conn.close)
        self._thread.shutdown()

    async def _flush(self, checkpoint: str | None = None) -> None:
        try:
            if checkpoint is not None:
                await self._checkpoint(checkpoint)
            while self._pending:
                batch, self._pending = self._pending, []
                await self._commit(batch)
                if self.wal_bytes() > self.checkpoint_bytes and time.monotonic() >= self._checkpoint_after:
                    await self._keep_log_short()
        finally:
            self._flushing = None
            self._arm_idle()

    def wal_bytes(self) -> int:
        """The size of the -wal file (a stat: microseconds)."""
        try:
            return self._wal.stat().st_size
        except FileNotFoundError:
            return 0

    async def _keep_log_short(self) -> None:
        """The log is past `checkpoint_bytes`: copy its bulk beside the writer, then the rest here."""
        if self._copying is None:
            self._copying = asyncio.get_running_loop().run_in_executor(self._copier_thread, self._copy_beside)
        elif self._copying.done() or self.wal_bytes() > 2 * self.checkpoint_bytes:
            copying, self._copying = self._copying, None
            try:
                await copying
            except sqlite3.Error as exc:  # the writer's own checkpoint then copies it all, or says why
                log.debug("WAL checkpoint beside the writer failed: %s", exc)
            await self._checkpoint("PASSIVE")

    def _copy_beside(self) -> tuple[int, int, int]:
        """A PASSIVE checkpoint on the copier's connection (its thread): no writer waits for it."""
        if self._copier is None:
            self._copier = connect(self._db, synchronous=self._synchronous)
        return _wal_checkpoint(self._copier, "PASSIVE")

    async def _checkpoint(self, mode: str) -> None:
        """Run a checkpoint on the writing connection, in its thread, between two batches: no page
        can be added meanwhile, so a PASSIVE one copies the whole log unless a reader still reads
        older pages of it, and the next commit starts the log over."""
        loop = asyncio.get_running_loop()
        self.checkpoints += 1
        try:
            busy, frames, copied = await loop.run_in_executor(self._thread, _wal_checkpoint, self._conn, mode)
        except sqlite3.Error as exc:  # e.g. a full disk: the log keeps the data meanwhile
            log.warning("WAL checkpoint (%s) failed: %s", mode, exc)
            self._checkpoint_after = time.monotonic() + WAL_ERROR_RETRY_SECONDS
            return
        if busy or copied < frames:
            # A reader held it back: try again soon, not after every commit; later and later if a
            # reader keeps the log all along (Litestream does, and checkpoints it itself).
            self._checkpoint_after = time.monotonic() + self._retry
            self._retry = min(self._retry * 2, WAL_RETRY_MAX_SECONDS)
        else:
            self._retry = WAL_RETRY_SECONDS

    def _arm_idle(self) -> None:
        if self._idle is None and not self._closed:
            self._idle = asyncio.get_running_loop().call_later(self.idle_seconds, self._when_idle)

    def _when_idle(self) -> None:
        """`idle_seconds` without a commit: empty the WAL (TRUNCATE), as a flush of its own."""
        self._idle = None
        if self._closed or self._flushing is not None:
            return  # that flush arms the timer again when it ends
        wait = max(self._last_commit + self.idle_seconds, self._checkpoint_after) - time.monotonic()
        if wait > 0:
            self._idle = asyncio.get_running_loop().call_later(wait, self._when_idle)
        elif self.wal_bytes() > 0:
            self._flushing = asyncio.get_running_loop().create_task(self._flush("TRUNCATE"))

    async def _begin(self) -> None:
        """BEGIN IMMEDIATE without blocking the event loop on another process's write lock."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        delay = 0.001
        while True:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def _commit(self, batch: list[_Queued]) -> None:
        loop = asyncio.get_running_loop()
        conn = self._conn
        try:
            await self._begin()
            outcomes = _run_jobs(conn, batch, isolated=False)
            if not all(ok for ok, _ in outcomes):
                # A job failed part-way: start over with each job in its own savepoint, so the
                # failed ones leave nothing behind. Jobs are functions of the database, so
                # running them again is safe.
                conn.execute("ROLLBACK")
                await self._begin()
                outcomes = _run_jobs(conn, batch, isolated=True)
            await loop.run_in_executor(self._thread, conn.execute, "COMMIT")
            self._last_commit = time.monotonic()
        except sqlite3.Error as exc:
            log.error("commit failed, %d writes rejected: %s", len(batch), exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = StorageError(f"the database refused the write: {exc}")
            outcomes = [(False, error)] * len(batch)
        else:
            for callback in self.after_commit:
                callback()
        for (_, future), (ok, value) in zip(batch, outcomes):
            if future.done():  # the caller went away (cancelled); the write itself stands
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


class SqliteTx:
    """`Tx` over the writing connection: a statement written per dialect runs as its SQLite text."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: Statement, parameters: Params = (), /) -> sqlite3.Cursor:
        return self._conn.execute(sql.sqlite if isinstance(sql, Sql) else sql, parameters)

    def executemany(self, sql: Statement, parameters: Any, /) -> sqlite3.Cursor:
        return self._conn.executemany(sql.sqlite if isinstance(sql, Sql) else sql, parameters)


def _run_jobs(conn: sqlite3.Connection, batch: list[_Queued], *, isolated: bool) -> list[_Outcome]:
    outcomes: list[_Outcome] = []
    tx = SqliteTx(conn)
    for fn, _ in batch:
        if isolated:
            conn.execute("SAVEPOINT job")
        try:
            outcomes.append((True, fn(tx)))
        except Exception as exc:  # the job's own failure
            if isolated:
                conn.execute("ROLLBACK TO job")
            outcomes.append((False, exc))
        if isolated:
            conn.execute("RELEASE job")
    return outcomes


S = TypeVar("S", bound=msgspec.Struct)


def from_row(cls: type[S], row: Row | Mapping[str, Any], **values: Any) -> S:
    """A Struct from the row's columns of the same names (`values` take precedence). Columns named
    `*_at` hold unix seconds and become ISO-8601 text, as the API shows times."""
    fields: dict[str, Any] = {}
    for name in cls.__struct_fields__:
        value = values[name] if name in values else row[name]
        fields[name] = iso(value) if name.endswith("_at") and isinstance(value, (int, float)) else value
    return cls(**fields)


class Database(StoreReads):
    """The store on SQLite: `write(fn)` for changes, `fetch_all`/`fetch_one` for reads."""

    backend = "sqlite"

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "full",
        readers: int = DEFAULT_READERS,
        wal_checkpoint_bytes: int = WAL_CHECKPOINT_BYTES,
        wal_idle_seconds: float = WAL_IDLE_SECONDS,
    ) -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self.wal_checkpoint_bytes = wal_checkpoint_bytes
        self.wal_idle_seconds = wal_idle_seconds
        self._reader_count = readers
        self._writer: Writer | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._next_reader = itertools.cycle(range(readers))

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path, synchronous=self.synchronous)
        migrate(conn)
        conn.execute("PRAGMA busy_timeout = 0")  # the writer waits for locks itself (Writer._begin)
        # When the log starts over, its file is cut back to this size (it is reused, not regrown).
        conn.execute(f"PRAGMA journal_size_limit = {self.wal_checkpoint_bytes}")
        self._writer = Writer(
            conn,
            self.path,
            synchronous=self.synchronous,
            checkpoint_bytes=self.wal_checkpoint_bytes,
            idle_seconds=self.wal_idle_seconds,
        )
        for _ in range(self._reader_count):
            reader = await aiosqlite.connect(self.path, isolation_level=None, check_same_thread=False)
            reader.row_factory = sqlite3.Row
            await reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await reader.execute("PRAGMA query_only = ON")
            self._readers.append(reader)

    async def close(self) -> None:
        for reader in self._readers:
            await reader.close()
        self._readers.clear()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
            await self.checkpoint("TRUNCATE")  # leave a compact database file behind

    async def __aenter__(self) -> Database:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def writer(self) -> Writer:
        assert self._writer is not None, "Database.open() was not awaited"
        return self._writer

    @property
    def writer_alive(self) -> bool:
        return self._writer is not None and self._writer.alive

    async def write(self, fn: WriteJob[T]) -> T:
        """Run `fn(tx)` inside a write transaction; returns once it is committed."""
        return await self.writer.submit(fn)

    async def fetch_all(self, sql: Statement, params: Params = ()) -> list[Row]:
        """Every row the query gives, read on a reader connection."""
        reader = self._readers[next(self._next_reader)]
        text = sql.sqlite if isinstance(sql, Sql) else sql
        # aiosqlite types this Iterable[sqlite3.Row]; it is the cursor's fetchall(), a list.
        return cast(list[Row], await reader.execute_fetchall(text, params))

    async def checkpoint(self, mode: str = "PASSIVE") -> tuple[int, int, int]:
        """Copy the WAL back into the database file on a connection of its own, off the event loop.

        For when the writer is closed (TRUNCATE at shutdown also empties the WAL); while it runs,
        it checkpoints itself (Writer). Returns SQLite's (busy, wal_frames, checkpointed_frames).
        """

        def run() -> tuple[int, int, int]:
            conn = connect(self.path, synchronous=self.synchronous)
            try:
                return _wal_checkpoint(conn, mode)
            finally:
                conn.close()

        return await asyncio.to_thread(run)
