"""Signed CTA context: the project's context secret, the visitor context a card forwards, verifying it.

A card whose rule lists `forward_context` fields leads to its URL plus `glimpze_ctx`, `glimpze_ts`
and `glimpze_sig` (glimpze.ctx). The payload holds exactly the listed fields:
- `conversation_id`, `agent_id`, `page_url`: the session's;
- `visitor_email`, `visitor_name`: the latest captured, i.e. the session's lead, else the session's
  visitor;
- `captured_fields`: the lead's custom fields (name, email and phone have their own), with every
  sensitive key removed at any depth: a key is sensitive when, lower-cased and without `-` and `_`,
  it contains `password`, `token`, `secret` or `apikey` (DESIGN §7); a container left empty by the
  removal goes too, and so does anything nested deeper than `MAX_CONTEXT_DEPTH`.

The context secret (`gzc_…`) is per project, in `project_settings`, created on first use. An API
key can read it (`GET /v1/ctas/secret`) and rotate it; after a rotation the previous secret still
verifies for 24 h. It is never logged and never sent to a visitor's browser.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from glimpze.accounts.settings import ProjectSettings, Setting
from glimpze.chat import ctx
from glimpze.chat.leads import STANDARD_FIELDS
from glimpze.chat.messages import CtaCard
from glimpze.chat.sessions import Session
from glimpze.clock import Clock, iso
from glimpze.ids import new_secret
from glimpze.rotation import still_good
from glimpze.store.sql import Store, Tx

if TYPE_CHECKING:
    from glimpze.chat.ctas import Cta

SECRET_PREFIX = "gzc_"
ROTATION_GRACE_SECONDS = 24 * 3600
SENSITIVE_WORDS = ("password", "token", "secret", "apikey")
MAX_CONTEXT_DEPTH = 16  # levels of captured fields forwarded; deeper ones are left out
VERIFY_URL_MAX_CHARS = 32 * 1024

SQL_SESSION_LEAD = """
    SELECT fields FROM leads WHERE project_id = ? AND session_id = ? ORDER BY updated_at DESC, seq DESC LIMIT 1
"""


class CtaSecret(msgspec.Struct):
    """`GET /v1/ctas/secret` and the answer to a rotation."""

    secret: str
    previous_secret: str | None  # still verifies until previous_secret_expires_at
    previous_secret_expires_at: str | None


class SecretRecord(msgspec.Struct):
    """A project's context secret as stored, with the one it replaced while that still verifies."""

    secret: str
    previous: str | None = None
    previous_until: float | None = None  # unix seconds


SECRET_SETTING = Setting("cta_context_secret", SecretRecord)


