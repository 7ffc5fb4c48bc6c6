"""The error catalogue (glimpze/errors.py) is the only source of error codes, every entry in it is
answered somewhere, docs/errors.md lists exactly its codes, and every error answers one
problem+json shape through the real app (as datasette pins its error shape per route)."""

from __future__ import annotations

import ast
import importlib
import logging
import pkgutil
import re
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.exceptions import ClientException, InternalServerException

import glimpze
from glimpze import errors
from glimpze.clock import FakeClock
from glimpze.errors import ANY_STATUS, GlimpzeError, catalogue, markdown_table, meaning, tree
from glimpze.store.database import StorageError
from tests.conftest import Api

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "glimpze"
ERRORS_PY = PACKAGE / "errors.py"
PROBLEMS_PY = PACKAGE / "web" / "problems.py"
DOCS = REPO / "docs" / "errors.md"

CODES = {kind.code: kind for kind in catalogue()}
NAMES = {kind.__name__: kind for kind in catalogue()}

# Every code clients could see before the catalogue existed, with its status (DESIGN §3, §7): the
# catalogue may grow, but none of these may be renamed, renumbered or dropped.
BINDING = {
    "invalid_request": 400,
    "invalid_json": 400,
    "invalid_api_key": 401,
    "invalid_write_key": 401,
    "invalid_read_token": 401,
    "invalid_token": 401,
    "invalid_metrics_token": 401,
    "unauthorized": 401,
    "not_set_up": 401,
    "wrong_password": 401,
    "forbidden": 403,
    "plan_forbids": 403,
    "origin_not_allowed": 403,
    "not_found": 404,
    "invalid_setup_link": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "conflict": 409,
    "idempotency_key_in_use": 409,
    "session_closed": 409,
    "invalid_transition": 409,
    "approval_decided": 409,
    "action_link_used": 409,
    "too_many_ctas": 409,
    "gone": 410,
    "cursor_expired": 410,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "validation_failed": 422,
    "schema_type_mismatch": 422,
    "idempotency_key_reused": 422,
    "target_not_allowed": 422,
    "rate_limited": 429,
    "headers_too_large": 431,
    "internal_error": 500,
    "unavailable": 503,
    "too_many_connections": 503,
    "storage_unavailable": 503,
    "unhealthy": 503,
    "error": ANY_STATUS,
}


def sources() -> list[tuple[Path, ast.Module]]:
    """Every module of the package but the catalogue itself, parsed."""
    paths = sorted(p for p in PACKAGE.rglob("*.py") if p != ERRORS_PY)
    return [(path, ast.parse(path.read_text(), str(path))) for path in paths]


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"


def catalogue_name(node: ast.expr) -> str | None:
    """`X` for a call's function `X` or `X.at`/`X.over` when X is a catalogue class."""
    if isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) and node.id in NAMES else None


def naming_uses(tree_: ast.Module) -> list[ast.Name]:
    """The names in a module that make or answer an error: every name read, except in `except`
    clauses, annotations, class bases and isinstance checks (which only test for an error)."""
    testing: set[int] = set()

    def skip(node: ast.AST | None) -> None:
        if node is not None:
            testing.update(id(inner) for inner in ast.walk(node))

    for node in ast.walk(tree_):
        if isinstance(node, ast.ExceptHandler):
            skip(node.type)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            skip(node.returns)
            for arg in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]:
                skip(arg.annotation)
        elif isinstance(node, ast.AnnAssign):
            skip(node.annotation)
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                skip(base)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("isinstance", "issubclass")
        ):
            for arg in node.args[1:]:
                skip(arg)
    return [
        node
        for node in ast.walk(tree_)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and id(node) not in testing
    ]


# The catalogue


def test_each_code_is_declared_once_with_a_status_a_title_and_a_one_line_meaning() -> None:
    assert len(CODES) == len(catalogue()), "two classes declare the same code"
    for kind in catalogue():
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", kind.code), kind
        assert "code" in vars(kind), f"{kind.__name__} needs a code of its own"
        assert kind.title and not kind.title.endswith("."), kind
        assert meaning(kind) and "\n" not in meaning(kind), f"{kind.__name__} needs a docstring: its meaning"
        if kind is errors.FrameworkError:
            assert kind.status == ANY_STATUS
        else:
            assert 400 <= kind.status <= 599, kind
        if kind.__base__ is not GlimpzeError and kind is not GlimpzeError:
            assert kind.status == kind.__base__.status, f"{kind.__name__} is not in its status's family"


def test_no_code_changes_its_name_or_status() -> None:
    assert {code: CODES[code].status for code in BINDING if code in CODES} == BINDING


