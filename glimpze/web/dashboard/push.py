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
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Template

from glimpze.errors import GlimpzeError
from glimpze.push.quiet_hours import QuietHoursSpec
from glimpze.push.targets import PushTarget
from glimpze.store.pagination import MAX_LIMIT, all_pages
from glimpze.web.api.push import SUBSCRIPTION_SPEC, UNSUBSCRIBE
from glimpze.web.common import read_json
from glimpze.web.dashboard.approvals import duration
from glimpze.web.dashboard.web import (
    STREAM,
    attempt,
    convert,
    error_text,
    form_of,
    glimpze_of,
    notify,
    page,
    redirect,
    viewer,
)
from glimpze.web.problems import EXCEPTION_HANDLERS as PROBLEM_HANDLERS

AnyRequest = Request[Any, Any, Any]
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
    *,
    status: int = 200,
    target_url: str = "",
    target_error: str | None = None,
    quiet_form: dict[str, str] | None = None,
    quiet_error: str | None = None,
) -> Template:
    glimpze, v = glimpze_of(request), viewer(request)
    targets = await all_pages(lambda after: glimpze.push_targets.page(v.project_id, after=after, limit=MAX_LIMIT))
    quiet = glimpze.quiet_hours.state(v.project_id)
    recent = await glimpze.push.log(v.project_id, event_id=None, feed_id=None, before=None, limit=RECENT_PUSHES)
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
        push_messages=await glimpze.inbox.pushes_messages(v.project_id),
        target_url=target_url,
        target_error=target_error,
        pushes=recent.data,
        defer_words=duration(glimpze.config.push.defer_seconds),
        feed_interval=glimpze.config.push.feed_interval_seconds,
    )


@get(HERE, include_in_schema=False)
async def push_page(request: AnyRequest) -> Template:
    return await _push_page(request)


@post(f"{HERE}/targets", include_in_schema=False)
async def add_target(request: AnyRequest) -> Response[Any]:
    """Add an Apprise URL; a refused one re-renders the page with it and the reason."""
    glimpze, v = glimpze_of(request), viewer(request)
    form = await form_of(request)
    try:
        target = await glimpze.push_targets.add_apprise(v.project_id, form["url"])
    except GlimpzeError as exc:
        if exc.status >= 500:
            raise
        return await _push_page(request, status=exc.status, target_url=form["url"], target_error=error_text(exc))
    notify(request, f"Added the {target.service} target {target.url}. Send it a test to check it arrives.")
    return redirect(f"{HERE}#targets")


@post(f"{HERE}/targets/{{target_id:str}}/test", include_in_schema=False)
async def test_target(request: AnyRequest, target_id: FromPath[str]) -> Response[Any]:
    glimpze, v = glimpze_of(request), viewer(request)
    result = await glimpze.push.test(v.project_id, target_id)
    if result.status == "sent":
        notify(request, "Sent a test notification. It should be on its way to you now.")
    elif result.status == "removed":
        notify(request, f"The push service says this subscription is gone ({result.error}); removed it.", "error")
    else:
        notify(request, f"The test notification was not sent: {result.error}", "error")
    return redirect(f"{HERE}#targets")


@post(f"{HERE}/targets/{{target_id:str}}/delete", include_in_schema=False)
async def delete_target(request: AnyRequest, target_id: FromPath[str]) -> Response[Any]:
    glimpze, v = glimpze_of(request), viewer(request)

    async def action() -> str:
        await glimpze.push_targets.delete(v.project_id, target_id)
        return "Removed the push target."

    return await attempt(request, action, then=f"{HERE}#targets")


@post(f"{HERE}/quiet-hours", include_in_schema=False)
async def set_quiet_hours(request: AnyRequest) -> Response[Any]:
    glimpze, v = glimpze_of(request), viewer(request)
    form = await form_of(request)
    values = {"start": form["start"], "end": form["end"], "timezone": form["timezone"]}
    try:
        state = await glimpze.push.set_quiet_hours(v.project_id, convert(values, QuietHoursSpec))
    except GlimpzeError as exc:
        if exc.status >= 500:
            raise
        return await _push_page(request, status=exc.status, quiet_form=values, quiet_error=error_text(exc))
    now = " They are on now." if state.active_now else ""
    notify(request, f"Quiet hours are {state.start}–{state.end} ({state.timezone}).{now}")
    return redirect(f"{HERE}#quiet")


@post(f"{HERE}/visitor-messages", include_in_schema=False)
async def push_visitor_messages(request: AnyRequest) -> Response[Any]:
    """Push each new visitor message (a project setting, off by default)."""
    glimpze, v = glimpze_of(request), viewer(request)
    on = (await form_of(request)).checked("on")
    await glimpze.inbox.set_push_messages(v.project_id, on)
    notify(request, "New visitor messages are pushed to you." if on else "Visitor messages are not pushed.")
    return redirect(f"{HERE}#messages")


@post(f"{HERE}/quiet-hours/off", include_in_schema=False)
async def quiet_hours_off(request: AnyRequest) -> Response[Any]:
    glimpze, v = glimpze_of(request), viewer(request)
    await glimpze.push.clear_quiet_hours(v.project_id)
    notify(request, "Quiet hours are off: pushes go out at any hour.")
    return redirect(f"{HERE}#quiet")


# This browser's subscription: JSON from the page's script


@post(
    f"{HERE}/subscription",
    opt={STREAM: True},
    exception_handlers=PROBLEM_HANDLERS,
    include_in_schema=False,
)
async def subscribe(request: AnyRequest) -> PushTarget:
    """Save this browser's `PushSubscription.toJSON()` (the same endpoint again replaces its keys)."""
    glimpze, v = glimpze_of(request), viewer(request)
    return await glimpze.push_targets.subscribe(v.project_id, await read_json(request, SUBSCRIPTION_SPEC))


@post(
    f"{HERE}/subscription/delete",
    status_code=204,
    opt={STREAM: True},
    exception_handlers=PROBLEM_HANDLERS,
    include_in_schema=False,
)
async def unsubscribe(request: AnyRequest) -> None:
    """Forget this browser's subscription, by its endpoint `{"endpoint": …}`."""
    glimpze, v = glimpze_of(request), viewer(request)
    data = await read_json(request, UNSUBSCRIBE)
    await glimpze.push_targets.unsubscribe(v.project_id, data.endpoint)


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
