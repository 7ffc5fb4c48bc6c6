"""What the dashboard shows of webhooks beyond the API: how many deliveries each webhook has in
each state (those without a row yet are pending: backlog.py), and one delivery's request as it was
sent, or will be (method, URL, headers, body).

The body is the stored payload, byte for byte. The headers are built by the same function the
dispatcher sends with (attempts.request_headers); only the signatures' values are not shown,
since they were computed from the secret and the second of each attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from glimpze.delivery import backlog
from glimpze.delivery.attempts import request_headers
from glimpze.delivery.webhook_shapes import delivery_out
from glimpze.delivery.webhooks import delivery_row
from glimpze.store.sql import Store

SIGNED = "(signed when sent)"

SQL_COUNTS = """
    SELECT webhook_id, status, count(*) AS n FROM deliveries
    WHERE webhook_id IN (SELECT value FROM json_each(?)) GROUP BY webhook_id, status
"""


@dataclass(frozen=True, slots=True)
class DeliveryCounts:
    """A webhook's deliveries by state: sent, failing (a retry is scheduled), waiting, given up."""

    delivered: int = 0
    failed: int = 0
    pending: int = 0
    dead: int = 0

    @property
    def total(self) -> int:
        return self.delivered + self.failed + self.pending + self.dead


@dataclass(frozen=True, slots=True)
class SentRequest:
    method: str
    url: str
    headers: list[tuple[str, str]]
    body: str


class Inspector:
    """See the module docstring."""

    def __init__(self, db: Store) -> None:
        self.db = db

    async def counts(self, webhook_ids: Sequence[str]) -> dict[str, DeliveryCounts]:
        found: dict[str, dict[str, int]] = {webhook_id: {} for webhook_id in webhook_ids}
        ids = msgspec.json.encode(list(webhook_ids)).decode()
        for row in await self.db.fetch_all(SQL_COUNTS, (ids,)):
            if row["status"] in ("delivered", "failed", "pending", "dead"):
                found[row["webhook_id"]][row["status"]] = row["n"]
        for row in await self.db.fetch_all(backlog.SQL_WAITING_COUNTS, {"ids": ids}):  # no row yet: pending
            counts = found[row["webhook_id"]]
            counts["pending"] = counts.get("pending", 0) + row["n"]
        return {webhook_id: DeliveryCounts(**counts) for webhook_id, counts in found.items()}

    async def sent(self, project_id: str, delivery_id: str) -> SentRequest:
        """The request of a delivery's latest attempt (or of its first, when none was made yet)."""
        row = await delivery_row(self.db, project_id, delivery_id)
        callback = row["webhook_url"] is None
        method = row["method"] or "POST"
        url = row["url"] if callback else row["webhook_url"]
        body = (row["callback_payload"] or b"") if callback else row["payload"]
        custom = {} if callback else msgspec.json.decode(row["headers"])
        dlv = delivery_out(row)
        signatures = {
            "X-Glimpze-Signature": f"t=…,v1=… {SIGNED}",
            "webhook-id": dlv.id,
            "webhook-timestamp": SIGNED,
            "webhook-signature": f"v1,… {SIGNED}",
        }
        headers = request_headers(method, custom, signatures, dlv.event, dlv.id, max(dlv.attempts, 1))
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        return SentRequest(method, url, list(headers.items()), text)