def test_every_error_class_in_the_package_answers_a_catalogue_code() -> None:
    """Classes outside the catalogue may specialise an entry (BackupError) but not declare a code."""
    for module in pkgutil.walk_packages(glimpze.__path__, "glimpze."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found, todo = [], [GlimpzeError]
    while todo:
        kind = todo.pop()
        found.append(kind)
        todo.extend(kind.__subclasses__())
    for kind in found:
        if kind.__module__ != errors.__name__:
            own = sorted({"code", "status", "title"} & set(vars(kind)))
            assert not own, f"{kind.__module__}.{kind.__name__} declares {own}: declare the code in glimpze/errors.py"
        assert CODES.get(kind.code) in kind.__mro__, kind


def test_no_raise_site_writes_a_code_or_a_title() -> None:
    """Codes and titles are the catalogue's: a raise names the entry and gives only its detail, and
    only glimpze/web/problems.py writes a problem document."""
    wrong = []
    for path, module in sources():
        for node in ast.walk(module):
            if isinstance(node, ast.Call) and catalogue_name(node.func):
                wrong += [f"{where(path, node)}: {k.arg}=" for k in node.keywords if k.arg in ("code", "title")]
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values):
                    literal = isinstance(key, ast.Constant) and isinstance(value, ast.Constant)
                    if literal and key.value == "code" and isinstance(value.value, str):
                        wrong.append(f"{where(path, node)}: a problem written by hand ({value.value!r})")
            if path != PROBLEMS_PY and isinstance(node, ast.Constant) and "urn:glimpze:error" in str(node.value):
                wrong.append(f"{where(path, node)}: a problem type written by hand")
    assert wrong == []


def test_every_catalogue_entry_is_answered_somewhere_or_reserved_with_a_reason() -> None:
    used: dict[str, list[str]] = {}
    for path, module in sources():
        for node in naming_uses(module):
            if node.id in NAMES:
                used.setdefault(node.id, []).append(where(path, node))
    for kind in catalogue():
        if kind.reserved is not None:
            assert len(kind.reserved) > 20, f"{kind.__name__}: say why the code is kept"
            assert kind.__name__ not in used, f"{kind.__name__} is marked reserved but used at {used[kind.__name__]}"
        else:
            assert kind.__name__ in used, f"nothing raises {kind.__name__} ({kind.code}): use it or mark it reserved"


def test_the_module_docstring_draws_the_catalogue_tree() -> None:
    drawn = "\n".join(f"    {line}" for line in tree().splitlines())
    assert drawn in (errors.__doc__ or ""), "redraw it: python -m glimpze.errors tree"


def test_docs_list_exactly_the_catalogue_codes_with_their_status_and_title() -> None:
    page = DOCS.read_text()
    table = page[page.index("| code | status | title | meaning |") :].split("\n\n", 1)[0].strip()
    rows = [row.split(" | ") for row in table.splitlines()[2:]]
    listed = {row[0].strip("| `"): (row[1], row[2]) for row in rows}
    expected = {
        kind.code: ("any other" if kind.status == ANY_STATUS else str(kind.status), kind.title) for kind in catalogue()
    }
    assert listed == expected
    assert table == markdown_table(), "regenerate the table: python -m glimpze.errors"


def test_the_documented_command_prints_the_table() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "glimpze.errors"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert printed.stdout.strip() == markdown_table() and printed.stderr == ""
    assert "python -m glimpze.errors" in DOCS.read_text()


# The shape, through the real app: one error per status it answers, and the framework's own refusals.

Case = Callable[[Api, FakeClock, pytest.MonkeyPatch], Awaitable[httpx.Response]]
EVENT = {"schema_type": "summary", "content": {"title": "Revenue", "primary_value": "$5"}}
FIELDS = ["type", "title", "status", "detail", "code", "errors"]


