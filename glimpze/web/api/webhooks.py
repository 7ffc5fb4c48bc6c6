"""`/v1/webhooks`, `/v1/deliveries` and `/v1/events` (long polling): the event pipe out."""

from __future__ import annotations

from typing import Literal

import msgspec
from litestar import Response, Router, delete, get, patch, post
from litestar.params import FromPath, FromQuery

from glimpze.clock import parse_iso
from glimpze.delivery.outbox import EVENT_TYPES, Polled
from glimpze.delivery.webhook_shapes import (
    Delivery,
    DeliveryDetail,
    NewWebhook,
    Replayed,
    Webhook,
    WebhookPatch,
    WebhookSecret,
    WebhookSpec,
)
from glimpze.delivery.webhooks import DEFAULT_SECRET_GRACE_SECONDS
from glimpze.errors import ValidationFailed
from glimpze.store.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor
from glimpze.validation import Decoder
from glimpze.web.common import AnyRequest, App, Caller, json_response, read_json


class RotateSecret(msgspec.Struct, forbid_unknown_fields=True):
    grace_seconds: int = DEFAULT_SECRET_GRACE_SECONDS


class ReplaySpec(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["failed", "dead", "all"] = "failed"
    since: str | None = None


WEBHOOK_SPEC: Decoder[WebhookSpec] = Decoder(WebhookSpec)
WEBHOOK_PATCH: Decoder[WebhookPatch] = Decoder(WebhookPatch)
ROTATE_SECRET: Decoder[RotateSecret] = Decoder(RotateSecret)
REPLAY_SPEC: Decoder[ReplaySpec] = Decoder(ReplaySpec)
_encode = msgspec.json.encode


@post("/", opt={"body": WebhookSpec}, summary="Subscribe a URL to events (the signing secret is in the answer)")
async def create_webhook(request: AnyRequest, glimpze: App, principal: Caller) -> Response[NewWebhook]:
    body = await request.body()
    spec = await read_json(request, WEBHOOK_SPEC)

    async def create() -> tuple[int, bytes]:
        return 201, _encode(await glimpze.webhooks.create(principal.project_id, spec))

    status, answer, replayed = await glimpze.idempotency.run(
        principal.key_id, request.headers.get("idempotency-key"), body, create
    )
    return json_response(status, answer, {"Idempotent-Replayed": "true"} if replayed else None)  # type: ignore[return-value]


@get("/", summary="List webhooks, oldest first")
async def list_webhooks(
    glimpze: App, principal: Caller, limit: FromQuery[int] = DEFAULT_LIMIT, cursor: FromQuery[str | None] = None
) -> Page[Webhook]:
    return await glimpze.webhooks.list(principal.project_id, after=decode_cursor(cursor, int), limit=check_limit(limit))


@get("/{webhook_id:str}", summary="Read a webhook")
async def get_webhook(webhook_id: FromPath[str], glimpze: App, principal: Caller) -> Webhook:
    return await glimpze.webhooks.get(principal.project_id, webhook_id)


@patch(
    "/{webhook_id:str}",
    opt={"body": WebhookPatch},
    summary='Change a webhook; "active": true re-enables a disabled one',
)
async def update_webhook(webhook_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller) -> Webhook:
    return await glimpze.webhooks.update(principal.project_id, webhook_id, await read_json(request, WEBHOOK_PATCH))


@delete("/{webhook_id:str}", summary="Delete a webhook and its deliveries")
async def delete_webhook(webhook_id: FromPath[str], glimpze: App, principal: Caller) -> None:
    await glimpze.webhooks.delete(principal.project_id, webhook_id)


@get("/{webhook_id:str}/secret", summary="The signing secret (and the previous one during a rotation)")
async def get_secret(webhook_id: FromPath[str], glimpze: App, principal: Caller) -> WebhookSecret:
    return await glimpze.webhooks.secret(principal.project_id, webhook_id)


@post(
    "/{webhook_id:str}/rotate-secret",
    status_code=200,
    opt={"body": RotateSecret, "body_optional": True},
    summary="New signing secret; the old one also signs for grace_seconds (default 24 h)",
)
async def rotate_secret(
    webhook_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller
) -> WebhookSecret:
    data = await read_json(request, ROTATE_SECRET, empty=RotateSecret())
    return await glimpze.webhooks.rotate_secret(principal.project_id, webhook_id, data.grace_seconds)


@post("/{webhook_id:str}/test", status_code=200, summary="Send a webhook.test event to this webhook")
async def test_webhook(webhook_id: FromPath[str], glimpze: App, principal: Caller) -> Delivery:
    return await glimpze.webhooks.test(principal.project_id, webhook_id)


@get("/{webhook_id:str}/deliveries", summary="A webhook's deliveries, newest first")
async def list_deliveries(
    webhook_id: FromPath[str],
    glimpze: App,
    principal: Caller,
    status: FromQuery[Literal["pending", "failed", "delivered", "dead"] | None] = None,
    limit: FromQuery[int] = DEFAULT_LIMIT,
    cursor: FromQuery[str | None] = None,
) -> Page[Delivery]:
    return await glimpze.webhooks.deliveries(
        principal.project_id, webhook_id, status=status, before=decode_cursor(cursor, int), limit=check_limit(limit)
    )


@post(
    "/{webhook_id:str}/replay",
    status_code=200,
    opt={"body": ReplaySpec, "body_optional": True},
    summary="Send a webhook's failed, dead or all deliveries again (optionally only those since a time)",
)
async def replay_webhook(webhook_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller) -> Replayed:
    data = await read_json(request, REPLAY_SPEC, empty=ReplaySpec())
    since = None
    if data.since is not None:
        try:
            since = parse_iso(data.since)
        except ValueError:
            raise ValidationFailed.at("$.since", "must be an ISO-8601 time such as 2026-11-23T18:00:00Z") from None
    return await glimpze.webhooks.replay_many(principal.project_id, webhook_id, since=since, status=data.status)


@get("/deliveries/{delivery_id:str}", tags=["webhooks"], summary="One delivery with its attempt log")
async def get_delivery(delivery_id: FromPath[str], glimpze: App, principal: Caller) -> DeliveryDetail:
    return await glimpze.webhooks.delivery(principal.project_id, delivery_id)


@post(
    "/deliveries/{delivery_id:str}/replay",
    status_code=200,
    tags=["webhooks"],
    summary="Send one delivery again, re-signed with a fresh timestamp",
)
async def replay_delivery(delivery_id: FromPath[str], glimpze: App, principal: Caller) -> DeliveryDetail:
    return await glimpze.webhooks.replay(principal.project_id, delivery_id)


@get(
    "/events",
    tags=["events"],
    summary="Long polling: outgoing events after a cursor, waiting up to `wait` seconds for one",
)
async def poll_events(
    glimpze: App,
    principal: Caller,
    after: FromQuery[str | None] = None,
    types: FromQuery[str | None] = None,
    wait: FromQuery[float] = 0,
    limit: FromQuery[int] = DEFAULT_LIMIT,
) -> Polled:
    wanted = None
    if types:
        wanted = [t.strip() for t in types.split(",") if t.strip()]
        for t in wanted:
            if t not in EVENT_TYPES:
                raise ValidationFailed.at("query.types", f"unknown event type {t!r}; known: {', '.join(EVENT_TYPES)}")
    if not 0 <= wait <= 30:
        raise ValidationFailed.at("query.wait", "must be between 0 and 30 seconds")
    return await glimpze.outbox.poll(
        principal.project_id, cursor=after, types=wanted, wait=wait, limit=check_limit(limit)
    )


router = Router(
    "/webhooks",
    route_handlers=[
        create_webhook,
        list_webhooks,
        get_webhook,
        update_webhook,
        delete_webhook,
        get_secret,
        rotate_secret,
        test_webhook,
        list_deliveries,
        replay_webhook,
    ],
    tags=["webhooks"],
)
deliveries_and_events = [get_delivery, replay_delivery, poll_events]
