"""Widget tokens: short-lived credentials a site's backend mints for one visitor's browser.

Format (opaque to clients): `gzt_<payload>.<signature>`, where `payload` is base64url (no padding)
of the msgspec-encoded `Claims` (project, visitor, context, origin, agent, issued, expires) and
`signature` is base64url of HMAC-SHA256 over `"gzt1." + payload`, keyed with the project's widget
secret (random, created on the first mint and kept in `project_settings`). Verification decodes
the project id from the payload, recomputes the HMAC with that project's secret and compares in
constant time, then checks the expiry and, for a token bound to an origin, the request's Origin.
Any failure is a 401 `invalid_token`; nothing is stored per token.

A browser call must also come from one of the project's widget origins (403
`origin_not_allowed`); calls without an Origin header (servers, curl) skip that check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from glimpze.accounts.settings import ProjectSettings, Setting, check_origin, normalize_origin
from glimpze.chat.agents import SQL_AGENT_EXISTS
from glimpze.chat.sessions import CONTEXT_MAX_BYTES, Visitor
from glimpze.clock import Clock, iso
from glimpze.errors import Forbidden, GlimpzeError, InvalidToken, OriginNotAllowed, Unauthorized, ValidationFailed
from glimpze.ids import new_secret
from glimpze.store.sql import Store
from glimpze.validation import Decoder

PREFIX = "gzt_"
SIGNING_DOMAIN = b"gzt1."  # versions the signed string; a new format gets a new one
SECRET_SETTING = Setting("widget_token_secret", str)
DEFAULT_TTL_SECONDS = 600
MIN_TTL_SECONDS = 30
MAX_TTL_SECONDS = 3600
TOKEN_CONTEXT_MAX_BYTES = 2 * 1024  # a token travels in URLs (?token= on the SSE stream)
MAX_TOKEN_CHARS = 8192


class Claims(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """What a token says, encoded compactly (a JSON array)."""

    project_id: str
    visitor: Visitor
    context: dict[str, Any]
    origin: str | None
    agent_id: str | None
    issued_at: int
    expires_at: int


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`POST /v1/widget-tokens`."""

    visitor: Visitor
    context: dict[str, Any] = msgspec.field(default_factory=dict)
    origin: Annotated[str, msgspec.Meta(max_length=300)] | None = None
    agent_id: str | None = None
    ttl_seconds: int = DEFAULT_TTL_SECONDS

    def __post_init__(self) -> None:
        if not MIN_TTL_SECONDS <= self.ttl_seconds <= MAX_TTL_SECONDS:
            raise ValueError(f"[ttl_seconds] must be between {MIN_TTL_SECONDS} and {MAX_TTL_SECONDS} (1 hour)")
        limit = min(CONTEXT_MAX_BYTES, TOKEN_CONTEXT_MAX_BYTES)
        if len(msgspec.json.encode(self.context)) > limit:
            raise ValueError(f"[context] is larger than {limit // 1024} KiB once encoded (it travels in the token)")


class ChatToken(msgspec.Struct):
    token: str
    expires_at: str


@dataclass(frozen=True, slots=True)
class ChatVisitor:
    """Who is calling /widget/v1: a visitor of a project, through a verified token."""

    project_id: str
    visitor: Visitor
    context: dict[str, Any]
    origin: str | None
    agent_id: str | None
    expires_at: float


_encode_claims = msgspec.json.Encoder().encode
CLAIMS: Decoder[Claims] = Decoder(Claims)  # a token's payload is read before its signature is checked: guarded too


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), SIGNING_DOMAIN + payload.encode(), hashlib.sha256).digest())


def invalid_token(detail: str) -> Unauthorized:
    return InvalidToken(
        detail + " Ask the site's backend for a new widget token.",
        headers={"WWW-Authenticate": 'Bearer realm="glimpze-widget"'},
    )


def origin_not_allowed(origin: str) -> Forbidden:
    """The refusal of a page whose origin is not one of the project's widget origins (the widget
    shows its detail and stops)."""
    return OriginNotAllowed(
        f"Origin {origin!r} is not one of this project's widget origins; add it with PUT /v1/settings/widget-origins."
    )


