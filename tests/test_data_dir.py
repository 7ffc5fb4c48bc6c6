"""The data directory as an operator meets it: read-only, full, damaged, or shared by two servers."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
from pathlib import Path

import httpx
import pytest

from tests import imagefiles as img
from tests.disks import fill, read_only, small_disk
from tests.pg import sqlite_only
from tests.server import Server, free_port, run_cli

MiB = 1024 * 1024


def serve_once(data: Path, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """`glimpze serve` that is expected to refuse to start; fails the test if it serves instead."""
    try:
        return run_cli("serve", "--host", "127.0.0.1", "--port", str(free_port()), *args, data=data, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"glimpze serve was still running after {timeout} s instead of refusing to start")


def said(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def test_unwritable_data_dir_is_one_clear_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_cli("keys", "create", "--name", "x", data=data).returncode == 0  # a healthy database
    with read_only(data) as why:
        expected = f"glimpze: cannot write {data.resolve()}: {why}"
        served = serve_once(data)
        assert served.returncode == 1 and said(served) == [expected], said(served)
        minted = run_cli("keys", "create", "--name", "y", data=data)
        assert minted.returncode == 1 and said(minted) == [expected], said(minted)
        missing = data / "sub"  # a data dir that cannot be created
        served = serve_once(missing)
        assert served.returncode == 1 and said(served) == [f"glimpze: cannot create {missing.resolve()}: {why}"]


def test_check_tells_cannot_open_from_corrupt(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_cli("keys", "create", "--name", "x", data=data).returncode == 0
    with read_only(data) as why:
        result = run_cli("check", data=data)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[:2] == ["integrity: not checked (cannot open the database)", "queue: unknown"]
    assert "FAILED" not in result.stdout  # "FAILED" sends an operator to the backups
    problems = result.stderr.splitlines()
    assert len(problems) == 1 and problems[0].startswith(f"glimpze: database: cannot open {data.resolve()}/glimpze.db:")
    assert f"cannot write {data.resolve()}: {why}" in problems[0]

    assert run_cli("check", data=data).returncode == 0  # writable again: the same database is sound

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "glimpze.db").write_bytes(b"this is not a database, whatever its name says" * 200)
    result = run_cli("check", data=damaged)
    assert result.returncode == 1 and result.stdout.splitlines()[0] == "integrity: FAILED"
    assert f"{damaged.resolve()}/glimpze.db is damaged" in result.stderr and "restore a backup" in result.stderr


def upload(server: Server, feed: dict[str, str], image: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.url}/ingest/{feed['id']}/upload",
        headers={"Authorization": f"Bearer {feed['write_key']}"},
        files={"small_image": ("small.png", image, "image/png")},
        timeout=30,
    )


@pytest.mark.slow
@pytest.mark.parametrize("disk", ["tmpfs", "file_size_limit"])
def test_upload_on_a_full_disk_is_a_503(tmp_path: Path, disk: str) -> None:
    """A tmpfs that is full (ENOSPC), or a file size limit on the server process (EFBIG: Python
    ignores SIGXFSZ, so the write fails instead of killing it)."""
    server = Server(tmp_path)
    media = server.data / "media"
    with contextlib.ExitStack() as stack:
        if disk == "tmpfs":
            stack.enter_context(small_disk(server.data))
        stack.callback(server.kill)
        server.start()
        admin = {"Authorization": f"Bearer {server.admin_key()}"}
        feed = httpx.post(f"{server.url}/v1/feeds", json={"name": "shots", "schema_type": "custom"}, headers=admin)
        assert feed.status_code == 201, feed.text
        if disk == "tmpfs":
            filler = fill(server.data)
        else:
            assert server.proc is not None
            resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (MiB, MiB))

        refused = upload(server, feed.json(), os.urandom(MiB + MiB // 2))  # more than the disk takes

        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == "storage_unavailable" and int(refused.headers["Retry-After"]) > 0
        assert [p.name for p in media.rglob("*") if p.is_file()] == []  # no spool file, no partial image
        assert "Traceback" not in server.output()
        if disk == "tmpfs":
            filler.unlink()
        accepted = upload(server, feed.json(), img.widget("small"))  # a small image fits either way
        assert accepted.status_code == 202, accepted.text


@sqlite_only  # on PostgreSQL several servers share the database: there is no data-dir lock
@pytest.mark.slow
def test_a_second_server_on_one_data_dir_refuses_to_start(tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.start()
    try:
        assert server.proc is not None
        second = serve_once(server.data, "--config", str(server.config))
        assert second.returncode == 1
        assert said(second) == [
            f"glimpze: {server.data.resolve()} is in use by another Glimpze server (PID {server.proc.pid}); "
            "stop it first, or give this one its own --data-dir"
        ]
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        # commands that write beside the server take no such lock
        made = run_cli("keys", "create", "--name", "ci", "--json", "--config", str(server.config), data=server.data)
        assert made.returncode == 0, made.stderr
        key = json.loads(made.stdout)["key"]
        assert httpx.get(f"{server.url}/v1/feeds", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        # the kernel lets go of a killed server's lock: its restart is not refused
        server.kill()
        server.start()
    finally:
        server.kill()
