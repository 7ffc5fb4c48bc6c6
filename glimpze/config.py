"""Settings: declared once here, loaded from glimpze.toml < GLIMPZE_* environment < CLI flags.

Every field of `Config` and its tables is documented in the repository's `glimpze.toml`
(a test keeps the two in step). Loading never happens at import time: the CLI calls `load()`
and passes the result to `create_app()`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from glimpze.delivery.ssrf import parse_allow_target
from glimpze.validation import path_parts

DEFAULT_CONFIG_FILE = "glimpze.toml"
ENV_PREFIX = "GLIMPZE_"


class ConfigError(Exception):
    """A setting is missing, misspelt or out of range; the message names where."""


class Plan(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    events_per_minute: int
    events_per_day: int
    history_days: int
    custom_feeds: int


DEFAULT_PLANS: dict[str, Plan] = {
    "free": Plan(events_per_minute=6, events_per_day=100, history_days=7, custom_feeds=0),
    "pro": Plan(events_per_minute=60, events_per_day=1000, history_days=14, custom_feeds=1),
    "power": Plan(events_per_minute=90, events_per_day=2400, history_days=45, custom_feeds=1),
}


class WebhooksConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    allow_targets: list[str] = msgspec.field(default_factory=list)
    timeout_seconds: float = 20.0
    event_retention_days: int = 7
    concurrency: int = 4
    disable_after_days: float = 5.0


class PushConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    feed_interval_seconds: float = 10.0  # at most one push per feed this often (approvals exempt)
    defer_seconds: float = 3600.0  # a deferred approval is pushed again after this
    action_link_ttl_seconds: float = 86400.0  # Approve/Reject links in notifications stop working after this
    vapid_subject: str | None = None  # contact sent to Web Push services; None: public_url if https
    timeout_seconds: float = 10.0  # per push request
    webpush_ttl_seconds: int = 86400  # how long a push service keeps a push for an offline device


class MetricsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    token: str | None = None
    listen: str | None = None


class NtfyConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    listen: str | None = None  # a second listener that speaks ntfy at its root (POST /, POST|PUT /{topic})
    auto_create: bool = False  # an API key's publish to an unknown topic creates a status feed for it


class HttpConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    max_header_bytes: int = 64 * 1024  # request line and headers; more is refused with 431
    header_timeout_seconds: float = 10.0  # headers complete within this; a body never pauses longer
    max_connections: int = 4096  # open at once; lowered to fit the open-files limit


class TlsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    cert: str | None = None
    key: str | None = None
    hsts: bool = False


class DatabaseConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # postgresql://user:password@host/db for PostgreSQL; unset or a file path: SQLite.
    url: str | None = None


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    host: str = "0.0.0.0"
    port: int = 8080
    public_url: str | None = None
    data_dir: str = "data"
    default_plan: str = "free"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    access_log: bool = False  # a line per request (at info); off: it costs ~¼ of single-core ingest
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    synchronous: Literal["full", "normal"] = "full"
    plans: dict[str, Plan] = msgspec.field(default_factory=lambda: dict(DEFAULT_PLANS))
    webhooks: WebhooksConfig = msgspec.field(default_factory=WebhooksConfig)
    push: PushConfig = msgspec.field(default_factory=PushConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    ntfy: NtfyConfig = msgspec.field(default_factory=NtfyConfig)
    http: HttpConfig = msgspec.field(default_factory=HttpConfig)
    tls: TlsConfig = msgspec.field(default_factory=TlsConfig)
    database: DatabaseConfig = msgspec.field(default_factory=DatabaseConfig)

    @property
    def base_url(self) -> str:
        """The URL the outside world reaches this server at, without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"{'https' if self.tls_enabled else 'http'}://localhost:{self.port}"

    @property
    def tls_enabled(self) -> bool:
        """Glimpze itself serves HTTPS ([tls] cert and key)."""
        return bool(self.tls.cert and self.tls.key)

    @property
    def https(self) -> bool:
        """Browsers reach this deployment over HTTPS: TLS is on here, or `public_url` is https (a
        proxy terminates TLS). Secure cookies and HSTS depend on this."""
        return self.tls_enabled or (self.public_url or "").lower().startswith("https://")

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def postgres_url(self) -> str | None:
        """The PostgreSQL database's URL when `[database] url` names one; None: SQLite."""
        url = self.database.url
        return url if url and url.lower().startswith(POSTGRES_SCHEMES) else None

    @property
    def database_backend(self) -> str:
        return "sqlite" if self.postgres_url is None else "postgresql"

    @property
    def db_path(self) -> Path:
        """The SQLite database file: `[database] url` when it is a path, else glimpze.db in data_dir."""
        url = self.database.url
        return Path(url) if url and self.postgres_url is None else self.data_path / "glimpze.db"