class CtaVerify(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /v1/ctas/verify`: a card's destination URL as the customer's backend received it."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=VERIFY_URL_MAX_CHARS)]


class Verification(msgspec.Struct, omit_defaults=True):
    """`{"valid": true, "payload": {…}}` or `{"valid": false, "reason": "…"}` (reasons: glimpze.ctx)."""

    valid: bool
    payload: dict[str, Any] | None = None
    reason: str | None = None


def new_context_secret() -> str:
    return new_secret(SECRET_PREFIX)


def is_sensitive(key: str) -> bool:
    normalized = key.lower().replace("-", "").replace("_", "")
    return any(word in normalized for word in SENSITIVE_WORDS)


_EMPTIED = object()  # what a container becomes when stripping left nothing in it


def strip_sensitive(value: Any, depth: int = 0) -> Any:
    """`value` without sensitive keys at any depth; containers emptied by that are dropped (ones
    that were empty to begin with stay). Containers nested deeper than `MAX_CONTEXT_DEPTH` are
    dropped too: no visitor context needs them, and they would only strain the stack."""
    if isinstance(value, (dict, list)) and depth >= MAX_CONTEXT_DEPTH:
        return _EMPTIED
    if isinstance(value, dict):
        kept: dict[str, Any] = {}
        for key, item in value.items():
            if not is_sensitive(key) and (stripped := strip_sensitive(item, depth + 1)) is not _EMPTIED:
                kept[key] = stripped
        return _EMPTIED if value and not kept else kept
    if isinstance(value, list):
        items = [stripped for item in value if (stripped := strip_sensitive(item, depth + 1)) is not _EMPTIED]
        return _EMPTIED if value and not items else items
    return value


def captured_fields(lead_fields: dict[str, Any]) -> dict[str, Any]:
    custom = {key: value for key, value in lead_fields.items() if key not in STANDARD_FIELDS}
    stripped = strip_sensitive(custom)
    return {} if stripped is _EMPTIED else stripped


class CtaContext:
    """The context secret of each project, and the signed URLs of cards."""

    def __init__(self, db: Store, clock: Clock, settings: ProjectSettings) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings

    # Inside write jobs

    def current_secret(self, tx: Tx, project_id: str, fresh: str, now: float) -> SecretRecord:
        """The stored secret record, storing one with `fresh` as the secret when there is none."""
        return self.settings.get_or_create(tx, project_id, SECRET_SETTING, SecretRecord(fresh), now)

    def cards(
        self, tx: Tx, project_id: str, session: Session, rules: list[Cta], now: float, fresh: str
    ) -> list[CtaCard]:
        """The cards of `rules` for a reply in `session`, their URLs signed at `now` where the rule
        forwards context (`fresh` becomes the project's secret if it has none yet)."""
        cards = [CtaCard(id=rule.id, label=rule.label, description=rule.description, url=rule.url) for rule in rules]
        if not any(rule.forward_context for rule in rules):
            return cards
        secret = self.current_secret(tx, project_id, fresh, now).secret
        context = self._context(tx, project_id, session)
        for card, rule in zip(cards, rules):
            if rule.forward_context:
                # In the fixed order of the whitelist, so equal choices sign equal payloads.
                payload: dict[str, Any] = {k: v for k, v in context.items() if k in rule.forward_context}
                card.url = ctx.signed_url(rule.url, payload, secret, int(now))
        return cards

    def _context(self, tx: Tx, project_id: str, session: Session) -> dict[str, Any]:
        """Every field a card may forward, for this session."""
        row = tx.execute(SQL_SESSION_LEAD, (project_id, session.id)).fetchone()
        lead: dict[str, Any] = msgspec.json.decode(row["fields"]) if row is not None else {}
        return {
            "conversation_id": session.id,
            "agent_id": session.agent_id,
            "page_url": session.page_url,
            "visitor_email": lead.get("email") or session.visitor.email,
            "visitor_name": lead.get("name") or session.visitor.name,
            "captured_fields": captured_fields(lead),
        }

    # Services

    async def secret(self, project_id: str) -> CtaSecret:
        """The project's secret (created now if it has none yet)."""
        fresh, now = new_context_secret(), self.clock.now()
        record = await self.db.write(lambda tx: self.current_secret(tx, project_id, fresh, now))
        return self._out(record, now)

    async def rotate(self, project_id: str) -> CtaSecret:
        """A new secret; the one it replaces verifies for another 24 h (one before it stops at once)."""
        fresh, now = new_context_secret(), self.clock.now()

        def job(tx: Tx) -> SecretRecord:
            old = self.settings.read(tx, project_id, SECRET_SETTING)
            record = SecretRecord(fresh)
            if old is not None:
                record = SecretRecord(fresh, old.secret, now + ROTATION_GRACE_SECONDS)
            self.settings.put(tx, project_id, SECRET_SETTING, record, now)
            return record

        return self._out(await self.db.write(job), now)

    async def verify(self, project_id: str, url: str) -> Verification:
        """Whether `url` carries a context this project signed within the last 300 s."""
        now = self.clock.now()
        record = await self.settings.get(project_id, SECRET_SETTING)
        payload, reason = ctx.check(url, self._verifying(record, now), now)
        if payload is None:
            return Verification(valid=False, reason=reason)
        return Verification(valid=True, payload=payload)

    @staticmethod
    def _verifying(record: SecretRecord | None, now: float) -> Iterable[str]:
        if record is None:
            return []
        previous = record.previous if still_good(record.previous, record.previous_until, now) else None
        return [record.secret] if previous is None else [record.secret, previous]

    @staticmethod
    def _out(record: SecretRecord, now: float) -> CtaSecret:
        until = record.previous_until
        if record.previous is None or until is None or not still_good(record.previous, until, now):
            return CtaSecret(record.secret, None, None)
        return CtaSecret(record.secret, record.previous, iso(until))
