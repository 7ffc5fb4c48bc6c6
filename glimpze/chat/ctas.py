"""CTA rules: an agent's call-to-action cards, their match conditions, and matching replies to them.

A rule belongs to an agent, and through it to a project. When an assistant message is posted, the
active rules of the session's agent are tried in descending priority (ties in creation order)
against the session's page URL and language and the reply's text; the first `MAX_CTAS` that hold
become the reply's cards. Conditions (DESIGN §7), each optional, all given must hold:
- `page_url`: a glob over the whole URL, where `*` stands for any run of characters;
- `languages`: the session's language is one of them or a variant (`en` holds for `en-GB`);
- `keywords`: any one appears in the text as a whole word (or phrase), case-insensitively;
- `pattern`: a regular expression found anywhere in the text.
The page and language are checked first, in-process; the text conditions, as regular expressions,
in a worker process with a time bound (glimpze.patterns): a search that runs out of time does not
match, so no reply and no rule can stall the server.

glimpze.chat.messages calls the matching by name (`prepare_cards`): it runs before the message's
write job (pattern searches await a worker process), and signs the cards' context inside that job
(glimpze.chat.cta_context), where the lead and the project's secret are read consistently.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit

import msgspec

from glimpze.chat.agents import SQL_AGENT_EXISTS
from glimpze.chat.cta_context import CtaContext, new_context_secret
from glimpze.chat.ctx import PARAMS
from glimpze.chat.messages import CtaCard, Reply, ReplyDraft, ReplyFill
from glimpze.chat.patterns import PATTERN_MAX_CHARS, PatternSearcher, check_pattern
from glimpze.chat.sessions import Language, Session
from glimpze.chat.streams import SessionStreams
from glimpze.clock import Clock
from glimpze.errors import NotFound, TooManyCtas, not_found
from glimpze.feeds.schemas import url_problem
from glimpze.ids import new_id
from glimpze.names import check_fields
from glimpze.store.database import from_row
from glimpze.store.pagination import Page, page
from glimpze.store.sql import Row, Store, Tx, one

log = logging.getLogger("glimpze.ctas")

MAX_CTAS = 3  # cards per reply; matching stops at the third
MAX_RULES_PER_AGENT = 100  # bounds the work of matching one reply
MATCH_BUDGET_SECONDS = 1.0  # real time all of a reply's pattern searches may take together
MAX_PRIORITY = 1_000_000

ContextField = Literal["conversation_id", "agent_id", "page_url", "visitor_email", "visitor_name", "captured_fields"]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Description = Annotated[str, msgspec.Meta(max_length=500)]
Priority = Annotated[int, msgspec.Meta(ge=-MAX_PRIORITY, le=MAX_PRIORITY)]
Glob = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
Keyword = Annotated[str, msgspec.Meta(max_length=100)]
Pattern = Annotated[str, msgspec.Meta(min_length=1, max_length=PATTERN_MAX_CHARS)]
ContextFields = Annotated[list[ContextField], msgspec.Meta(max_length=20)]

SQL_CTA_COLUMNS = """
    r.seq, r.id, r.agent_id, r.label, r.description, r.url, r.priority, r.active, r.match, r.forward_context,
    r.created_at, r.updated_at
"""
SQL_INSERT_CTA = """
    INSERT INTO cta_rules (id, project_id, agent_id, label, description, url, priority, active, match,
                           forward_context, created_at, updated_at)
    VALUES (:id, :project_id, :agent_id, :label, :description, :url, :priority, :active, :match,
            :forward_context, :now, :now)
"""
SQL_GET_CTA = f"SELECT {SQL_CTA_COLUMNS} FROM cta_rules r WHERE r.project_id = ? AND r.id = ?"
SQL_LIST_CTAS = f"""
    SELECT {SQL_CTA_COLUMNS} FROM cta_rules r
    WHERE r.agent_id = :agent AND (r.priority < :priority OR (r.priority = :priority AND r.seq > :seq))
    ORDER BY r.priority DESC, r.seq LIMIT :limit