class ChatTokens:
    """Mints and verifies widget tokens; per-project secrets are cached after the first read."""

    def __init__(self, db: Store, clock: Clock, settings: ProjectSettings, own_origin: str | None) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.own_origin = own_origin  # calls from Glimpze's own pages are same-origin
        self._secrets: dict[str, str] = {}

    async def mint(self, project_id: str, data: TokenRequest) -> ChatToken:
        origin = check_origin(data.origin, "$.origin") if data.origin is not None else None
        if data.agent_id is not None and await self.db.fetch_one(SQL_AGENT_EXISTS, (project_id, data.agent_id)) is None:
            raise ValidationFailed.at("$.agent_id", f"no agent with id {data.agent_id!r} in this project")
        secret = self._secrets.get(project_id) or await self._create_secret(project_id)
        now = int(self.clock.now())
        claims = Claims(project_id, data.visitor, data.context, origin, data.agent_id, now, now + data.ttl_seconds)
        payload = _b64(_encode_claims(claims))
        return ChatToken(f"{PREFIX}{payload}.{_sign(secret, payload)}", iso(claims.expires_at))

    async def verify(self, token: str | None, origin: str | None) -> ChatVisitor:
        """The visitor a token stands for; raises 401 `invalid_token`."""
        if not token:
            raise invalid_token("Send the widget token as 'Authorization: Bearer gzt_…'.")
        payload, _, signature = token.removeprefix(PREFIX).partition(".")
        if not token.startswith(PREFIX) or not signature or len(token) > MAX_TOKEN_CHARS:
            raise invalid_token("This is not a Glimpze widget token.")
        try:
            claims = CLAIMS.decode(_unb64(payload))
        except (binascii.Error, ValueError, GlimpzeError):
            raise invalid_token("This widget token is damaged.") from None
        secret = await self._secret(claims.project_id)
        # bytes: compare_digest refuses str with non-ASCII characters (a TypeError, not a 401)
        if secret is None or not hmac.compare_digest(_sign(secret, payload).encode(), signature.encode()):
            raise invalid_token("This widget token's signature does not match.")
        if self.clock.now() >= claims.expires_at:
            raise invalid_token(f"This widget token expired at {iso(claims.expires_at)}.")
        if claims.origin is not None and (origin is None or normalize_origin(origin) != claims.origin):
            raise invalid_token(f"This widget token is only valid on {claims.origin}.")
        return ChatVisitor(
            claims.project_id, claims.visitor, claims.context, claims.origin, claims.agent_id, claims.expires_at
        )

    async def authenticate(self, token: str | None, origin: str | None) -> ChatVisitor:
        """`verify`, then a browser Origin must be one of the project's widget origins."""
        visitor = await self.verify(token, origin)
        if origin is not None and not await self.origin_allowed(visitor.project_id, origin):
            raise origin_not_allowed(origin)
        return visitor

    async def origin_known(self, origin: str) -> bool:
        """True when some project (or Glimpze itself) allows `origin`: enough for a CORS preflight."""
        normalized = normalize_origin(origin)
        if normalized is None:
            return False
        return normalized == self.own_origin or await self.settings.origin_known(normalized)

    async def origin_allowed(self, project_id: str, origin: str) -> bool:
        normalized = normalize_origin(origin)
        if normalized is None:
            return False
        return normalized == self.own_origin or await self.settings.origin_allowed(project_id, normalized)

    async def _create_secret(self, project_id: str) -> str:
        """The project's secret, created on its first mint."""
        fresh, now = new_secret("gzs_"), self.clock.now()
        secret = await self.db.write(lambda tx: self.settings.get_or_create(tx, project_id, SECRET_SETTING, fresh, now))
        self._secrets[project_id] = secret
        return secret

    async def _secret(self, project_id: str) -> str | None:
        secret = self._secrets.get(project_id)
        if secret is None:
            secret = await self.settings.get(project_id, SECRET_SETTING)
            if secret is not None:
                self._secrets[project_id] = secret
        return secret
