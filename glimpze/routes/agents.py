"""`/v1/agents`: a project's conversational assistants."""

from __future__ import annotations

from litestar import Request, Router, get, post
from litestar.params import FromPath, FromQuery

from glimpze.agents import Agent, AgentCreate
from glimpze.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor
from glimpze.routes.common import App, Caller, read_json
from glimpze.validation import Decoder

AGENT_CREATE = Decoder(AgentCreate)


@post("/", opt={"body": AgentCreate}, summary="Create an agent")
async def create_agent(request: Request, glimpze: App, principal: Caller) -> Agent:
    data = await read_json(request, AGENT_CREATE)
    return await glimpze.agents.create(principal.project_id, data)


@get("/", summary="List agents, oldest first")
async def list_agents(
    glimpze: App, principal: Caller, limit: FromQuery[int] = DEFAULT_LIMIT, cursor: FromQuery[str | None] = None
) -> Page[Agent]:
    return await glimpze.agents.list(principal.project_id, after=decode_cursor(cursor, int), limit=check_limit(limit))


@get("/{agent_id:str}", summary="Read an agent")
async def get_agent(agent_id: FromPath[str], glimpze: App, principal: Caller) -> Agent:
    return await glimpze.agents.get(principal.project_id, agent_id)


router = Router("/agents", route_handlers=[create_agent, list_agents, get_agent], tags=["agents"])
