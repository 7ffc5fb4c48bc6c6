"""A project's push targets: Apprise URLs and Web Push subscriptions, in one list.

`POST /v1/push/targets {"url": …}` saves an Apprise URL once Apprise accepts it and the host it
names, resolved whatever its spelling, passes the SSRF policy (every send is guarded again at
connect time: ssrf.py); it is stored as given (it holds tokens and passwords) but only ever shown
redacted. `POST /v1/push/subscriptions` saves a browser's PushSubscription (the same endpoint
again replaces its keys); `DELETE /v1/push/subscriptions {"endpoint": …}` removes it, as does a
404/410 from its push service (push.py). Both kinds are listed and deleted by id under
`/v1/push/targets`. How many targets each project has is kept in memory: ingest asks on every
push (no targets: `"push": "none"`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from glimpze.clock import Clock, iso
from glimpze.delivery.ssrf import TargetPolicy, check_saved, check_url
from glimpze.errors import ValidationFailed, not_found
from glimpze.ids import new_id
from glimpze.push import apprise_urls
from glimpze.push.webpush import Subscription, check_subscription
from glimpze.store.pagination import Page, page
from glimpze.store.sql import Row, Store, Tx, one

MAX_TARGETS = 50  # per project

SQL_COUNTS = "SELECT project_id, count(*) AS n FROM push_targets GROUP BY project_id"
SQL_COUNT = "SELECT count(*) FROM push_targets WHERE project_id = ?"
SQL_COLUMNS = "seq, id, project_id, kind, url, shown, service, p256dh, auth, created_at"
SQL_INSERT = """
    INSERT INTO push_targets (id, project_id, kind, url, shown, service, p256dh, auth, created_at)
    VALUES (:id, :project_id, :kind, :url, :shown, :service, :p256dh, :auth, :now)
    ON CONFLICT (project_id, kind, url) DO UPDATE SET p256dh = excluded.p256dh, auth = excluded.auth
"""
SQL_GET_BY_URL = f"SELECT {SQL_COLUMNS} FROM push_targets WHERE project_id = ? AND kind = ? AND url = ?"
SQL_LIST = f"SELECT {SQL_COLUMNS} FROM push_targets WHERE project_id = ? AND seq > ? ORDER BY seq LIMIT ?"
SQL_ALL = f"SELECT {SQL_COLUMNS} FROM push_targets WHERE project_id = ? ORDER BY seq"
SQL_DELETE = "DELETE FROM push_targets WHERE project_id = ? AND id = ?"
SQL_DELETE_BY_URL = "DELETE FROM push_targets WHERE project_id = ? AND kind = ? AND url = ?"
SQL_DELETE_BY_ID = "DELETE FROM push_targets WHERE id = ?"


class TargetSpec(msgspec.Struct, forbid_unknown_fields=True):
    """The body of POST /v1/push/targets: one Apprise URL."""

    url: str


class SubscriptionKeys(msgspec.Struct, forbid_unknown_fields=True):
    p256dh: str
    auth: str


class SubscriptionSpec(msgspec.Struct, forbid_unknown_fields=True):
    """The body of POST /v1/push/subscriptions: the browser's `PushSubscription.toJSON()`."""

    endpoint: str
    keys: SubscriptionKeys
    expirationTime: float | None = None  # noqa: N815 (the browser's own name)


class Unsubscribe(msgspec.Struct, forbid_unknown_fields=True):
    """The body of DELETE /v1/push/subscriptions."""

    endpoint: str


class PushTarget(msgspec.Struct, kw_only=True):
    """A target as the API shows it: an Apprise URL redacted, or a subscription's push service."""

    id: str
    kind: Literal["apprise", "webpush"]
    url: str
    service: str
    created_at: str


@dataclass(frozen=True, slots=True)
class Recipient:
    """A target as the sender needs it."""

    id: str
    kind: str
    url: str
    subscription: Subscription | None


def target_out(row: Row) -> PushTarget:
    return PushTarget(
        id=row["id"], kind=row["kind"], url=row["shown"], service=row["service"], created_at=iso(row["created_at"])
    )


