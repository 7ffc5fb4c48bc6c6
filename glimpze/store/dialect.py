"""One SQL text for both databases: statements are written once, with SQLite's parameter styles
(`?` and `:name`), and turned into psycopg's (`%s` and `%(name)s`) for PostgreSQL.

Where the two dialects differ, either the whole statement is written twice,
`Sql(sqlite=…, postgres=…)`, kept beside the code that runs it like any other statement; or, in a
fragment that is composed into several statements, the difference is marked inline, so that
SQLite runs the text exactly as written (its markers are comments to it):

- `/*pg: TEXT*/`: TEXT on PostgreSQL only (`d.ordered/*pg: <> 0*/`: 0/1 integers as booleans;
  SQLite keeps the bare column, which its partial indexes are written with);
- `/*sqlite:*/ TEXT /*:sqlite*/`: TEXT on SQLite only.

`for_postgres()` translates a statement once and caches it: the markers above, placeholders
outside string literals, quoted identifiers and comments become psycopg's, every `%` is doubled,
SQLite's `INDEXED BY` hints are dropped (PostgreSQL's planner takes none), blob literals
`X'…'` become bytea, SQLite's scalar
`max(a, b)`/`min(a, b)` become `greatest`/`least`, `INSERT OR IGNORE` becomes
`INSERT … ON CONFLICT DO NOTHING`, and PostgreSQL's `::type` casts are left alone.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Quoted text, comments and casts are copied as they are; parameters are replaced.
_TOKENS = re.compile(
    r"""
      (?P<blob>\b[xX]'(?P<hex>[0-9A-Fa-f]*)')        # a blob literal: bytea in PostgreSQL
    | (?P<quoted>'(?:[^']|'')*'|"(?:[^"]|"")*")   # a string literal or a quoted identifier
    | (?P<comment>--[^\n]*|/\*.*?\*/)
    | (?P<cast>::)
    | (?P<hint>\s+INDEXED\s+BY\s+\w+)                # SQLite's index hint: PostgreSQL plans without one
    | (?P<scalar>\b(?:max|min)\s*\()                 # maybe SQLite's two-argument max/min
    | (?P<named>(?<![:\w]):(?P<name>[A-Za-z_]\w*))
    | (?P<numbered>\?(?P<number>\d+))
    | (?P<positional>\?)
    | (?P<percent>%)
    """,
    re.VERBOSE | re.DOTALL | re.IGNORECASE,
)
_PG_ONLY = re.compile(r"/\*pg:(.*?)\*/", re.DOTALL)
_SQLITE_ONLY = re.compile(r"/\*sqlite:\*/.*?/\*:sqlite\*/", re.DOTALL)
_INSERT_OR_IGNORE = re.compile(r"\bINSERT\s+OR\s+IGNORE\b", re.IGNORECASE)
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Sql:
    """A statement whose text differs between the two databases."""

    sqlite: str
    postgres: str

    def __str__(self) -> str:  # what a log line or an error shows
        return self.sqlite


Statement = str | Sql


def for_sqlite(statement: Statement) -> str:
    return statement.sqlite if isinstance(statement, Sql) else statement


_NUMBERED = re.compile(r"\?\d")


@functools.cache
def numbered(statement: Statement) -> bool:
    """Whether the statement's parameters are SQLite's `?N` (psycopg then takes them by name)."""
    return bool(_NUMBERED.search(statement.postgres if isinstance(statement, Sql) else statement))


def by_number(parameters: Sequence[Any]) -> dict[str, Any]:
    """`?N` parameters given as a sequence, by the names for_postgres() gives them."""
    return {f"_{i}": value for i, value in enumerate(parameters, start=1)}


def _two_arguments(text: str, start: int) -> bool:
    """Whether the call whose `(` is just before `start` has a comma at its own depth."""
    depth = 0
    for char in text[start:]:
        if char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                return False
            depth -= 1
        elif char == "," and depth == 0:
            return True
    return False


@functools.cache
def for_postgres(statement: Statement) -> str:
    """The statement in PostgreSQL's dialect and psycopg's parameter style (cached: statements are
    module constants)."""
    text = statement.postgres if isinstance(statement, Sql) else statement
    text = _SQLITE_ONLY.sub("", _PG_ONLY.sub(lambda m: m.group(1), text))
    if _INSERT_OR_IGNORE.search(text):
        text = _INSERT_OR_IGNORE.sub("INSERT", text)
        returning = _RETURNING.search(text)
        at = returning.start() if returning else len(text.rstrip().rstrip(";"))
        text = f"{text[:at]} ON CONFLICT DO NOTHING {text[at:]}"

    def replace(match: re.Match[str]) -> str:
        if match["named"]:
            return f"%({match['name']})s"
        if match["numbered"]:  # SQLite's ?N: psycopg has no such style (numbered(): params by name)
            return f"%(_{match['number']})s"
        if match["positional"]:
            return "%s"
        if match["percent"]:
            return "%%"
        if match["hint"]:
            return ""
        if match["blob"]:
            return f"'\\x{match['hex']}'::bytea"
        if match["scalar"]:
            if _two_arguments(text, match.end()):
                return "greatest(" if match["scalar"].lower().startswith("max") else "least("
            return match.group(0)
        if match["quoted"] or match["comment"]:  # psycopg formats the whole text: every % is doubled
            return match.group(0).replace("%", "%%")
        return match.group(0)

    return _TOKENS.sub(replace, text)
