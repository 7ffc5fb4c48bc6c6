"""Sessions (conversations): create, list, read, change status and routing, close; the transition table.

Every change is one write job that updates the row, appends a `session` event to the visitor's
stream when the status moved (glimpze.streams), and emits the outgoing event (`session.created`,
`session.updated` with `changes`, `session.escalated`, `session.closed`) in the same transaction.
Outgoing `session.*` payloads carry `session_id` and the session's fields (DESIGN §7).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from glimpze.chat.streams import SessionStreams
from glimpze.chat.transitions import Status, check_transition, session_closed
from glimpze.clock import Clock, iso
from glimpze.delivery.outbox import Outbox
from glimpze.errors import ValidationFailed, not_found
from glimpze.ids import new_id
from glimpze.names import check_fields
from glimpze.store.database import from_row
from glimpze.store.pagination import Page, page
from glimpze.store.sql import Row, Store, Tx

Priority = Literal["low", "normal", "high", "urgent"]
PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high", "urgent")

MAX_LABELS = 20
CONTEXT_MAX_BYTES = 8 * 1024
SNOOZE_BATCH = 500
# The fields `session.updated` reports in `changes`.
TRACKED = ("status", "snoozed_until", "priority", "team", "assignee", "labels", "resolution", "closed_at")

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
Labels = Annotated[list[Label], msgspec.Meta(max_length=MAX_LABELS)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
Language = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$", max_length=35)]
Email = Annotated[str, msgspec.Meta(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=10_000)]
Moment = Annotated[datetime, msgspec.Meta(tz=True)]

SQL_SESSION_COLUMNS = """
    seq, id, project_id, agent_id, visitor_id, visitor_name, visitor_email, status, snoozed_until, priority,
    team, assignee, labels, page_url, language, context, resolution, closed_at, stream_seq, created_at, updated_at
"""
SQL_INSERT_SESSION = """
    INSERT INTO sessions (id, project_id, agent_id, visitor_id, visitor_name, visitor_email, status, priority,
                          team, assignee, labels, page_url, language, context, created_at, updated_at)
    VALUES (:id, :project_id, :agent_id, :visitor_id, :visitor_name, :visitor_email, 'open', :priority,
            :team, :assignee, :labels, :page_url, :language, :context, :now, :now)
"""
SQL_GET_SESSION = f"SELECT {SQL_SESSION_COLUMNS} FROM sessions WHERE project_id = ? AND id = ?"
SQL_LIST_SESSIONS = f"""
    SELECT {SQL_SESSION_COLUMNS} FROM sessions
    WHERE project_id = :project AND seq < :before
      AND (:status IS NULL OR status = :status)
      AND (:team IS NULL OR team = :team)
      AND (:assignee IS NULL OR assignee = :assignee)
      AND (:agent IS NULL OR agent_id = :agent)
      AND (:label IS NULL OR EXISTS (SELECT 1 FROM json_each(sessions.labels) WHERE value = :label))
    ORDER BY seq DESC LIMIT :limit
"""
SQL_VISITOR_OPEN_SESSION = f"""
    SELECT {SQL_SESSION_COLUMNS} FROM sessions
    WHERE project_id = :project AND visitor_id = :visitor AND status != 'closed'
      AND (:agent IS NULL OR agent_id = :agent)
    ORDER BY seq DESC LIMIT 1
"""
SQL_UPDATE_SESSION = """
    UPDATE sessions SET status = :status, snoozed_until = :snoozed_until, priority = :priority, team = :team,
        assignee = :assignee, labels = :labels, resolution = :resolution, closed_at = :closed_at,
        updated_at = :updated_at
    WHERE id = :id
"""
SQL_DUE_SNOOZED = f"""
    SELECT {SQL_SESSION_COLUMNS} FROM sessions WHERE status = 'snoozed' AND snoozed_until <= ? LIMIT ?
