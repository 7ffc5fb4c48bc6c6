"""Names a person gives (feeds, agents, projects, API keys, a webhook's description, CTA labels,
visitors, authors, teams): control characters are refused and at least one visible character is
required, with a 422 naming the field, from the API, the dashboard and the CLI alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api, row_counts
from tests.dashboard import Dash
from tests.server import run_cli as glimpze

pytestmark = pytest.mark.anyio

INVISIBLE = [
    "\u200b\u200c\u200d",  # zero-width space, non-joiner, joiner
    " \u2060\ufeff ",  # word joiner, byte order mark
    "\u3164\u2800",  # Hangul filler, blank Braille pattern
    "\u202e\u2066\u00ad",  # bidi override and isolate, soft hyphen
    "\u0301\u0301",  # combining marks with nothing to mark
]
CONTROL = ["\x00", "Builds\x00", "a\x07b", "two\nlines", "\x1b[31mred", "tab\there", "\x7f", "next\x85line"]
BAD_NAMES = INVISIBLE + CONTROL


async def setup(api: Api) -> dict[str, Any]:
    """One of each thing a case renames or adds to, made before the rows are counted."""
    await api.glimpze.dispatcher.stop_runner()  # the webhook's deliveries would add attempt rows
    feed = (await api.post("/v1/feeds", json={"name": "Builds", "schema_type": "status"})).json()
    agent = (await api.post("/v1/agents", json={"name": "Sales bot"})).json()
    hook = (await api.post("/v1/webhooks", json=HOOK)).json()
    session = (await api.post("/v1/sessions", json={"visitor": {"id": "v-1"}})).json()
    await api.post("/v1/widget-tokens", json={"visitor": {"id": "v-1"}})  # the project's token secret
    return {"feed": feed["id"], "agent": agent["id"], "hook": hook["id"], "session": session["id"]}


HOOK = {"url": "https://x.example/", "events": ["*"]}
MESSAGE = {"role": "agent", "text": "Hi"}
# (what, method, path, body with NAME where the name goes, the error's path)
CASES = [
    ("feed", "post", "/v1/feeds", {"name": "NAME", "schema_type": "status"}, "$.name"),
    ("feed rename", "patch", "/v1/feeds/{feed}", {"name": "NAME"}, "$.name"),
    ("agent", "post", "/v1/agents", {"name": "NAME"}, "$.name"),
    ("API key", "post", "/v1/keys", {"name": "NAME"}, "$.name"),
    ("webhook", "post", "/v1/webhooks", {**HOOK, "description": "NAME"}, "$.description"),
    ("webhook edit", "patch", "/v1/webhooks/{hook}", {"description": "NAME"}, "$.description"),
    ("CTA label", "post", "/v1/agents/{agent}/ctas", {"label": "NAME", "url": "https://shop.example/"}, "$.label"),
    ("visitor", "post", "/v1/widget-tokens", {"visitor": {"id": "v-2", "name": "NAME"}}, "$.visitor.name"),
    ("author", "post", "/v1/sessions/{session}/messages", {**MESSAGE, "author": "NAME"}, "$.author"),
    ("team", "patch", "/v1/sessions/{session}", {"team": "NAME"}, "$.team"),
]  # fmt: skip


def with_name(body: Any, name: str) -> Any:
    return json.loads(json.dumps(body).replace('"NAME"', json.dumps(name)))


@pytest.mark.parametrize("what,method,path,body,field", CASES, ids=[c[0] for c in CASES])
async def test_names_without_a_visible_character_are_refused(
    api: Api, what: str, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    ids = await setup(api)
    db = Path(api.glimpze.config.db_path)
    before = row_counts(db)
    for name in BAD_NAMES:
        response = await getattr(api, method)(path.format(**ids), json=with_name(body, name))
        assert response.status_code == 422, f"{name!r}: {response.text}"
        problem = response.json()
        assert problem["code"] == "validation_failed"
        assert [e["path"] for e in problem["errors"]] == [field], (name, problem)
        message = problem["errors"][0]["message"]
        expected = "visible character" if name in INVISIBLE else "control characters"
        assert expected in message, (name, message)
    assert row_counts(db) == before


async def test_the_dashboard_and_the_cli_refuse_the_same_names(api: Api, tmp_path: Path) -> None:
    dash = Dash(api.client)
    await dash.set_up(api.announced)
    db = Path(api.glimpze.config.db_path)
    before = row_counts(db)

    await dash.open("/feeds?new=1")
    feed = await dash.submit("/feeds", {"name": "\u200b\u200b", "schema_type": "status", "plan": "free"})
    assert feed.status_code == 422 and "at least one visible character" in feed.text
    await dash.open("/settings")
    key = await dash.follow(await dash.submit("/settings/keys", {"name": "ci\x1b[0m"}))
    assert "must not contain control characters (it holds U+001B)" in key.text
    await dash.open("/webhooks?new=1")
    hook = await dash.submit(
        "/webhooks", {"url": "https://x.example/", "events": ["*"], "description": "\u2060", "active": "on"}
    )
    assert hook.status_code == 422 and "must contain at least one visible character" in hook.text
    assert row_counts(db) == before

    data = tmp_path / "cli"
    assert glimpze("projects", "list", data=data).returncode == 0  # the database exists: no migration lines
    for name in ("\u200b\u200d", "bell\x07", "\u3164"):
        made = glimpze("projects", "create", name, data=data)
        assert made.returncode == 1 and made.stdout == "", made
        assert made.stderr.count("\n") == 1 and made.stderr.startswith("glimpze: $.name: must"), made.stderr
    listed = json.loads(glimpze("projects", "list", "--json", data=data).stdout)
    assert [p["name"] for p in listed] == ["Default"]


async def test_names_with_visible_characters_are_kept_trimmed(api: Api) -> None:
    for name in ("Ünïcode ✓", "👨\u200d👩\u200d👧 family", "עברית \u200fRTL", "  Trim me  ", "—"):
        made = await api.post("/v1/feeds", json={"name": name, "schema_type": "status"})
        assert made.status_code == 201, made.text
        assert made.json()["name"] == name.strip()
