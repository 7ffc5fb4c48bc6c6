"""Approvals: the inbox (pending approvals with Approve / Reject / Defer, the decided ones with who
and when, in the order they were decided), one approval with every answer it got and its
callback, and answering one.

Answers go through the same service as `POST /v1/approvals/{event_id}/respond`, recorded as
`dashboard`; the first approve or reject decides and the callback goes out as a delivery. The
pages follow `/live`: an `approval` notice (requested or answered anywhere) redraws them.
"""

from __future__ import annotations

from typing import Literal

from litestar import get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from glimpze.push.approvals import Approval
from glimpze.store.pagination import DEFAULT_LIMIT, MAX_LIMIT, all_pages, decode_cursor
from glimpze.web.api.approvals import Respond
from glimpze.web.common import AnyRequest, App
from glimpze.web.dashboard.web import SignedIn, attempt, convert, form_of, local_path, page

ACTOR = "dashboard"  # DESIGN §7: decisions record who took them
MAX_PENDING_SHOWN = 200
DONE = {"approve": "Approved", "reject": "Rejected"}


def duration(seconds: float) -> str:
    """A delay in words: '45 minutes', '1 hour', '2.5 hours'."""
    if seconds < 3600:
        minutes = max(1, round(seconds / 60))
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = seconds / 3600
    return f"{hours:g} hour{'s' if hours != 1 else ''}"


@get("/approvals")
async def approvals_page(
    request: AnyRequest,
    glimpze: App,
    viewer: SignedIn,
    decided: FromQuery[Literal["approved", "rejected"] | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Template:
    pending: list[Approval] = await all_pages(
        lambda before: glimpze.approvals.page(viewer.project_id, status="pending", before=before, limit=MAX_LIMIT),
        most=MAX_PENDING_SHOWN,
    )
    history = await glimpze.approvals.decided(
        viewer.project_id, status=decided, before=decode_cursor(cursor, float, int), limit=DEFAULT_LIMIT
    )
    return page(
        request,
        "approvals.html",
        title="Approvals",
        section="approvals",
        pending=pending,
        decided=history.data,
        next_cursor=history.next_cursor,
        request_cursor=cursor,
        decided_filter=decided,
        defer_words=duration(glimpze.config.push.defer_seconds),
    )


@get("/approvals/{event_id:str}")
async def approval_page(request: AnyRequest, glimpze: App, viewer: SignedIn, event_id: FromPath[str]) -> Template:
    approval = await glimpze.approvals.get(viewer.project_id, event_id)
    return page(
        request,
        "approval.html",
        title=approval.description or "Approval",
        section="approvals",
        approval=approval,
        defer_words=duration(glimpze.config.push.defer_seconds),
    )


@post("/approvals/{event_id:str}/respond")
async def respond(request: AnyRequest, glimpze: App, viewer: SignedIn, event_id: FromPath[str]) -> Redirect:
    """One of the three buttons: approve, reject or defer (the form's `action_type`)."""
    form = await form_of(request)

    async def action() -> str:
        answer = convert({"action_type": form["action_type"]}, Respond).action_type
        approval = await glimpze.approvals.respond(viewer.project_id, event_id, answer, ACTOR)
        what = f"“{approval.description}”"
        if answer == "defer":
            later = duration(glimpze.config.push.defer_seconds)
            return f"Deferred {what}: it stays pending and is pushed to you again in {later}."
        sent = " Its callback is on its way." if approval.callback else ""
        return f"{DONE[answer]} {what}.{sent}"

    return await attempt(request, action, then=local_path(form["next"], f"/approvals/{event_id}"))


ROUTES = [approvals_page, approval_page, respond]
