"""The `glimpze` command: serve, and the admin commands that share the server's store code.

Every subcommand takes --config and --data-dir; settings come from glimpze.toml, then GLIMPZE_*
environment variables, then flags. Commands that write (projects, keys, feeds) may run while the server
serves: they go through the same store code and SQLite's busy timeout covers the overlap.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from glimpze import __version__, cli_displays
from glimpze.config import Config, ConfigError, load
from glimpze.errors import GlimpzeError
from glimpze.ops.logs import setup as setup_logging
from glimpze.services import Services
from glimpze.store.pagination import all_pages

log = logging.getLogger("glimpze")

Command = Callable[[argparse.Namespace, Config], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    overrides = {
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "data_dir": args.data_dir,
        "tls.cert": getattr(args, "tls_cert", None),
        "tls.key": getattr(args, "tls_key", None),
    }
    try:
        config = load(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"glimpze: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, config.log_format)
    try:
        return args.run(args, config)
    except GlimpzeError as exc:
        print(f"glimpze: {exc.detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="settings file (default: $GLIMPZE_CONFIG or ./glimpze.toml)")
    common.add_argument("--data-dir", metavar="DIR", help="where the database and uploads live (default: ./data)")

    parser = argparse.ArgumentParser(
        prog="glimpze",
        description="Self-hosted live widgets, push, approvals and signed webhooks from any HTTP call.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"glimpze {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="run the server",
        description="Run the HTTP server (API, ingest, widgets, dashboard) and the background jobs.",
    )
    serve.add_argument("--host", help="listen address (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (default 8080)")
    serve.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this PEM certificate (chain) ([tls] cert)")
    serve.add_argument("--tls-key", metavar="FILE", help="the certificate's PEM private key ([tls] key)")
    serve.set_defaults(run=cmd_serve)

    keys = commands.add_parser(
        "keys", parents=[common], help="project API keys", description="Create and list project API keys (gzp_…)."
    )
    keys_sub = keys.add_subparsers(title="actions", metavar="ACTION")
    create = keys_sub.add_parser(
        "create",
        parents=[common],
        help="mint a new API key",
        description="Mint a new API key for a project; the secret is printed once.",
    )
    create.add_argument("--name", required=True, help="a label for the key, e.g. 'n8n'")
    create.add_argument("--project", help="project id (default: the default project)")
    create.add_argument("--json", action="store_true", help='print {"id": …, "key": …}')
    create.set_defaults(run=cmd_keys_create)
    listing = keys_sub.add_parser("list", parents=[common], help="list API keys")
    listing.add_argument("--project", help="project id (default: the default project)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=cmd_keys_list)
    keys.set_defaults(run=_help(keys))

    projects = commands.add_parser(
        "projects",
        parents=[common],
        help="projects (workspaces)",
        description="Create and list projects; each has its own API keys, feeds, sessions and leads.",
    )
    projects_sub = projects.add_subparsers(title="actions", metavar="ACTION")
    pcreate = projects_sub.add_parser(
        "create",
        parents=[common],
        help="create a project",
        description="Create a project and its first API key; the key is printed once.",
    )
    pcreate.add_argument("name", help="the project's name")
    pcreate.add_argument("--json", action="store_true", help='print {"id": …, "key": …}')
    pcreate.set_defaults(run=cmd_projects_create)
    plist = projects_sub.add_parser("list", parents=[common], help="list projects")
    plist.add_argument("--json", action="store_true", help="print JSON")
    plist.set_defaults(run=cmd_projects_list)
    projects.set_defaults(run=_help(projects))

    feeds = commands.add_parser(
        "feeds",
        parents=[common],
        help="feeds and their write keys",
        description="Create and list feeds; rotate a feed's write key.",
    )
    feeds_sub = feeds.add_subparsers(title="actions", metavar="ACTION")
    fcreate = feeds_sub.add_parser(
        "create", parents=[common], help="create a feed", description="Create a feed; its write key is printed once."
    )
    fcreate.add_argument("--name", required=True)
    fcreate.add_argument("--schema", required=True, choices=["summary", "status", "counter", "approval", "custom"])
    fcreate.add_argument("--plan", help="plan name (default: default_plan)")
    fcreate.add_argument("--project", help="project id (default: the default project)")
    fcreate.add_argument("--json", action="store_true", help="print JSON")
    fcreate.set_defaults(run=cmd_feeds_create)
    flist = feeds_sub.add_parser("list", parents=[common], help="list feeds")
    flist.add_argument("--project", help="project id (default: the default project)")
    flist.add_argument("--json", action="store_true", help="print JSON")
    flist.set_defaults(run=cmd_feeds_list)
    frotate = feeds_sub.add_parser(
        "rotate-key",
        parents=[common],
        help="replace a feed's write key",
        description="Replace a feed's write key; the old key stops working.",
    )
    frotate.add_argument("feed_id")
    frotate.add_argument("--project", help="project id (default: the default project)")
    frotate.add_argument("--json", action="store_true", help="print JSON")
    frotate.set_defaults(run=cmd_feeds_rotate)
    feeds.set_defaults(run=_help(feeds))

    hooks = commands.add_parser(
        "webhooks",
        parents=[common],
        help="webhooks and their deliveries",
        description="Subscribe URLs to events, inspect deliveries, replay them.",
    )
    hooks_sub = hooks.add_subparsers(title="actions", metavar="ACTION")
    add = hooks_sub.add_parser(
        "add",
        parents=[common],
        help="subscribe a URL to events",
        description="Subscribe a URL; the signing secret is printed.",
    )
    add.add_argument("url")
    add.add_argument("--events", default="*", help="comma-separated event types, or * for all (default)")
    add.add_argument("--description", default="")
    add.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'", help="a custom header (repeat)")
    add.add_argument("--ordered", action="store_true", help="deliver strictly in event order, one at a time")
    add.add_argument("--project", help="project id (default: the default project)")
    add.add_argument("--json", action="store_true", help="print JSON")
    add.set_defaults(run=cmd_webhooks_add)
    hlist = hooks_sub.add_parser("list", parents=[common], help="list webhooks")
    hlist.add_argument("--project", help="project id (default: the default project)")
    hlist.add_argument("--json", action="store_true", help="print JSON")
    hlist.set_defaults(run=cmd_webhooks_list)
    dlist = hooks_sub.add_parser("deliveries", parents=[common], help="a webhook's recent deliveries")
    dlist.add_argument("webhook_id")
    dlist.add_argument("--status", choices=["pending", "failed", "delivered", "dead"])
    dlist.add_argument("--limit", type=int, default=20)
    dlist.add_argument("--project", help="project id (default: the default project)")
    dlist.add_argument("--json", action="store_true", help="print JSON")
    dlist.set_defaults(run=cmd_webhooks_deliveries)
    replay = hooks_sub.add_parser(
        "replay",
        parents=[common],
        help="send deliveries again",
        description="Replay one delivery (DELIVERY_ID), or a webhook's failed, dead or all deliveries (--webhook).",
    )
    replay.add_argument("delivery_id", nargs="?")
    replay.add_argument("--webhook", help="replay this webhook's deliveries")
    replay.add_argument("--status", choices=["failed", "dead", "all"], default="failed")
    replay.add_argument("--since", help="only deliveries created since this ISO-8601 time")
    replay.add_argument("--project", help="project id (default: the default project)")
    replay.set_defaults(run=cmd_webhooks_replay)
    hooks.set_defaults(run=_help(hooks))

    admin = commands.add_parser(
        "admin",
        parents=[common],
        help="the dashboard's administrator",
        description="Manage the dashboard's admin password.",
    )
    admin_sub = admin.add_subparsers(title="actions", metavar="ACTION")
    reset = admin_sub.add_parser(
        "reset-password",
        parents=[common],
        help="print a one-time link to set a new dashboard password",
        description="Print a one-time link (valid 24 hours, or until a password is first set) to choose the "
        "dashboard password. The current password keeps working until the link is used; using it signs every "
        "browser out. Works while the server runs.",
    )
    reset.set_defaults(run=cmd_admin_reset_password)
    admin.set_defaults(run=_help(admin))

    backup = commands.add_parser(
        "backup",
        parents=[common],
        help="copy the database, images and keys to a new directory",
        description="Make an online backup while the server runs: a consistent copy of the database, the "
        "uploaded images and the Web Push keys, in the new (or empty) directory PATH (mode 0700). "
        "To restore, stop Glimpze and copy PATH's contents into an empty data directory.",
    )
    backup.add_argument("path", metavar="PATH", help="the directory to create")
    backup.set_defaults(run=cmd_backup)

    check = commands.add_parser(
        "check",
        parents=[common],
        help="check the database and the configuration",
        description="Run SQLite's integrity check, validate the configuration, and report the delivery "
        "queue and the size of the data directory. Exits 0 only when all is sound.",
    )
    check.set_defaults(run=cmd_check)
    cli_displays.add_commands(commands, common)
    return parser


def _help(parser: argparse.ArgumentParser) -> Command:
    def show(args: argparse.Namespace, config: Config) -> int:
        parser.print_help()
        return 2

    return show


# serve


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    from glimpze.app import create_app
    from glimpze.config import parse_listen
    from glimpze.ops.datadir import claim
    from glimpze.ops.http_limits import serving_limits
    from glimpze.ops.server import SHUTDOWN_GRACE, Server, ServerConfig, http_protocol, listen_socket
    from glimpze.ops.tls import server_context

    if config.public_url is None and not _is_loopback(config.host):
        log.warning(
            "public_url is not set: webhook and image URLs will say %s. "
            "Set public_url in glimpze.toml (or GLIMPZE_PUBLIC_URL) to the address devices use.",
            config.base_url,
        )
    try:
        tls = server_context(config.tls) if config.tls_enabled else None
    except ConfigError as exc:
        print(f"glimpze: configuration error: {exc}", file=sys.stderr)
        return 2
    # SQLite: one server process per data directory (a database shared by several processes,
    # such as PostgreSQL, would not take this lock). Held until the process ends.
    data_dir = claim(config.data_path)
    metrics_socket = None
    if config.metrics.listen:
        host, port = parse_listen(config.metrics.listen)
        try:
            metrics_socket = listen_socket(host, port)
        except OSError as exc:
            log.error("metrics.listen: cannot listen on %s: %s", config.metrics.listen, exc)
            return 1
    app = create_app(config)
    server = Server(
        ServerConfig(
            app,
            http=http_protocol(app.state.glimpze, serving_limits(config.http)),
            tls=tls,
            host=config.host,
            port=config.port,
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,  # X-Forwarded-For is read by Glimpze itself, honouring trusted_proxies
            timeout_graceful_shutdown=int(SHUTDOWN_GRACE),
            lifespan="on",
        ),
        app.state.glimpze,
        metrics_socket=metrics_socket,
        watchdog=True,
    )
    scheme = "https" if tls else "http"
    log.info(
        "glimpze %s listening on %s://%s:%d (data in %s)",
        __version__,
        scheme,
        config.host,
        config.port,
        config.data_path.resolve(),
    )
    if metrics_socket is not None:
        log.info("metrics without authentication on http://%s/metrics", config.metrics.listen)
    try:
        server.run()
    finally:
        data_dir.release()
    return 0 if server.started else 1


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# admin commands


def _run(config: Config, action: Callable[[Services], Awaitable[Any]]) -> Any:
    from glimpze.ops.datadir import check_writable

    check_writable(config.data_path)  # one clear line rather than SQLite's "unable to open database file"

    async def go() -> Any:
        async with Services(config) as glimpze:
            return await action(glimpze)

    return asyncio.run(go())


async def _project(glimpze: Services, project: str | None) -> str:
    if project:
        return (await glimpze.keys.get_project(project)).id
    default, _ = await glimpze.keys.ensure_default_project(mint_admin_key=False)
    return default.id


def _print_json(value: Any) -> None:
    print(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


def cmd_keys_create(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> Any:
        return await glimpze.keys.create(await _project(glimpze, args.project), args.name)

    key = _run(config, action)
    if args.json:
        _print_json({"id": key.id, "key": key.key})
    else:
        print(f"Created API key {key.id} ({key.name}). It is shown only this once:\n\n    {key.key}\n")
    return 0


def cmd_keys_list(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> Any:
        project = await _project(glimpze, args.project)
        return await all_pages(lambda after: glimpze.keys.page(project, after=after, limit=100))

    keys = _run(config, action)
    if args.json:
        _print_json(keys)
        return 0
    _table(
        ["ID", "NAME", "PREFIX", "CREATED", "LAST USED"],
        [[k.id, k.name, k.prefix + "…", k.created_at, k.last_used_at or "never"] for k in keys],
    )
    return 0


def cmd_projects_create(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> Any:
        await glimpze.keys.ensure_default_project(mint_admin_key=False)  # the default stays the first
        return await glimpze.keys.create_project(args.name)

    project, key = _run(config, action)
    if args.json:
        _print_json({"id": project.id, "key": key.key})
    else:
        print(f"Created project {project.id} ({project.name}). Its API key is shown only this once:\n\n    {key.key}\n")
    return 0


def cmd_projects_list(args: argparse.Namespace, config: Config) -> int:
    projects = _run(config, lambda glimpze: glimpze.keys.list_projects())
    if args.json:
        _print_json(projects)
        return 0
    _table(["ID", "NAME", "CREATED"], [[p.id, p.name, p.created_at] for p in projects])
    return 0


def cmd_feeds_create(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> Any:
        return await glimpze.feeds.create(await _project(glimpze, args.project), args.name, args.schema, args.plan)

    feed = _run(config, action)
    if args.json:
        _print_json(feed)
    else:
        print(
            f"Created {feed.schema_type} feed {feed.id} ({feed.name}, plan {feed.plan}).\n"
            f"  Webhook URL: {feed.webhook_url}\n"
            f"  Write key (shown only this once): {feed.write_key}"
        )
        if feed.callback_secret:
            print(
                f"  Callback secret (signs approval callbacks; also on GET /v1/feeds/{feed.id}): {feed.callback_secret}"
            )
    return 0


def cmd_feeds_list(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> Any:
        project = await _project(glimpze, args.project)
        return await all_pages(lambda after: glimpze.feeds.page(project, after=after, limit=100))

    feeds = _run(config, action)
    if args.json:
        _print_json(feeds)
        return 0
    _table(
        ["ID", "NAME", "SCHEMA", "PLAN", "WEBHOOK URL"],
        [[f.id, f.name, f.schema_type, f.plan, f.webhook_url] for f in feeds],
    )
    return 0


def cmd_feeds_rotate(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> Any:
        return await glimpze.feeds.rotate_key(await _project(glimpze, args.project), args.feed_id)

    feed = _run(config, action)
    if args.json:
        _print_json({"id": feed.id, "write_key": feed.write_key})
    else:
        print(f"New write key for {feed.id} (the old one no longer works):\n\n    {feed.write_key}\n")
    return 0


def cmd_webhooks_add(args: argparse.Namespace, config: Config) -> int:
    from glimpze.delivery.webhooks import WebhookSpec

    headers = {}
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep:
            raise GlimpzeError(f"--header {header!r}: expected 'NAME: VALUE'")
        headers[name.strip()] = value.strip()
    spec = WebhookSpec(
        url=args.url,
        events=[e.strip() for e in args.events.split(",") if e.strip()],
        description=args.description,
        headers=headers,
        ordered=args.ordered,
    )

    async def action(glimpze: Services) -> Any:
        return await glimpze.webhooks.create(await _project(glimpze, args.project), spec)

    hook = _run(config, action)
    if args.json:
        _print_json(hook)
    else:
        print(f"Created webhook {hook.id} for {', '.join(hook.events)} → {hook.url}\n  Signing secret: {hook.secret}")
    return 0


def cmd_webhooks_list(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> Any:
        project = await _project(glimpze, args.project)
        return await all_pages(lambda after: glimpze.webhooks.list(project, after=after, limit=100))

    hooks = _run(config, action)
    if args.json:
        _print_json(hooks)
        return 0
    _table(
        ["ID", "URL", "EVENTS", "STATE"],
        [
            [
                h.id,
                h.url,
                ",".join(h.events),
                "active" if h.active else f"off ({h.disabled_reason})" if h.disabled_reason else "off",
            ]
            for h in hooks
        ],
    )
    return 0


def cmd_webhooks_deliveries(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> Any:
        project = await _project(glimpze, args.project)
        return await glimpze.webhooks.deliveries(
            project, args.webhook_id, status=args.status, before=None, limit=max(1, min(args.limit, 100))
        )

    page = _run(config, action)
    if args.json:
        _print_json(page.data)
        return 0
    _table(
        ["ID", "EVENT", "STATUS", "ATTEMPTS", "LAST", "NEXT ATTEMPT"],
        [
            [
                d.id,
                d.event,
                d.status,
                str(d.attempts),
                str(d.last_status_code or d.last_error or "-"),
                d.next_attempt_at or "-",
            ]
            for d in page.data
        ],
    )
    return 0


def cmd_webhooks_replay(args: argparse.Namespace, config: Config) -> int:
    from glimpze.clock import parse_iso

    if bool(args.delivery_id) == bool(args.webhook):
        raise GlimpzeError("give either a DELIVERY_ID or --webhook WEBHOOK_ID")

    async def action(glimpze: Services) -> Any:
        project = await _project(glimpze, args.project)
        if args.delivery_id:
            await glimpze.webhooks.replay(project, args.delivery_id)
            return 1
        since = parse_iso(args.since) if args.since else None
        return (await glimpze.webhooks.replay_many(project, args.webhook, since=since, status=args.status)).replayed

    count = _run(config, action)
    print(f"Queued {count} deliver{'y' if count == 1 else 'ies'} again; a running server sends them within a second.")
    return 0


def cmd_backup(args: argparse.Namespace, config: Config) -> int:
    from glimpze.ops.backup import backup

    report = backup(config, Path(args.path))
    print(f"Backed up {config.data_path.resolve()} to {report.path} in {report.seconds:.1f} s:")
    print(f"  glimpze.db   {report.database_bytes / 1e6:.1f} MB, integrity ok, {report.events} events")
    print(f"  media/       {report.images} images, {report.image_bytes / 1e6:.1f} MB")
    print(f"  VAPID keys   {', '.join(report.vapid_files) or 'none yet'}")
    if report.missing_images:
        print(f"  ({len(report.missing_images)} images were deleted by retention while the backup ran)")
    print("To restore: stop Glimpze, copy these files into an empty data directory, start Glimpze.")
    return 0


def cmd_check(args: argparse.Namespace, config: Config) -> int:
    from glimpze.ops.backup import check

    report = check(config)
    for line in report.lines():
        print(line)
    for problem in report.problems:
        print(f"glimpze: {problem}", file=sys.stderr)
    return 0 if report.sound else 1


def cmd_admin_reset_password(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> Any:
        had_password = await glimpze.admin.has_password()
        return had_password, await glimpze.admin.new_setup_token()

    had_password, token = _run(config, action)
    validity = "for 24 hours" if had_password else "until a password is set"
    print(
        f"Open this one-time link to choose the dashboard password (it works {validity}; any older link no "
        f"longer does):\n\n    {config.base_url}/setup/{token}\n"
    )
    if had_password:
        print("The current password keeps working until the link is used; using it signs every browser out.")
    return 0


def _table(headers: list[str], rows: list[list[str]]) -> None:
    if not rows:
        print("(none)")
        return
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    for row in [headers, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
