"""`glimpze backup` (online, while a real server takes a load) and `glimpze check`."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sqlite3
import stat
import time
from pathlib import Path

import anyio
import httpx
import pytest

from glimpze.clock import FakeClock
from glimpze.config import load
from glimpze.ops.backup import check
from tests.conftest import running
from tests.imagefiles import widget
from tests.load import ALLOW_LOCAL_TARGETS, IngestLoad, create_feed, subscribe
from tests.receiver import Receiver
from tests.server import UNLIMITED_PLAN, Server, run_cli

LOAD_SECONDS = 30
BACKUPS_AT = (5, 15, 25)  # seconds into the load


def stored_ids(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {row[0] for row in conn.execute("SELECT id FROM events")}
    finally:
        conn.close()


@pytest.mark.anyio
@pytest.mark.slow
async def test_backups_taken_during_a_30_second_load_hold_every_acknowledged_event(tmp_path: Path) -> None:
    server = Server(tmp_path, UNLIMITED_PLAN)
    server.start()
    backups: list[tuple[Path, list[str]]] = []
    try:
        admin = {"Authorization": f"Bearer {server.admin_key()}"}
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            feed = await create_feed(client, admin)
            custom = await create_feed(client, admin, "custom", "pictures")
            uploads: list[str] = []

            async def upload(seed: int) -> None:
                files = {"small_image": ("s.png", widget("small", seed=seed), "image/png")}
                auth = {"Authorization": f"Bearer {custom['write_key']}"}
                response = await client.post(f"/ingest/{custom['id']}/upload", files=files, headers=auth)
                assert response.status_code == 202, response.text
                uploads.append(response.json()["id"])

            started = time.monotonic()
            async with IngestLoad(server.url, feed) as load:
                for n, at in enumerate(BACKUPS_AT):
                    await upload(n)
                    await anyio.sleep(max(0.0, started + at - time.monotonic()))
                    before = list(load.acknowledged) + list(uploads)  # acknowledged before the backup began
                    target = tmp_path / f"backup-{n}"
                    made = await anyio.to_thread.run_sync(
                        lambda t=target: run_cli("backup", str(t), "--config", str(server.config), data=server.data)
                    )
                    assert made.returncode == 0, made.stderr
                    backups.append((target, before))
                await anyio.sleep(max(0.0, started + LOAD_SECONDS - time.monotonic()))
            assert load.refused == 0
            print(f"{len(load.acknowledged)} events in {time.monotonic() - started:.0f} s, backups at {BACKUPS_AT} s")
    finally:
        server.kill()

    for target, before in backups:
        assert stat.S_IMODE(target.stat().st_mode) == 0o700
        in_backup = stored_ids(target / "glimpze.db")
        missing = [event_id for event_id in before if event_id not in in_backup]
        assert not missing, f"{target.name}: {len(missing)} of {len(before)} acknowledged events missing"
        images = sorted((target / "media").iterdir())
        assert images, "the uploaded images are in the backup"
        for image in images:  # content-addressed: each file is what its name says
            assert hashlib.sha256(image.read_bytes()).hexdigest() == image.name.split(".")[0]

    # Restore the last backup into an empty data dir: the server starts on it and serves it all.
    last, before = backups[-1]
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copytree(last, restored / "data")
    server = Server(restored, UNLIMITED_PLAN)
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            widget_state = (await client.get(f"/v1/feeds/{custom['id']}/widget", headers=admin)).json()
            image_url = widget_state["event"]["content"]["small"]["image_url"]
            image = await client.get("/media/" + image_url.rsplit("/", 1)[1])
            assert image.status_code == 200 and image.headers["content-type"] == "image/png"
            events = await client.get(f"/v1/feeds/{feed['id']}/events?limit=1", headers=admin)
            assert events.status_code == 200 and events.json()["data"]
    finally:
        server.kill()


def test_backup_refuses_a_directory_that_holds_anything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_cli("keys", "create", "--name", "x", data=data).returncode == 0  # a database to back up
    (data / "vapid_private.pem").write_text("private")
    (data / "vapid_public.pem").write_text("public")
    (data / "vapid_private.pem").chmod(0o600)

    full = tmp_path / "full"
    full.mkdir()
    (full / "old.db").write_text("an older backup")
    refused = run_cli("backup", str(full), data=data)
    assert refused.returncode == 1
    assert "not empty" in refused.stderr and (full / "old.db").read_text() == "an older backup"
    assert run_cli("backup", str(data / "inside"), data=data).returncode == 1
    assert run_cli("backup", str(tmp_path / "b"), data=tmp_path / "nothing-here").returncode == 1

    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    made = run_cli("backup", str(empty), data=data)
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in empty.iterdir()) == ["glimpze.db", "media", "vapid_private.pem", "vapid_public.pem"]
    assert stat.S_IMODE(empty.stat().st_mode) == 0o700
    assert stat.S_IMODE((empty / "glimpze.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((empty / "vapid_private.pem").stat().st_mode) == 0o600
    assert "vapid_private.pem" in made.stdout


def test_check_prints_the_three_lines_and_exits_0_when_sound(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_cli("keys", "create", "--name", "x", data=data).returncode == 0
    result = run_cli("check", data=data)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "integrity: ok"
    assert lines[1] == "queue: 0 pending, 0 leased"
    assert lines[2].startswith("data: ") and lines[2].endswith(" MB")
    assert lines[3] == "database: sqlite" and len(lines) == 4


def test_check_fails_on_a_damaged_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_cli("keys", "create", "--name", "x", data=data).returncode == 0
    db = data / "glimpze.db"
    with db.open("r+b") as f:  # scribble over a b-tree page in the middle of the file
        f.seek(db.stat().st_size // 2)
        f.write(b"\xff" * 4096)
    result = run_cli("check", data=data)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == "integrity: FAILED"
    assert "glimpze: " in result.stderr


def test_check_fails_on_configuration_errors(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_cli("keys", "create", "--name", "x", data=data).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[webhooks]\ntimeout_secs = 3\n")
    result = run_cli("check", "--config", str(bad), data=data)
    assert result.returncode == 2 and "webhooks.timeout_secs" in result.stderr
    # files that exist but are no certificate: only a real load of them finds out
    (tmp_path / "cert.pem").write_text("not a certificate")
    tls = tmp_path / "tls.toml"
    tls.write_text(f'[tls]\ncert = "{tmp_path / "cert.pem"}"\nkey = "{tmp_path / "cert.pem"}"\n')
    result = run_cli("check", "--config", str(tls), data=data)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == "integrity: ok"
    assert "tls.cert/tls.key" in result.stderr
    assert run_cli("check", data=tmp_path / "no-data").returncode == 1


@pytest.mark.anyio
async def test_check_counts_pending_and_leased_deliveries(tmp_path: Path, clock: FakeClock) -> None:
    (tmp_path / "glimpze.toml").write_text('[webhooks]\nallow_targets = ["127.0.0.1"]\n')
    config = load(tmp_path / "glimpze.toml", env={}, overrides={"data_dir": str(tmp_path / "data")})
    with Receiver() as receiver:
        receiver.hold.clear()  # the first delivery stays in flight, leased
        async with running(config, clock) as api:
            await api.glimpze.dispatcher.stop_runner()
            hook = {"url": receiver.url, "events": ["feed.event"], "ordered": True}  # one at a time
            assert (await api.post("/v1/webhooks", json=hook)).status_code == 201
            feed = await api.feed("counter")
            for i in range(3):
                await api.ingest(feed, {"schema_type": "counter", "content": {"title": "n", "count": i}})
            sending = asyncio.create_task(api.glimpze.dispatcher.deliver_due(clock.now()))
            with anyio.fail_after(10):
                while receiver.in_flight == 0:
                    await asyncio.sleep(0.01)
            report = check(config, now=clock.now())
            receiver.hold.set()
            await sending
    assert report.lines()[:2] == ["integrity: ok", "queue: 2 pending, 1 leased"]
    assert report.sound


@pytest.mark.anyio
@pytest.mark.slow
async def test_check_while_the_server_delivers(tmp_path: Path) -> None:
    """`check` reads beside a running server without disturbing it."""
    server = Server(tmp_path, UNLIMITED_PLAN + ALLOW_LOCAL_TARGETS)
    server.start()
    try:
        admin = {"Authorization": f"Bearer {server.admin_key()}"}
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            await subscribe(client, admin, "http://127.0.0.1:9/unreachable")
            feed = await create_feed(client, admin)
        async with IngestLoad(server.url, feed, senders=4) as load:
            await load.until(200)
            result = await anyio.to_thread.run_sync(
                lambda: run_cli("check", "--config", str(server.config), data=server.data)
            )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0] == "integrity: ok"
        pending = int(result.stdout.splitlines()[1].split()[1])
        assert pending > 0  # port 9 refuses: the deliveries wait for their retry
    finally:
        server.kill()
