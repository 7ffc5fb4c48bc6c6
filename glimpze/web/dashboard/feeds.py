"""Feeds: the list with the create dialog, and a feed's page (event log, usage, keys, read-token links).

Creating a feed (or rotating its write key) shows the key once: it travels to the next page in
a one-time notice, never in a URL, and the page opens the quick-start dialog with the webhook
URL, the key and ready-to-run snippets that use it.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from litestar import get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from glimpze.config import Config, Plan
from glimpze.delivery.webhooks import DEFAULT_SECRET_GRACE_SECONDS
from glimpze.errors import GlimpzeError
from glimpze.feeds.events import ApprovalView, Event
from glimpze.feeds.feeds import Feed
from glimpze.feeds.ingest import JsonSubmission
from glimpze.feeds.tiles import DEFAULT_SIZES, Placement, TileSettings
from glimpze.store.pagination import DEFAULT_LIMIT
from glimpze.web.common import AnyRequest, App
from glimpze.web.dashboard.home import PreviewFeed, TileView, one_tile
from glimpze.web.dashboard.snippets import example_event, snippets, upload_snippet
from glimpze.web.dashboard.web import (
    DashboardUi,
    ShownKey,
    SignedIn,
    attempt,
    convert,
    field_errors,
    form_of,
    notify,
    page,
    redirect,
)
from glimpze.web.dashboard.widgets import SIZES, describe, project_feeds

SCHEMAS = [
    ("summary", "Summary", "A title with a main value and an optional second one: revenue, balances."),
    ("status", "Status", "Success, warning, info or error with a message: health checks, deploys."),
    ("counter", "Counter", "A number with a unit and a trend: signups, queue length."),
    ("approval", "Approval", "A question answered with Approve, Reject or Defer, sent back to a callback URL."),
    ("custom", "Custom image", "Your own images at each widget size (plans with custom feeds only)."),
]


EXPECTED_CHOICES = [
    ("", "No expectation"),
    ("300", "5 minutes"),
    ("900", "15 minutes"),
    ("3600", "1 hour"),
    ("21600", "6 hours"),
    ("86400", "1 day"),
    ("604800", "1 week"),
]


def _plans(config: Config) -> list[tuple[str, Plan]]:
    """The plans in tier order: the smallest quotas first (free, pro, power), ties by name."""

    def tier(item: tuple[str, Plan]) -> tuple[int, int, int, int, str]:
        name, plan = item
        return (plan.events_per_day, plan.events_per_minute, plan.history_days, plan.custom_feeds, name)

    return sorted(config.plans.items(), key=tier)


def schema_previews(base_url: str) -> dict[str, TileView]:
    """Each schema's example widget as a tile, for the create dialog's schema picker."""
    previews = {}
    for key, label, _ in SCHEMAS:
        example = example_event(key, label, base_url)
        event = Event(
            id=f"example-{key}",
            feed_id="",
            status="accepted",
            schema_type=key,
            content=example["content"],
            metadata={},
            intent={},
            received_at="",
            widget_updated=True,
            push="none",
        )
        previews[key] = TileView(
            feed=PreviewFeed(f"example-{key}", label, key),
            size=DEFAULT_SIZES[key],
            event=event,
            approval=ApprovalView("pending", 1) if key == "approval" else None,
            expected_seconds=None,
            stale=False,
            label=describe(key, example["content"]),
            link=None,
            preview=True,
        )
    return previews


def _feeds_page(
    request: AnyRequest,
    config: Config,
    feeds: list[Feed],
    *,
    dialog: bool,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Template:
    return page(
        request,
        "feeds.html",
        title="Feeds",
        section="feeds",
        status=status,
        feeds=feeds,
        schemas=SCHEMAS,
        plans=_plans(config),
        default_plan=config.default_plan,
        dialog=dialog,
        form=form or {},
        errors=errors or {},
        first_error=next(iter(errors or {}), None),
        previews=schema_previews(config.base_url),
    )


@get("/feeds")
async def feeds_page(
    request: AnyRequest, glimpze: App, viewer: SignedIn, new: FromQuery[str | None] = None
) -> Template:
    feeds = await project_feeds(glimpze, viewer.project_id)
    return _feeds_page(request, glimpze.config, feeds, dialog=new is not None)


@post("/feeds")
async def create_feed(request: AnyRequest, glimpze: App, viewer: SignedIn) -> Template | Redirect:
    form = await form_of(request)
    try:
        feed = await glimpze.feeds.create(viewer.project_id, form["name"], form["schema_type"], form["plan"] or None)
    except GlimpzeError as exc:
        if exc.status >= 500:
            raise
        feeds = await project_feeds(glimpze, viewer.project_id)
        errors = field_errors(exc)
        return _feeds_page(
            request, glimpze.config, feeds, dialog=True, form=form.values(), errors=errors, status=exc.status
        )
    notify(request, f"Created the feed “{feed.name}”.", shown_key=ShownKey(feed.id, feed.write_key))
    return redirect(f"/feeds/{feed.id}")


@get("/feeds/{feed_id:str}")
async def feed_page(
    request: AnyRequest,
    glimpze: App,
    viewer: SignedIn,
    ui: DashboardUi,
    feed_id: FromPath[str],
    cursor: FromQuery[str | None] = None,
    status: FromQuery[Literal["accepted", "throttled"] | None] = None,
) -> Template:
    feed = await glimpze.feeds.get(viewer.project_id, feed_id)
    log = await glimpze.events.page(viewer.project_id, feed_id, cursor=cursor, limit=DEFAULT_LIMIT, status=status)
    # A key shown once: the notice that carries it opens the quick-start dialog instead.
    notices = ui.notices.take(viewer.session.key)
    reveal = next((n for n in notices if n.shown_key and n.shown_key.feed_id == feed.id), None)
    write_key = reveal.shown_key.write_key if reveal and reveal.shown_key else None
    base = glimpze.config.base_url
    tile = await one_tile(glimpze, viewer.project_id, feed_id)
    placement = await glimpze.tiles.placement(feed_id)
    return page(
        request,
        "feed.html",
        title=feed.name,
        section="feeds",
        feed=feed,
        plan=glimpze.config.plans.get(feed.plan),
        plans=_plans(glimpze.config),
        events=[(event, describe(event.schema_type, event.content)) for event in log.data],
        next_cursor=log.next_cursor,
        status_filter=status,
        throttled_dropped=log.throttled_dropped,
        reveal=reveal,
        notices=[n for n in notices if n is not reveal],
        request_cursor=cursor,
        write_key=write_key,
        snippets=snippets(feed.schema_type, feed.name, feed.webhook_url, base, write_key),
        upload=upload_snippet(feed.webhook_url, write_key) if feed.schema_type == "custom" else None,
        sizes=SIZES,
        reader_json=f"{base}/w/{feed.id}.json?token={feed.read_token}",
        reader_png=f"{base}/w/{feed.id}/medium.png?token={feed.read_token}",
        reader_pngs=[(size, f"{base}/w/{feed.id}/{size}.png?token={feed.read_token}") for size in SIZES],
        callback=await glimpze.feeds.callback_secret(viewer.project_id, feed_id)
        if feed.schema_type == "approval"
        else None,
        grace_hours=DEFAULT_SECRET_GRACE_SECONDS // 3600,
        tile=tile,
        version=tile.event.id if tile.event else "none",
        tile_sizes=[("", f"Its usual size ({DEFAULT_SIZES.get(feed.schema_type, 'small')})")]
        + [(size, size.capitalize()) for size in SIZES],
        tile_size_chosen=placement.size or "",
        expected_choices=_expected_choices(placement),
        expected_chosen="" if placement.expected_seconds is None else str(int(placement.expected_seconds)),
    )


def _expected_choices(placement: Placement) -> list[tuple[str, str]]:
    choices = list(EXPECTED_CHOICES)
    if placement.expected_seconds is not None and str(int(placement.expected_seconds)) not in dict(choices):
        seconds = int(placement.expected_seconds)  # set through another route: keep it choosable
        choices.append((str(seconds), f"{seconds} seconds"))
    return choices


@post("/feeds/{feed_id:str}/tile")
async def save_tile(request: AnyRequest, glimpze: App, viewer: SignedIn, feed_id: FromPath[str]) -> Redirect:
    """The feed's tile on Home: its size and how often events are expected."""
    form = await form_of(request)

    async def save() -> str:
        expected = form["expected_seconds"]
        values = {"size": form["size"] or None, "expected_seconds": float(expected) if expected.isdigit() else None}
        if expected and not expected.isdigit():
            values["expected_seconds"] = expected  # let the conversion name the bad value
        await glimpze.tiles.configure(viewer.project_id, feed_id, convert(values, TileSettings))
        return "Saved the tile."

    return await attempt(request, save, then=f"/feeds/{feed_id}", failed="Not saved.")


