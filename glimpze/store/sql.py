"""What a write job and a reader see of the database: `Tx`, `Cursor`, `Row`, and the store's errors.

A write job is a plain function `job(tx: Tx) -> T` handed to `Database.write()`; it runs SQL with
`tx.execute(sql, params)` and reads rows by column name (`row["id"]`) or position (`row[0]`).
These are protocols, so the store behind them can change: SQLite's own connection satisfies them
as it is. SQL is written with `?` or `:name` parameters; new rows report their keys with
`RETURNING`, never `lastrowid`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeAlias

Params: TypeAlias = Sequence[Any] | Mapping[str, Any]

# A constraint the database enforces refused a write (a unique key, a foreign key).
IntegrityError = sqlite3.IntegrityError


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

    def execute(self, sql: str, parameters: Params = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Params], /) -> Cursor: ...


def one(cursor: Cursor) -> Row:
    """The row a statement always gives: an aggregate, an `INSERT … RETURNING`, or a row the same
    transaction has just written."""
    row = cursor.fetchone()
    if row is None:
        raise LookupError("the statement gave no row")  # a broken invariant: answered as a 500
    return row
