"""Leads: captured visitor data, upserted per project by email (case-insensitive), then phone.

A capture that matches an existing lead merges into it: its fields and intent keys win over the
stored ones (a null value does not erase one), and the answer is 200 instead of 201. Every
capture emits `lead.captured` with exactly the seed 003 fields: `lead_id`, `agent_id`,
`conversation_id` and the lead's `fields` (`name`, `email`, `phone` first, then custom keys).
The CRM mapping (`crm: {system, record_id}`) is set by a capture or later by PATCH; the list reads
in the order leads changed, so a CRM sync pages from `updated_since` to the end.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from glimpze.chat.agents import SQL_AGENT_EXISTS
from glimpze.clock import Clock
from glimpze.delivery.outbox import Outbox
from glimpze.errors import ValidationFailed, not_found
from glimpze.ids import new_id
from glimpze.store.database import from_row
from glimpze.store.pagination import Page, page
from glimpze.store.sql import Row, Store, Tx, one

STANDARD_FIELDS = ("name", "email", "phone")
FIELDS_MAX_BYTES = 8 * 1024
FIELD_KEY_MAX_CHARS = 64
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9 ().\-/]{5,40}$")

SQL_LEAD_COLUMNS = """
    seq, id, project_id, agent_id, session_id, fields, intent, crm_system, crm_record_id, captures,
    created_at, updated_at
"""
SQL_GET_LEAD = f"SELECT {SQL_LEAD_COLUMNS} FROM leads WHERE project_id = ? AND id = ?"
SQL_BY_EMAIL = f"SELECT {SQL_LEAD_COLUMNS} FROM leads WHERE project_id = ? AND email_key = ? ORDER BY seq LIMIT 1"
SQL_BY_PHONE = f"SELECT {SQL_LEAD_COLUMNS} FROM leads WHERE project_id = ? AND phone_key = ? ORDER BY seq LIMIT 1"
SQL_INSERT_LEAD = """
    INSERT INTO leads (id, project_id, agent_id, session_id, fields, intent, email_key, phone_key,
                       crm_system, crm_record_id, created_at, updated_at)
    VALUES (:id, :project_id, :agent_id, :session_id, :fields, :intent, :email_key, :phone_key,
            :crm_system, :crm_record_id, :now, :now)
"""
SQL_UPDATE_LEAD = """
    UPDATE leads SET agent_id = :agent_id, session_id = :session_id, fields = :fields, intent = :intent,
        email_key = :email_key, phone_key = :phone_key, crm_system = :crm_system, crm_record_id = :crm_record_id,
        captures = captures + 1, updated_at = :now
    WHERE id = :id
"""
SQL_SET_CRM = "UPDATE leads SET crm_system = ?, crm_record_id = ?, updated_at = ? WHERE project_id = ? AND id = ?"
SQL_LIST_LEADS = f"""
    SELECT {SQL_LEAD_COLUMNS} FROM leads
    WHERE project_id = :project AND (updated_at > :at OR (updated_at = :at AND seq > :seq))
      AND (:system IS NULL OR crm_system = :system)
    ORDER BY updated_at, seq LIMIT :limit
"""
SQL_SESSION_AGENT = "SELECT agent_id FROM sessions WHERE project_id = ? AND id = ?"


class Crm(msgspec.Struct, forbid_unknown_fields=True):
    """Where the lead lives in a CRM."""

    system: Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
    record_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class LeadCapture(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`fields` holds name, email, phone and any custom keys; `conversation_id` is `session_id`."""

    fields: dict[str, Any]
    intent: dict[str, Any] = msgspec.field(default_factory=dict)
    session_id: str | None = None
    conversation_id: str | None = None
    agent_id: str | None = None
    crm: Crm | None = None

    def __post_init__(self) -> None:
        if self.session_id and self.conversation_id and self.session_id != self.conversation_id:
            raise ValueError("[conversation_id] names the same thing as session_id; give one of them")
        if len(msgspec.json.encode(self.intent)) > FIELDS_MAX_BYTES:
            raise ValueError(f"[intent] is larger than {FIELDS_MAX_BYTES // 1024} KiB once encoded")


class LeadPatch(msgspec.Struct, forbid_unknown_fields=True):
    crm: Crm | None


class Lead(msgspec.Struct, kw_only=True):
    id: str
    agent_id: str | None
    session_id: str | None
    conversation_id: str | None  # the seeds' name for session_id
    fields: dict[str, Any]
    intent: dict[str, Any]
    crm: Crm | None
    captures: int
    created_at: str
    updated_at: str


def _lead_out(row: Row) -> Lead:
    return from_row(
        Lead,
        row,
        conversation_id=row["session_id"],
        fields=msgspec.json.decode(row["fields"]),
        intent=msgspec.json.decode(row["intent"]),
        crm=None if row["crm_system"] is None else Crm(row["crm_system"], row["crm_record_id"]),
    )


