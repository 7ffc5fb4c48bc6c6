"""Agents: a project's conversational assistants (name, default language); sessions and leads name one.

What a visitor's widget shows of an agent is its `AgentProfile`: the team name (`display_name`),
an avatar (`avatar_url`, https only: the widget loads it on the customer's page) and the expected
reply time (`reply_time`, one of `REPLY_TIMES`), each optional.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from glimpze.chat.sessions import Language, Name
from glimpze.clock import Clock, iso
from glimpze.errors import not_found
from glimpze.feeds.schemas import url_problem
from glimpze.ids import new_id
from glimpze.names import check_fields
from glimpze.store.database import from_row
from glimpze.store.pagination import Page, page
from glimpze.store.sql import Store, Tx, one

DEFAULT_LANGUAGE = "en"
# As Chatwoot words them; the widget says "Typically replies in a few minutes", and so on.
ReplyTime = Literal["in_a_few_minutes", "in_a_few_hours", "in_a_day"]
AvatarUrl = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]

SQL_AGENT_COLUMNS = "rowid, id, name, language, display_name, avatar_url, reply_time, created_at, updated_at"
SQL_INSERT_AGENT = """
    INSERT INTO agents (id, project_id, name, language, display_name, avatar_url, reply_time, created_at, updated_at)
    VALUES (:id, :project_id, :name, :language, :display_name, :avatar_url, :reply_time, :now, :now)
"""
# Whether an agent is the project's (CTA rules, leads and chat tokens name agents).
SQL_AGENT_EXISTS = "SELECT 1 FROM agents WHERE project_id = ? AND id = ?"
SQL_GET_AGENT = f"SELECT {SQL_AGENT_COLUMNS} FROM agents WHERE project_id = ? AND id = ?"
SQL_LIST_AGENTS = f"""
    SELECT {SQL_AGENT_COLUMNS} FROM agents WHERE project_id = ? AND rowid > ? ORDER BY rowid LIMIT ?
"""
SQL_UPDATE_AGENT = """
    UPDATE agents SET name = :name, language = :language, display_name = :display_name, avatar_url = :avatar_url,
        reply_time = :reply_time, updated_at = :now
    WHERE project_id = :project_id AND id = :id
"""


def _check_avatar(url: str | None | msgspec.UnsetType) -> None:
    if isinstance(url, str) and (url_problem(url) is not None or not url.lower().startswith("https://")):
        # https only: the widget shows it on the customer's (https) page, where http is mixed content.
        raise ValueError("[avatar_url] must be an absolute https:// URL (at most 2048 characters)")


class AgentCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name
    language: Language = DEFAULT_LANGUAGE
    display_name: Name | None = None  # the team name a visitor sees in the widget's header
    avatar_url: AvatarUrl | None = None
    reply_time: ReplyTime | None = None

    def __post_init__(self) -> None:
        check_fields(self, "name", "display_name")
        _check_avatar(self.avatar_url)


class AgentPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields given replace the stored ones; null clears an optional one."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    language: Language | msgspec.UnsetType = msgspec.UNSET
    display_name: Name | None | msgspec.UnsetType = msgspec.UNSET
    avatar_url: AvatarUrl | None | msgspec.UnsetType = msgspec.UNSET
    reply_time: ReplyTime | None | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        check_fields(self, "name", "display_name")
        _check_avatar(self.avatar_url)

    def given(self) -> dict[str, Any]:
        return {
            name: getattr(self, name) for name in self.__struct_fields__ if getattr(self, name) is not msgspec.UNSET
        }


class Agent(msgspec.Struct, kw_only=True):
    id: str
    name: str
    language: str
    display_name: str | None
    avatar_url: str | None
    reply_time: ReplyTime | None
    created_at: str
    updated_at: str


class AgentProfile(msgspec.Struct, kw_only=True):
    """What the visitor's widget shows of the session's agent (its header)."""

    display_name: str | None
    avatar_url: str | None
    reply_time: ReplyTime | None


class Agents:
    def __init__(self, db: Store, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    async def create(self, project_id: str, data: AgentCreate) -> Agent:
        agent_id, now = new_id("agt_"), self.clock.now()
        fields = msgspec.structs.asdict(data)
        await self.db.execute(SQL_INSERT_AGENT, {**fields, "id": agent_id, "project_id": project_id, "now": now})
        return Agent(id=agent_id, **fields, created_at=iso(now), updated_at=iso(now))

    async def get(self, project_id: str, agent_id: str) -> Agent:
        row = await self.db.fetch_one(SQL_GET_AGENT, (project_id, agent_id))
        if row is None:
            raise not_found("agent", agent_id)
        return from_row(Agent, row)

    async def update(self, project_id: str, agent_id: str, patch: AgentPatch) -> Agent:
        given, now = patch.given(), self.clock.now()

        def job(tx: Tx) -> Agent:
            row = tx.execute(SQL_GET_AGENT, (project_id, agent_id)).fetchone()
            if row is None:
                raise not_found("agent", agent_id)
            if given:
                tx.execute(SQL_UPDATE_AGENT, {**dict(row), **given, "project_id": project_id, "now": now})
                row = one(tx.execute(SQL_GET_AGENT, (project_id, agent_id)))
            return from_row(Agent, row)

        return await self.db.write(job)

    async def profile(self, project_id: str, agent_id: str | None) -> AgentProfile | None:
        """The widget's view of an agent; None without one (or when it was deleted)."""
        if agent_id is None:
            return None
        row = await self.db.fetch_one(SQL_GET_AGENT, (project_id, agent_id))
        return None if row is None else from_row(AgentProfile, row)

    async def page(self, project_id: str, *, after: tuple[int] | None, limit: int) -> Page[Agent]:
        """Oldest first."""
        rows = await self.db.fetch_all(SQL_LIST_AGENTS, (project_id, after[0] if after else 0, limit + 1))
        return page(rows, limit, lambda r: from_row(Agent, r), lambda r: (r["rowid"],))
