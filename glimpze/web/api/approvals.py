"""`/v1/approvals`: list approvals, read one with its answers, and answer one."""

from __future__ import annotations

from typing import Literal

import msgspec
from litestar import Router, get, post
from litestar.params import FromPath, FromQuery

from glimpze.push.approvals import Approval, ApprovalDetail
from glimpze.store.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor
from glimpze.validation import Decoder
from glimpze.web.common import AnyRequest, App, Caller, read_json


class Respond(msgspec.Struct, forbid_unknown_fields=True):
    """The body of POST /v1/approvals/{event_id}/respond."""

    action_type: Literal["approve", "reject", "defer"]


RESPOND: Decoder[Respond] = Decoder(Respond)


@get("/", summary="Approvals, newest first (?status=pending|approved|rejected)")
async def list_approvals(
    glimpze: App,
    principal: Caller,
    status: FromQuery[Literal["pending", "approved", "rejected"] | None] = None,
    limit: FromQuery[int] = DEFAULT_LIMIT,
    cursor: FromQuery[str | None] = None,
) -> Page[Approval]:
    return await glimpze.approvals.page(
        principal.project_id, status=status, before=decode_cursor(cursor, int), limit=check_limit(limit)
    )


@get("/{event_id:str}", summary="One approval with every answer it got and their callbacks")
async def get_approval(event_id: FromPath[str], glimpze: App, principal: Caller) -> ApprovalDetail:
    return await glimpze.approvals.get(principal.project_id, event_id)


@post(
    "/{event_id:str}/respond",
    status_code=200,
    opt={"body": Respond},
    summary="Approve, reject or defer (the first approve or reject decides; later answers are 409)",
)
async def respond(event_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller) -> ApprovalDetail:
    data = await read_json(request, RESPOND)
    return await glimpze.approvals.respond(principal.project_id, event_id, data.action_type, principal.key_name)


router = Router("/approvals", route_handlers=[list_approvals, get_approval, respond], tags=["approvals"])