# Tables whose keys may be set from the environment as GLIMPZE_<TABLE>_<KEY>.
_TABLES: dict[str, type[msgspec.Struct]] = {
    "webhooks": WebhooksConfig,
    "push": PushConfig,
    "metrics": MetricsConfig,
    "ntfy": NtfyConfig,
    "http": HttpConfig,
    "tls": TlsConfig,
    "database": DatabaseConfig,
}


def load(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """Build the configuration: file, then environment, then `overrides` (CLI flags; a table key
    is given as "table.key", e.g. "tls.cert").

    `path` falls back to $GLIMPZE_CONFIG, then to ./glimpze.toml when it exists.
    """
    env = os.environ if env is None else env
    path = path or env.get(ENV_PREFIX + "CONFIG")
    explicit = path is not None
    path = Path(path or DEFAULT_CONFIG_FILE)
    raw: dict[str, Any] = {}
    source = str(path)
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    elif explicit:
        raise ConfigError(f"{source}: no such configuration file")
    _merge_env(raw, env)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        table, dot, name = key.rpartition(".")
        if dot:
            section = raw.setdefault(table, {})
            if not isinstance(section, dict):
                raise ConfigError(f"{source}: {table}: expected a table")
            section[name] = value
        else:
            raw[key] = value
    plans = _load_plans(raw.pop("plans", {}), source)
    try:
        config = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None
    config.plans = plans
    _check(config, source)
    return config


def _load_plans(given: object, source: str) -> dict[str, Plan]:
    """A partial default plan keeps its other values; a new plan must give every key."""
    if not isinstance(given, dict):
        raise ConfigError(f"{source}: plans: expected a table of [plans.NAME] tables")
    plans = dict(DEFAULT_PLANS)
    for name, table in given.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: plans.{name}: expected a table")
        if name not in plans:
            for key in Plan.__struct_fields__:
                if key not in table:
                    raise ConfigError(f"{source}: plans.{name}.{key}: missing (a new plan must set all four keys)")
        base = msgspec.structs.asdict(plans[name]) if name in plans else {}
        try:
            plans[name] = msgspec.convert({**base, **table}, Plan)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{source}: plans.{name}.{_describe(exc)}") from None
    return plans


def _merge_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    hints = typing.get_type_hints(Config)
    for field in Config.__struct_fields__:
        if field in ("plans", *_TABLES):
            continue
        name = ENV_PREFIX + field.upper()
        if name in env:
            raw[field] = _parse_env(name, env[name], hints[field])
    for table, struct in _TABLES.items():
        table_hints = typing.get_type_hints(struct)
        for field in struct.__struct_fields__:
            name = f"{ENV_PREFIX}{table.upper()}_{field.upper()}"
            if name in env:
                section = raw.setdefault(table, {})
                if not isinstance(section, dict):
                    raise ConfigError(f"{table}: expected a table")
                section[field] = _parse_env(name, env[name], table_hints[field])


def _parse_env(name: str, value: str, hint: object) -> object:
    """Environment values are strings: read them as the setting's type."""
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin is list:
        return [item.strip() for item in value.split(",") if item.strip()]
    if hint is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"environment {name}: expected true or false, got {value!r}")
    for kind in (int, float):
        if hint is kind or kind in args and len(args) == 1:
            try:
                return kind(value)
            except ValueError:
                raise ConfigError(f"environment {name}: expected a number, got {value!r}") from None
    if value == "" and type(None) in typing.get_args(hint):
        return None
    return value


def _describe(exc: msgspec.ValidationError) -> str:
    """Turn msgspec's "… - at `$.plans.tiny`" into "plans.tiny.key: …"."""
    message, _, where = str(exc).partition(" - at `")
    path = ".".join(str(part) for part in path_parts(where.rstrip("`").removeprefix("$")))
    for marker in ("unknown field `", "required field `"):
        if marker in message:
            key = message.split(marker, 1)[1].split("`", 1)[0]
            path = f"{path}.{key}" if path else key
            message = "unknown key" if marker.startswith("unknown") else "missing"
    return f"{path}: {message}" if path else message