"""
SQL_AGENT_LANGUAGE = "SELECT language FROM agents WHERE project_id = ? AND id = ?"


class Visitor(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The person on the website: `id` is the site's own identifier for them."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    name: Name | None = None
    email: Email | None = None

    def __post_init__(self) -> None:
        check_fields(self, "name")


def _json(value: Any) -> str:
    """JSON as TEXT (SQLite's JSON functions refuse BLOBs)."""
    return msgspec.json.encode(value).decode()


def _check_labels(labels: list[str]) -> list[str]:
    """Trimmed, without blanks and repeats, in the order given."""
    return list(dict.fromkeys(label.strip() for label in labels if label.strip()))


def _check_context(context: dict[str, Any]) -> None:
    if len(msgspec.json.encode(context)) > CONTEXT_MAX_BYTES:
        raise ValueError(f"[context] is larger than {CONTEXT_MAX_BYTES // 1024} KiB once encoded")


class SessionCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    visitor: Visitor
    agent_id: str | None = None
    labels: Labels = msgspec.field(default_factory=list)
    priority: Priority = "normal"
    team: Name | None = None
    assignee: Name | None = None
    page_url: Url | None = None
    language: Language | None = None
    context: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_fields(self, "team", "assignee")
        self.labels = _check_labels(self.labels)
        _check_context(self.context)


class SessionPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`labels` replaces the list; `add_labels`/`remove_labels` edit it (added, then removed)."""

    status: Status | msgspec.UnsetType = msgspec.UNSET
    snoozed_until: Moment | None | msgspec.UnsetType = msgspec.UNSET
    priority: Priority | msgspec.UnsetType = msgspec.UNSET
    team: Name | None | msgspec.UnsetType = msgspec.UNSET
    assignee: Name | None | msgspec.UnsetType = msgspec.UNSET
    labels: Labels | msgspec.UnsetType = msgspec.UNSET
    add_labels: Labels | msgspec.UnsetType = msgspec.UNSET
    remove_labels: Labels | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        check_fields(self, "team", "assignee")
        if self.labels is not msgspec.UNSET:
            self.labels = _check_labels(self.labels)
            for edit in ("add_labels", "remove_labels"):
                if getattr(self, edit) is not msgspec.UNSET:
                    raise ValueError(f"[{edit}] cannot be combined with labels, which replaces the whole list")

    def given(self) -> set[str]:
        return {name for name in self.__struct_fields__ if getattr(self, name) is not msgspec.UNSET}


class Session(msgspec.Struct, kw_only=True):
    id: str
    agent_id: str | None
    visitor: Visitor
    status: Status
    snoozed_until: str | None
    priority: Priority
    team: str | None
    assignee: str | None
    labels: list[str]
    page_url: str | None
    language: str | None
    context: dict[str, Any]
    resolution: str | None
    closed_at: str | None
    created_at: str
    updated_at: str


class VisitorSession(msgspec.Struct, kw_only=True):
    """What the visitor's widget sees of a session (no routing, labels or notes)."""

    id: str
    status: Status
    agent_id: str | None
    visitor: Visitor
    language: str | None
    page_url: str | None
    created_at: str
    updated_at: str


def _iso_or_none(ts: float | None) -> str | None:
    return None if ts is None else iso(ts)


def session_out(row: Row | Mapping[str, Any]) -> Session:
    """A session as the API shows it, from its row (or a row with changes merged in)."""
    return from_row(
        Session,
        row,
        visitor=Visitor(id=row["visitor_id"], name=row["visitor_name"], email=row["visitor_email"]),
        snoozed_until=_iso_or_none(row["snoozed_until"]),
        labels=msgspec.json.decode(row["labels"]),
        context=msgspec.json.decode(row["context"]),
    )


def visitor_view(session: Session) -> VisitorSession:
    return VisitorSession(**{name: getattr(session, name) for name in VisitorSession.__struct_fields__})


def session_fields(session: Session) -> dict[str, Any]:
    """An outgoing `session.*` payload's fields: `session_id`, then the session's own."""
    fields: dict[str, Any] = {"session_id": session.id}
    fields.update((name, getattr(session, name)) for name in session.__struct_fields__ if name != "id")
    return fields


class Sessions:
    """Session rows, their changes and the events those changes emit."""

    def __init__(self, db: Store, clock: Clock, outbox: Outbox, streams: SessionStreams) -> None:
        self.db = db
        self.clock = clock
        self.outbox = outbox
        self.streams = streams

    # Inside write jobs

    def row(self, tx: Tx, project_id: str, session_id: str) -> Row:
        row = tx.execute(SQL_GET_SESSION, (project_id, session_id)).fetchone()
        if row is None:
            raise not_found("session", session_id)
        return row

    def emit(self, tx: Tx, project_id: str, event: str, session: Session, now: float, **extra: Any) -> None:
        self.outbox.emit(tx, project_id, event, {**session_fields(session), **extra}, occurred_at=now)

    def apply(self, tx: Tx, row: Row, values: dict[str, Any], now: float) -> tuple[Session, dict[str, dict[str, Any]]]:
        """Write `values` (columns) to the session; returns it and its `changes` (empty: nothing
        changed, nothing written). A status change is also sent to the visitor's stream."""
        old = session_out(row)
        merged = {**dict(row), **values}
        new = session_out(merged)
        changes = {
            name: {"old": getattr(old, name), "new": getattr(new, name)}
            for name in TRACKED
            if getattr(old, name) != getattr(new, name)
        }
        if not changes:
            return old, changes
        merged["updated_at"] = now
        tx.execute(SQL_UPDATE_SESSION, merged)
        new = session_out(merged)
        if "status" in changes:
            self.streams.append(tx, new.id, "session", msgspec.json.encode(visitor_view(new)), now)
        return new, changes

    def reopen_for_visitor(self, tx: Tx, row: Row, now: float) -> None:
        """A visitor writing to a pending or snoozed session brings it back to open."""
        if row["status"] in ("pending", "snoozed"):
            check_transition(row["status"], "open", "patch", row["id"])
            session, changes = self.apply(tx, row, {"status": "open", "snoozed_until": None}, now)
            self.emit(tx, row["project_id"], "session.updated", session, now, changes=changes)

    # Services

    async def create(self, project_id: str, data: SessionCreate) -> Session:
        now = self.clock.now()
        params = _insert_params(project_id, data, now)
        return await self.db.write(lambda tx: self._insert(tx, project_id, params, now))

    def _insert(self, tx: Tx, project_id: str, params: dict[str, Any], now: float) -> Session:
        if params["agent_id"] is not None:
            agent = tx.execute(SQL_AGENT_LANGUAGE, (project_id, params["agent_id"])).fetchone()
            if agent is None:
                raise ValidationFailed.at("$.agent_id", f"no agent with id {params['agent_id']!r} in this project")
            params = {**params, "language": params["language"] or agent["language"]}
        tx.execute(SQL_INSERT_SESSION, params)
        session = session_out(self.row(tx, project_id, params["id"]))
        self.emit(tx, project_id, "session.created", session, now)
        return session

    async def open_for_visitor(
        self,
        project_id: str,
        visitor: Visitor,
        *,
        agent_id: str | None,
        context: dict[str, Any],
        page_url: str | None,
        language: str | None,
    ) -> tuple[bool, Session]:
        """The visitor's latest session that is not closed (with this agent, when one is given),
        or a new one hydrated with the token's context; True when it is new."""
        now = self.clock.now()
        data = SessionCreate(visitor=visitor, agent_id=agent_id, context=context, page_url=page_url, language=language)
        params = _insert_params(project_id, data, now)
        find = {"project": project_id, "visitor": visitor.id, "agent": agent_id}

        def job(tx: Tx) -> tuple[bool, Session]:
            row = tx.execute(SQL_VISITOR_OPEN_SESSION, find).fetchone()
            if row is not None:
                return False, session_out(row)
            return True, self._insert(tx, project_id, params, now)

        return await self.db.write(job)

    async def get(self, project_id: str, session_id: str) -> Session:
        row = await self.db.fetch_one(SQL_GET_SESSION, (project_id, session_id))
        if row is None:
            raise not_found("session", session_id)
        return session_out(row)

    async def for_visitor(self, project_id: str, visitor_id: str, session_id: str) -> Session:
        """A session as its own visitor may see it; anyone else's is not found."""
        session = await self.get(project_id, session_id)
        if session.visitor.id != visitor_id:
            raise not_found("session", session_id)
        return session

    async def page(
        self,
        project_id: str,
        *,
        after: tuple[int] | None,
        limit: int,
        status: str | None = None,
        label: str | None = None,
        team: str | None = None,
        assignee: str | None = None,
        agent_id: str | None = None,
    ) -> Page[Session]:
        """Newest first, filtered."""
        params = {
            "project": project_id,
            "before": after[0] if after else 2**63 - 1,
            "status": status,
            "label": label,
            "team": team,
            "assignee": assignee,
            "agent": agent_id,
            "limit": limit + 1,
        }
        rows = await self.db.fetch_all(SQL_LIST_SESSIONS, params)
        return page(rows, limit, session_out, lambda r: (r["seq"],))

    async def update(self, project_id: str, session_id: str, patch: SessionPatch) -> Session:
        """PATCH: status (per TRANSITIONS), snooze, priority, routing and labels; a PATCH that
        changes nothing answers the session as it is and emits nothing."""
        now = self.clock.now()
        given = patch.given()
        snooze = patch.snoozed_until
        if isinstance(snooze, datetime) and snooze.timestamp() <= now:
            raise ValidationFailed.at("$.snoozed_until", f"must be in the future (now is {iso(now)})")

        def job(tx: Tx) -> Session:
            row = self.row(tx, project_id, session_id)
            old: Status = row["status"]
            new: Status = old if patch.status is msgspec.UNSET else patch.status
            if old == "closed" and given - {"status"}:
                raise session_closed(session_id)
            if new != old:
                check_transition(old, new, "patch_alone" if given == {"status"} else "patch", session_id)
            values: dict[str, Any] = {"status": new, **_snooze_values(old, new, snooze)}
            if old == "closed" and new == "open":
                values.update(resolution=None, closed_at=None)
            for name in ("priority", "team", "assignee"):
                if name in given:
                    values[name] = getattr(patch, name)
            labels = _edit_labels(msgspec.json.decode(row["labels"]), patch)
            if labels is not None:
                values["labels"] = _json(labels)
            session, changes = self.apply(tx, row, values, now)
            if changes:
                self.emit(tx, project_id, "session.updated", session, now, changes=changes)
            return session

        return await self.db.write(job)

    async def close(self, project_id: str, session_id: str, resolution: str | None) -> Session:
        now = self.clock.now()

        def job(tx: Tx) -> Session:
            row = self.row(tx, project_id, session_id)
            check_transition(row["status"], "closed", "close", session_id)
            values = {"status": "closed", "snoozed_until": None, "resolution": resolution, "closed_at": now}
            session, _ = self.apply(tx, row, values, now)
            self.emit(tx, project_id, "session.closed", session, now)
            return session

        return await self.db.write(job)

    async def wake_snoozed(self, now: float) -> int:
        """Reopen the sessions whose `snoozed_until` has come (a scheduled job)."""

        def job(tx: Tx) -> int:
            rows = tx.execute(SQL_DUE_SNOOZED, (now, SNOOZE_BATCH)).fetchall()
            for row in rows:
                check_transition("snoozed", "open", "patch", row["id"])
                session, changes = self.apply(tx, row, {"status": "open", "snoozed_until": None}, now)
                self.emit(tx, row["project_id"], "session.updated", session, now, changes=changes)
            return len(rows)

        total = 0
        while (woken := await self.db.write(job)) > 0:
            total += woken
            if woken < SNOOZE_BATCH:
                break
        return total


def _insert_params(project_id: str, data: SessionCreate, now: float) -> dict[str, Any]:
    return {
        "id": new_id("ses_"),
        "project_id": project_id,
        "agent_id": data.agent_id,
        "visitor_id": data.visitor.id,
        "visitor_name": data.visitor.name,
        "visitor_email": data.visitor.email,
        "priority": data.priority,
        "team": data.team,
        "assignee": data.assignee,
        "labels": _json(data.labels),
        "page_url": data.page_url,
        "language": data.language,
        "context": _json(data.context),
        "now": now,
    }


def _snooze_values(old: Status, new: Status, snooze: Any) -> dict[str, Any]:
    """`snoozed_until` for the new status: required (and future) when entering snoozed, refused
    with any other status, cleared on leaving."""
    given = snooze is not msgspec.UNSET
    if new != "snoozed":
        if given and snooze is not None:
            raise ValidationFailed.at("$.snoozed_until", 'is only allowed with status "snoozed"')
        return {"snoozed_until": None}
    if (given and snooze is None) or (not given and old != "snoozed"):
        raise ValidationFailed.at("$.snoozed_until", 'is required with status "snoozed": a future time')
    return {"snoozed_until": snooze.timestamp()} if given else {}


def _edit_labels(current: list[str], patch: SessionPatch) -> list[str] | None:
    if patch.labels is not msgspec.UNSET:
        return patch.labels
    if patch.add_labels is msgspec.UNSET and patch.remove_labels is msgspec.UNSET:
        return None
    labels = list(current)
    for label in _check_labels(patch.add_labels or []):
        if label not in labels:
            labels.append(label)
    removed = set(_check_labels(patch.remove_labels or []))
    labels = [label for label in labels if label not in removed]
    if len(labels) > MAX_LABELS:
        raise ValidationFailed.at("$.add_labels", f"a session holds at most {MAX_LABELS} labels")
    return labels
