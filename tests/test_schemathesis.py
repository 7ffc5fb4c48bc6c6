"""Schemathesis against /schema/openapi.json of the real app served by uvicorn: no 5xx on any
generated input, no auth bypass, every answer as documented; once with every credential the
document names (API key, write key, read token, widget token) and once with none.

Path parameters name real objects (a feed, a webhook and its delivery, a session, an agent, a lead,
an uploaded image) made before the run, so generated requests get past the 404 into the validation and the services;
the run without credentials aims at the same objects, so an operation that skipped its credential
check would answer 2xx and fail the `ignored_auth` check. With credentials, `ignored_auth` also
sends each operation's request once without them and once with a wrong one.

The app runs in this test's loop with outgoing HTTP stubbed (`create_app(network=…)`, tests/fake_network.py): fuzzing
creates webhooks to whatever URLs it likes, and nothing may leave this machine. Schemathesis runs
as its CLI in a subprocess, bounded by `max-examples` per operation and phase; its seed is printed,
so a failure can be replayed with `--seed`. Every request comes from its own address
(tests/schemathesis_hooks.py sets X-Forwarded-For, trusted from 127.0.0.1): otherwise the
failed-authentication limiter would answer 429 to most of the run.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from glimpze.app import create_app
from glimpze.config import load
from tests.conftest import admin_key_from, serving
from tests.fake_network import FakeNetwork
from tests.figures import report
from tests.imagefiles import widget
from tests.server import REPO, UNLIMITED_PLAN

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

MAX_EXAMPLES = int(os.environ.get("GLIMPZE_FUZZ_EXAMPLES", "15"))
RUN_TIMEOUT = 300  # seconds; a hung run fails instead of stalling CI
# Business rules the document cannot express make schema-valid input fail on purpose (an opaque
# cursor the API never gave out, a plan name from glimpze.toml, labels with add_labels): a 422 there
# is right, so schemathesis's "positive data must be accepted" check does not apply.
CHECKS_OFF = ["positive_data_acceptance"]

# Operations that revoke credentials: with the run's own they would lock the rest of the run out,
# so in the run with credentials they aim at objects of their own (SPARE), in a run of their own.
LOCKOUTS = {
    "DELETE /v1/keys/{key_id}": "key_id",
    "POST /v1/keys/{key_id}/rotate": "key_id",
    "DELETE /v1/feeds/{feed_id}": "feed_id",
    "POST /v1/feeds/{feed_id}/rotate-key": "feed_id",
    "POST /v1/feeds/{feed_id}/rotate-read-token": "feed_id",
}


class Target:
    def __init__(self, url: str, admin: str, root: Path) -> None:
        self.url = url
        self.admin = admin
        self.root = root


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[Target]:
    toml = tmp_path / "glimpze.toml"
    # synchronous = "normal": nothing here needs to survive a power cut, and the run is faster.
    toml.write_text('trusted_proxies = ["127.0.0.1"]\nsynchronous = "normal"\n' + UNLIMITED_PLAN)
    config = load(toml, env={}, overrides={"data_dir": str(tmp_path / "data")})
    said: list[str] = []
    outgoing = FakeNetwork(lambda request: httpx.Response(204))
    asgi = create_app(config, network=outgoing, announce=said.append)
    async with serving(asgi, grace=2) as (_, url):
        yield Target(url, admin_key_from(said), tmp_path)


class Seeded:
    """The credentials the document names and the objects the path parameters point at."""

    def __init__(self, auth: dict[str, str], ids: dict[str, str], spare: dict[str, str], operations: int) -> None:
        self.auth = auth  # security scheme → secret
        self.ids = ids  # path parameter → id
        self.spare = spare  # path parameter → id, for LOCKOUTS
        self.operations = operations  # in the document


async def seed(target: Target) -> Seeded:
    admin = {"Authorization": f"Bearer {target.admin}"}
    async with httpx.AsyncClient(base_url=target.url, headers=admin) as client:

        async def made(path: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
            response = await client.post(path, json=body, **kw)
            assert response.status_code in (200, 201), response.text
            return response.json()

        feed = await made("/v1/feeds", {"name": "fuzz", "schema_type": "counter"})
        spare_feed = await made("/v1/feeds", {"name": "spare", "schema_type": "summary"})
        spare_key = await made("/v1/keys", {"name": "spare"})
        hook = await made("/v1/webhooks", {"url": "https://hooks.example.com/fuzz", "events": ["*"]})
        delivery = await made(f"/v1/webhooks/{hook['id']}/test", {})
        agent = await made("/v1/agents", {"name": "Fuzzy"})
        token = await made("/v1/widget-tokens", {"visitor": {"id": "fuzz"}, "agent_id": agent["id"]})
        visitor = {"Authorization": f"Bearer {token['token']}"}
        session = await made("/widget/v1/sessions", {}, headers=visitor)
        # the stream has something to send at once (the run reads one event of it)
        await made(f"/widget/v1/sessions/{session['id']}/messages", {"text": "hello"}, headers=visitor)
        lead = await made("/v1/leads", {"fields": {"email": "ada@example.com"}, "session_id": session["id"]})
        ingested = await client.post(
            f"/ingest/{feed['id']}",
            json={"schema_type": "counter", "content": {"title": "fuzz", "count": 1}},
            headers={"Authorization": f"Bearer {feed['write_key']}"},
        )
        assert ingested.status_code == 202, ingested.text
        pictures = await made("/v1/feeds", {"name": "pictures", "schema_type": "custom"})
        uploaded = await client.post(
            f"/ingest/{pictures['id']}/upload",
            files={"small_image": ("s.png", widget("small"), "image/png")},
            headers={"Authorization": f"Bearer {pictures['write_key']}"},
        )
        assert uploaded.status_code == 202, uploaded.text
        media = uploaded.json()["content"]["small"]["image_url"].rsplit("/", 1)[1]
        approvals = await made("/v1/feeds", {"name": "approvals", "schema_type": "approval"})
        approval = await client.post(
            f"/ingest/{approvals['id']}",
            json={
                "schema_type": "approval",
                "content": {"description": "Deploy?"},
                "callback": {"url": "https://hooks.example.com/approved", "method": "POST"},
            },
            headers={"Authorization": f"Bearer {approvals['write_key']}"},
        )
        assert approval.status_code == 202, approval.text
        cta = await made(f"/v1/agents/{agent['id']}/ctas", {"label": "Book a demo", "url": "https://example.com/demo"})
        push_target = await made("/v1/push/targets", {"url": "json://hooks.example.com/fuzz"})
        screen = await made("/v1/screens", {"name": "fuzz", "feeds": [feed["id"]]})
        waiting = await client.get("/api/setup", headers={"ID": "AA:BB:CC:DD:EE:FF"})
        assert waiting.status_code == 200, waiting.text
        device = (await client.get("/v1/devices")).json()["data"][0]
        operations = sum(
            method in ("get", "put", "post", "delete", "options", "head", "patch", "trace")
            for item in (await client.get("/schema/openapi.json")).json()["paths"].values()
            for method in item
        )
    return Seeded(
        auth={
            "apiKey": target.admin,
            "writeKey": feed["write_key"],
            "readToken": feed["read_token"],
            "readTokenQuery": feed["read_token"],
            "widgetToken": token["token"],
        },
        ids={
            "feed_id": feed["id"],
            "target": f"{feed['id']}.json",
            "webhook_id": hook["id"],
            "delivery_id": delivery["id"],
            "agent_id": agent["id"],
            "session_id": session["id"],
            "lead_id": lead["id"],
            "key_id": spare_key["id"],
            "path.image": "medium.png",
            "path.name": media,
            "event_id": approval.json()["id"],
            "cta_id": cta["id"],
            "target_id": push_target["id"],
            "screen_id": screen["id"],
            "screen_file": f"{screen['id']}.png",
            "device_id": device["id"],
        },
        spare={"feed_id": spare_feed["id"], "key_id": spare_key["id"]},
        operations=operations,
    )


def toml_value(value: Any) -> str:
    return json.dumps(value)  # a JSON string or number is a TOML one


def toml_table(values: dict[str, Any]) -> str:
    return "{ " + ", ".join(f"{toml_value(k)} = {toml_value(v)}" for k, v in values.items()) + " }"


def config_toml(seeded: Seeded, *, credentials: bool, lockouts: bool = False) -> str:
    """The run's settings. `credentials`: send every scheme's secret; `lockouts`: only LOCKOUTS,
    aimed at the spare objects (without it, LOCKOUTS are left out when `credentials`)."""
    lines = [
        "workers = 1",  # threads: CPython 3.11 can fail to parse with ast in two at once (gh-106905)
        "request-timeout = 10",
        "max-stream-events = 1",  # an SSE stream stays open until its token expires
        f"parameters = {toml_table(seeded.ids)}",
        f"[generation]\nmax-examples = {MAX_EXAMPLES}",
        "[checks]",
        *(f"{check}.enabled = false" for check in CHECKS_OFF),
    ]
    if lockouts:
        lines.append("[phases.stateful]\nenabled = false")  # the five have no links between them
    # A long poll that waits is tested in test_webhooks.py; here it would only make the run slow.
    lines.append('[[operations]]\ninclude-name = "GET /v1/events"\nparameters = { wait = 0 }')
    if credentials:
        for scheme, secret in seeded.auth.items():
            kind = "api_key" if scheme == "readTokenQuery" else "bearer"
            lines.append(f"[auth.openapi.{scheme}]\n{kind} = {toml_value(secret)}")
        for name, parameter in LOCKOUTS.items():
            lines.append(f"[[operations]]\ninclude-name = {toml_value(name)}")
            if lockouts:
                lines.append(f"parameters = {toml_table({parameter: seeded.spare[parameter]})}")
            else:
                lines.append("enabled = false")
    return "\n".join(lines) + "\n"


async def run_schemathesis(
    target: Target, name: str, seeded: Seeded, *, credentials: bool, lockouts: bool = False
) -> tuple[int, str, float]:
    config = target.root / f"schemathesis-{name}.toml"
    config.write_text(config_toml(seeded, credentials=credentials, lockouts=lockouts))
    only = [arg for name in LOCKOUTS for arg in ("--include-name", name)] if lockouts else []
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    env = {**os.environ, "PYTHONPATH": str(REPO), "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks"}
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        st,
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{target.url}/schema/openapi.json",
        "--output-truncate",
        "false",
        *only,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=target.root,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=RUN_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace"), time.monotonic() - started


def operations_tested(out: str) -> int:
    """How many operations the run tested (from its summary)."""
    for line in out.splitlines():
        if line.strip().startswith("Tested:"):
            return int(line.split(":")[1])
    raise AssertionError(f"no summary in:\n{out}")


async def test_schemathesis_with_credentials(target: Target) -> None:
    seeded = await seed(target)
    status, out, took = await run_schemathesis(target, "credentials", seeded, credentials=True)
    report(f"schemathesis with credentials: {took:.1f} s, {_cases(out)}")
    assert status == 0, out
    assert operations_tested(out) == seeded.operations - len(LOCKOUTS), out
    status, out, took = await run_schemathesis(target, "lockouts", seeded, credentials=True, lockouts=True)
    report(f"schemathesis with credentials, the operations that revoke them: {took:.1f} s, {_cases(out)}")
    assert status == 0, out
    assert operations_tested(out) == len(LOCKOUTS), out


async def test_schemathesis_without_credentials(target: Target) -> None:
    seeded = await seed(target)
    status, out, took = await run_schemathesis(target, "anonymous", seeded, credentials=False)
    report(f"schemathesis without credentials: {took:.1f} s, {_cases(out)}")
    assert status == 0, out
    assert operations_tested(out) == seeded.operations, out  # every operation of the document


def _cases(out: str) -> str:
    """The summary's count of test cases, e.g. "2975 generated, 2975 passed"."""
    counts = (line.strip() for line in out.splitlines() if re.match(r"\s*\d+ generated", line))
    return next(counts, "no cases counted")
