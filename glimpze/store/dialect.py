"""One SQL text for both databases: statements are written once, with SQLite's parameter styles
(`?` and `:name`), and turned into psycopg's (`%s` and `%(name)s`) for PostgreSQL.

Where the two dialects differ, a statement is written twice: `Sql(sqlite=…, postgres=…)`, kept
beside the code that runs it like any other statement. `for_postgres()` translates a statement
once and caches it: placeholders outside string literals, quoted identifiers and comments become
psycopg's, every `%` is doubled, and PostgreSQL's `::type` casts are left alone.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# Quoted text, comments and casts are copied as they are; parameters are replaced.
_TOKENS = re.compile(
    r"""
      (?P<quoted>'(?:[^']|'')*'|"(?:[^"]|"")*")   # a string literal or a quoted identifier
    | (?P<comment>--[^\n]*|/\*.*?\*/)
    | (?P<cast>::)
    | (?P<named>(?<![:\w]):(?P<name>[A-Za-z_]\w*))
    | (?P<positional>\?)
    | (?P<percent>%)
    """,
    re.VERBOSE | re.DOTALL,
)


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


@functools.cache
def for_postgres(statement: Statement) -> str:
    """The statement in psycopg's parameter style (cached: statements are module constants)."""
    text = statement.postgres if isinstance(statement, Sql) else statement

    def replace(match: re.Match[str]) -> str:
        if match["named"]:
            return f"%({match['name']})s"
        if match["positional"]:
            return "%s"
        if match["percent"]:
            return "%%"
        if match["quoted"] or match["comment"]:  # psycopg formats the whole text: every % is doubled
            return match.group(0).replace("%", "%%")
        return match.group(0)

    return _TOKENS.sub(replace, text)
