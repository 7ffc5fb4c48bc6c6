"""`Idempotency-Key`: a retried create with the same key and body gets the first answer again.

Scoped to (credential, key) and kept 24 h. The same key with another body is a 422
`idempotency_key_reused`; while the first request still runs, a 409 `idempotency_key_in_use`.
Only 2xx answers are stored. Ingest stores its record in the same transaction as the event;
`/v1` creates store it right after their own commit (`run()`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from glimpze.clock import Clock
from glimpze.errors import IdempotencyKeyInUse, IdempotencyKeyReused, ValidationFailed
from glimpze.store.sql import Store, Tx

KEEP_SECONDS = 24 * 3600
MAX_KEY_LENGTH = 255

SQL_FIND = "SELECT body_hash, status, response FROM idempotency WHERE scope = ? AND key = ? AND created_at > ?"
SQL_SAVE = """
    INSERT INTO idempotency (scope, key, body_hash, status, response, created_at)
    VALUES (?, ?, ?, ?, /*sqlite:*/?/*:sqlite*//*pg:convert_to(?, 'UTF8')*/, ?)
    ON CONFLICT (scope, key) DO UPDATE SET body_hash = excluded.body_hash, status = excluded.status,
        response = excluded.response, created_at = excluded.created_at
"""
SQL_PURGE = """
    DELETE FROM idempotency WHERE (scope, key) IN
        (SELECT scope, key FROM idempotency WHERE created_at <= ? LIMIT ?)
"""


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    status: int
    response: bytes


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """A request holding an Idempotency-Key; `save(tx, …)` records its answer."""

    scope: str
    key: str
    body_hash: str

    def save(self, tx: Tx, status: int, response: bytes, now: float) -> None:
        tx.execute(SQL_SAVE, (self.scope, self.key, self.body_hash, status, response, now))


def body_digest(body: bytes) -> str:
    """What a key is bound to: the SHA-256 of the request body."""
    return hashlib.sha256(body).hexdigest()


class Idempotency:
    def __init__(self, db: Store, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._running: set[tuple[str, str]] = set()

    def claim(self, scope: str, key: str, digest: str) -> IdempotencyClaim:
        """The claim of a request on (scope, key); `digest` identifies its body (`body_digest`)."""
        if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
            raise ValidationFailed.at("header.Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} printable characters")
        return IdempotencyClaim(scope, key, digest)

    @contextmanager
    def hold(self, claim: IdempotencyClaim) -> Iterator[None]:
        """Mark the key as in use until the request ends (a concurrent one gets 409); take it
        before `stored()`, so no second request can slip in between the lookup and the save."""
        marker = (claim.scope, claim.key)
        if marker in self._running:
            raise IdempotencyKeyInUse(
                "A request with this Idempotency-Key is still being processed; retry in a moment."
            )
        self._running.add(marker)
        try:
            yield
        finally:
            self._running.discard(marker)

    async def stored(self, claim: IdempotencyClaim) -> StoredAnswer | None:
        """The first answer to replay, if the key was used with the same body within 24 h."""
        row = await self.db.fetch_one(SQL_FIND, (claim.scope, claim.key, self.clock.now() - KEEP_SECONDS))
        if row is None:
            return None
        if row["body_hash"] != claim.body_hash:
            raise IdempotencyKeyReused.at(
                "header.Idempotency-Key",
                "was already used with a different request body; use a new key for a new request",
            )
        return StoredAnswer(row["status"], row["response"])

    async def run(
        self,
        scope: str,
        key: str | None,
        body: bytes,
        create: Callable[[], Awaitable[tuple[int, bytes]]],
    ) -> tuple[int, bytes, bool]:
        """Run a `/v1` create once per key: returns (status, response body, replayed)."""
        if key is None:
            status, response = await create()
            return status, response, False
        claim = self.claim(scope, key, body_digest(body))
        with self.hold(claim):
            stored = await self.stored(claim)
            if stored is not None:
                return stored.status, stored.response, True
            status, response = await create()
            now = self.clock.now()
            await self.db.write(lambda tx: claim.save(tx, status, response, now))
        return status, response, False

    async def purge(self, now: float, batch: int = 1000) -> int:
        """Forget answers older than 24 h, a batch at a time."""
        return await self.db.execute(SQL_PURGE, (now - KEEP_SECONDS, batch))