@post("/feeds/{feed_id:str}")
async def update_feed(request: AnyRequest, glimpze: App, viewer: SignedIn, feed_id: FromPath[str]) -> Redirect:
    form = await form_of(request)

    async def save() -> str:
        name, plan = form["name"] or None, form["plan"] or None
        topic = form["topic"] or None if "topic" in form.data else msgspec.UNSET  # an empty field clears it
        feed = await glimpze.feeds.update(viewer.project_id, feed_id, name=name, plan_name=plan, topic=topic)
        return f"Saved “{feed.name}” (plan {feed.plan})."

    return await attempt(request, save, then=f"/feeds/{feed_id}", failed="Not saved.")


@post("/feeds/{feed_id:str}/rotate-key")
async def rotate_key(request: AnyRequest, glimpze: App, viewer: SignedIn, feed_id: FromPath[str]) -> Redirect:
    feed = await glimpze.feeds.rotate_key(viewer.project_id, feed_id)
    notify(
        request,
        "Made a new write key; the old one no longer works. Update every sender.",
        shown_key=ShownKey(feed.id, feed.write_key, rotated=True),
    )
    return redirect(f"/feeds/{feed_id}")


@post("/feeds/{feed_id:str}/rotate-read-token")
async def rotate_read_token(request: AnyRequest, glimpze: App, viewer: SignedIn, feed_id: FromPath[str]) -> Redirect:
    await glimpze.feeds.rotate_read_token(viewer.project_id, feed_id)
    notify(request, "Made a new read token; devices using the old links need the new ones.")
    return redirect(f"/feeds/{feed_id}#read")