async def malformed_json(api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await api.ingest(await api.feed(), b'{"schema_type": ')


async def no_api_key(api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await api.client.get("/v1/feeds")


async def custom_feed_on_free_plan(api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await api.post("/v1/feeds", json={"name": "img", "schema_type": "custom"})


async def unknown_route(api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await api.get("/v2/feeds")


async def unknown_feed(api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await api.get("/v1/feeds/fd_nothing")


async def wrong_method(api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await api.client.put("/healthz")


async def callback_secret_of_a_summary_feed(
    api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> httpx.Response:
    return await api.post(f"/v1/feeds/{(await api.feed())['id']}/rotate-callback-secret")


async def expired_cursor(api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    feed = await api.feed()
    await api.ingest(feed, EVENT)
    clock.advance(8 * 86400)
    await api.ingest(feed, EVENT)
    assert await api.glimpze.outbox.purge(clock.now()) == 1
    return await api.get("/v1/events?after=WzBd")  # seq 0: before everything


async def big_api_body(api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await api.post("/v1/feeds", content=b" " * (2 * 1024 * 1024), headers={"Content-Type": "application/json"})


async def big_event(api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await api.ingest(await api.feed(), b" " * (65 * 1024))


async def text_event(api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await api.ingest(await api.feed(), b"a=1", headers={"Content-Type": "application/x-www-form-urlencoded"})


async def bad_query_parameter(api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await api.get("/v1/approvals?limit=many")


async def event_of_another_schema(api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    return await api.ingest(await api.feed(), {"schema_type": "counter", "content": {"title": "n", "count": 1}})


async def over_the_plan(api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    feed = await api.feed()  # the free plan: 6 events a minute
    for _ in range(6):
        assert (await api.ingest(feed, EVENT)).status_code == 202
    return await api.ingest(feed, EVENT)


async def unexpected_exception(api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    authentication_raises(api, monkeypatch, RuntimeError("a secret the answer must not repeat: gzp_leaked"))
    return await api.get("/v1/feeds")


def authentication_raises(api: Api, monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    """Every /v1 request raises `exc` (a fault that cannot be caused on purpose otherwise)."""

    async def broken(secret: str | None) -> Any:
        raise exc

    monkeypatch.setattr(api.glimpze.keys, "authenticate", broken)


async def framework_fault(api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    authentication_raises(api, monkeypatch, InternalServerException("a secret the answer must not repeat: gzp_leaked"))
    return await api.get("/v1/feeds")


async def framework_status_without_a_code(
    api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> httpx.Response:
    authentication_raises(api, monkeypatch, ClientException("No coffee here.", status_code=418))
    return await api.get("/v1/feeds")


async def disk_refuses_writes(api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    async def refused(job: Any) -> Any:
        raise StorageError("database or disk is full")

    monkeypatch.setattr(api.glimpze.db, "write", refused)  # a full disk for this test alone (test_data_dir fills one)
    return await api.post("/v1/feeds", json={"name": "Sales", "schema_type": "summary"})


async def database_unreadable(api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> httpx.Response:
    async def failing(sql: str, params: Any = ()) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(api.glimpze.db, "fetch_value", failing)
    return await api.client.get("/healthz")


CASES: dict[str, tuple[Case, str, str | None]] = {
    # name: (the request, its code, the path of its first field error)
    "400 invalid body": (malformed_json, "invalid_json", None),
    "401 no credentials": (no_api_key, "invalid_api_key", None),
    "403 plan": (custom_feed_on_free_plan, "plan_forbids", None),
    "404 route (framework)": (unknown_route, "not_found", None),
    "404 thing": (unknown_feed, "not_found", None),
    "405 method (framework)": (wrong_method, "method_not_allowed", None),
    "409 state": (callback_secret_of_a_summary_feed, "conflict", None),
    "410 cursor": (expired_cursor, "cursor_expired", None),
    "413 body (framework)": (big_api_body, "payload_too_large", None),
    "413 event": (big_event, "payload_too_large", None),
    "415 content type": (text_event, "unsupported_media_type", None),
    "422 query (framework)": (bad_query_parameter, "validation_failed", "query.limit"),
    "422 field": (event_of_another_schema, "schema_type_mismatch", "$.schema_type"),
    "429 plan": (over_the_plan, "rate_limited", None),
    "418 without a code (framework)": (framework_status_without_a_code, "error", None),
    "500 unexpected": (unexpected_exception, "internal_error", None),
    "500 fault (framework)": (framework_fault, "internal_error", None),
    "503 storage": (disk_refuses_writes, "storage_unavailable", None),
    "503 health": (database_unreadable, "unhealthy", None),
}


@pytest.mark.anyio
@pytest.mark.parametrize("name", CASES)
async def test_every_status_answers_one_problem_shape(
    name: str, api: Api, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    make, code, path = CASES[name]
    caplog.set_level(logging.ERROR, "glimpze.errors")
    response = await make(api, clock, monkeypatch)
    body, kind = response.json(), CODES[code]

    status = 418 if kind.status == ANY_STATUS else kind.status
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert list(body)[: len(FIELDS)] == FIELDS
    assert body["type"] == f"urn:glimpze:error:{code}" and body["code"] == code
    assert body["title"] == kind.title and body["status"] == status
    assert isinstance(body["detail"], str) and len(body["detail"]) > 10
    assert all(list(error) == ["path", "message"] for error in body["errors"])
    assert [e["path"] for e in body["errors"][:1]] == ([path] if path else [])
    extra = list(body)[len(FIELDS) :]
    assert extra == (["limit", "event_id"] if code == "rate_limited" else [])
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer ")
    if status >= 500:
        assert "Traceback" not in response.text and "gzp_leaked" not in response.text
        assert caplog.records, "a server error is logged"
    if code == "storage_unavailable":
        assert response.headers["retry-after"] == "30"
    if code == "internal_error":
        assert body["detail"] == "The server hit an unexpected error; it has been logged."
        assert "gzp_leaked" in caplog.text  # the log has what the answer withholds
