"""Projects and their API keys (`gzp_…`): minted once, stored as hashes, rotated with a grace period.

A key lookup hits an in-memory cache of hashes; a miss reads the database, so a key minted by the
CLI while the server runs works at once. Cached hits are re-read after `CACHE_SECONDS`, which
bounds how long a key revoked from another process (the CLI) keeps working here.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from glimpze.clock import Clock, iso
from glimpze.errors import Conflict, InvalidApiKey, Unauthorized, not_found
from glimpze.ids import display_prefix, hash_secret, new_id, new_secret
from glimpze.names import check_name
from glimpze.rotation import check_grace, previous_columns
from glimpze.store.pagination import Page, page
from glimpze.store.sql import Row, Store, Tx, one

DEFAULT_PROJECT_NAME = "Default"
DEFAULT_ROTATION_GRACE_SECONDS = 24 * 3600
MAX_ROTATION_GRACE_SECONDS = 30 * 24 * 3600
LAST_USED_RESOLUTION_SECONDS = 60
CACHE_SECONDS = 10.0

SQL_INSERT_PROJECT = "INSERT INTO projects (id, name, created_at) VALUES (?, ?, ?)"
SQL_GET_PROJECT = "SELECT id, name, created_at FROM projects WHERE id = ?"
SQL_FIRST_PROJECT = "SELECT id, name, created_at FROM projects ORDER BY created_at, id LIMIT 1"
SQL_LIST_PROJECTS = "SELECT id, name, created_at FROM projects ORDER BY created_at, id"
SQL_INSERT_KEY = """
    INSERT INTO api_keys (id, project_id, name, prefix, hash, created_at) VALUES (?, ?, ?, ?, ?, ?)
"""
SQL_KEY_COLUMNS = "id, project_id, name, prefix, created_at, rotated_at, previous_expires_at, last_used_at"
SQL_LIST_KEYS = f"""
    SELECT rowid, {SQL_KEY_COLUMNS} FROM api_keys WHERE project_id = ? AND rowid > ? ORDER BY rowid LIMIT ?
"""
SQL_GET_KEY = f"SELECT {SQL_KEY_COLUMNS} FROM api_keys WHERE project_id = ? AND id = ?"
SQL_FIND_KEY = """
    SELECT id, project_id, name, hash = :hash AS current, previous_expires_at FROM api_keys
    WHERE hash = :hash OR (previous_hash = :hash AND previous_expires_at > :now)
"""
SQL_ROTATE_KEY = f"""
    UPDATE api_keys SET {previous_columns("hash", "previous_hash", "previous_expires_at")},
        hash = :hash, prefix = :prefix, rotated_at = :now
    WHERE project_id = :project AND id = :id
"""
SQL_DELETE_KEY = "DELETE FROM api_keys WHERE project_id = ? AND id = ?"
SQL_COUNT_KEYS = "SELECT count(*) FROM api_keys WHERE project_id = ?"
SQL_TOUCH_KEY = "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)"


class Project(msgspec.Struct):
    id: str
    name: str
    created_at: str


class ApiKey(msgspec.Struct, kw_only=True):
    id: str
    name: str
    prefix: str
    created_at: str
    rotated_at: str | None = None
    previous_key_expires_at: str | None = None
    last_used_at: str | None = None


class NewApiKey(ApiKey, kw_only=True):
    key: str


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling /v1: a project, through one of its keys."""

    project_id: str
    key_id: str
    key_name: str


@dataclass(slots=True)
class _CachedKey:
    principal: Principal
    valid_until: float  # a rotated-out key's grace end, or +inf
    checked_at: float  # monotonic


def _iso_or_none(ts: float | None) -> str | None:
    return None if ts is None else iso(ts)


def _key_out(row: Row, now: float) -> ApiKey:
    grace = row["previous_expires_at"]
    return ApiKey(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        created_at=iso(row["created_at"]),
        rotated_at=_iso_or_none(row["rotated_at"]),
        previous_key_expires_at=iso(grace) if grace and grace > now else None,
        last_used_at=_iso_or_none(row["last_used_at"]),
    )


