"""The dashboard's administrator: the password (argon2), one-time setup links, and signed-in sessions.

There is no default password. Until one exists, every start mints a setup token and prints its
link (`/setup/{token}`); `glimpze admin reset-password` mints another at any time (valid 24 h
while a password exists). A token is stored as a hash and only the newest one works; using it
sets the password, revokes every session and signs the browser in.

A session is a random cookie value stored as a hash, with its own CSRF token; it lasts
SESSION_SECONDS from its last use (written at most once per TOUCH_SECONDS). Wrong passwords and
setup tokens count against a per-address limiter, as failed API keys do.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from glimpze.clock import Clock
from glimpze.errors import InvalidSetupLink, NotSetUp, ValidationFailed, WrongPassword
from glimpze.feeds.limits import AuthFailureLimiter
from glimpze.ids import hash_secret, same
from glimpze.store.sql import Store, Tx, one

if TYPE_CHECKING:
    from argon2 import PasswordHasher

SESSION_SECONDS = 30 * 86400
TOUCH_SECONDS = 3600
RESET_TOKEN_SECONDS = 24 * 3600
SIGN_IN_FAILURES_PER_MINUTE = 5
PASSWORD_MIN_CHARS = 10
PASSWORD_MAX_CHARS = 1024
CACHE_SECONDS = 10.0
ARGON2_TIME_COST = 2
ARGON2_MEMORY_KIB = 19 * 1024

SQL_ADMIN = "SELECT password_hash, setup_token_hash, setup_token_expires_at FROM admin WHERE id = 1"
SQL_ENSURE_ADMIN = "INSERT OR IGNORE INTO admin (id) VALUES (1)"
SQL_SET_SETUP_TOKEN = "UPDATE admin SET setup_token_hash = ?, setup_token_expires_at = ? WHERE id = 1"
SQL_SET_PASSWORD = """
    UPDATE admin SET password_hash = ?, password_set_at = ?, setup_token_hash = NULL, setup_token_expires_at = NULL
    WHERE id = 1
"""
SQL_SESSION_COLUMNS = "hash, csrf, project_id, created_at, seen_at, expires_at"
SQL_INSERT_SESSION = """
    INSERT INTO dashboard_sessions (hash, csrf, project_id, created_at, seen_at, expires_at, user_agent)
    VALUES (?, ?, ?, ?, ?, ?, ?)
