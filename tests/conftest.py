"""Shared fixtures: a real app on a real SQLite file in tmp_path, driven in the test's own event loop.

Litestar's AsyncTestClient runs the app in a portal thread with its own loop, which serialises
"concurrent" requests and makes direct service calls cross loops; so the app's lifespan runs here
and requests go through httpx's ASGITransport, all in one loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import httpx
import pytest
import uvicorn

from glimpze.app import create_app
from glimpze.clock import FakeClock
from glimpze.config import Config, load
from glimpze.ops.server import Server
from tests.figures import REPORTED
from tests.pg import database_for, pg_write_locked, query, stop_cluster, table_names
from tests.receiver import Receiver
from tests.screenshots import SCREENSHOT


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        # Figures travel on the report, so they reach the main process from pytest-xdist workers too.
        report.user_properties.extend(("figure", line) for line in REPORTED)
        REPORTED.clear()
    shoot = item.stash.get(SCREENSHOT, None)  # set by tests that show a page: saves a screenshot
    if report.when == "call" and shoot is not None:
        try:
            where = f"saved at {shoot()}"
        except Exception as exc:  # a crashed page must not hide the test's own failure
            where = f"could not be saved: {exc!r}"
        report.sections.append(("screenshot", where))  # printed with a failure's report


# The longest suites start first, so that pytest-xdist's workers (.ci/run: -n 2) finish together.
LONG_FIRST = ("test_soak.py", "test_schemathesis.py", "test_backup.py", "test_widget_browser.py", "test_shutdown.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: LONG_FIRST.index(item.path.name) if item.path.name in LONG_FIRST else len(LONG_FIRST))


def pytest_sessionfinish() -> None:
    stop_cluster()  # the throwaway PostgreSQL cluster, when this run started one


def database_overrides(tmp_path: Path) -> dict[str, object]:
    """The settings of a test's data: its data dir, and its own PostgreSQL database when the
    suite runs on PostgreSQL (GLIMPZE_TEST_DATABASE=postgresql)."""
    return {"data_dir": str(tmp_path / "data"), "database.url": database_for(tmp_path / "data")}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The figures tests reported with tests.figures.report(), after the results."""
    lines = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        for name, value in getattr(report, "user_properties", ())
        if name == "figure"
    ]
    if lines:
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    empty = tmp_path / "glimpze.toml"
    empty.write_text("")
    return load(empty, env={}, overrides=database_overrides(tmp_path))