@post("/feeds/{feed_id:str}/rotate-callback-secret")
async def rotate_callback_secret(
    request: AnyRequest, glimpze: App, viewer: SignedIn, feed_id: FromPath[str]
) -> Redirect:
    """Approval feeds: a new secret signs callbacks; the old one signs beside it for a day."""

    async def action() -> None:
        secret = await glimpze.feeds.rotate_callback_secret(viewer.project_id, feed_id, DEFAULT_SECRET_GRACE_SECONDS)
        hours = DEFAULT_SECRET_GRACE_SECONDS // 3600
        text = f"Made a new callback secret. The old one keeps signing beside it for {hours} hours."
        notify(request, text, secret=secret.callback_secret, secret_label="New callback secret")

    return await attempt(request, action, then=f"/feeds/{feed_id}#callbacks")


@post("/feeds/{feed_id:str}/test-event")
async def test_event(request: AnyRequest, glimpze: App, viewer: SignedIn, feed_id: FromPath[str]) -> Redirect:
    """Send the feed its example event through the ingest pipeline (quota included), as a sender would."""
    row = await glimpze.feeds.row(viewer.project_id, feed_id)
    feed = await glimpze.feeds.get(viewer.project_id, feed_id)
    event = example_event(feed.schema_type, feed.name, glimpze.config.base_url)
    event.pop("callback", None)  # no example.com callbacks from a test
    submission = JsonSubmission(msgspec.json.encode(event), feed.schema_type)

    async def send() -> str:
        await glimpze.ingest.submit(glimpze.feeds.state(row), submission, None)
        return "Sent a test event; the widget shows it now."

    return await attempt(request, send, then=f"/feeds/{feed_id}", failed="The test event was refused:")


@post("/feeds/{feed_id:str}/delete")
async def delete_feed(request: AnyRequest, glimpze: App, viewer: SignedIn, feed_id: FromPath[str]) -> Redirect:
    feed = await glimpze.feeds.get(viewer.project_id, feed_id)
    await glimpze.feeds.delete(viewer.project_id, feed_id)
    notify(request, f"Deleted the feed “{feed.name}” and its events.")
    return redirect("/feeds")


ROUTES = [
    feeds_page,
    create_feed,
    feed_page,
    update_feed,
    rotate_key,
    rotate_read_token,
    rotate_callback_secret,
    test_event,
    delete_feed,
    save_tile,
]