"""
SQL_GET_SESSION = f"SELECT {SQL_SESSION_COLUMNS} FROM dashboard_sessions WHERE hash = ? AND expires_at > ?"
SQL_TOUCH_SESSION = "UPDATE dashboard_sessions SET seen_at = ?, expires_at = ? WHERE hash = ?"
SQL_SET_SESSION_PROJECT = "UPDATE dashboard_sessions SET project_id = ? WHERE hash = ?"
SQL_DELETE_SESSION = "DELETE FROM dashboard_sessions WHERE hash = ?"
SQL_DELETE_ALL_SESSIONS = "DELETE FROM dashboard_sessions"
SQL_PURGE_SESSIONS = "DELETE FROM dashboard_sessions WHERE expires_at <= ?"


@dataclass(frozen=True, slots=True)
class DashboardSession:
    """A signed-in browser. `token` is the cookie value (only known right after sign-in)."""

    key: str  # the hash of the cookie value: how the session is found and revoked
    csrf: str
    project_id: str | None
    expires_at: float
    token: str | None = None


@dataclass(slots=True)
class _CachedSession:
    session: DashboardSession
    checked_at: float


def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher  # imported on first use: a server nobody signs in to never loads it

    # OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane): well under a second on a Raspberry Pi.
    # Hashes made with other parameters are upgraded at the next sign-in (check_needs_rehash).
    return PasswordHasher(time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB, parallelism=1)


class Admin:
    """The administrator's password, setup tokens and dashboard sessions."""

    def __init__(self, db: Store, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self.failures = AuthFailureLimiter(clock, SIGN_IN_FAILURES_PER_MINUTE)
        self._cache: dict[str, _CachedSession] = {}
        self._has_password: bool | None = None

    # Password and setup

    async def has_password(self) -> bool:
        if not self._has_password:  # a password set by another process counts at once
            row = await self.db.fetch_one(SQL_ADMIN)
            self._has_password = row is not None and row["password_hash"] is not None
        return self._has_password

    async def new_setup_token(self) -> str:
        """A fresh setup token (the previous one stops working). It lasts until a password is set
        on first start, and RESET_TOKEN_SECONDS when it replaces an existing password."""
        token, now = secrets.token_urlsafe(32), self.clock.now()

        def job(tx: Tx) -> None:
            tx.execute(SQL_ENSURE_ADMIN)
            has_password = one(tx.execute(SQL_ADMIN))["password_hash"] is not None
            expires = now + RESET_TOKEN_SECONDS if has_password else None
            tx.execute(SQL_SET_SETUP_TOKEN, (hash_secret(token), expires))

        await self.db.write(job)
        return token

    async def check_setup_token(self, token: str, client: str) -> None:
        """Raises NotFound unless `token` is the current setup token (counted as a failed attempt)."""
        await self.failures.guard(client, lambda: self._check_setup_token(token))

    async def _check_setup_token(self, token: str) -> None:
        row = await self.db.fetch_one(SQL_ADMIN)
        expires = None if row is None else row["setup_token_expires_at"]
        if (
            row is None
            or row["setup_token_hash"] is None
            or not same(hash_secret(token), row["setup_token_hash"])
            or (expires is not None and expires <= self.clock.now())
        ):
            raise InvalidSetupLink("This setup link is not valid: it was used, replaced by a newer one, or it expired.")

    async def set_password(
        self, token: str, password: str, confirm: str, client: str, user_agent: str | None = None
    ) -> DashboardSession:
        """Use a setup token: set the password, sign every browser out, sign this one in."""
        await self.check_setup_token(token, client)
        return await self._store_password(password, confirm, user_agent, token_hash=hash_secret(token))

    async def change_password(
        self, current: str, password: str, confirm: str, client: str, user_agent: str | None = None
    ) -> DashboardSession:
        """A signed-in change: the current password is checked (and rate-limited) first."""
        await self.failures.guard(client, lambda: self._verify(current, "current"))
        return await self._store_password(password, confirm, user_agent, token_hash=None)

    async def _store_password(
        self, password: str, confirm: str, user_agent: str | None, token_hash: str | None
    ) -> DashboardSession:
        check_password(password, confirm)
        digest = await asyncio.to_thread(_hasher().hash, password)
        now = self.clock.now()
        session, params = self._new_session(now, None, user_agent)

        def job(tx: Tx) -> None:
            row = tx.execute(SQL_ADMIN).fetchone()
            # The token may have been used (or replaced) by a concurrent request since it was checked.
            if token_hash is not None and (row is None or not same(token_hash, row["setup_token_hash"] or "")):
                raise InvalidSetupLink("This setup link was used or replaced meanwhile.")
            tx.execute(SQL_SET_PASSWORD, (digest, now))
            tx.execute(SQL_DELETE_ALL_SESSIONS)
            tx.execute(SQL_INSERT_SESSION, params)

        await self.db.write(job)
        self._cache.clear()
        self._has_password = True
        return session

    async def _verify(self, password: str, which: str = "") -> None:
        """Check `password` (`which`: "current" when a signed-in change asks for it)."""
        from argon2.exceptions import InvalidHashError, VerificationError

        row = await self.db.fetch_one(SQL_ADMIN)
        stored = None if row is None else row["password_hash"]
        if stored is None:
            raise NotSetUp("No password is set yet; use the setup link printed at start.")
        hasher = _hasher()
        try:
            await asyncio.to_thread(hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            named = f"{which} password" if which else "password"
            raise WrongPassword(f"The {named} is not right.") from None
        if hasher.check_needs_rehash(stored):
            digest = await asyncio.to_thread(hasher.hash, password)
            await self.db.execute("UPDATE admin SET password_hash = ? WHERE id = 1", (digest,))

    # Sessions

    async def sign_in(self, password: str, client: str, user_agent: str | None = None) -> DashboardSession:
        """A new session for the right password; raises Unauthorized, or RateLimited while the
        address has failed too often."""
        await self.failures.guard(client, lambda: self._verify(password))
        now = self.clock.now()
        session, params = self._new_session(now, None, user_agent)
        await self.db.write(lambda tx: tx.execute(SQL_INSERT_SESSION, params))
        return session

    def _new_session(
        self, now: float, project_id: str | None, user_agent: str | None
    ) -> tuple[DashboardSession, tuple[str | float | None, ...]]:
        token = secrets.token_urlsafe(32)
        session = DashboardSession(
            key=hash_secret(token),
            csrf=secrets.token_urlsafe(24),
            project_id=project_id,
            expires_at=now + SESSION_SECONDS,
            token=token,
        )
        agent = (user_agent or "")[:300]
        return session, (session.key, session.csrf, project_id, now, now, session.expires_at, agent)

    async def session(self, token: str | None) -> DashboardSession | None:
        """The live session a cookie value opens, or None; its life is extended as it is used."""
        if not token or len(token) > 100:
            return None
        key, now, steady = hash_secret(token), self.clock.now(), self.clock.monotonic()
        cached = self._cache.get(key)
        if cached is None or steady - cached.checked_at > CACHE_SECONDS or cached.session.expires_at <= now:
            row = await self.db.fetch_one(SQL_GET_SESSION, (key, now))
            if row is None:
                self._cache.pop(key, None)
                return None
            cached = _CachedSession(DashboardSession(key, row["csrf"], row["project_id"], row["expires_at"]), steady)
            if now - row["seen_at"] >= TOUCH_SECONDS:
                expires = now + SESSION_SECONDS
                await self.db.execute(SQL_TOUCH_SESSION, (now, expires, key))
                cached.session = DashboardSession(key, row["csrf"], row["project_id"], expires)
            self._cache[key] = cached
        return cached.session

    async def set_project(self, session: DashboardSession, project_id: str) -> None:
        await self.db.execute(SQL_SET_SESSION_PROJECT, (project_id, session.key))
        self._cache.pop(session.key, None)

    async def sign_out(self, session: DashboardSession) -> None:
        await self.db.execute(SQL_DELETE_SESSION, (session.key,))
        self._cache.pop(session.key, None)

    async def sign_out_everywhere(self) -> None:
        await self.db.execute(SQL_DELETE_ALL_SESSIONS)
        self._cache.clear()

    async def purge_expired(self, now: float) -> int:
        """Delete sessions past their end; forget addresses whose failures have aged out."""
        self.failures.prune()
        for key in [k for k, c in self._cache.items() if c.session.expires_at <= now]:
            del self._cache[key]
        return await self.db.execute(SQL_PURGE_SESSIONS, (now,))


def check_password(password: str, confirm: str) -> None:
    if len(password) < PASSWORD_MIN_CHARS:
        raise ValidationFailed.at("password", f"must be at least {PASSWORD_MIN_CHARS} characters")
    if len(password) > PASSWORD_MAX_CHARS:
        raise ValidationFailed.at("password", f"must be at most {PASSWORD_MAX_CHARS} characters")
    if password.strip() == "":
        raise ValidationFailed.at("password", "must not be only spaces")
    if password != confirm:
        raise ValidationFailed.at("confirm", "does not match the password")
