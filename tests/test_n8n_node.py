"""The n8n community node (`integrations/n8n-nodes-glimpze`) against a real `glimpze serve`.

Its own tests run with node's test runner on the compiled package, with a minimal stand-in for
n8n's execution contexts and real HTTP: this starts Glimpze, makes an API key and two feeds through
`/v1`, hands them over in the environment, and requires every node test to run and pass.
`.ci/run` installs the package (`npm ci`) and builds it (phase `n8n-node`); this test builds it
again (a few seconds), so a changed TypeScript source is never tested stale.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.server import REPO, UNLIMITED_PLAN, Server

PACKAGE = REPO / "integrations" / "n8n-nodes-glimpze"
# The stand-ins for n8n's webhook endpoints listen on 127.0.0.1, which the SSRF guard refuses unless allowed.
CONFIG = UNLIMITED_PLAN + '\n[webhooks]\nallow_targets = ["127.0.0.1"]\n'
# The node suite's test count: fewer passing means some did not run (a skip or a lost file).
NODE_TESTS = 19


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"`{name}` is not on PATH: the n8n node's tests need Node.js 20 or newer, with npm"
    return path


def build_package() -> None:
    assert (PACKAGE / "node_modules").is_dir(), (
        f"{PACKAGE}/node_modules is missing: run `npm ci` there (bash .ci/run does, in its phase n8n-node)"
    )
    built = subprocess.run([tool("npm"), "run", "build"], cwd=PACKAGE, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, f"npm run build failed:\n{built.stdout}\n{built.stderr}"


def glimpze_for_the_node(server: Server) -> dict[str, str]:
    """An API key and a status and an approval feed, made through /v1 as a user would."""
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key()}"}) as client:
        key = client.post("/v1/keys", json={"name": "n8n"})
        status = client.post("/v1/feeds", json={"name": "n8n status", "schema_type": "status"})
        approval = client.post("/v1/feeds", json={"name": "n8n approvals", "schema_type": "approval"})
    assert [key.status_code, status.status_code, approval.status_code] == [201, 201, 201]
    return {
        "GLIMPZE_URL": server.url,
        "GLIMPZE_API_KEY": key.json()["key"],
        "GLIMPZE_STATUS_FEED": status.json()["id"],
        "GLIMPZE_STATUS_WRITE_KEY": status.json()["write_key"],
        "GLIMPZE_APPROVAL_FEED": approval.json()["id"],
        "GLIMPZE_APPROVAL_WRITE_KEY": approval.json()["write_key"],
    }


@pytest.mark.slow
def test_n8n_node_tests_pass_against_a_real_glimpze(tmp_path: Path) -> None:
    node = tool("node")
    build_package()
    files = sorted(str(p.relative_to(PACKAGE)) for p in (PACKAGE / "test").glob("*.test.js"))
    server = Server(tmp_path, CONFIG)
    server.start()
    try:
        env = {**os.environ, **glimpze_for_the_node(server)}
        run = subprocess.run(
            # One file at a time: they share one Glimpze project, and the trigger hears every feed event.
            [node, "--test", "--test-concurrency=1", "--test-reporter=tap", *files],
            cwd=PACKAGE,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.kill()
    report = f"{run.stdout}\n{run.stderr}\n--- glimpze serve ---\n{server.output()[-4000:]}"
    counts = {
        name: int(n) for name, n in re.findall(r"^# (tests|pass|fail|skipped|cancelled) (\d+)$", run.stdout, re.M)
    }
    assert run.returncode == 0, report
    assert counts.get("fail") == 0 and counts.get("cancelled") == 0 and counts.get("skipped") == 0, report
    assert counts.get("pass", 0) >= NODE_TESTS, report
