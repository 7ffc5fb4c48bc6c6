"""The PostgreSQL store: the same contract as the SQLite one (`write(job)` with group commit,
`fetch_*` readers, migrations), for several `glimpze serve` processes sharing one database.

Writes: each process has one writing connection. Jobs queued while a commit is under way go out
together in the next transaction, as on SQLite; a job is a plain function `job(tx)` and cannot
await, so the whole batch (BEGIN, the jobs' statements, COMMIT) runs on the writer's own thread
over a synchronous psycopg connection, and the event loop never waits on the network. A job that
raises fails alone (the batch runs again with a savepoint per job); a batch that loses a race with
another process (a deadlock, a serialization failure) runs again whole. `synchronous_commit` stays
on: an awaited `write()` means committed.

Reads go through an asyncio pool of autocommit connections (psycopg_pool). Rows read by name or
position, like SQLite's. Statements are written once in SQLite's parameter style and translated
(dialect.py). Migrations run under an advisory lock, so processes starting together migrate once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors
from psycopg.adapt import AdaptersMap, Dumper
from psycopg.rows import RowMaker
from psycopg.types.numeric import FloatLoader

from glimpze.store.dialect import Statement, by_number, for_postgres, numbered
from glimpze.store.sql import IntegrityError, Params, Row, StoreReads

log = logging.getLogger("glimpze.db")

T = TypeVar("T")
DEFAULT_READERS = 4
BATCH_RETRIES = 5  # a batch that lost a race with another process runs again this many times
RACES = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure, pg_errors.LockNotAvailable)


class PgRow(tuple[Any, ...]):
    """A result row: `row["name"]`, `row[0]`, `keys()`, and `dict(row)`."""

    __slots__ = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


_ROW_CLASSES: dict[tuple[str, ...], type[PgRow]] = {}


def _row_class(names: tuple[str, ...]) -> type[PgRow]:
    cls = _ROW_CLASSES.get(names)
    if cls is None:
        cls = type("Row", (PgRow,), {"__slots__": (), "_index": {n: i for i, n in enumerate(names)}})
        _ROW_CLASSES[names] = cls
    return cls


def pg_row(cursor: Any) -> RowMaker[PgRow]:
    """psycopg row factory for `PgRow` (one class per column list, made once)."""
    description = cursor.description
    if description is None:
        return lambda values: PgRow(values)
    cls = _row_class(tuple(column.name for column in description))
    return lambda values: cls(values)


class PgTx:
    """The write transaction a job runs in (on the writer's thread): `Tx` over psycopg."""

    def __init__(self, conn: psycopg.Connection[PgRow]) -> None:
        self._conn = conn

    def execute(self, sql: Statement, parameters: Params = (), /) -> psycopg.Cursor[PgRow]:
        try:
            return self._conn.execute(for_postgres(sql), _params(sql, parameters))
        except pg_errors.IntegrityError as exc:  # the same class as on SQLite (sql.IntegrityError)
            raise IntegrityError(str(exc)) from exc
        except psycopg.DataError as exc:
            raise _nul_refused(exc) from exc

    def executemany(self, sql: Statement, parameters: Iterable[Params], /) -> psycopg.Cursor[PgRow]:
        cursor = self._conn.cursor()
        try:
            cursor.executemany(for_postgres(sql), [_params(sql, p) or () for p in parameters])
        except pg_errors.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc
        return cursor


def _nul_refused(exc: psycopg.DataError) -> Exception:
    """PostgreSQL's text cannot hold U+0000 (SQLite's can): a value from outside that has one is
    answered 422 rather than 500; any other data error stays what it is."""
    if "NUL (0x00)" not in str(exc):
        return exc
    from glimpze.errors import ValidationFailed

    return ValidationFailed.at("$", "text may not contain the NUL character (U+0000)")


def _params(sql: Statement, parameters: Params) -> Params | None:
    if not parameters:
        return None
    if numbered(sql) and not isinstance(parameters, Mapping):
        return by_number(parameters)
    return parameters


class BoolAsInteger(Dumper):
    """Python's booleans as 0/1: the schema keeps SQLite's integer flags (pg_schema.py)."""

    oid = psycopg.postgres.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"

    def quote(self, obj: Any) -> bytes:
        return self.dump(obj)


class BytesAsText(Dumper):
    """Bytes as SQLite takes them: Glimpze hands JSON to TEXT columns as UTF-8 bytes (msgspec's
    encoding), so bytes that are UTF-8 text without NUL go as a text literal; anything else (an
    image) as bytea. Statements that store JSON in a BYTEA column (an event's payload, a stored
    answer) convert it on the way: `convert_to(?, 'UTF8')` in their PostgreSQL text."""

    oid = psycopg.postgres.types["text"].oid

    def dump(self, obj: Any) -> bytes:
        return bytes(obj)

    def quote(self, obj: Any) -> bytes:
        data = bytes(obj)
        if b"\x00" not in data:
            try:
                data.decode()
            except UnicodeDecodeError:
                pass
            else:  # standard_conforming_strings (on since PostgreSQL 9.1): only quotes are doubled
                return b"'" + data.replace(b"'", b"''") + b"'"
        return b"'\\x" + data.hex().encode() + b"'::bytea"


def configure(adapters: AdaptersMap) -> None:
    """How Glimpze's values go to PostgreSQL, on every connection (the writer's, the readers')."""
    adapters.register_dumper(bool, BoolAsInteger)
    adapters.register_dumper(bytes, BytesAsText)
    # A literal such as 20.0 is numeric to PostgreSQL; Glimpze computes with floats, as SQLite gives.
    adapters.register_loader("numeric", FloatLoader)


def connect_sync(url: str) -> psycopg.Connection[PgRow]:
    """A writing connection: explicit transactions, client-side binding (a NULL parameter needs no
    declared type, as in SQLite), rows by name or position."""
    conn = psycopg.Connection.connect(url, autocommit=True, row_factory=pg_row, cursor_factory=psycopg.ClientCursor)
    configure(conn.adapters)
    return conn


SERVER_LOCK = 0x676C7376  # "glsv": held by the one `glimpze serve` of a database


class ServerLock:
    """The database's server lock: a session advisory lock on a connection of its own, held until
    the process ends (the server lets go of it by exiting; a killed one's session ends with it).

    Several processes cannot share one database yet (claims, rate limits and live updates are
    still one process's: issue 19), so a second `glimpze serve` on it is refused, as a second one
    on a SQLite data directory is."""

    def __init__(self, conn: psycopg.Connection[PgRow]) -> None:
        self._conn = conn

    @classmethod
    def claim(cls, url: str) -> ServerLock | None:
        """The lock, or None when another server holds it."""
        conn = connect_sync(url)
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (SERVER_LOCK,)).fetchone()
        if got is not None and got[0]:
            return cls(conn)
        conn.close()
        return None

    def release(self) -> None:
        self._conn.close()


