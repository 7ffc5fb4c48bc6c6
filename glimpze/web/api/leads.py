"""`/v1/leads`: capture (upsert by email, then phone), list for CRM sync, read, set the CRM mapping."""

from __future__ import annotations

from litestar import Response, Router, get, patch, post
from litestar.params import FromPath, FromQuery

from glimpze.chat.leads import Lead, LeadCapture, LeadPatch
from glimpze.clock import parse_iso
from glimpze.errors import ValidationFailed
from glimpze.store.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor
from glimpze.validation import Decoder
from glimpze.web.common import AnyRequest, App, Caller, create_once, created, read_json

LEAD_CAPTURE: Decoder[LeadCapture] = Decoder(LeadCapture)
LEAD_PATCH: Decoder[LeadPatch] = Decoder(LeadPatch)


@post(
    "/",
    opt={"body": LeadCapture},
    responses=created(Lead),
    summary="Capture a lead: 201 when new, 200 when it merged into the lead with this email or phone",
)
async def capture_lead(request: AnyRequest, glimpze: App, principal: Caller) -> Response[bytes]:
    data = await read_json(request, LEAD_CAPTURE)

    async def capture() -> tuple[int, Lead]:
        new, lead = await glimpze.leads.capture(principal.project_id, data)
        return (201 if new else 200), lead

    return await create_once(request, glimpze, principal.key_id, capture)


@get("/", summary="List leads in the order they last changed, oldest change first")
async def list_leads(
    glimpze: App,
    principal: Caller,
    limit: FromQuery[int] = DEFAULT_LIMIT,
    cursor: FromQuery[str | None] = None,
    updated_since: FromQuery[str | None] = None,
    crm_system: FromQuery[str | None] = None,
) -> Page[Lead]:
    since = None
    if updated_since is not None:
        try:
            since = parse_iso(updated_since)
        except ValueError:
            raise ValidationFailed.at(
                "query.updated_since", "expected an ISO-8601 time such as 2026-01-31T12:00:00Z"
            ) from None
    return await glimpze.leads.page(
        principal.project_id,
        after=decode_cursor(cursor, float, int),
        limit=check_limit(limit),
        updated_since=since,
        crm_system=crm_system,
    )


@get("/{lead_id:str}", summary="Read a lead")
async def get_lead(lead_id: FromPath[str], glimpze: App, principal: Caller) -> Lead:
    return await glimpze.leads.get(principal.project_id, lead_id)


@patch("/{lead_id:str}", opt={"body": LeadPatch}, summary="Set (or clear with null) the lead's CRM mapping")
async def update_lead(lead_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller) -> Lead:
    data = await read_json(request, LEAD_PATCH)
    return await glimpze.leads.set_crm(principal.project_id, lead_id, data.crm)


router = Router("/leads", route_handlers=[capture_lead, list_leads, get_lead, update_lead], tags=["leads"])
