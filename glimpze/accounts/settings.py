"""Per-project settings stored as JSON values by name, and the widget origins built on them
(quiet hours are another: quiet_hours.py). Each setting is declared as a `Setting` with the type
its value has, so reading one gives that type back.

Widget origins (`PUT/GET /v1/settings/widget-origins`) are the browser origins allowed to call the
visitor API of a project. They are kept in memory after the first read (they only change through
the API of this process), because CORS preflights ask for them on every widget request.
"""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar
from urllib.parse import urlsplit

import msgspec

from glimpze.clock import Clock
from glimpze.errors import ValidationFailed
from glimpze.store.sql import Store, Tx, one

T = TypeVar("T")


class Setting(Generic[T]):
    """A project setting: its name, and the type of the JSON value stored under it."""

    def __init__(self, name: str, type_: type[T]) -> None:
        self.name = name
        self._decoder = msgspec.json.Decoder(type_)

    def decode(self, value: bytes | str) -> T:
        """The stored JSON as the setting's type."""
        return self._decoder.decode(value)


WIDGET_ORIGINS = Setting("widget_origins", list[str])
MAX_WIDGET_ORIGINS = 50

SQL_GET = "SELECT value FROM project_settings WHERE project_id = ? AND name = ?"
SQL_ALL = "SELECT project_id, value FROM project_settings WHERE name = ?"
SQL_PUT = """
    INSERT INTO project_settings (project_id, name, value, updated_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (project_id, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
"""
SQL_PUT_NEW = "INSERT OR IGNORE INTO project_settings (project_id, name, value, updated_at) VALUES (?, ?, ?, ?)"
SQL_DELETE = "DELETE FROM project_settings WHERE project_id = ? AND name = ?"

_DEFAULT_PORTS = {"http": 80, "https": 443}


class WidgetOriginList(msgspec.Struct, forbid_unknown_fields=True):
    """`{"origins": ["https://example.com", …]}`: scheme, host and port only."""

    origins: Annotated[list[Annotated[str, msgspec.Meta(max_length=300)]], msgspec.Meta(max_length=MAX_WIDGET_ORIGINS)]


def normalize_origin(text: str) -> str | None:
    """`scheme://host[:port]` in lower case without a default port, or None when `text` is not an
    http(s) origin (a path, query, fragment or user part makes it a URL, not an origin)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or "@" in parts.netloc:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" if port in (None, _DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


def check_origin(text: str, path: str) -> str:
    origin = normalize_origin(text)
    if origin is None:
        raise ValidationFailed.at(
            path, f"{text!r} is not an origin; write scheme, host and port only, e.g. https://example.com"
        )
    return origin


class ProjectSettings:
    """JSON settings by (project, name); `widget_origins` cached in memory."""

    def __init__(self, db: Store, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._origins: dict[str, frozenset[str]] | None = None  # project id -> origins
        self._known: frozenset[str] = frozenset()  # every project's, for CORS preflights
        self._generation = 0  # a load that raced with a change must not cache what it read

    async def get(self, project_id: str, setting: Setting[T]) -> T | None:
        """A project's value, or None."""
        value = await self.db.fetch_value(SQL_GET, (project_id, setting.name))
        return None if value is None else setting.decode(value)

    async def all(self, setting: Setting[T]) -> list[tuple[str, T]]:
        """Every project's value of `setting`."""
        rows = await self.db.fetch_all(SQL_ALL, (setting.name,))
        return [(row["project_id"], setting.decode(row["value"])) for row in rows]

    def delete(self, tx: Tx, project_id: str, setting: Setting[T]) -> None:
        """Remove a value (inside a write job)."""
        tx.execute(SQL_DELETE, (project_id, setting.name))

    def read(self, tx: Tx, project_id: str, setting: Setting[T]) -> T | None:
        """A value, or None (inside a write job)."""
        row = tx.execute(SQL_GET, (project_id, setting.name)).fetchone()
        return None if row is None else setting.decode(row[0])

    def put(self, tx: Tx, project_id: str, setting: Setting[T], value: T, now: float) -> None:
        """Set a value (inside a write job)."""
        tx.execute(SQL_PUT, (project_id, setting.name, msgspec.json.encode(value), now))

    def get_or_create(self, tx: Tx, project_id: str, setting: Setting[T], value: T, now: float) -> T:
        """The stored value, storing `value` first when there is none (inside a write job)."""
        tx.execute(SQL_PUT_NEW, (project_id, setting.name, msgspec.json.encode(value), now))
        return setting.decode(one(tx.execute(SQL_GET, (project_id, setting.name)))[0])

    # Widget origins

    async def widget_origins(self, project_id: str) -> list[str]:
        origins, _ = await self._load_origins()
        return sorted(origins.get(project_id, ()))

    async def set_widget_origins(self, project_id: str, given: list[str]) -> list[str]:
        origins: list[str] = []
        for i, text in enumerate(given):
            origin = check_origin(text, f"$.origins[{i}]")
            if origin not in origins:
                origins.append(origin)
        now = self.clock.now()
        await self.db.write(lambda tx: self.put(tx, project_id, WIDGET_ORIGINS, origins, now))
        self._origins = None  # read again on next use
        self._generation += 1
        return sorted(origins)

    async def origin_allowed(self, project_id: str, origin: str) -> bool:
        origins, _ = await self._load_origins()
        return origin in origins.get(project_id, ())

    async def origin_known(self, origin: str) -> bool:
        """True when any project allows `origin` (a CORS preflight carries no credentials)."""
        _, known = await self._load_origins()
        return origin in known

    async def _load_origins(self) -> tuple[dict[str, frozenset[str]], frozenset[str]]:
        if self._origins is not None:
            return self._origins, self._known
        generation = self._generation
        loaded = {project_id: frozenset(origins) for project_id, origins in await self.all(WIDGET_ORIGINS)}
        known = frozenset().union(*loaded.values())
        if generation == self._generation:
            self._origins, self._known = loaded, known
        return loaded, known
