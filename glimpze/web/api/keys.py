"""`/v1/keys`: project API keys. A new or rotated key's secret is shown once, in that answer."""

from __future__ import annotations

import msgspec
from litestar import Router, delete, get, post
from litestar.params import FromPath, FromQuery

from glimpze.accounts.keys import DEFAULT_ROTATION_GRACE_SECONDS, ApiKey, NewApiKey
from glimpze.store.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor
from glimpze.validation import Decoder
from glimpze.web.common import AnyRequest, App, Caller, read_json, refuse_idempotency_key


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str


class KeyRotate(msgspec.Struct, forbid_unknown_fields=True):
    grace_seconds: int = DEFAULT_ROTATION_GRACE_SECONDS


KEY_CREATE: Decoder[KeyCreate] = Decoder(KeyCreate)
KEY_ROTATE: Decoder[KeyRotate] = Decoder(KeyRotate)


@post("/", opt={"body": KeyCreate}, summary="Create an API key (the secret is shown only here)")
async def create_key(request: AnyRequest, glimpze: App, principal: Caller) -> NewApiKey:
    refuse_idempotency_key(request)
    data = await read_json(request, KEY_CREATE)
    return await glimpze.keys.create(principal.project_id, data.name)


@get("/", summary="List API keys, oldest first")
async def list_keys(
    glimpze: App, principal: Caller, limit: FromQuery[int] = DEFAULT_LIMIT, cursor: FromQuery[str | None] = None
) -> Page[ApiKey]:
    after = decode_cursor(cursor, int)
    return await glimpze.keys.page(principal.project_id, after=after, limit=check_limit(limit))


@post(
    "/{key_id:str}/rotate",
    status_code=200,
    opt={"body": KeyRotate, "body_optional": True},
    summary="Replace a key's secret; the old one keeps working for grace_seconds (default 24 h)",
)
async def rotate_key(key_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller) -> NewApiKey:
    data = await read_json(request, KEY_ROTATE, empty=KeyRotate())
    return await glimpze.keys.rotate(principal.project_id, key_id, data.grace_seconds)


@delete("/{key_id:str}", summary="Revoke a key at once")
async def revoke_key(key_id: FromPath[str], glimpze: App, principal: Caller) -> None:
    await glimpze.keys.revoke(principal.project_id, key_id)


router = Router("/keys", route_handlers=[create_key, list_keys, rotate_key, revoke_key], tags=["keys"])
