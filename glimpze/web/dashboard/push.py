"""Push settings (`/settings/push`): this browser's Web Push subscription, the project's push targets
(Apprise URLs and subscriptions: add, send a test, delete), whether visitor messages are pushed
(inbox.py), quiet hours, and the recent pushes.

All of it goes through the push services of `/v1/push` and `/v1/settings/quiet-hours`. The page
carries the server's VAPID public key; the script subscribes through the service worker and sends
the subscription here as JSON (`X-CSRF-Token` header); those two routes answer problem+json, as
the API does, since a script reads them.
"""

from __future__ import annotations

import functools
import zoneinfo

from litestar import get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from glimpze.errors import GlimpzeError
from glimpze.push.quiet_hours import QuietHoursSpec
from glimpze.push.targets import PushTarget
from glimpze.services import Services
from glimpze.store.pagination import MAX_LIMIT, all_pages
from glimpze.web.api.push import SUBSCRIPTION_SPEC, UNSUBSCRIBE
from glimpze.web.common import AnyRequest, App, read_json
from glimpze.web.dashboard.approvals import duration
from glimpze.web.dashboard.web import (
    STREAM,
    SignedIn,
    Viewer,
    attempt,
    convert,
    error_text,
    form_of,
    notify,
    page,
    redirect,
)
from glimpze.web.problems import EXCEPTION_HANDLERS as PROBLEM_HANDLERS

RECENT_PUSHES = 20
HERE = "/settings/push"


@functools.cache
def time_zones() -> list[str]:
    """The IANA time zones this system knows, for the quiet hours' picker."""
    return sorted(name for name in zoneinfo.available_timezones() if "/" in name or name == "UTC")


@functools.cache
def time_zone_groups() -> list[tuple[str, list[str]]]:
    """The time zones by region (Africa, America, …), the picker's groups; UTC first."""
    groups: dict[str, list[str]] = {"UTC": ["UTC"]}
    for name in time_zones():
        region = name.split("/", 1)[0]
        if name == "UTC" or region in ("Etc", "SystemV", "US", "Canada", "Brazil", "Mexico", "Chile"):
            continue  # aliases of zones listed under their region
        groups.setdefault(region, []).append(name)
    return list(groups.items())


async def _push_page(
    request: AnyRequest,
    glimpze: Services,
    viewer: Viewer,
    *,
    status: int = 200,
    target_url: str = "",
    target_error: str | None = None,
    quiet_form: dict[str, str] | None = None,
    quiet_error: str | None = None,
) -> Template:
    project_id = viewer.project_id
    targets = await all_pages(lambda after: glimpze.push_targets.page(project_id, after=after, limit=MAX_LIMIT))
    quiet = glimpze.quiet_hours.state(project_id)
    recent = await glimpze.push.log(project_id, event_id=None, feed_id=None, before=None, limit=RECENT_PUSHES)
    names = {t.id: f"{t.service} ({t.url})" for t in targets}
    return page(
        request,
        "push.html",
        title="Push notifications",
        section="settings",
        status=status,
        targets=targets,
        target_names=names,
        vapid_key=await glimpze.webpush.key(),
        quiet=quiet,
        quiet_form=quiet_form
        or {"start": quiet.start or "22:00", "end": quiet.end or "07:00", "timezone": quiet.timezone},
        quiet_error=quiet_error,
        time_zone_groups=time_zone_groups(),
        known_zones=frozenset(time_zones()),
        push_messages=await glimpze.inbox.pushes_messages(project_id),
        target_url=target_url,
        target_error=target_error,
        pushes=recent.data,
        defer_words=duration(glimpze.config.push.defer_seconds),
        feed_interval=glimpze.config.push.feed_interval_seconds,
    )


@get(HERE)
async def push_page(request: AnyRequest, glimpze: App, viewer: SignedIn) -> Template:
    return await _push_page(request, glimpze, viewer)


