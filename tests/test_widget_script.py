"""`GET /widget.js`: served from package data with the right type and cache headers, shipped in the
wheel, and written so that server text only ever becomes text."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import Api
from tests.server import REPO

SCRIPT = REPO / "glimpze" / "static" / "widget.js"


@pytest.mark.anyio
async def test_the_script_is_served_cacheable_with_its_type(api: Api) -> None:
    response = await api.client.get("/widget.js")
    assert response.status_code == 200
    assert response.content == SCRIPT.read_bytes()
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["x-content-type-options"] == "nosniff"
    # Any site may load it, with `crossorigin`/SRI or under COEP too.
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    etag = response.headers["etag"]
    again = await api.client.get("/widget.js", headers={"If-None-Match": f"W/{etag}"})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    other = await api.client.get("/widget.js", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200
    spec = (await api.client.get("/schema/openapi.json")).json()
    assert "/widget.js" not in spec["paths"]


def test_server_text_only_ever_becomes_text() -> None:
    """No HTML parsing or code evaluation anywhere in the script: every message, label and
    description goes in through text nodes (the browser test shows one that tries)."""
    code = re.sub(r"/\*.*?\*/", "", SCRIPT.read_text(), flags=re.S)
    source = re.sub(r"(^|\s)//\s.*$", "", code, flags=re.M)  # the code, not the comments
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "srcdoc"):
        assert sink not in source, sink
    assert "textContent" in source and "attachShadow" in source
    assert not re.search(r"\bimport\b|\brequire\(", source)  # dependency-free, no build step


# A non-editable install: run from a directory where the repository is not importable.
SERVE_FROM_INSTALL = """
import asyncio, sys, tempfile
from pathlib import Path
import httpx
import glimpze
from glimpze.app import create_app
from glimpze.config import load

assert "site" in glimpze.__file__, glimpze.__file__

async def main():
    tmp = Path(tempfile.mkdtemp())
    (tmp / "g.toml").write_text("")
    app = create_app(load(tmp / "g.toml", env={}, overrides={"data_dir": str(tmp / "data")}), announce=lambda _: None)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://installed") as client:
            response = await client.get("/widget.js")
            assert response.status_code == 200, response.status_code
            sys.stdout.buffer.write(response.content)

asyncio.run(main())
"""


@pytest.mark.slow
def test_the_wheel_ships_the_script_and_an_install_serves_it(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "glimpze", source / "glimpze", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", wheels],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert built.returncode == 0, built.stderr
    wheel = next(wheels.glob("glimpze-*.whl"))
    assert "glimpze/static/widget.js" in zipfile.ZipFile(wheel).namelist()

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # a pure-Python wheel installs by unpacking
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPZE_")} | {"PYTHONPATH": str(site)}
    served = subprocess.run(
        [sys.executable, "-c", SERVE_FROM_INSTALL], capture_output=True, env=env, cwd=tmp_path, timeout=120
    )
    assert served.returncode == 0, served.stderr.decode()
    assert served.stdout == SCRIPT.read_bytes()
