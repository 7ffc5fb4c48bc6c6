"""The `glimpze` command line, run as a real subprocess, including while a server is serving."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.server import Server
from tests.server import run_cli as glimpze


def test_help_explains_every_command(tmp_path: Path) -> None:
    top = glimpze("--help", data=tmp_path / "data")
    assert top.returncode == 0
    for command in ("serve", "projects", "keys", "feeds", "webhooks", "backup", "check"):
        assert command in top.stdout
    serve = glimpze("serve", "--help", data=tmp_path / "data")
    for flag in ("--config", "--host", "--port", "--data-dir", "--tls-cert", "--tls-key"):
        assert flag in serve.stdout
    create = glimpze("keys", "create", "--help", data=tmp_path / "data")
    assert "--name" in create.stdout and "--json" in create.stdout


def test_a_command_without_its_action_lists_its_actions(tmp_path: Path) -> None:
    groups = {
        "keys": ("create", "list"),
        "projects": ("create", "list"),
        "feeds": ("create", "list", "rotate-key"),
        "webhooks": ("add", "list", "deliveries", "replay"),
        "admin": ("reset-password",),
    }
    for command, actions in groups.items():
        shown = glimpze(command, data=tmp_path / "data")
        assert shown.returncode == 2, (command, shown.stderr)
        assert f"usage: glimpze {command}" in shown.stdout
        assert all(action in shown.stdout for action in actions), (command, shown.stdout)


def test_keys_and_feeds_from_the_cli(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = glimpze("keys", "create", "--name", "ci", "--json", data=data)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert set(key) == {"id", "key"} and key["key"].startswith("gzp_")

    feed = json.loads(glimpze("feeds", "create", "--name", "Builds", "--schema", "status", "--json", data=data).stdout)
    assert feed["write_key"].startswith("gzw_")
    listed = glimpze("feeds", "list", data=data)
    assert feed["id"] in listed.stdout and "Builds" in listed.stdout
    rotated = json.loads(glimpze("feeds", "rotate-key", feed["id"], "--json", data=data).stdout)
    assert rotated["write_key"] != feed["write_key"]
    keys = glimpze("keys", "list", data=data)
    assert "ci" in keys.stdout and key["key"] not in keys.stdout
    assert "callback_secret" not in feed
    approvals = json.loads(
        glimpze("feeds", "create", "--name", "Deploys", "--schema", "approval", "--json", data=data).stdout
    )
    assert approvals["callback_secret"].startswith("whsec_")
    shown = glimpze("feeds", "create", "--name", "More deploys", "--schema", "approval", data=data).stdout
    assert "Callback secret" in shown and "whsec_" in shown


def test_projects_from_the_cli(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = glimpze("projects", "create", "Client site", "--json", data=data)
    assert made.returncode == 0, made.stderr
    project = json.loads(made.stdout)
    assert set(project) == {"id", "key"} and project["id"].startswith("prj_") and project["key"].startswith("gzp_")
    listed = json.loads(glimpze("projects", "list", "--json", data=data).stdout)
    assert [p["name"] for p in listed] == ["Default", "Client site"]
    keys = glimpze("keys", "list", "--project", project["id"], data=data)
    assert "admin" in keys.stdout
    assert glimpze("projects", "create", "  ", data=data).returncode == 1


def test_configuration_errors_exit_2_and_name_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[webhooks]\ntimeout_secs = 3\n")
    result = glimpze("keys", "list", "--config", str(config), data=tmp_path / "data")
    assert result.returncode == 2
    assert "webhooks.timeout_secs" in result.stderr and str(config) in result.stderr


def test_unknown_feed_is_a_clear_error(tmp_path: Path) -> None:
    result = glimpze("feeds", "rotate-key", "fd_nope", data=tmp_path / "data")
    assert result.returncode == 1
    assert "fd_nope" in result.stderr


@pytest.mark.slow
def test_a_key_minted_while_the_server_runs_works_at_once(tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.start()
    try:
        admin = server.admin_key()
        made = glimpze("keys", "create", "--name", "late", "--json", "--config", str(server.config), data=server.data)
        assert made.returncode == 0, made.stderr
        key = json.loads(made.stdout)["key"]
        response = httpx.get(f"{server.url}/v1/feeds", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200
        # the server printed its admin key once, and a restart does not print another
        server.kill()
        server.start()
        assert server.output().count("gzp_") == 1
        assert httpx.get(f"{server.url}/v1/keys", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
    finally:
        server.kill()


def test_webhooks_from_the_cli(tmp_path: Path) -> None:
    data = tmp_path / "data"
    refused = glimpze("webhooks", "add", "http://127.0.0.1:5678/webhook/abc", data=data)
    assert refused.returncode == 1 and "allow_targets" in refused.stderr
    config = tmp_path / "glimpze.toml"
    config.write_text('[webhooks]\nallow_targets = ["127.0.0.1:5678"]\n')
    made = glimpze(
        "webhooks",
        "add",
        "http://127.0.0.1:5678/webhook/abc",
        "--events",
        "feed.event",
        "--header",
        "X-Token: s3cret",
        "--json",
        "--config",
        str(config),
        data=data,
    )
    assert made.returncode == 0, made.stderr
    hook = json.loads(made.stdout)
    assert hook["secret"].startswith("whsec_") and hook["headers"] == {"X-Token": "s3cret"}
    listed = glimpze("webhooks", "list", "--config", str(config), data=data)
    assert hook["id"] in listed.stdout and "active" in listed.stdout
    deliveries = glimpze("webhooks", "deliveries", hook["id"], "--config", str(config), data=data)
    assert deliveries.returncode == 0 and "(none)" in deliveries.stdout
    replay = glimpze(
        "webhooks", "replay", "--webhook", hook["id"], "--status", "dead", "--config", str(config), data=data
    )
    assert replay.returncode == 0 and "Queued 0 deliveries" in replay.stdout