"""
SQL_UPDATE_CTA = """
    UPDATE cta_rules SET label = :label, description = :description, url = :url, priority = :priority,
        active = :active, match = :match, forward_context = :forward_context, updated_at = :now
    WHERE id = :id
"""
SQL_DELETE_CTA = "DELETE FROM cta_rules WHERE project_id = ? AND id = ?"
SQL_COUNT_AGENT_CTAS = "SELECT count(*) FROM cta_rules WHERE agent_id = ?"
# What matching one reply reads: the session's page and language with its agent's active rules.
SQL_REPLY_RULES = f"""
    SELECT s.page_url AS session_page_url, s.language AS session_language, {SQL_CTA_COLUMNS}
    FROM sessions s JOIN cta_rules r ON r.agent_id = s.agent_id
    WHERE s.project_id = ? AND s.id = ? AND r.active = 1
    ORDER BY r.priority DESC, r.seq
"""


class CtaMatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """When a rule's card is shown; a condition left out (null) always holds."""

    page_url: Glob | None = None
    languages: Annotated[list[Language], msgspec.Meta(min_length=1, max_length=20)] | None = None
    keywords: Annotated[list[Keyword], msgspec.Meta(min_length=1, max_length=50)] | None = None
    pattern: Pattern | None = None

    def __post_init__(self) -> None:
        if self.keywords is not None:
            self.keywords = list(dict.fromkeys(" ".join(k.split()) for k in self.keywords if k.strip()))
            if not self.keywords:
                raise ValueError("[keywords] holds only blank keywords; give words, or leave keywords out")
        if self.pattern is not None and (problem := check_pattern(self.pattern)):
            raise ValueError(f"[pattern] {problem}")