def check_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields in their stored order (name, email, phone, then custom), null custom values dropped."""
    if all(value is None for value in fields.values()):
        raise ValidationFailed.at("$.fields", "give at least one field, such as email, phone or name")
    for key, value in fields.items():
        if not 1 <= len(key) <= FIELD_KEY_MAX_CHARS:
            raise ValidationFailed.at("$.fields", f"field names are 1 to {FIELD_KEY_MAX_CHARS} characters")
        if key in STANDARD_FIELDS and value is not None and not isinstance(value, str):
            raise ValidationFailed.at(f"$.fields.{key}", "expected a string or null")
    email, phone = fields.get("email"), fields.get("phone")
    if isinstance(email, str) and not _EMAIL.match(email.strip()):
        raise ValidationFailed.at("$.fields.email", f"{email!r} is not an email address")
    if isinstance(phone, str) and (not _PHONE.match(phone.strip()) or len(re.sub(r"\D", "", phone)) < 5):
        raise ValidationFailed.at("$.fields.phone", f"{phone!r} is not a phone number (digits, spaces, + ( ) - .)")
    if len(msgspec.json.encode(fields)) > FIELDS_MAX_BYTES:
        raise ValidationFailed.at("$.fields", f"is larger than {FIELDS_MAX_BYTES // 1024} KiB once encoded")
    ordered = {key: fields.get(key) for key in STANDARD_FIELDS}
    ordered.update((k, v) for k, v in fields.items() if k not in STANDARD_FIELDS and v is not None)
    return ordered


def email_key(fields: dict[str, Any]) -> str | None:
    email = fields.get("email")
    return email.strip().lower() if email else None


def phone_key(fields: dict[str, Any]) -> str | None:
    phone = fields.get("phone")
    if not phone:
        return None
    return ("+" if phone.strip().startswith("+") else "") + re.sub(r"\D", "", phone)


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """New values win; a null in `new` keeps the old value."""
    return {**old, **{key: value for key, value in new.items() if value is not None}}


class Leads:
    def __init__(self, db: Store, clock: Clock, outbox: Outbox) -> None:
        self.db = db
        self.clock = clock
        self.outbox = outbox

    async def capture(self, project_id: str, data: LeadCapture) -> tuple[bool, Lead]:
        """Create or merge into the matching lead; True when it is new."""
        fields = check_fields(data.fields)
        session_id = data.session_id or data.conversation_id
        session_path = "$.session_id" if data.session_id else "$.conversation_id"
        now, lead_id = self.clock.now(), new_id("lead_")

        def job(tx: Tx) -> tuple[bool, Lead]:
            agent_id = data.agent_id
            if agent_id is not None and tx.execute(SQL_AGENT_EXISTS, (project_id, agent_id)).fetchone() is None:
                raise ValidationFailed.at("$.agent_id", f"no agent with id {agent_id!r} in this project")
            if session_id is not None:
                session = tx.execute(SQL_SESSION_AGENT, (project_id, session_id)).fetchone()
                if session is None:
                    raise ValidationFailed.at(session_path, f"no session with id {session_id!r} in this project")
                agent_id = agent_id or session["agent_id"]
            row = self._match(tx, project_id, fields)
            crm = data.crm
            params: dict[str, Any] = {"now": now, "agent_id": agent_id, "session_id": session_id}
            if row is None:
                params.update(id=lead_id, project_id=project_id, fields=fields, intent=data.intent)
                sql = SQL_INSERT_LEAD
            else:
                crm = crm or (None if row["crm_system"] is None else Crm(row["crm_system"], row["crm_record_id"]))
                params.update(
                    id=row["id"],
                    agent_id=agent_id or row["agent_id"],
                    session_id=session_id or row["session_id"],
                    fields=merge(msgspec.json.decode(row["fields"]), fields),
                    intent=merge(msgspec.json.decode(row["intent"]), data.intent),
                )
                sql = SQL_UPDATE_LEAD
            params.update(
                email_key=email_key(params["fields"]),
                phone_key=phone_key(params["fields"]),
                crm_system=crm.system if crm else None,
                crm_record_id=crm.record_id if crm else None,
            )
            lead_fields = params["fields"]
            params.update(fields=_json(lead_fields), intent=_json(params["intent"]))
            tx.execute(sql, params)
            self.outbox.emit(
                tx,
                project_id,
                "lead.captured",
                {
                    "lead_id": params["id"],
                    "agent_id": params["agent_id"],
                    "conversation_id": params["session_id"],
                    "fields": lead_fields,
                },
                occurred_at=now,
            )
            return row is None, _lead_out(one(tx.execute(SQL_GET_LEAD, (project_id, params["id"]))))

        return await self.db.write(job)

    def _match(self, tx: Tx, project_id: str, fields: dict[str, Any]) -> Row | None:
        for sql, key in ((SQL_BY_EMAIL, email_key(fields)), (SQL_BY_PHONE, phone_key(fields))):
            if key:
                row = tx.execute(sql, (project_id, key)).fetchone()
                if row is not None:
                    return row
        return None

    async def get(self, project_id: str, lead_id: str) -> Lead:
        row = await self.db.fetch_one(SQL_GET_LEAD, (project_id, lead_id))
        if row is None:
            raise not_found("lead", lead_id)
        return _lead_out(row)

    async def set_crm(self, project_id: str, lead_id: str, crm: Crm | None) -> Lead:
        now = self.clock.now()
        system, record_id = (crm.system, crm.record_id) if crm else (None, None)

        def job(tx: Tx) -> Row:
            if tx.execute(SQL_SET_CRM, (system, record_id, now, project_id, lead_id)).rowcount == 0:
                raise not_found("lead", lead_id)
            return one(tx.execute(SQL_GET_LEAD, (project_id, lead_id)))

        return _lead_out(await self.db.write(job))

    async def page(
        self,
        project_id: str,
        *,
        after: tuple[float, int] | None,
        limit: int,
        updated_since: float | None = None,
        crm_system: str | None = None,
    ) -> Page[Lead]:
        """In the order leads last changed, oldest change first."""
        at, seq = after if after else (updated_since if updated_since is not None else -1.0, -1)
        params = {"project": project_id, "at": at, "seq": seq, "system": crm_system, "limit": limit + 1}
        rows = await self.db.fetch_all(SQL_LIST_LEADS, params)
        return page(rows, limit, _lead_out, lambda r: (r["updated_at"], r["seq"]))


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()
