"""What a write job and a reader see of the database: `Tx`, `Cursor`, `Row`, and the store's errors.

A write job is a plain function `job(tx: Tx) -> T` handed to `Database.write()`; it runs SQL with
`tx.execute(sql, params)` and reads rows by column name (`row["id"]`) or position (`row[0]`).
These are protocols, so the store behind them can change (SQLite, PostgreSQL: `Store`). SQL is
written with `?` or `:name` parameters, as one text for both databases where it can be, else as
`Sql(sqlite=…, postgres=…)` (dialect.py); new rows report their keys with `RETURNING`, never
`lastrowid`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeAlias, TypeVar

from glimpze.store.dialect import Statement

Params: TypeAlias = Sequence[Any] | Mapping[str, Any]

# A constraint the database enforces refused a write (a unique key, a foreign key); the
# PostgreSQL store raises the same class.
IntegrityError = sqlite3.IntegrityError
T = TypeVar("T")


class Row(Protocol):
    """One result row: by column name or by position."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def keys(self) -> list[str]: ...


class Cursor(Protocol):
    """What `Tx.execute` returns."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Row | None: ...

    def fetchall(self) -> list[Row]: ...

    def __iter__(self) -> Iterator[Row]: ...


class Tx(Protocol):
    """The open write transaction a job runs in."""

    def execute(self, sql: Statement, parameters: Params = ..., /) -> Cursor: ...

    def executemany(self, sql: Statement, parameters: Iterable[Params], /) -> Cursor: ...


class Writer(Protocol):
    """The store's writing side, as services see it."""

    after_commit: list[Callable[[], None]]  # run on the event loop after each commit

    @property
    def alive(self) -> bool: ...


class Store(Protocol):
    """The database as the rest of Glimpze sees it, whichever backend holds it."""

    @property
    def backend(self) -> str:
        """ "sqlite" or "postgresql" (metrics, `glimpze check`)."""
        ...

    @property
    def writer(self) -> Writer: ...

    @property
    def writer_alive(self) -> bool: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, fn: Callable[[Tx], T]) -> T: ...

    async def execute(self, sql: Statement, params: Params = ...) -> int: ...

    async def fetch_all(self, sql: Statement, params: Params = ...) -> list[Row]: ...

    async def fetch_one(self, sql: Statement, params: Params = ...) -> Row | None: ...

    async def fetch_value(self, sql: Statement, params: Params = ...) -> Any: ...


class StoreReads:
    """What both stores derive from their own `write()` and `fetch_all()`."""

    async def write(self, fn: Callable[[Tx], T]) -> T:
        raise NotImplementedError

    async def fetch_all(self, sql: Statement, params: Params = ()) -> list[Row]:
        raise NotImplementedError

    async def execute(self, sql: Statement, params: Params = ()) -> int:
        """One write statement; returns the number of rows changed."""
        return await self.write(lambda tx: tx.execute(sql, params).rowcount)

    async def fetch_one(self, sql: Statement, params: Params = ()) -> Row | None:
        """The query's first row, None when it gives none."""
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    async def fetch_value(self, sql: Statement, params: Params = ()) -> Any:
        """The first column of the query's first row (a column's value: any SQL type), None without a row."""
        row = await self.fetch_one(sql, params)
        return None if row is None else row[0]


def one(cursor: Cursor) -> Row:
    """The row a statement always gives: an aggregate, an `INSERT … RETURNING`, or a row the same
    transaction has just written."""
    row = cursor.fetchone()
    if row is None:
        raise LookupError("the statement gave no row")  # a broken invariant: answered as a 500
    return row