class Api:
    """A test client with the admin key, and helpers for the common setup steps."""

    def __init__(self, client: httpx.AsyncClient, key: str, app: Any, announced: list[str] | None = None) -> None:
        self.client = client
        self.key = key
        self.app = app
        self.auth = {"Authorization": f"Bearer {key}"}
        self.announced = announced or []  # what the server printed at start (admin key, setup link)

    @property
    def glimpze(self) -> Any:
        return self.app.state.glimpze

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.client.get(path, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    async def post(self, path: str, **kw: Any) -> Any:
        return await self.client.post(path, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    async def patch(self, path: str, **kw: Any) -> Any:
        return await self.client.patch(path, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    async def put(self, path: str, **kw: Any) -> Any:
        return await self.client.put(path, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    async def delete(self, path: str, **kw: Any) -> Any:
        return await self.client.delete(path, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    async def feed(
        self, schema_type: str = "summary", plan: str | None = None, name: str = "Test feed"
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "schema_type": schema_type}
        if plan:
            body["plan"] = plan
        response = await self.post("/v1/feeds", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    async def upload(
        self, feed: dict[str, Any], files: dict[str, Any], data: dict[str, str] | None = None, **kw: Any
    ) -> Any:
        """POST /ingest/{id}/upload; `files` maps a field to bytes or to (filename, bytes, content type)."""
        headers = {"Authorization": f"Bearer {feed['write_key']}", **kw.pop("headers", {})}
        parts = {k: v if isinstance(v, tuple) else (f"{k}.png", v, "image/png") for k, v in files.items()}
        return await self.client.post(
            f"/ingest/{feed['id']}/upload", files=parts or None, data=data, headers=headers, **kw
        )

    async def ingest(self, feed: dict[str, Any], body: Any, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {feed['write_key']}", **kw.pop("headers", {})}
        if isinstance(body, (bytes, str)):
            return await self.client.post(f"/ingest/{feed['id']}", content=body, headers=headers, **kw)
        return await self.client.post(f"/ingest/{feed['id']}", json=body, headers=headers, **kw)


def admin_key_from(messages: list[str]) -> str:
    for message in messages:
        if match := re.search(r"gzp_[A-Za-z0-9]+", message):
            return match.group(0)
    raise AssertionError(f"no admin key announced in {messages!r}")


@asynccontextmanager
async def running(config: Config, clock: FakeClock, key: str | None = None, **kwargs: Any) -> AsyncIterator[Api]:
    """The app for `config`, started (lifespan) in this loop, with a client and its admin key
    (announced on first start; pass `key` when restarting on the same data)."""
    said: list[str] = []
    app = create_app(config, clock=clock, announce=said.append, **kwargs)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as client:
            yield Api(client, key or admin_key_from(said), app, said)


@pytest.fixture
async def api(config: Config, clock: FakeClock) -> AsyncIterator[Api]:
    async with running(config, clock) as api:
        yield api


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP receiver on 127.0.0.1 (tests/receiver.py)."""
    with Receiver() as r:
        yield r


@asynccontextmanager
async def driven(tmp_path: Path, clock: FakeClock, toml: str = "") -> AsyncIterator[Api]:
    """The app allowed to call 127.0.0.1 (local receivers), its deliveries and pushes driven by the
    test: `dispatcher.deliver_due(now)`, `push.send_due(now)`. `toml` adds settings."""
    path = tmp_path / "glimpze.toml"
    path.write_text(f'{toml}\n[webhooks]\nallow_targets = ["127.0.0.1"]\n')
    config = load(path, env={}, overrides=database_overrides(tmp_path))
    async with running(config, clock) as api:
        await api.glimpze.dispatcher.stop_runner()
        await api.glimpze.push.stop_runner()
        yield api


@contextlib.contextmanager
def write_locked(db_path: Path) -> Iterator[None]:
    """Another connection holds the database's write lock meanwhile: the app's writes (and their
    callers) wait until it lets go, so a test can look at the app while a write is in progress."""
    with pg_write_locked(db_path) as on_postgres:
        if on_postgres:
            yield
            return
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def stored_files(data_dir: Path) -> list[str]:
    """Every file under the data dir's media/ (spool files included)."""
    media = data_dir / "media"
    return sorted(str(p.relative_to(media)) for p in media.rglob("*") if p.is_file()) if media.exists() else []


def row_counts(db_path: Path) -> dict[str, int]:
    """Rows per table, read through a separate connection (either backend: tests/pg.py)."""
    return {t: int(query(db_path, f'SELECT count(*) FROM "{t}"')[0][0]) for t in table_names(db_path)}


def loopback_socket() -> socket.socket:
    """A TCP socket bound to a free port on 127.0.0.1, for uvicorn's `serve(sockets=[…])`.

    Made with IPPROTO_TCP so that asyncio sets TCP_NODELAY on the connections it accepts (it
    checks the socket's protocol): without it every answer written in two parts (headers, then
    body) waits ~40 ms for the client's delayed ACK. (uvloop, which `glimpze serve` runs on, sets
    it regardless.)
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    return sock


class LiveServer(Server):
    """Glimpze's server class without signal handling: it runs inside the test's event loop."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


@pytest.fixture
async def live(config: Config, clock: FakeClock) -> AsyncIterator[Api]:
    """The real app served by uvicorn on 127.0.0.1 in the test's own loop, with a real httpx client.

    For what AsyncTestClient cannot do: it buffers whole responses, so an SSE stream never returns.
    `live.app.state.server` is the uvicorn server (set `should_exit` to shut it down)."""
    said: list[str] = []
    app = create_app(config, clock=clock, announce=said.append)
    async with serving(app) as (server, url):
        app.state.server = server
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            yield Api(client, admin_key_from(said), app, said)


@asynccontextmanager
async def serving(app: Any, *, grace: int = 5) -> AsyncIterator[tuple[LiveServer, str]]:
    """`app` served by uvicorn on a free port of 127.0.0.1 in this loop: (the server, its URL)."""
    sock = loopback_socket()
    server = LiveServer(
        uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=grace),
        app.state.glimpze,
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # uvicorn has no startup event to await
        assert not task.done(), task.exception()
        await asyncio.sleep(0.01)
    try:
        yield server, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


class SseEvent(NamedTuple):
    id: str | None
    event: str | None
    data: str
    comment: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class SseReader:
    """Reads Server-Sent Events from a streaming httpx response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 2.0, *, comments: bool = False) -> SseEvent | None:
        """The next event (None when the stream ended), failing after `timeout` seconds."""
        fields: dict[str, list[str]] = {}
        with anyio.fail_after(timeout):
            async for line in self._lines:
                if line == "":
                    if fields:
                        comment = "\n".join(fields.pop("", [])) or None
                        if fields or comments:
                            return SseEvent(
                                (fields.get("id") or [None])[-1],
                                (fields.get("event") or [None])[-1],
                                "\n".join(fields.get("data", [])),
                                comment,
                            )
                        fields = {}
                    continue
                name, _, value = line.partition(":")
                fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
        return None


def out_events(db_path: Path, event_type: str | None = None) -> list[dict[str, Any]]:
    """The outgoing events' payloads, oldest first, read through a separate connection."""
    rows = query(
        db_path, "SELECT payload FROM out_events WHERE type = ? OR ? ORDER BY seq", (event_type, event_type is None)
    )
    return [json.loads(row[0]) for row in rows]
