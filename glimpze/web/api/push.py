"""`/v1/push`: push targets (Apprise URLs, Web Push subscriptions), the VAPID key, the push log."""

from __future__ import annotations

import msgspec
from litestar import Router, delete, get, post
from litestar.params import FromPath, FromQuery

from glimpze.push.pushes import PushRecord, PushResult
from glimpze.push.targets import PushTarget, SubscriptionSpec, TargetSpec, Unsubscribe
from glimpze.store.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor
from glimpze.validation import Decoder
from glimpze.web.common import AnyRequest, App, Caller, read_json


class VapidKey(msgspec.Struct):
    """The server's VAPID public key: a browser's `applicationServerKey` (base64url)."""

    public_key: str


TARGET_SPEC: Decoder[TargetSpec] = Decoder(TargetSpec)
SUBSCRIPTION_SPEC: Decoder[SubscriptionSpec] = Decoder(SubscriptionSpec)
UNSUBSCRIBE: Decoder[Unsubscribe] = Decoder(Unsubscribe)


@post("/targets", opt={"body": TargetSpec}, summary="Add an Apprise URL (checked; shown redacted from then on)")
async def add_target(request: AnyRequest, glimpze: App, principal: Caller) -> PushTarget:
    data = await read_json(request, TARGET_SPEC)
    return await glimpze.push_targets.add_apprise(principal.project_id, data.url)


@get("/targets", summary="Push targets: Apprise URLs (redacted) and Web Push subscriptions")
async def list_targets(
    glimpze: App, principal: Caller, limit: FromQuery[int] = DEFAULT_LIMIT, cursor: FromQuery[str | None] = None
) -> Page[PushTarget]:
    return await glimpze.push_targets.page(
        principal.project_id, after=decode_cursor(cursor, int), limit=check_limit(limit)
    )


@delete("/targets/{target_id:str}", summary="Remove a push target (an Apprise URL or a subscription)")
async def delete_target(target_id: FromPath[str], glimpze: App, principal: Caller) -> None:
    await glimpze.push_targets.delete(principal.project_id, target_id)


@post(
    "/targets/{target_id:str}/test",
    status_code=200,
    summary="Send a test notification to one target now; answers how it went (sent, failed, removed)",
)
async def test_target(target_id: FromPath[str], glimpze: App, principal: Caller) -> PushResult:
    return await glimpze.push.test(principal.project_id, target_id)


@post(
    "/subscriptions",
    opt={"body": SubscriptionSpec},
    summary="Save a browser's Web Push subscription (PushSubscription.toJSON())",
)
async def subscribe(request: AnyRequest, glimpze: App, principal: Caller) -> PushTarget:
    data = await read_json(request, SUBSCRIPTION_SPEC)
    return await glimpze.push_targets.subscribe(principal.project_id, data)


@delete(
    "/subscriptions",
    opt={"body": Unsubscribe},
    summary="Remove a browser's Web Push subscription by its endpoint",
)
async def unsubscribe(request: AnyRequest, glimpze: App, principal: Caller) -> None:
    data = await read_json(request, UNSUBSCRIBE)
    await glimpze.push_targets.unsubscribe(principal.project_id, data.endpoint)


@get("/vapid-public-key", summary="The VAPID public key browsers subscribe with")
async def vapid_public_key(glimpze: App, principal: Caller) -> VapidKey:
    return VapidKey(await glimpze.webpush.key())


@get("/log", summary="Pushes, newest first, with each target's result (?event_id=&feed_id=)")
async def push_log(
    glimpze: App,
    principal: Caller,
    event_id: FromQuery[str | None] = None,
    feed_id: FromQuery[str | None] = None,
    limit: FromQuery[int] = DEFAULT_LIMIT,
    cursor: FromQuery[str | None] = None,
) -> Page[PushRecord]:
    return await glimpze.push.log(
        principal.project_id,
        event_id=event_id,
        feed_id=feed_id,
        before=decode_cursor(cursor, int),
        limit=check_limit(limit),
    )


router = Router(
    "/push",
    route_handlers=[
        add_target,
        list_targets,
        delete_target,
        test_target,
        subscribe,
        unsubscribe,
        vapid_public_key,
        push_log,
    ],
    tags=["push"],
)