def _check(config: Config, source: str) -> None:
    def fail(key: str, message: str) -> typing.NoReturn:
        raise ConfigError(f"{source}: {key}: {message}")

    url = config.database.url
    if url is not None and "://" in url and config.postgres_url is None:
        scheme = url.split("://", 1)[0]
        fail("database.url", f"{scheme}:// is not a database Glimpze knows: postgresql://… or a SQLite file path")
    if not 0 < config.port < 65536:
        fail("port", f"must be between 1 and 65535, got {config.port}")
    if config.public_url is not None and not config.public_url.startswith(("http://", "https://")):
        fail("public_url", "must start with http:// or https://")
    if config.default_plan not in config.plans:
        fail("default_plan", f"no plan named {config.default_plan!r} (plans: {', '.join(sorted(config.plans))})")
    for name, plan in config.plans.items():
        for key in Plan.__struct_fields__:
            value = getattr(plan, key)
            minimum = 0 if key == "custom_feeds" else 1
            if value < minimum:
                fail(f"plans.{name}.{key}", f"must be at least {minimum}, got {value}")
    for i, entry in enumerate(config.trusted_proxies):
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            fail(f"trusted_proxies[{i}]", f"{entry!r} is not an IP address or CIDR range")
    if not 0 < config.webhooks.timeout_seconds <= 60:
        fail("webhooks.timeout_seconds", "must be between 1 and 60")
    if config.webhooks.event_retention_days < 1:
        fail("webhooks.event_retention_days", "must be at least 1")
    if not 1 <= config.webhooks.concurrency <= 64:
        fail("webhooks.concurrency", "must be between 1 and 64")
    if config.webhooks.disable_after_days <= 0:
        fail("webhooks.disable_after_days", "must be positive")
    for i, entry in enumerate(config.webhooks.allow_targets):
        try:
            parse_allow_target(entry)
        except ValueError as exc:
            fail(f"webhooks.allow_targets[{i}]", str(exc))
    push = config.push
    if push.feed_interval_seconds < 0:
        fail("push.feed_interval_seconds", "must be 0 (no limit) or more")
    if push.defer_seconds < 60:
        fail("push.defer_seconds", "must be at least 60")
    if push.action_link_ttl_seconds < 60:
        fail("push.action_link_ttl_seconds", "must be at least 60")
    if push.vapid_subject is not None and not re.fullmatch(
        r"mailto:[^@\s]+@[^@\s]+|https://[\w.-]+", push.vapid_subject
    ):
        fail(
            "push.vapid_subject",
            "must be a mailto: address or https://host (no port or path), e.g. mailto:you@example.com",
        )
    if not 0 < push.timeout_seconds <= 60:
        fail("push.timeout_seconds", "must be between 1 and 60")
    if not 0 <= push.webpush_ttl_seconds <= 28 * 86400:
        fail("push.webpush_ttl_seconds", "must be between 0 and 2419200 (28 days)")
    if config.metrics.token is not None and len(config.metrics.token.strip()) < 16:
        fail("metrics.token", "must be at least 16 characters (e.g. the output of: openssl rand -hex 16)")
    if config.metrics.listen is not None:
        try:
            parse_listen(config.metrics.listen)
        except ValueError as exc:
            fail("metrics.listen", str(exc))
    if config.ntfy.listen is not None:
        try:
            parse_listen(config.ntfy.listen)
        except ValueError as exc:
            fail("ntfy.listen", str(exc))
    http = config.http
    if not 8 * 1024 <= http.max_header_bytes <= 1024 * 1024:
        fail("http.max_header_bytes", "must be between 8192 and 1048576")
    if not 1 <= http.header_timeout_seconds <= 300:
        fail("http.header_timeout_seconds", "must be between 1 and 300")
    if http.max_connections < 16:
        fail("http.max_connections", "must be at least 16")
    tls = config.tls
    if bool(tls.cert) != bool(tls.key):
        fail("tls.cert" if not tls.cert else "tls.key", "set both [tls] cert and key, or neither")
    for key in ("cert", "key"):
        file = getattr(tls, key)
        if file and not Path(file).is_file():
            fail(f"tls.{key}", f"no such file: {file}")
    if tls.hsts and not config.https:
        fail("tls.hsts", "needs HTTPS: set [tls] cert and key, or an https:// public_url")


def parse_listen(text: str) -> tuple[str, int]:
    """ "127.0.0.1:9100", "[::1]:9100" or ":9100" (every interface) → (host, port); raises ValueError."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: expected HOST:PORT, e.g. 127.0.0.1:9100")
    host = host.removeprefix("[").removesuffix("]") or "0.0.0.0"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"{text!r}: the host must be an IP address or localhost") from None
    return host, int(port)