@post(f"{HERE}/targets")
async def add_target(request: AnyRequest, glimpze: App, viewer: SignedIn) -> Template | Redirect:
    """Add an Apprise URL; a refused one re-renders the page with it and the reason."""
    form = await form_of(request)
    try:
        target = await glimpze.push_targets.add_apprise(viewer.project_id, form["url"])
    except GlimpzeError as exc:
        if exc.status >= 500:
            raise
        error = error_text(exc)
        return await _push_page(request, glimpze, viewer, status=exc.status, target_url=form["url"], target_error=error)
    notify(request, f"Added the {target.service} target {target.url}. Send it a test to check it arrives.")
    return redirect(f"{HERE}#targets")


@post(f"{HERE}/targets/{{target_id:str}}/test")
async def test_target(request: AnyRequest, glimpze: App, viewer: SignedIn, target_id: FromPath[str]) -> Redirect:
    result = await glimpze.push.test(viewer.project_id, target_id)
    if result.status == "sent":
        notify(request, "Sent a test notification. It should be on its way to you now.")
    elif result.status == "removed":
        notify(request, f"The push service says this subscription is gone ({result.error}); removed it.", "error")
    else:
        notify(request, f"The test notification was not sent: {result.error}", "error")
    return redirect(f"{HERE}#targets")


@post(f"{HERE}/targets/{{target_id:str}}/delete")
async def delete_target(request: AnyRequest, glimpze: App, viewer: SignedIn, target_id: FromPath[str]) -> Redirect:

    async def action() -> str:
        await glimpze.push_targets.delete(viewer.project_id, target_id)
        return "Removed the push target."

    return await attempt(request, action, then=f"{HERE}#targets")


@post(f"{HERE}/quiet-hours")
async def set_quiet_hours(request: AnyRequest, glimpze: App, viewer: SignedIn) -> Template | Redirect:
    form = await form_of(request)
    values = {"start": form["start"], "end": form["end"], "timezone": form["timezone"]}
    try:
        state = await glimpze.push.set_quiet_hours(viewer.project_id, convert(values, QuietHoursSpec))
    except GlimpzeError as exc:
        if exc.status >= 500:
            raise
        error = error_text(exc)
        return await _push_page(request, glimpze, viewer, status=exc.status, quiet_form=values, quiet_error=error)
    now = " They are on now." if state.active_now else ""
    notify(request, f"Quiet hours are {state.start}–{state.end} ({state.timezone}).{now}")
    return redirect(f"{HERE}#quiet")


@post(f"{HERE}/visitor-messages")
async def push_visitor_messages(request: AnyRequest, glimpze: App, viewer: SignedIn) -> Redirect:
    """Push each new visitor message (a project setting, off by default)."""
    on = (await form_of(request)).checked("on")
    await glimpze.inbox.set_push_messages(viewer.project_id, on)
    notify(request, "New visitor messages are pushed to you." if on else "Visitor messages are not pushed.")
    return redirect(f"{HERE}#messages")


@post(f"{HERE}/quiet-hours/off")
async def quiet_hours_off(request: AnyRequest, glimpze: App, viewer: SignedIn) -> Redirect:
    await glimpze.push.clear_quiet_hours(viewer.project_id)
    notify(request, "Quiet hours are off: pushes go out at any hour.")
    return redirect(f"{HERE}#quiet")


# This browser's subscription: JSON from the page's script


@post(
    f"{HERE}/subscription",
    opt={STREAM: True},
    exception_handlers=PROBLEM_HANDLERS,
)
async def subscribe(request: AnyRequest, glimpze: App, viewer: SignedIn) -> PushTarget:
    """Save this browser's `PushSubscription.toJSON()` (the same endpoint again replaces its keys)."""
    return await glimpze.push_targets.subscribe(viewer.project_id, await read_json(request, SUBSCRIPTION_SPEC))


@post(
    f"{HERE}/subscription/delete",
    status_code=204,
    opt={STREAM: True},
    exception_handlers=PROBLEM_HANDLERS,
)
async def unsubscribe(request: AnyRequest, glimpze: App, viewer: SignedIn) -> None:
    """Forget this browser's subscription, by its endpoint `{"endpoint": …}`."""
    data = await read_json(request, UNSUBSCRIBE)
    await glimpze.push_targets.unsubscribe(viewer.project_id, data.endpoint)


ROUTES = [
    push_page,
    add_target,
    test_target,
    delete_target,
    push_visitor_messages,
    set_quiet_hours,
    quiet_hours_off,
    subscribe,
    unsubscribe,
]
