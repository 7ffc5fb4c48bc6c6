"""Action links: the signed, expiring, single-use Approve / Reject URLs in approval notifications,
and the links of a push's action buttons (buttons.py: `b0`…`b2`, not single-use).

A link is `{public_url}/a/gza_{event_id}.{action}.{expires}.{nonce}.{signature}`, the signature
an HMAC-SHA256 (truncated to 128 bits) of the rest under a key kept in the database (`meta`),
made at first start and never shown. Opening a link only shows a confirmation page; its form's
POST decides (routes/actions.py), so a chat app's link preview approves nothing. A link works
once: the approval's action log keeps its nonce (approvals.py), and after approve or reject
every link of that approval shows the decision instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from glimpze.store.sql import Store, Tx, one

TOKEN_PREFIX = "gza_"
ACTIONS = ("approve", "reject")
BUTTON_ACTIONS = ("b0", "b1", "b2")  # a push's action buttons (buttons.py)
SQL_KEY = "SELECT value FROM meta WHERE key = 'action_link_key'"
SQL_PUT_KEY = "INSERT OR IGNORE INTO meta (key, value) VALUES ('action_link_key', ?)"
_TOKEN = re.compile(
    r"^gza_(evt_[0-9a-z]{1,40})\.(approve|reject|b[0-2])\.(\d{1,12})\.([A-Za-z0-9_-]{8,32})\.([A-Za-z0-9_-]{22})$"
)


@dataclass(frozen=True, slots=True)
class ActionLink:
    """What a link carries, once its signature is checked."""

    event_id: str
    action: str
    expires_at: int
    nonce: str


class ActionLinks:
    """Makes and checks action links."""

    def __init__(self, db: Store, base_url: str) -> None:
        self.db = db
        self.base_url = base_url
        self._key: bytes | None = None

    async def open(self) -> None:
        """Load the signing key, creating it on first start."""

        def job(tx: Tx) -> str:
            tx.execute(SQL_PUT_KEY, (secrets.token_hex(32),))
            key: str = one(tx.execute(SQL_KEY))[0]
            return key

        self._key = bytes.fromhex(await self.db.write(job))

    def url(self, event_id: str, action: str, expires_at: float) -> str:
        """A fresh link (its own nonce) that answers `event_id` with `action` until `expires_at`."""
        assert action in ACTIONS or action in BUTTON_ACTIONS, action
        body = f"{event_id}.{action}.{int(expires_at)}.{secrets.token_urlsafe(9)}"
        return f"{self.base_url}/a/{TOKEN_PREFIX}{body}.{self._sign(body)}"

    def read(self, token: str) -> ActionLink | None:
        """The link's content if it is well formed and its signature holds (expiry is the caller's
        check: an expired link still names its approval)."""
        match = _TOKEN.match(token)
        if match is None:
            return None
        event_id, action, expires, nonce, signature = match.groups()
        if not hmac.compare_digest(signature, self._sign(f"{event_id}.{action}.{expires}.{nonce}")):
            return None
        return ActionLink(event_id, action, int(expires), nonce)

    def _sign(self, body: str) -> str:
        assert self._key is not None, "ActionLinks.open() was not awaited"
        digest = hmac.new(self._key, body.encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
