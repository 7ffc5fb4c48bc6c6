"""Agents: a project's conversational assistants (name, default language); sessions and leads name one."""

from __future__ import annotations

import msgspec

from glimpze.clock import Clock, iso
from glimpze.db import Database, from_row
from glimpze.errors import not_found
from glimpze.ids import new_id
from glimpze.names import check_fields
from glimpze.pagination import Page, page
from glimpze.sessions import Language, Name

DEFAULT_LANGUAGE = "en"

SQL_AGENT_COLUMNS = "rowid, id, name, language, created_at, updated_at"
SQL_INSERT_AGENT = """
    INSERT INTO agents (id, project_id, name, language, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
"""
SQL_GET_AGENT = f"SELECT {SQL_AGENT_COLUMNS} FROM agents WHERE project_id = ? AND id = ?"
SQL_LIST_AGENTS = f"""
    SELECT {SQL_AGENT_COLUMNS} FROM agents WHERE project_id = ? AND rowid > ? ORDER BY rowid LIMIT ?
"""


class AgentCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    language: Language = DEFAULT_LANGUAGE

    def __post_init__(self) -> None:
        check_fields(self, "name")


class Agent(msgspec.Struct, kw_only=True):
    id: str
    name: str
    language: str
    created_at: str
    updated_at: str


class Agents:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def create(self, project_id: str, data: AgentCreate) -> Agent:
        agent_id, now = new_id("agt_"), self.clock.now()
        name = data.name.strip() or data.name
        await self.db.execute(SQL_INSERT_AGENT, (agent_id, project_id, name, data.language, now, now))
        return Agent(id=agent_id, name=name, language=data.language, created_at=iso(now), updated_at=iso(now))

    async def get(self, project_id: str, agent_id: str) -> Agent:
        row = await self.db.fetch_one(SQL_GET_AGENT, (project_id, agent_id))
        if row is None:
            raise not_found("agent", agent_id)
        return from_row(Agent, row)

    async def list(self, project_id: str, *, after: tuple[int] | None, limit: int) -> Page[Agent]:
        """Oldest first."""
        rows = await self.db.fetch_all(SQL_LIST_AGENTS, (project_id, after[0] if after else 0, limit + 1))
        return page(list(rows), limit, lambda r: from_row(Agent, r), lambda r: (r["rowid"],))
