"""`/v1/feeds`: create, list, read, change, delete feeds; rotate write keys; event log and widget."""

from __future__ import annotations

from typing import Literal

import msgspec
from litestar import Router, delete, get, patch, post
from litestar.params import FromPath, FromQuery

from glimpze.delivery.webhooks import DEFAULT_SECRET_GRACE_SECONDS
from glimpze.feeds.events import EventPage, Widget
from glimpze.feeds.feeds import CallbackSecret, Feed, NewFeed, SchemaType
from glimpze.store.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor
from glimpze.validation import Decoder
from glimpze.web.common import AnyRequest, App, Caller, read_json, refuse_idempotency_key


class FeedCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    schema_type: SchemaType
    plan: str | None = None
    topic: str | None = None  # the name ntfy clients publish to; unique in the project
    show_updated: bool = False  # the widget PNGs say when the feed was last updated


class FeedPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: str | msgspec.UnsetType = msgspec.UNSET
    plan: str | msgspec.UnsetType = msgspec.UNSET
    topic: str | None | msgspec.UnsetType = msgspec.UNSET  # null clears it
    show_updated: bool | msgspec.UnsetType = msgspec.UNSET


class RotateKey(msgspec.Struct, forbid_unknown_fields=True):
    grace_seconds: int = 0


class RotateCallbackSecret(msgspec.Struct, forbid_unknown_fields=True):
    grace_seconds: int = DEFAULT_SECRET_GRACE_SECONDS


FEED_CREATE: Decoder[FeedCreate] = Decoder(FeedCreate)
FEED_PATCH: Decoder[FeedPatch] = Decoder(FeedPatch)
ROTATE_KEY: Decoder[RotateKey] = Decoder(RotateKey)
ROTATE_CALLBACK_SECRET: Decoder[RotateCallbackSecret] = Decoder(RotateCallbackSecret)


@post("/", opt={"body": FeedCreate}, summary="Create a feed (the write key is shown only here)")
async def create_feed(request: AnyRequest, glimpze: App, principal: Caller) -> NewFeed:
    refuse_idempotency_key(request)
    data = await read_json(request, FEED_CREATE)
    return await glimpze.feeds.create(
        principal.project_id, data.name, data.schema_type, data.plan, data.topic, show_updated=data.show_updated
    )


@get("/", summary="List feeds, oldest first")
async def list_feeds(
    glimpze: App, principal: Caller, limit: FromQuery[int] = DEFAULT_LIMIT, cursor: FromQuery[str | None] = None
) -> Page[Feed]:
    after = decode_cursor(cursor, int)
    return await glimpze.feeds.page(principal.project_id, after=after, limit=check_limit(limit))


@get("/{feed_id:str}", summary="Read a feed, with its quota usage")
async def get_feed(feed_id: FromPath[str], glimpze: App, principal: Caller) -> Feed:
    return await glimpze.feeds.get(principal.project_id, feed_id)


@patch(
    "/{feed_id:str}",
    opt={"body": FeedPatch},
    summary="Rename a feed, change its plan, its topic, or whether its PNGs show when it was updated",
)
async def update_feed(feed_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller) -> Feed:
    data = await read_json(request, FEED_PATCH)
    return await glimpze.feeds.update(
        principal.project_id,
        feed_id,
        name=data.name or None if data.name is not msgspec.UNSET else None,
        plan_name=data.plan if data.plan is not msgspec.UNSET else None,
        topic=data.topic,
        show_updated=data.show_updated if data.show_updated is not msgspec.UNSET else None,
    )


@delete("/{feed_id:str}", summary="Delete a feed and its events")
async def delete_feed(feed_id: FromPath[str], glimpze: App, principal: Caller) -> None:
    await glimpze.feeds.delete(principal.project_id, feed_id)


@post(
    "/{feed_id:str}/rotate-key",
    status_code=200,
    opt={"body": RotateKey, "body_optional": True},
    summary="Replace the write key (the old one stops working after grace_seconds, default 0)",
)
async def rotate_feed_key(feed_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller) -> NewFeed:
    data = await read_json(request, ROTATE_KEY, empty=RotateKey())
    return await glimpze.feeds.rotate_key(principal.project_id, feed_id, data.grace_seconds)


@post(
    "/{feed_id:str}/rotate-read-token",
    status_code=200,
    summary="Replace the read token that widget readers (/w/…) use; the old one stops at once",
)
async def rotate_read_token(feed_id: FromPath[str], glimpze: App, principal: Caller) -> Feed:
    return await glimpze.feeds.rotate_read_token(principal.project_id, feed_id)


@post(
    "/{feed_id:str}/rotate-callback-secret",
    status_code=200,
    opt={"body": RotateCallbackSecret},
    summary="Approval feeds: new callback secret; the old one also signs for grace_seconds (default 24 h)",
)
async def rotate_callback_secret(
    feed_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller
) -> CallbackSecret:
    data = await read_json(request, ROTATE_CALLBACK_SECRET, empty=RotateCallbackSecret())
    return await glimpze.feeds.rotate_callback_secret(principal.project_id, feed_id, data.grace_seconds)


@get("/{feed_id:str}/events", summary="The feed's event log, newest first")
async def list_events(
    feed_id: FromPath[str],
    glimpze: App,
    principal: Caller,
    limit: FromQuery[int] = DEFAULT_LIMIT,
    cursor: FromQuery[str | None] = None,
    status: FromQuery[Literal["accepted", "throttled"] | None] = None,
) -> EventPage:
    return await glimpze.events.page(
        principal.project_id, feed_id, cursor=cursor, limit=check_limit(limit), status=status
    )


@get("/{feed_id:str}/widget", summary="The current widget state (event is null until the first update)")
async def get_widget(feed_id: FromPath[str], glimpze: App, principal: Caller) -> Widget:
    return await glimpze.events.widget(principal.project_id, feed_id)


router = Router(
    "/feeds",
    route_handlers=[
        create_feed,
        list_feeds,
        get_feed,
        update_feed,
        delete_feed,
        rotate_feed_key,
        rotate_read_token,
        rotate_callback_secret,
        list_events,
        get_widget,
    ],
    tags=["feeds"],
)