def _check_url(url: str) -> None:
    problem = url_problem(url)
    if problem is None:
        try:
            names = {name for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
        except ValueError as exc:  # such as an unclosed IPv6 bracket
            names, problem = set(), f"is not a valid URL: {exc}"
        if set(PARAMS) & names:
            # A verifier would see them twice once signed, and frameworks disagree on which one wins.
            problem = f"must not carry {', '.join(PARAMS)}: Glimpze adds them when the card forwards context"
    if problem is not None:
        raise ValueError(f"[url] {problem}")


class CtaCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    label: Label
    url: str  # http(s), where the card leads
    description: Description | None = None
    priority: Priority = 0  # higher first
    active: bool = True
    match: CtaMatch = msgspec.field(default_factory=CtaMatch)
    forward_context: ContextFields = msgspec.field(default_factory=list)  # signed into the URL

    def __post_init__(self) -> None:
        check_fields(self, "label")
        _check_url(self.url)
        self.forward_context = list(dict.fromkeys(self.forward_context))


class CtaPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields given replace the stored ones; `match` replaces all conditions at once."""

    label: Label | msgspec.UnsetType = msgspec.UNSET
    url: str | msgspec.UnsetType = msgspec.UNSET
    description: Description | None | msgspec.UnsetType = msgspec.UNSET
    priority: Priority | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET
    match: CtaMatch | msgspec.UnsetType = msgspec.UNSET
    forward_context: ContextFields | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        check_fields(self, "label")
        if self.url is not msgspec.UNSET:
            _check_url(self.url)
        if self.forward_context is not msgspec.UNSET:
            self.forward_context = list(dict.fromkeys(self.forward_context))

    def given(self) -> dict[str, Any]:
        return {
            name: getattr(self, name) for name in self.__struct_fields__ if getattr(self, name) is not msgspec.UNSET
        }


class Cta(msgspec.Struct, kw_only=True):
    id: str
    agent_id: str
    label: str
    description: str | None
    url: str
    priority: int
    active: bool
    match: CtaMatch
    forward_context: list[ContextField]
    created_at: str
    updated_at: str


_decode_match = msgspec.json.Decoder(CtaMatch).decode
_decode_fields = msgspec.json.Decoder(list[ContextField]).decode


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def cta_out(row: Row) -> Cta:
    return from_row(
        Cta,
        row,
        active=bool(row["active"]),
        match=_decode_match(row["match"]),
        forward_context=_decode_fields(row["forward_context"]),
    )


# Conditions


def glob_match(glob: str, text: str) -> bool:
    """True when `text` is `glob` with each `*` standing for any run of characters (none too).

    Greedy leftmost search of the pieces between stars: linear in practice, never backtracking the
    way a regular expression built from the glob would (`*a*a*a*a*b` on a long URL)."""
    if "*" not in glob:
        return text == glob
    first, *middle, last = glob.split("*")
    if len(text) < len(first) + len(last) or not text.startswith(first) or not text.endswith(last):
        return False
    start, end = len(first), len(text) - len(last)
    for piece in middle:
        found = text.find(piece, start, end)
        if found < 0:
            return False
        start = found + len(piece)
    return True


def language_match(languages: list[str], language: str | None) -> bool:
    """`en` holds for `en`, `en-US` and `en-GB`; `en-US` only for `en-US` (and its own variants)."""
    if not language:
        return False
    language = language.lower()
    return any(language == want or language.startswith(want + "-") for want in map(str.lower, languages))


@functools.lru_cache(maxsize=1024)
def keyword_pattern(keywords: tuple[str, ...]) -> str:
    """A regular expression finding any keyword as a whole word, in any case: not inside a longer
    word (`\\w` on neither side, so `C++` and `.NET` work too); the words of a phrase may be apart
    by any whitespace."""
    words = ("\\s+".join(map(re.escape, keyword.split())) for keyword in keywords)
    return f"(?i)(?<!\\w)(?:{'|'.join(words)})(?!\\w)"


def page_and_language_hold(match: CtaMatch, page_url: str | None, language: str | None) -> bool:
    """The conditions that do not read the reply: checked first, in-process (both are linear)."""
    if match.page_url is not None and (page_url is None or not glob_match(match.page_url, page_url)):
        return False
    return match.languages is None or language_match(match.languages, language)


def text_patterns(match: CtaMatch) -> list[str]:
    """The regular expressions the reply must contain, searched together in the pattern worker."""
    patterns = [] if match.keywords is None else [keyword_pattern(tuple(match.keywords))]
    return patterns if match.pattern is None else [*patterns, match.pattern]


class CtaRules:
    """Rules of a project's agents: create, list, change, delete; and the cards of a reply."""

    def __init__(
        self, db: Store, clock: Clock, context: CtaContext, patterns: PatternSearcher, streams: SessionStreams
    ) -> None:
        self.db = db
        self.clock = clock
        self.context = context
        self.patterns = patterns
        self.streams = streams

    async def create(self, project_id: str, agent_id: str, data: CtaCreate) -> Cta:
        now, cta_id = self.clock.now(), new_id("cta_")
        params = {
            "id": cta_id,
            "project_id": project_id,
            "agent_id": agent_id,
            "label": data.label,
            "description": data.description,
            "url": data.url,
            "priority": data.priority,
            "active": data.active,
            "match": _json(data.match),
            "forward_context": _json(data.forward_context),
            "now": now,
        }

        def job(tx: Tx) -> Cta:
            if tx.execute(SQL_AGENT_EXISTS, (project_id, agent_id)).fetchone() is None:
                raise not_found("agent", agent_id)
            if one(tx.execute(SQL_COUNT_AGENT_CTAS, (agent_id,)))[0] >= MAX_RULES_PER_AGENT:
                raise TooManyCtas(
                    f"Agent {agent_id!r} already has {MAX_RULES_PER_AGENT} CTA rules; delete or reuse one."
                )
            tx.execute(SQL_INSERT_CTA, params)
            return cta_out(one(tx.execute(SQL_GET_CTA, (project_id, cta_id))))

        return await self.db.write(job)

    async def page(self, project_id: str, agent_id: str, *, after: tuple[int, int] | None, limit: int) -> Page[Cta]:
        """In matching order: highest priority first, then oldest first."""
        if await self.db.fetch_one(SQL_AGENT_EXISTS, (project_id, agent_id)) is None:
            raise not_found("agent", agent_id)
        priority, seq = after if after else (MAX_PRIORITY + 1, 0)
        params = {"agent": agent_id, "priority": priority, "seq": seq, "limit": limit + 1}
        rows = await self.db.fetch_all(SQL_LIST_CTAS, params)
        return page(rows, limit, cta_out, lambda r: (r["priority"], r["seq"]))

    async def get(self, project_id: str, cta_id: str) -> Cta:
        row = await self.db.fetch_one(SQL_GET_CTA, (project_id, cta_id))
        if row is None:
            raise not_found("CTA rule", cta_id)
        return cta_out(row)

    async def update(self, project_id: str, cta_id: str, patch: CtaPatch) -> Cta:
        given, now = patch.given(), self.clock.now()

        def job(tx: Tx) -> Cta:
            row = tx.execute(SQL_GET_CTA, (project_id, cta_id)).fetchone()
            if row is None:
                raise not_found("CTA rule", cta_id)
            if not given:
                return cta_out(row)
            values = {**dict(row), **given, "now": now}
            for column in ("match", "forward_context"):  # JSON columns
                if column in given:
                    values[column] = _json(given[column])
            tx.execute(SQL_UPDATE_CTA, values)
            return cta_out(one(tx.execute(SQL_GET_CTA, (project_id, cta_id))))

        return await self.db.write(job)

    async def delete(self, project_id: str, cta_id: str) -> None:
        def job(tx: Tx) -> None:
            if tx.execute(SQL_DELETE_CTA, (project_id, cta_id)).rowcount == 0:
                raise not_found("CTA rule", cta_id)

        await self.db.write(job)

    # Matching

    async def match(self, project_id: str, session_id: str, text: str) -> list[Cta]:
        """The rules whose cards a reply with `text` in this session gets, at most `MAX_CTAS`."""
        rows = await self.db.fetch_all(SQL_REPLY_RULES, (project_id, session_id))
        deadline = asyncio.get_running_loop().time() + MATCH_BUDGET_SECONDS
        matched: list[Cta] = []
        for row in rows:
            rule = cta_out(row)
            if not page_and_language_hold(rule.match, row["session_page_url"], row["session_language"]):
                continue
            if patterns := text_patterns(rule.match):
                found = await self.patterns.search(patterns, text, deadline=deadline)
                if found is None:
                    log.warning("CTA rule %s: its text search did not finish in time and counts as no match", rule.id)
                if not found:
                    continue
            matched.append(rule)
            if len(matched) == MAX_CTAS:
                break
        return matched

    async def prepare_cards(self, draft: ReplyDraft) -> ReplyFill | None:
        """For an assistant reply: match before its write job; the cards are built and signed in it."""
        rules = await self.match(draft.project_id, draft.session_id, draft.text)
        if not rules:
            return None
        now, fresh = self.clock.now(), new_context_secret()

        def fill(tx: Tx, reply: Reply) -> None:
            cards = self.context.cards(tx, reply.project_id, reply.session, rules, now, fresh)
            reply.done.ctas, reply.done.cta = cards, cards[0]

        return fill

    async def fresh_card(self, project_id: str, session: Session, cta_id: str) -> CtaCard:
        """The card of rule `cta_id` as offered in `session`, its URL signed now: the widget asks
        for it when a card is clicked long after its reply, so the 300 s window never bites a
        visitor. Only a card some reply in this session offered, of a rule still active, is
        signed again: a visitor cannot collect other rules' destinations with their own context."""
        now, fresh = self.clock.now(), new_context_secret()

        def job(tx: Tx) -> CtaCard:
            row = tx.execute(SQL_GET_CTA, (project_id, cta_id)).fetchone()
            if row is None or not row["active"] or not self.streams.card_offered(tx, session.id, cta_id):
                raise NotFound(
                    f"No card {cta_id!r} is offered in session {session.id!r} (its rule may have been "
                    "deleted or deactivated)."
                )
            return self.context.cards(tx, project_id, session, [cta_out(row)], now, fresh)[0]

        return await self.db.write(job)
