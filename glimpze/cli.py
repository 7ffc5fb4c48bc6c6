"""The `glimpze` command: serve, and the admin commands that share the server's store code.

Every subcommand takes --config and --data-dir; settings come from glimpze.toml, then GLIMPZE_*
environment variables, then flags. Commands that write (projects, keys, feeds) may run while the server
serves: they go through the same store code and SQLite's busy timeout covers the overlap.

`COMMANDS` is every command with its help, options and handler, in `--help`'s order;
`build_parser()` makes the argparse parsers from it. The handlers are in cli_serve.py (`serve`)
and cli_commands.py (the others).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from glimpze import __version__
from glimpze.cli_commands import (
    cmd_admin_reset_password,
    cmd_backup,
    cmd_check,
    cmd_feeds_create,
    cmd_feeds_list,
    cmd_feeds_rotate,
    cmd_keys_create,
    cmd_keys_list,
    cmd_projects_create,
    cmd_projects_list,
    cmd_webhooks_add,
    cmd_webhooks_deliveries,
    cmd_webhooks_list,
    cmd_webhooks_replay,
)
from glimpze.cli_displays import COMMANDS as DISPLAY_COMMANDS
from glimpze.cli_serve import cmd_serve
from glimpze.cli_table import Command, Handler, Option, option
from glimpze.config import Config, ConfigError, load
from glimpze.errors import GlimpzeError
from glimpze.ops.logs import setup as setup_logging

COMMON = (
    option("--config", metavar="FILE", help="settings file (default: $GLIMPZE_CONFIG or ./glimpze.toml)"),
    option("--data-dir", metavar="DIR", help="where the database and uploads live (default: ./data)"),
)
PROJECT = option("--project", help="project id (default: the default project)")
JSON = option("--json", action="store_true", help="print JSON")
SECRET_JSON = option("--json", action="store_true", help='print {"id": …, "key": …}')

COMMANDS = (
    Command(
        "serve",
        cmd_serve,
        "run the server",
        "Run the HTTP server (API, ingest, widgets, dashboard) and the background jobs.",
        (
            option("--host", help="listen address (default 0.0.0.0)"),
            option("--port", type=int, help="listen port (default 8080)"),
            option("--tls-cert", metavar="FILE", help="serve HTTPS with this PEM certificate (chain) ([tls] cert)"),
            option("--tls-key", metavar="FILE", help="the certificate's PEM private key ([tls] key)"),
        ),
    ),
    Command("keys", None, "project API keys", "Create and list project API keys (gzp_…)."),
    Command(
        "keys create",
        cmd_keys_create,
        "mint a new API key",
        "Mint a new API key for a project; the secret is printed once.",
        (option("--name", required=True, help="a label for the key, e.g. 'n8n'"), PROJECT, SECRET_JSON),
    ),
    Command("keys list", cmd_keys_list, "list API keys", options=(PROJECT, JSON)),
    Command(
        "projects",
        None,
        "projects (workspaces)",
        "Create and list projects; each has its own API keys, feeds, sessions and leads.",
    ),
    Command(
        "projects create",
        cmd_projects_create,
        "create a project",
        "Create a project and its first API key; the key is printed once.",
        (option("name", help="the project's name"), SECRET_JSON),
    ),
    Command("projects list", cmd_projects_list, "list projects", options=(JSON,)),
    Command("feeds", None, "feeds and their write keys", "Create and list feeds; rotate a feed's write key."),
    Command(
        "feeds create",
        cmd_feeds_create,
        "create a feed",
        "Create a feed; its write key is printed once.",
        (
            option("--name", required=True),
            option("--schema", required=True, choices=["summary", "status", "counter", "approval", "custom"]),
            option("--plan", help="plan name (default: default_plan)"),
            PROJECT,
            JSON,
        ),
    ),
    Command("feeds list", cmd_feeds_list, "list feeds", options=(PROJECT, JSON)),
    Command(
        "feeds rotate-key",
        cmd_feeds_rotate,
        "replace a feed's write key",
        "Replace a feed's write key; the old key stops working.",
        (option("feed_id"), PROJECT, JSON),
    ),
    Command(
        "webhooks", None, "webhooks and their deliveries", "Subscribe URLs to events, inspect deliveries, replay them."
    ),
    Command(
        "webhooks add",
        cmd_webhooks_add,
        "subscribe a URL to events",
        "Subscribe a URL; the signing secret is printed.",
        (
            option("url"),
            option("--events", default="*", help="comma-separated event types, or * for all (default)"),
            option("--feeds", default="", help="comma-separated feed ids: only their events (default: every feed)"),
            option("--description", default=""),
            option("--header", action="append", default=[], metavar="'NAME: VALUE'", help="a custom header (repeat)"),
            option("--ordered", action="store_true", help="deliver strictly in event order, one at a time"),
            PROJECT,
            JSON,
        ),
    ),
    Command("webhooks list", cmd_webhooks_list, "list webhooks", options=(PROJECT, JSON)),
    Command(
        "webhooks deliveries",
        cmd_webhooks_deliveries,
        "a webhook's recent deliveries",
        options=(
            option("webhook_id"),
            option("--status", choices=["pending", "failed", "delivered", "dead"]),
            option("--limit", type=int, default=20),
            PROJECT,
            JSON,
        ),
    ),
    Command(
        "webhooks replay",
        cmd_webhooks_replay,
        "send deliveries again",
        "Replay one delivery (DELIVERY_ID), or a webhook's failed, dead or all deliveries (--webhook).",
        (
            option("delivery_id", nargs="?"),
            option("--webhook", help="replay this webhook's deliveries"),
            option("--status", choices=["failed", "dead", "all"], default="failed"),
            option("--since", help="only deliveries created since this ISO-8601 time"),
            PROJECT,
        ),
    ),
    Command("admin", None, "the dashboard's administrator", "Manage the dashboard's admin password."),
    Command(
        "admin reset-password",
        cmd_admin_reset_password,
        "print a one-time link to set a new dashboard password",
        "Print a one-time link (valid 24 hours, or until a password is first set) to choose the dashboard password. "
        "The current password keeps working until the link is used; using it signs every browser out. Works while "
        "the server runs.",
    ),
    Command(
        "backup",
        cmd_backup,
        "copy the database, images and keys to a new directory",
        "Make an online backup while the server runs: a consistent copy of the database, the uploaded images and "
        "the Web Push keys, in the new (or empty) directory PATH (mode 0700). To restore, stop Glimpze and copy "
        "PATH's contents into an empty data directory.",
        (option("path", metavar="PATH", help="the directory to create"),),
    ),
    Command(
        "check",
        cmd_check,
        "check the database and the configuration",
        "Run SQLite's integrity check, validate the configuration, and report the delivery queue and the size of "
        "the data directory. Exits 0 only when all is sound.",
    ),
    *DISPLAY_COMMANDS,  # screens, devices
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Handler | None = getattr(args, "run", None)
    if not run:
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
        return run(args, config)
    except GlimpzeError as exc:
        print(f"glimpze: {exc.detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The parsers of `COMMANDS`: each command and action takes the common options too."""
    common = argparse.ArgumentParser(add_help=False)
    _add_options(common, COMMON)
    parser = argparse.ArgumentParser(
        prog="glimpze",
        description="Self-hosted live widgets, push, approvals and signed webhooks from any HTTP call.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"glimpze {__version__}")
    top = parser.add_subparsers(title="commands", metavar="COMMAND")
    parsers: dict[str, argparse.ArgumentParser] = {}
    actions: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
    for command in COMMANDS:
        group, _, name = command.words.rpartition(" ")
        if group and group not in actions:
            actions[group] = parsers[group].add_subparsers(title="actions", metavar="ACTION")
        into = actions[group] if group else top
        made = into.add_parser(name, parents=[common], help=command.help, description=command.description)
        _add_options(made, command.options)
        made.set_defaults(run=command.run or _help(made))
        parsers[command.words] = made
    return parser


def _add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    for each in options:
        parser.add_argument(*each.names, **each.settings)


def _help(parser: argparse.ArgumentParser) -> Handler:
    def show(args: argparse.Namespace, config: Config) -> int:
        parser.print_help()
        return 2

    return show
