"""Webhooks: add and edit subscriptions (events, feeds, headers, active), their state (active, failing,
disabled) and deliveries counted by state, the delivery log (live: a test send's row changes as its
attempts are recorded), the delivery inspector (the request as sent, each attempt's answer, replay),
replay every failed delivery, send a test, rotate the secret."""

from __future__ import annotations

from typing import Literal

from litestar import get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from glimpze.delivery.outbox import EVENT_TYPES
from glimpze.delivery.webhook_shapes import Webhook, WebhookPatch, WebhookSpec
from glimpze.delivery.webhooks import DEFAULT_SECRET_GRACE_SECONDS
from glimpze.errors import GlimpzeError, ValidationFailed
from glimpze.services import Services
from glimpze.store.pagination import DEFAULT_LIMIT, MAX_LIMIT, all_pages, decode_cursor
from glimpze.web.common import AnyRequest, App
from glimpze.web.dashboard.web import (
    Form,
    SignedIn,
    attempt,
    convert,
    field_errors,
    form_of,
    notify,
    page,
    redirect,
)

ALL_EVENTS = "*"
FormValues = dict[str, str | bool | list[str]]  # a refused form, shown again: text fields, events, checkboxes


def parse_headers(text: str) -> dict[str, str]:
    """`Name: value` lines (blank lines ignored) into the webhook's custom headers."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValidationFailed.at("$.headers", f"line {number}: write each header as 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


def headers_text(headers: dict[str, str]) -> str:
    return "\n".join(f"{name}: {value}" for name, value in headers.items())


def _spec_values(form: Form) -> dict[str, object]:
    events = form.all("events")
    return {
        "url": form["url"],
        "events": [ALL_EVENTS] if ALL_EVENTS in events else events,
        "feed_ids": form.all("feed_ids"),  # none checked: every feed
        "description": form["description"],
        "headers": parse_headers(form.raw("headers")),
        "active": form.checked("active"),
        "ordered": form.checked("ordered"),
    }


async def _all_webhooks(glimpze: Services, project_id: str) -> list[Webhook]:
    return await all_pages(lambda after: glimpze.webhooks.list(project_id, after=after, limit=MAX_LIMIT))


async def _feed_choices(glimpze: Services, project_id: str) -> list[tuple[str, str]]:
    """(id, name) of the project's feeds, for the form's feed filter."""
    feeds = await all_pages(lambda after: glimpze.feeds.page(project_id, after=after, limit=MAX_LIMIT))
    return [(feed.id, feed.name) for feed in feeds]


async def _list_page(
    request: AnyRequest,
    glimpze: Services,
    hooks: list[Webhook],
    *,
    project_id: str,
    dialog: bool,
    form: FormValues | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Template:
    counts = await glimpze.inspector.counts([hook.id for hook in hooks])
    return page(
        request,
        "webhooks.html",
        title="Webhooks",
        section="webhooks",
        status=status,
        hooks=hooks,
        counts_of=counts,
        event_types=EVENT_TYPES,
        feed_choices=await _feed_choices(glimpze, project_id),
        dialog=dialog,
        form=form or {"events": [ALL_EVENTS], "active": True},
        errors=errors or {},
        first_error=next(iter(errors or {}), None),
    )


@get("/webhooks")
async def webhooks_page(
    request: AnyRequest, glimpze: App, viewer: SignedIn, new: FromQuery[str | None] = None
) -> Template:
    hooks = await _all_webhooks(glimpze, viewer.project_id)
    return await _list_page(request, glimpze, hooks, project_id=viewer.project_id, dialog=new is not None)


@post("/webhooks")
async def create_webhook(request: AnyRequest, glimpze: App, viewer: SignedIn) -> Template | Redirect:
    form = await form_of(request)
    try:
        spec = convert(_spec_values(form), WebhookSpec)
        hook = await glimpze.webhooks.create(viewer.project_id, spec)
    except GlimpzeError as exc:
        if exc.status >= 500:
            raise
        values: FormValues = {
            **form.values(),
            "events": form.all("events"),
            "feed_ids": form.all("feed_ids"),
            "active": form.checked("active"),
            "ordered": form.checked("ordered"),
        }
        hooks = await _all_webhooks(glimpze, viewer.project_id)
        errors = field_errors(exc)
        return await _list_page(
            request,
            glimpze,
            hooks,
            project_id=viewer.project_id,
            dialog=True,
            form=values,
            errors=errors,
            status=exc.status,
        )
    notify(
        request,
        "Added the webhook. Verify deliveries with its signing secret:",
        secret=hook.secret,
        secret_label="Signing secret",
    )
    return redirect(f"/webhooks/{hook.id}")


@get("/webhooks/{webhook_id:str}")
async def webhook_page(
    request: AnyRequest,
    glimpze: App,
    viewer: SignedIn,
    webhook_id: FromPath[str],
    status: FromQuery[Literal["pending", "failed", "delivered", "dead"] | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Template:
    hook = await glimpze.webhooks.get(viewer.project_id, webhook_id)
    secret = await glimpze.webhooks.secret(viewer.project_id, webhook_id)
    log = await glimpze.webhooks.delivery_log(
        viewer.project_id, webhook_id, status=status, before=decode_cursor(cursor, int), limit=DEFAULT_LIMIT
    )
    counts = (await glimpze.inspector.counts([hook.id]))[hook.id]
    return page(
        request,
        "webhook.html",
        title=f"Webhook {hook.url}",
        section="webhooks",
        hook=hook,
        delivery_counts=counts,
        secret=secret,
        deliveries=log.data,
        next_cursor=log.next_cursor,
        status_filter=status,
        request_cursor=cursor,
        event_types=EVENT_TYPES,
        feed_choices=await _feed_choices(glimpze, viewer.project_id),
        headers_text=headers_text(hook.headers),
        grace_hours=DEFAULT_SECRET_GRACE_SECONDS // 3600,
    )


@post("/webhooks/{webhook_id:str}")
async def update_webhook(request: AnyRequest, glimpze: App, viewer: SignedIn, webhook_id: FromPath[str]) -> Redirect:
    form = await form_of(request)

    async def save() -> str:
        await glimpze.webhooks.update(viewer.project_id, webhook_id, convert(_spec_values(form), WebhookPatch))
        return "Saved the webhook."

    return await attempt(request, save, then=f"/webhooks/{webhook_id}", failed="Not saved.")


@post("/webhooks/{webhook_id:str}/test")
async def send_test(request: AnyRequest, glimpze: App, viewer: SignedIn, webhook_id: FromPath[str]) -> Redirect:

    async def send() -> str:
        await glimpze.webhooks.test(viewer.project_id, webhook_id)
        return "Queued a webhook.test event; it appears in the delivery log below."

    return await attempt(request, send, then=f"/webhooks/{webhook_id}")


@post("/webhooks/{webhook_id:str}/rotate-secret")
async def rotate_secret(request: AnyRequest, glimpze: App, viewer: SignedIn, webhook_id: FromPath[str]) -> Redirect:
    secret = await glimpze.webhooks.rotate_secret(viewer.project_id, webhook_id, DEFAULT_SECRET_GRACE_SECONDS)
    notify(
        request,
        f"Made a new signing secret. The old one keeps signing beside it for {DEFAULT_SECRET_GRACE_SECONDS // 3600} "
        "hours, so receivers can switch over.",
        secret=secret.secret,
        secret_label="New signing secret",
    )
    return redirect(f"/webhooks/{webhook_id}")


@post("/webhooks/{webhook_id:str}/replay")
async def replay_failed(request: AnyRequest, glimpze: App, viewer: SignedIn, webhook_id: FromPath[str]) -> Redirect:
    form = await form_of(request)
    which = form["status"] if form["status"] in ("failed", "dead", "all") else "failed"
    result = await glimpze.webhooks.replay_many(viewer.project_id, webhook_id, since=None, status=which)
    count = result.replayed
    notify(request, f"Queued {count} deliver{'y' if count == 1 else 'ies'} again.")
    return redirect(f"/webhooks/{webhook_id}")


@get("/deliveries/{delivery_id:str}")
async def delivery_page(request: AnyRequest, glimpze: App, viewer: SignedIn, delivery_id: FromPath[str]) -> Template:
    """The delivery inspector: the request as sent, every attempt with its answer, and replay."""
    delivery = await glimpze.webhooks.delivery(viewer.project_id, delivery_id)
    sent = await glimpze.inspector.sent(viewer.project_id, delivery_id)
    hook = None if delivery.webhook_id is None else await glimpze.webhooks.get(viewer.project_id, delivery.webhook_id)
    return page(
        request,
        "delivery.html",
        title=f"Delivery {delivery.id}",
        section="webhooks",
        delivery=delivery,
        sent=sent,
        hook=hook,
    )


@post("/deliveries/{delivery_id:str}/replay")
async def replay_one(request: AnyRequest, glimpze: App, viewer: SignedIn, delivery_id: FromPath[str]) -> Redirect:
    form = await form_of(request)
    delivery = await glimpze.webhooks.replay(viewer.project_id, delivery_id)
    notify(request, f"Queued delivery {delivery.id} again.")
    back = f"/deliveries/{delivery.id}" if form["next"] == "inspector" else f"/webhooks/{delivery.webhook_id}"
    return redirect(back)


@post("/webhooks/{webhook_id:str}/delete")
async def delete_webhook(request: AnyRequest, glimpze: App, viewer: SignedIn, webhook_id: FromPath[str]) -> Redirect:
    hook = await glimpze.webhooks.get(viewer.project_id, webhook_id)
    await glimpze.webhooks.delete(viewer.project_id, webhook_id)
    notify(request, f"Deleted the webhook for {hook.url} and its deliveries.")
    return redirect("/webhooks")


ROUTES = [
    webhooks_page,
    create_webhook,
    webhook_page,
    update_webhook,
    send_test,
    rotate_secret,
    replay_failed,
    delivery_page,
    replay_one,
    delete_webhook,
]
