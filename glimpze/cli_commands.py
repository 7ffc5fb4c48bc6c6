"""What the `glimpze` commands other than `serve` do: each opens the services on the configured data
directory (beside a running server, if there is one), acts, and prints a table, a secret shown
once, or JSON with `--json`. Their options are in cli.py's command table."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import msgspec

from glimpze.config import Config
from glimpze.errors import GlimpzeError
from glimpze.services import Services
from glimpze.store.pagination import all_pages

if TYPE_CHECKING:
    from glimpze.accounts.keys import ApiKey, NewApiKey, Project
    from glimpze.delivery.webhook_shapes import Delivery, NewWebhook, Webhook
    from glimpze.feeds.feeds import Feed, NewFeed
    from glimpze.store.pagination import Page

T = TypeVar("T")


def _run(config: Config, action: Callable[[Services], Awaitable[T]]) -> T:
    from glimpze.ops.datadir import check_writable

    check_writable(config.data_path)  # one clear line rather than SQLite's "unable to open database file"

    async def go() -> T:
        async with Services(config) as glimpze:
            return await action(glimpze)

    return asyncio.run(go())


async def _project(glimpze: Services, project: str | None) -> str:
    if project:
        return (await glimpze.keys.get_project(project)).id
    default, _ = await glimpze.keys.ensure_default_project(mint_admin_key=False)
    return default.id


def _print_json(value: object) -> None:
    print(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


def cmd_keys_create(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> NewApiKey:
        return await glimpze.keys.create(await _project(glimpze, args.project), args.name)

    key = _run(config, action)
    text = f"Created API key {key.id} ({key.name}). It is shown only this once:\n\n    {key.key}\n"
    return _made(args, {"id": key.id, "key": key.key}, text)


def cmd_keys_list(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> list[ApiKey]:
        project = await _project(glimpze, args.project)
        return await all_pages(lambda after: glimpze.keys.page(project, after=after, limit=100))

    keys = _run(config, action)
    columns = ["ID", "NAME", "PREFIX", "CREATED", "LAST USED"]
    return _listed(
        args, keys, columns, lambda k: [k.id, k.name, k.prefix + "…", k.created_at, k.last_used_at or "never"]
    )


def cmd_projects_create(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> tuple[Project, NewApiKey]:
        await glimpze.keys.ensure_default_project(mint_admin_key=False)  # the default stays the first
        return await glimpze.keys.create_project(args.name)

    project, key = _run(config, action)
    text = f"Created project {project.id} ({project.name}). Its API key is shown only this once:\n\n    {key.key}\n"
    return _made(args, {"id": project.id, "key": key.key}, text)


def cmd_projects_list(args: argparse.Namespace, config: Config) -> int:
    projects = _run(config, lambda glimpze: glimpze.keys.list_projects())
    return _listed(args, projects, ["ID", "NAME", "CREATED"], lambda p: [p.id, p.name, p.created_at])


def cmd_feeds_create(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> NewFeed:
        return await glimpze.feeds.create(await _project(glimpze, args.project), args.name, args.schema, args.plan)

    feed = _run(config, action)
    text = (
        f"Created {feed.schema_type} feed {feed.id} ({feed.name}, plan {feed.plan}).\n"
        f"  Webhook URL: {feed.webhook_url}\n"
        f"  Write key (shown only this once): {feed.write_key}"
    )
    if feed.callback_secret:
        text += (
            f"\n  Callback secret (signs approval callbacks; also on GET /v1/feeds/{feed.id}): {feed.callback_secret}"
        )
    return _made(args, feed, text)


def cmd_feeds_list(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> list[Feed]:
        project = await _project(glimpze, args.project)
        return await all_pages(lambda after: glimpze.feeds.page(project, after=after, limit=100))

    feeds = _run(config, action)
    columns = ["ID", "NAME", "SCHEMA", "PLAN", "WEBHOOK URL"]
    return _listed(args, feeds, columns, lambda f: [f.id, f.name, f.schema_type, f.plan, f.webhook_url])


def cmd_feeds_rotate(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> NewFeed:
        return await glimpze.feeds.rotate_key(await _project(glimpze, args.project), args.feed_id)

    feed = _run(config, action)
    text = f"New write key for {feed.id} (the old one no longer works):\n\n    {feed.write_key}\n"
    return _made(args, {"id": feed.id, "write_key": feed.write_key}, text)


def cmd_webhooks_add(args: argparse.Namespace, config: Config) -> int:
    from glimpze.delivery.webhook_shapes import WebhookSpec

    headers = {}
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep:
            raise GlimpzeError(f"--header {header!r}: expected 'NAME: VALUE'")
        headers[name.strip()] = value.strip()
    spec = WebhookSpec(
        url=args.url,
        events=[e.strip() for e in args.events.split(",") if e.strip()],
        feed_ids=[f.strip() for f in args.feeds.split(",") if f.strip()],
        description=args.description,
        headers=headers,
        ordered=args.ordered,
    )

    async def action(glimpze: Services) -> NewWebhook:
        return await glimpze.webhooks.create(await _project(glimpze, args.project), spec)

    hook = _run(config, action)
    return _made(
        args,
        hook,
        f"Created webhook {hook.id} for {', '.join(hook.events)} → {hook.url}\n  Signing secret: {hook.secret}",
    )


def cmd_webhooks_list(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> list[Webhook]:
        project = await _project(glimpze, args.project)
        return await all_pages(lambda after: glimpze.webhooks.list(project, after=after, limit=100))

    hooks = _run(config, action)

    def row(h: Webhook) -> list[str]:
        state = "active" if h.active else f"off ({h.disabled_reason})" if h.disabled_reason else "off"
        return [h.id, h.url, ",".join(h.events), state]

    return _listed(args, hooks, ["ID", "URL", "EVENTS", "STATE"], row)


def cmd_webhooks_deliveries(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> Page[Delivery]:
        project = await _project(glimpze, args.project)
        return await glimpze.webhooks.deliveries(
            project, args.webhook_id, status=args.status, before=None, limit=max(1, min(args.limit, 100))
        )

    page = _run(config, action)

    def row(d: Delivery) -> list[str]:
        last = str(d.last_status_code or d.last_error or "-")
        return [d.id, d.event, d.status, str(d.attempts), last, d.next_attempt_at or "-"]

    return _listed(args, page.data, ["ID", "EVENT", "STATUS", "ATTEMPTS", "LAST", "NEXT ATTEMPT"], row)


def cmd_webhooks_replay(args: argparse.Namespace, config: Config) -> int:
    from glimpze.clock import parse_iso

    if bool(args.delivery_id) == bool(args.webhook):
        raise GlimpzeError("give either a DELIVERY_ID or --webhook WEBHOOK_ID")

    async def action(glimpze: Services) -> int:
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
    async def action(glimpze: Services) -> tuple[bool, str]:
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


def _made(args: argparse.Namespace, made: object, text: str) -> int:
    """What a command made, secrets included (shown only now): as JSON with `--json`, else `text`."""
    if args.json:
        _print_json(made)
    else:
        print(text)
    return 0


def _listed(args: argparse.Namespace, items: Sequence[T], headers: list[str], row: Callable[[T], list[str]]) -> int:
    """`items` as JSON with `--json`, else as a table of `headers` with a `row` each."""
    if args.json:
        _print_json(items)
    else:
        _table(headers, [row(item) for item in items])
    return 0


def _table(headers: list[str], rows: list[list[str]]) -> None:
    if not rows:
        print("(none)")
        return
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    for row in [headers, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
