"""`/v1/agents`: a project's conversational assistants, and what the visitor widget shows of them."""

from __future__ import annotations

from litestar import Router, get, patch, post
from litestar.params import FromPath, FromQuery

from glimpze.chat.agents import Agent, AgentCreate, AgentPatch
from glimpze.store.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor
from glimpze.validation import Decoder
from glimpze.web.common import AnyRequest, App, Caller, read_json

AGENT_CREATE: Decoder[AgentCreate] = Decoder(AgentCreate)
AGENT_PATCH: Decoder[AgentPatch] = Decoder(AgentPatch)


@post(
    "/",
    opt={"body": AgentCreate},
    summary="Create an agent; `display_name`, `avatar_url` (https) and `reply_time` fill the widget's header",
)
async def create_agent(request: AnyRequest, glimpze: App, principal: Caller) -> Agent:
    data = await read_json(request, AGENT_CREATE)
    return await glimpze.agents.create(principal.project_id, data)


@get("/", summary="List agents, oldest first")
async def list_agents(
    glimpze: App, principal: Caller, limit: FromQuery[int] = DEFAULT_LIMIT, cursor: FromQuery[str | None] = None
) -> Page[Agent]:
    return await glimpze.agents.page(principal.project_id, after=decode_cursor(cursor, int), limit=check_limit(limit))


@get("/{agent_id:str}", summary="Read an agent")
async def get_agent(agent_id: FromPath[str], glimpze: App, principal: Caller) -> Agent:
    return await glimpze.agents.get(principal.project_id, agent_id)


@patch(
    "/{agent_id:str}",
    opt={"body": AgentPatch},
    summary="Change an agent's name, language or widget header (null clears display_name, avatar_url, reply_time)",
)
async def update_agent(agent_id: FromPath[str], request: AnyRequest, glimpze: App, principal: Caller) -> Agent:
    data = await read_json(request, AGENT_PATCH)
    return await glimpze.agents.update(principal.project_id, agent_id, data)


router = Router("/agents", route_handlers=[create_agent, list_agents, get_agent, update_agent], tags=["agents"])
