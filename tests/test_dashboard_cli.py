"""`glimpze admin reset-password` against a running server, and setup links kept out of access logs."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.dashboard import PASSWORD, csrf_of
from tests.server import UNLIMITED_PLAN, Server
from tests.test_cli import glimpze

pytestmark = pytest.mark.slow

LINK = re.compile(r"http://\S+/setup/([A-Za-z0-9_-]+)")


def test_reset_password_prints_a_link_that_works_while_the_server_runs(tmp_path: Path) -> None:
    server = Server(tmp_path, "access_log = true\n" + UNLIMITED_PLAN)
    server.start()
    try:
        first = LINK.findall(server.output())
        assert len(first) == 1
        with httpx.Client(base_url=server.url, timeout=10) as client:
            reset = glimpze("admin", "reset-password", "--config", str(server.config), data=server.data)
            assert reset.returncode == 0, reset.stderr
            assert "until a password is set" in reset.stdout
            (second,) = LINK.findall(reset.stdout)
            assert client.get(f"/setup/{first[0]}").status_code == 404  # only the newest link works
            page = client.get(f"/setup/{second}")
            assert page.status_code == 200
            done = client.post(
                f"/setup/{second}", data={"csrf": csrf_of(page.text), "password": PASSWORD, "confirm": PASSWORD}
            )
            assert done.status_code == 303 and client.get("/").status_code == 200

            again = glimpze("admin", "reset-password", "--config", str(server.config), data=server.data)
            assert "for 24 hours" in again.stdout and "current password keeps working" in again.stdout
            (third,) = LINK.findall(again.stdout)
            assert client.get("/").status_code == 200  # the password (and this session) still work
            assert client.get(f"/setup/{third}").status_code == 200
        access = [line for line in server.output().splitlines() if "glimpze.access" in line]
        assert any("GET /setup/… 200" in line for line in access), access
        for token in (first[0], second, third):
            assert not any(token in line for line in access)
    finally:
        server.terminate()


def test_admin_help(tmp_path: Path) -> None:
    top = glimpze("--help", data=tmp_path / "data")
    assert "admin" in top.stdout
    reset = glimpze("admin", "reset-password", "--help", data=tmp_path / "data")
    assert reset.returncode == 0 and "one-time link" in reset.stdout
