"""Configuration: file < environment < flags, strict keys, errors that name the key, and docs."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import msgspec
import pytest

from glimpze.clock import FakeClock
from glimpze.config import _TABLES, Config, ConfigError, Plan, load, parse_listen
from tests.conftest import running

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "glimpze.toml"
    path.write_text(text)
    return path


def test_defaults(tmp_path: Path) -> None:
    config = load(write(tmp_path, ""), env={})
    assert (config.host, config.port, config.data_dir, config.default_plan) == ("0.0.0.0", 8080, "data", "free")
    assert config.synchronous == "full"
    assert config.plans["pro"] == Plan(60, 1000, 14, 1)
    assert config.base_url == "http://localhost:8080"


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 9000\nhost = "127.0.0.1"\n[webhooks]\ntimeout_seconds = 5\n')
    env = {
        "GLIMPZE_PORT": "9100",
        "GLIMPZE_WEBHOOKS_ALLOW_TARGETS": "127.0.0.1:5678, 10.0.0.0/8",
        "GLIMPZE_TRUSTED_PROXIES": "127.0.0.1",
    }
    config = load(path, env=env, overrides={"port": 9200, "host": None})
    assert config.port == 9200
    assert config.host == "127.0.0.1"
    assert config.webhooks.timeout_seconds == 5
    assert config.webhooks.allow_targets == ["127.0.0.1:5678", "10.0.0.0/8"]
    assert config.trusted_proxies == ["127.0.0.1"]
    assert load(path, env=env).port == 9100


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 7000\n")
    assert load(None, env={"GLIMPZE_CONFIG": str(path)}).port == 7000
    with pytest.raises(ConfigError, match="no such configuration file"):
        load(None, env={"GLIMPZE_CONFIG": str(tmp_path / "missing.toml")})


def test_partial_default_plan_and_new_plan(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[plans.free]\nevents_per_minute = 10\n[plans.team]\nevents_per_minute = 5\n"
        "events_per_day = 50\nhistory_days = 3\ncustom_feeds = 2\n",
    )
    config = load(path, env={})
    assert config.plans["free"] == Plan(10, 100, 7, 0)
    assert config.plans["team"] == Plan(5, 50, 3, 2)


@pytest.mark.parametrize(
    "text,where",
    [
        ("porrt = 1\n", "porrt: unknown key"),
        ("[webhooks]\ntimeout = 3\n", "webhooks.timeout: unknown key"),
        ("[plans.tiny]\nevents_per_minute = 1\n", "plans.tiny.events_per_day: missing"),
        ("[plans.free]\nevents_per_day = 'many'\n", "plans.free.events_per_day"),
        ("[plans.free]\nevents_per_minute = 0\n", "plans.free.events_per_minute: must be at least 1"),
        ("[plans.free]\nburst = 3\n", "plans.free.burst: unknown key"),
        ("port = 'eighty'\n", "port"),
        ("port = 70000\n", "port: must be between"),
        ('default_plan = "gold"\n', "default_plan: no plan named 'gold'"),
        ('public_url = "example.com"\n', "public_url: must start with http"),
        ('trusted_proxies = ["not-an-ip"]\n', "trusted_proxies[0]"),
        ('log_level = "loud"\n', "log_level"),
        ("port = \n", "not valid TOML"),
        ('[tls]\ncert = "glimpze.toml"\n', "tls.key: set both [tls] cert and key, or neither"),
        ('[tls]\ncert = "nope.pem"\nkey = "nope.pem"\n', "tls.cert: no such file"),
        ("[tls]\nhsts = true\n", "tls.hsts: needs HTTPS"),
        ('[metrics]\ntoken = "short"\n', "metrics.token: must be at least 16"),
        ('[metrics]\nlisten = "9100"\n', "metrics.listen: '9100': expected HOST:PORT"),
        ('[metrics]\nlisten = "prometheus.local:9100"\n', "metrics.listen"),
        ("[metrics]\nport = 9100\n", "metrics.port: unknown key"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path: Path, text: str, where: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path, env={})
    assert str(path) in str(info.value)
    assert where in str(info.value)


def test_environment_errors_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GLIMPZE_PORT"):
        load(write(tmp_path, ""), env={"GLIMPZE_PORT": "abc"})


def _documented_keys(text: str) -> set[str]:
    """Keys shown in glimpze.toml (commented or not), qualified by the table they sit in."""
    keys, table = set(), ""
    for line in text.splitlines():
        bare = line.lstrip("# ").rstrip()
        if m := re.fullmatch(r"\[([a-z_.]+)\]", bare):
            table = m.group(1)
            if table.startswith("plans."):
                table = "plans"
        elif m := re.match(r"([a-z_]+) = ", bare):
            keys.add(f"{table}.{m.group(1)}" if table else m.group(1))
    return keys


def test_every_setting_is_documented_in_glimpze_toml() -> None:
    documented = _documented_keys((REPO / "glimpze.toml").read_text())
    expected = {f for f in Config.__struct_fields__ if f not in ("plans", *_TABLES)}
    for table, struct in _TABLES.items():
        expected |= {f"{table}.{f}" for f in struct.__struct_fields__}
    expected |= {f"plans.{f}" for f in Plan.__struct_fields__}
    assert expected - documented == set(), "undocumented settings"
    assert documented - expected == set(), "glimpze.toml documents settings that do not exist"


def test_the_shipped_glimpze_toml_is_the_defaults() -> None:
    shipped = load(REPO / "glimpze.toml", env={})
    assert msgspec.structs.asdict(shipped) == msgspec.structs.asdict(Config())


def test_https_and_tls_settings(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    plain = load(write(tmp_path, ""), env={})
    assert not plain.https and not plain.tls_enabled
    behind_proxy = load(write(tmp_path, 'public_url = "https://glimpze.example.com"\n[tls]\nhsts = true\n'), env={})
    assert behind_proxy.https and not behind_proxy.tls_enabled and behind_proxy.tls.hsts
    # flags reach table keys; TLS on makes the default URLs https
    direct = load(write(tmp_path, ""), env={}, overrides={"tls.cert": str(cert), "tls.key": str(key), "port": 8443})
    assert direct.https and direct.tls_enabled
    assert direct.base_url == "https://localhost:8443"
    env = {
        "GLIMPZE_TLS_CERT": str(cert),
        "GLIMPZE_TLS_KEY": str(key),
        "GLIMPZE_TLS_HSTS": "true",
        "GLIMPZE_METRICS_LISTEN": "[::1]:9100",
        "GLIMPZE_METRICS_TOKEN": "0123456789abcdef",
    }
    from_env = load(write(tmp_path, ""), env=env)
    assert from_env.tls.hsts and from_env.tls.cert == str(cert)
    assert from_env.metrics.listen == "[::1]:9100" and from_env.metrics.token == "0123456789abcdef"


@pytest.mark.parametrize(
    "text,expected",
    [("127.0.0.1:9100", ("127.0.0.1", 9100)), ("[::1]:9100", ("::1", 9100)), (":9100", ("0.0.0.0", 9100))],
)
def test_metrics_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.anyio
@pytest.mark.parametrize("text,lines", [("", 0), ("access_log = true\n", 1)])
async def test_access_log_is_off_unless_asked_for(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture, text: str, lines: int
) -> None:
    config = load(write(tmp_path, text), env={}, overrides={"data_dir": str(tmp_path / "data")})
    caplog.set_level(logging.INFO, "glimpze.access")
    async with running(config, clock) as api:
        assert (await api.get("/healthz?token=gzr_secret")).status_code == 200
    access = [r.getMessage() for r in caplog.records if r.name == "glimpze.access"]
    assert access == ["GET /healthz?token=… 200"] * lines


def test_database_url_chooses_the_backend(tmp_path: Path) -> None:
    path = write(tmp_path, 'data_dir = "d"\n')
    default = load(path, env={})
    assert (default.database_backend, default.postgres_url, default.db_path) == ("sqlite", None, Path("d/glimpze.db"))
    url = "postgresql://glimpze:secret@db.example:5432/glimpze"
    from_env = load(path, env={"GLIMPZE_DATABASE_URL": url})
    assert (from_env.database_backend, from_env.postgres_url) == ("postgresql", url)
    from_file = load(write(tmp_path, '[database]\nurl = "postgres://h/db"\n'), env={})
    assert from_file.postgres_url == "postgres://h/db"
    a_path = load(write(tmp_path, f'[database]\nurl = "{tmp_path / "x.db"}"\n'), env={})
    assert (a_path.database_backend, a_path.db_path) == ("sqlite", tmp_path / "x.db")


def test_an_unknown_database_scheme_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"database\.url: mysql:// is not a database Glimpze knows"):
        load(write(tmp_path, '[database]\nurl = "mysql://h/db"\n'), env={})
