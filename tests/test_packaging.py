"""A non-editable install (the wheel) carries the dashboard's templates and static files, and serves them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.server import REPO

pytestmark = pytest.mark.slow

DASHBOARD = REPO / "glimpze" / "web" / "dashboard"

# Run from a directory where the repository is not importable: only the installed copy is.
SERVE_FROM_INSTALL = """
import asyncio, re, sys, tempfile
from pathlib import Path
import httpx
import glimpze
from glimpze.app import create_app
from glimpze.config import load

assert "site" in glimpze.__file__, glimpze.__file__

async def main():
    tmp = Path(tempfile.mkdtemp())
    (tmp / "g.toml").write_text("")
    config = load(tmp / "g.toml", env={}, overrides={"data_dir": str(tmp / "data")})
    said = []
    app = create_app(config, announce=said.append)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://installed") as client:
            token = re.search(r"/setup/(\\S+)", said[-1]).group(1)
            for path in ["/login", f"/setup/{token}", "/static/app.css", "/static/icons/icon-512.png", "/sw.js"]:
                response = await client.get(path)
                assert response.status_code == 200, (path, response.status_code, response.text[:500])
            print("served")

asyncio.run(main())
"""


def test_the_wheel_ships_the_dashboard_and_an_install_serves_it(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "glimpze", source / "glimpze", ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    wheel = next(tmp_path.glob("glimpze-*.whl"))
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        path.relative_to(REPO).as_posix()
        for folder in ("templates", "static")
        for path in (DASHBOARD / folder).rglob("*")
        if path.is_file()
    }
    assert expected and expected <= shipped, sorted(expected - shipped)

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # a pure-Python wheel installs by unpacking
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPZE_")}
    env["PYTHONPATH"] = str(site)
    served = subprocess.run(
        [sys.executable, "-c", SERVE_FROM_INSTALL], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert served.returncode == 0 and "served" in served.stdout, served.stderr