class Keys:
    """Projects and API keys."""

    def __init__(self, db: Store, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._cache: dict[str, _CachedKey] = {}
        self._used: dict[str, float] = {}  # key id -> its last use seen by this process
        self._written: dict[str, float] = {}  # key id -> the last use a flush has committed

    # Projects

    async def create_project(self, name: str) -> tuple[Project, NewApiKey]:
        """A new project with its first API key (named "admin")."""
        name = check_name(name)
        project_id, now = new_id("prj_"), self.clock.now()
        secret = new_secret("gzp_")
        key_id = new_id("key_")

        def job(tx: Tx) -> None:
            tx.execute(SQL_INSERT_PROJECT, (project_id, name, now))
            tx.execute(SQL_INSERT_KEY, (key_id, project_id, "admin", display_prefix(secret), hash_secret(secret), now))

        await self.db.write(job)
        key = NewApiKey(id=key_id, name="admin", prefix=display_prefix(secret), created_at=iso(now), key=secret)
        return Project(project_id, name, iso(now)), key

    async def ensure_default_project(self, *, mint_admin_key: bool = True) -> tuple[Project, NewApiKey | None]:
        """The first project, created on first start. With `mint_admin_key`, a project without any
        key gets an "admin" key, returned so it can be shown once."""
        now = self.clock.now()
        project_id, key_id, secret = new_id("prj_"), new_id("key_"), new_secret("gzp_")

        def job(tx: Tx) -> tuple[Row, bool]:
            row = tx.execute(SQL_FIRST_PROJECT).fetchone()
            if row is None:
                tx.execute(SQL_INSERT_PROJECT, (project_id, DEFAULT_PROJECT_NAME, now))
                row = one(tx.execute(SQL_GET_PROJECT, (project_id,)))
            if not mint_admin_key or one(tx.execute(SQL_COUNT_KEYS, (row["id"],)))[0]:
                return row, False
            tx.execute(SQL_INSERT_KEY, (key_id, row["id"], "admin", display_prefix(secret), hash_secret(secret), now))
            return row, True

        row, minted = await self.db.write(job)
        project = Project(row["id"], row["name"], iso(row["created_at"]))
        if not minted:
            return project, None
        return project, NewApiKey(
            id=key_id, name="admin", prefix=display_prefix(secret), created_at=iso(now), key=secret
        )

    async def get_project(self, project_id: str) -> Project:
        row = await self.db.fetch_one(SQL_GET_PROJECT, (project_id,))
        if row is None:
            raise not_found("project", project_id)
        return Project(row["id"], row["name"], iso(row["created_at"]))

    async def list_projects(self) -> list[Project]:
        """Every project, oldest (the default) first."""
        rows = await self.db.fetch_all(SQL_LIST_PROJECTS)
        return [Project(row["id"], row["name"], iso(row["created_at"])) for row in rows]

    async def default_project_id(self) -> str:
        row = await self.db.fetch_one(SQL_FIRST_PROJECT)
        if row is None:
            raise not_found("project", "default")
        project_id: str = row["id"]
        return project_id

    # Keys

    async def create(self, project_id: str, name: str) -> NewApiKey:
        name = check_name(name)
        key_id, secret, now = new_id("key_"), new_secret("gzp_"), self.clock.now()
        await self.db.execute(
            SQL_INSERT_KEY, (key_id, project_id, name, display_prefix(secret), hash_secret(secret), now)
        )
        return NewApiKey(id=key_id, name=name, prefix=display_prefix(secret), created_at=iso(now), key=secret)

    async def page(self, project_id: str, *, after: tuple[int] | None, limit: int) -> Page[ApiKey]:
        """A project's API keys, oldest first, from the one after `after`."""
        rows = await self.db.fetch_all(SQL_LIST_KEYS, (project_id, after[0] if after else 0, limit + 1))
        now = self.clock.now()
        return page(rows, limit, lambda r: self._with_recent_use(_key_out(r, now)), lambda r: (r["rowid"],))

    async def get(self, project_id: str, key_id: str) -> ApiKey:
        row = await self.db.fetch_one(SQL_GET_KEY, (project_id, key_id))
        if row is None:
            raise not_found("API key", key_id)
        return self._with_recent_use(_key_out(row, self.clock.now()))

    async def rotate(
        self, project_id: str, key_id: str, grace_seconds: int = DEFAULT_ROTATION_GRACE_SECONDS
    ) -> NewApiKey:
        """A new secret for the key; the old one keeps working for `grace_seconds` (0: not at all)."""
        check_grace(grace_seconds, MAX_ROTATION_GRACE_SECONDS)
        secret, now = new_secret("gzp_"), self.clock.now()
        params = {
            "grace": grace_seconds,
            "now": now,
            "hash": hash_secret(secret),
            "prefix": display_prefix(secret),
            "project": project_id,
            "id": key_id,
        }

        def job(tx: Tx) -> Row | None:
            if tx.execute(SQL_ROTATE_KEY, params).rowcount == 0:
                return None
            return tx.execute(SQL_GET_KEY, (project_id, key_id)).fetchone()

        row = await self.db.write(job)
        if row is None:
            raise not_found("API key", key_id)
        self._forget(key_id)
        out = _key_out(row, now)
        return NewApiKey(**msgspec.structs.asdict(out), key=secret)

    async def revoke(self, project_id: str, key_id: str) -> None:
        """Delete a key at once. The project's last key stays, so the project remains reachable."""

        def job(tx: Tx) -> None:
            if tx.execute(SQL_GET_KEY, (project_id, key_id)).fetchone() is None:
                raise not_found("API key", key_id)
            if one(tx.execute(SQL_COUNT_KEYS, (project_id,)))[0] <= 1:
                raise Conflict(
                    "This is the project's last API key; create another one first so the project stays reachable."
                )
            tx.execute(SQL_DELETE_KEY, (project_id, key_id))

        await self.db.write(job)
        self._forget(key_id)

    async def authenticate(self, secret: str | None) -> Principal:
        """The principal a bearer secret stands for; raises Unauthorized."""
        if not secret or not secret.startswith("gzp_"):
            raise _unauthorized("Send a project API key as 'Authorization: Bearer gzp_…'.")
        digest, now = hash_secret(secret), self.clock.now()
        cached, steady = self._cache.get(digest), self.clock.monotonic()
        if cached is None or steady - cached.checked_at > CACHE_SECONDS:
            row = await self.db.fetch_one(SQL_FIND_KEY, {"hash": digest, "now": now})
            if row is None:
                self._cache.pop(digest, None)
                raise _unauthorized("This API key is unknown, revoked or past its rotation grace period.")
            valid_until = float("inf") if row["current"] else row["previous_expires_at"]
            cached = _CachedKey(Principal(row["project_id"], row["id"], row["name"]), valid_until, steady)
            self._cache[digest] = cached
        if now >= cached.valid_until:
            self._cache.pop(digest, None)
            raise _unauthorized("This API key was rotated and its grace period has ended.")
        self._used[cached.principal.key_id] = now
        return cached.principal

    async def flush_last_used(self) -> None:
        """Write `last_used_at`, at most once a minute per key (called by the scheduler).

        A last use stays in memory (and is shown from there) after it is written; it is marked
        written only once committed, so a flush in progress never hides it from a concurrent one."""
        used = [(key_id, at) for key_id, at in self._used.items() if self._written.get(key_id) != at]
        if not used:
            return
        rows = [(at, key_id, at - LAST_USED_RESOLUTION_SECONDS) for key_id, at in used]
        await self.db.write(lambda tx: tx.executemany(SQL_TOUCH_KEY, rows))
        for key_id, at in used:
            if key_id in self._used:  # not deleted meanwhile
                self._written[key_id] = max(at, self._written.get(key_id, at))

    def _with_recent_use(self, key: ApiKey) -> ApiKey:
        at = self._used.get(key.id)
        return msgspec.structs.replace(key, last_used_at=iso(at)) if at else key

    def _forget(self, key_id: str) -> None:
        for digest in [d for d, c in self._cache.items() if c.principal.key_id == key_id]:
            del self._cache[digest]
        self._used.pop(key_id, None)
        self._written.pop(key_id, None)


def _unauthorized(detail: str) -> Unauthorized:
    return InvalidApiKey(detail, headers={"WWW-Authenticate": 'Bearer realm="glimpze"'})