class PushTargets:
    """Apprise URLs and Web Push subscriptions per project."""

    def __init__(self, db: Store, clock: Clock, policy: TargetPolicy) -> None:
        self.db = db
        self.clock = clock
        self.policy = policy
        self._counts: dict[str, int] = {}

    async def load(self) -> None:
        self._counts = {row["project_id"]: row["n"] for row in await self.db.fetch_all(SQL_COUNTS)}

    def count(self, project_id: str) -> int:
        """How many targets the project has (from memory)."""
        return self._counts.get(project_id, 0)

    async def add_apprise(self, project_id: str, url: str) -> PushTarget:
        url = url.strip()
        if not url or len(url) > apprise_urls.MAX_URL_CHARS:
            raise ValidationFailed.at(
                "$.url", f"must be an Apprise URL of at most {apprise_urls.MAX_URL_CHARS} characters"
            )
        described = await asyncio.to_thread(apprise_urls.describe, url)
        if described is None:
            raise ValidationFailed.at(
                "$.url",
                "is not a URL Apprise can send to; see https://github.com/caronc/apprise/wiki for the forms "
                "(e.g. ntfy://ntfy.sh/topic, tgram://bottoken/chat_id, json://host/path)",
            )
        await check_saved(apprise_urls.check_hosts(self.policy, described), "$.url")
        return await self._save(project_id, "apprise", url, described.shown, described.service, None)

    async def subscribe(self, project_id: str, spec: SubscriptionSpec) -> PushTarget:
        sub = check_subscription(spec.endpoint, spec.keys.p256dh, spec.keys.auth)
        await check_url(self.policy, sub.endpoint, "$.endpoint")
        parts = urlsplit(sub.endpoint)
        shown = f"{parts.scheme}://{parts.netloc}/…"  # the path is the subscription's capability
        return await self._save(project_id, "webpush", sub.endpoint, shown, parts.hostname or "", sub)

    async def unsubscribe(self, project_id: str, endpoint: str) -> None:
        def job(tx: Tx) -> tuple[int, int]:
            deleted = tx.execute(SQL_DELETE_BY_URL, (project_id, "webpush", endpoint)).rowcount
            return deleted, int(one(tx.execute(SQL_COUNT, (project_id,)))[0])

        deleted, self._counts[project_id] = await self.db.write(job)
        if not deleted:
            raise ValidationFailed.at("$.endpoint", "no subscription of this project has this endpoint")

    async def page(self, project_id: str, *, after: tuple[int] | None, limit: int) -> Page[PushTarget]:
        """A project's push targets, oldest first, from the one after `after`."""
        rows = await self.db.fetch_all(SQL_LIST, (project_id, after[0] if after else 0, limit + 1))
        return page(rows, limit, target_out, lambda r: (r["seq"],))

    async def delete(self, project_id: str, target_id: str) -> None:
        def job(tx: Tx) -> tuple[int, int]:
            deleted = tx.execute(SQL_DELETE, (project_id, target_id)).rowcount
            return deleted, int(one(tx.execute(SQL_COUNT, (project_id,)))[0])

        deleted, self._counts[project_id] = await self.db.write(job)
        if not deleted:
            raise not_found("push target", target_id)

    async def of_project(self, project_id: str) -> list[Recipient]:
        """Every target of the project, for sending (secrets included)."""
        rows = await self.db.fetch_all(SQL_ALL, (project_id,))
        return [
            Recipient(
                row["id"],
                row["kind"],
                row["url"],
                Subscription(row["url"], row["p256dh"], row["auth"]) if row["kind"] == "webpush" else None,
            )
            for row in rows
        ]

    def remove(self, tx: Tx, project_id: str, target_ids: list[str]) -> int:
        """Delete targets inside a write job (gone subscriptions); returns the project's new count."""
        tx.executemany(SQL_DELETE_BY_ID, [(t,) for t in target_ids])
        return int(one(tx.execute(SQL_COUNT, (project_id,)))[0])

    def set_count(self, project_id: str, count: int) -> None:
        self._counts[project_id] = count

    async def _save(
        self, project_id: str, kind: str, url: str, shown: str, service: str, sub: Subscription | None
    ) -> PushTarget:
        params = {
            "id": new_id("ptg_"),
            "project_id": project_id,
            "kind": kind,
            "url": url,
            "shown": shown,
            "service": service,
            "p256dh": sub.p256dh if sub else None,
            "auth": sub.auth if sub else None,
            "now": self.clock.now(),
        }

        def job(tx: Tx) -> tuple[Row, int]:
            count = int(one(tx.execute(SQL_COUNT, (project_id,)))[0])
            existing = tx.execute(SQL_GET_BY_URL, (project_id, kind, url)).fetchone()
            if existing is None and count >= MAX_TARGETS:
                raise ValidationFailed.at("$", f"a project has at most {MAX_TARGETS} push targets; delete one first")
            tx.execute(SQL_INSERT, params)
            return one(tx.execute(SQL_GET_BY_URL, (project_id, kind, url))), count + (existing is None)

        row, self._counts[project_id] = await self.db.write(job)
        return target_out(row)
