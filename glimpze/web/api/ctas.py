"""`/v1/agents/{id}/ctas` and `/v1/ctas`: CTA rules, the context secret, and verifying signed context."""

from __future__ import annotations

from litestar import Response, Router, delete, get, patch, post
from litestar.params import FromPath, FromQuery

from glimpze.chat.cta_context import CtaSecret, CtaVerify, Verification
from glimpze.chat.ctas import Cta, CtaCreate, CtaPatch
from glimpze.store.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor
from glimpze.validation import Decoder
from glimpze.web.common import AnyRequest, App, Caller, create_once, created, read_json

CTA_CREATE: Decoder[CtaCreate] = Decoder(CtaCreate)
CTA_PATCH: Decoder[CtaPatch] = Decoder(CtaPatch)
CTA_VERIFY: Decoder[CtaVerify] = Decoder(CtaVerify)


@post(
    "/",
    opt={"body": CtaCreate},
    responses=created(Cta),
    summary="Add a CTA rule to an agent (Idempotency-Key accepted)",
)
async def create_cta(agent_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller) -> Response[bytes]:
    data = await read_json(request, CTA_CREATE)
    return await create_once(
        request, glimpze, principal.key_id, lambda: glimpze.ctas.create(principal.project_id, agent_id, data)
    )


@get("/", summary="An agent's CTA rules in matching order: highest priority first, then oldest first")
async def list_ctas(
    agent_id: FromPath[str],
    glimpze: App,
    principal: Caller,
    limit: FromQuery[int] = DEFAULT_LIMIT,
    cursor: FromQuery[str | None] = None,
) -> Page[Cta]:
    after = decode_cursor(cursor, int, int)
    return await glimpze.ctas.page(principal.project_id, agent_id, after=after, limit=check_limit(limit))


@get("/secret", summary="The project's context secret (and the previous one while it still verifies)")
async def get_secret(glimpze: App, principal: Caller) -> CtaSecret:
    return await glimpze.cta_context.secret(principal.project_id)


@post(
    "/rotate-secret",
    status_code=200,
    summary="New context secret; URLs signed with the old one verify for another 24 h",
)
async def rotate_secret(glimpze: App, principal: Caller) -> CtaSecret:
    return await glimpze.cta_context.rotate(principal.project_id)


@post(
    "/verify",
    status_code=200,
    opt={"body": CtaVerify},
    summary="Check a card's destination URL: its signed context and the payload it carries",
)
async def verify_context(request: AnyRequest, glimpze: App, principal: Caller) -> Verification:
    data = await read_json(request, CTA_VERIFY)
    return await glimpze.cta_context.verify(principal.project_id, data.url)


@get("/{cta_id:str}", summary="Read a CTA rule")
async def get_cta(cta_id: FromPath[str], glimpze: App, principal: Caller) -> Cta:
    return await glimpze.ctas.get(principal.project_id, cta_id)


@patch("/{cta_id:str}", opt={"body": CtaPatch}, summary="Change a CTA rule (`match` replaces all its conditions)")
async def update_cta(cta_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller) -> Cta:
    data = await read_json(request, CTA_PATCH)
    return await glimpze.ctas.update(principal.project_id, cta_id, data)


@delete("/{cta_id:str}", summary="Delete a CTA rule")
async def delete_cta(cta_id: FromPath[str], glimpze: App, principal: Caller) -> None:
    await glimpze.ctas.delete(principal.project_id, cta_id)


agent_ctas = Router("/agents/{agent_id:str}/ctas", route_handlers=[create_cta, list_ctas], tags=["ctas"])
router = Router(
    "/ctas",
    route_handlers=[get_secret, rotate_secret, verify_context, get_cta, update_cta, delete_cta],
    tags=["ctas"],
)