class PgWriter:
    """One process's writing connection: group commit of queued jobs on its own thread."""

    def __init__(self, conn: psycopg.Connection[PgRow]) -> None:
        self._conn = conn
        self._tx = PgTx(conn)
        self._pending: list[tuple[Callable[[Any], Any], asyncio.Future[Any]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="glimpze-writer")
        self._closed = False
        self.after_commit: list[Callable[[], None]] = []  # run on the loop after each commit

    @property
    def alive(self) -> bool:
        return not self._closed and not self._conn.closed

    def submit(self, fn: Callable[[Any], T]) -> asyncio.Future[T]:
        from glimpze.store.database import StorageError

        if self._closed:
            raise StorageError("the database is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((fn, future))
        if self._flushing is None:
            self._flushing = loop.create_task(self._flush())
        return future

    async def close(self) -> None:
        if self._flushing is not None:
            await asyncio.shield(self._flushing)
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._thread, self._conn.close)
        self._thread.shutdown()

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._commit(batch)
        finally:
            self._flushing = None

    async def _commit(self, batch: list[tuple[Callable[[Any], Any], asyncio.Future[Any]]]) -> None:
        from glimpze.store.database import StorageError

        loop = asyncio.get_running_loop()
        try:
            outcomes = await loop.run_in_executor(self._thread, self._run_batch, batch)
        except psycopg.Error as exc:
            log.error("commit failed, %d writes rejected: %s", len(batch), exc)
            error = StorageError(f"the database refused the write: {exc}")
            outcomes = [(False, error)] * len(batch)
        else:
            for callback in self.after_commit:
                callback()
        for (_, future), (ok, value) in zip(batch, outcomes):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _run_batch(self, batch: list[tuple[Callable[[Any], Any], asyncio.Future[Any]]]) -> list[tuple[bool, Any]]:
        """BEGIN, every job, COMMIT (on the writer's thread). When a job fails, the batch is rolled
        back and runs again with a savepoint per job, so the failed one leaves nothing behind; when
        the batch loses a race with another process (deadlock, serialization), it runs again whole."""
        for attempt in range(1, BATCH_RETRIES + 1):
            try:
                try:
                    with self._conn.transaction():
                        outcomes = self._run_jobs(batch, isolated=False)
                        if all(ok for ok, _ in outcomes):
                            return outcomes
                        raise _RunIsolated
                except _RunIsolated:
                    with self._conn.transaction():
                        return self._run_jobs(batch, isolated=True)
            except RACES:
                if attempt == BATCH_RETRIES:
                    raise
                log.info("a write batch lost a race with another process; running it again (%d)", attempt)
        raise AssertionError("unreachable")

    def _run_jobs(
        self, batch: list[tuple[Callable[[Any], Any], asyncio.Future[Any]]], *, isolated: bool
    ) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        for fn, _ in batch:
            try:
                if isolated:
                    with self._conn.transaction():  # a savepoint inside the batch's transaction
                        outcomes.append((True, fn(self._tx)))
                else:
                    outcomes.append((True, fn(self._tx)))
            except RACES:
                raise
            except Exception as exc:  # the job's own failure
                outcomes.append((False, exc))
                if not isolated:
                    return outcomes  # rolled back and run again isolated
        return outcomes


class _RunIsolated(Exception):
    """A job failed: roll the batch back and run it again with a savepoint per job."""


async def _configure_reader(conn: psycopg.AsyncConnection[Any]) -> None:
    configure(conn.adapters)


class PgDatabase(StoreReads):
    """The store on PostgreSQL: `write(fn)` for changes, `fetch_all`/`fetch_one` for reads."""

    backend = "postgresql"

    def __init__(self, url: str, *, readers: int = DEFAULT_READERS) -> None:
        self.url = url
        self._readers = readers
        self._writer: PgWriter | None = None
        self._pool: psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[PgRow]] | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        conn = await loop.run_in_executor(None, connect_sync, self.url)
        from glimpze.store.pg_schema import migrate_postgres

        await loop.run_in_executor(None, migrate_postgres, conn)
        self._writer = PgWriter(conn)
        self._pool = psycopg_pool.AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self._readers,
            open=False,
            kwargs={"autocommit": True, "row_factory": pg_row, "cursor_factory": psycopg.AsyncClientCursor},
            configure=_configure_reader,
        )
        await self._pool.open(wait=True)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    async def __aenter__(self) -> PgDatabase:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def writer(self) -> PgWriter:
        assert self._writer is not None, "PgDatabase.open() was not awaited"
        return self._writer

    @property
    def writer_alive(self) -> bool:
        return self._writer is not None and self._writer.alive

    async def write(self, fn: Callable[[Any], T]) -> T:
        return await self.writer.submit(fn)

    async def fetch_all(self, sql: Statement, params: Params = ()) -> list[Row]:
        assert self._pool is not None, "PgDatabase.open() was not awaited"
        async with self._pool.connection() as conn:
            try:
                cursor = await conn.execute(for_postgres(sql), _params(sql, params))
            except psycopg.DataError as exc:
                raise _nul_refused(exc) from exc
            return list(await cursor.fetchall())
