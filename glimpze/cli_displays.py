"""`glimpze screens …` and `glimpze devices …`: screens and e-ink devices from the command line.

They go through the same services as the server and the dashboard, and may run while it serves.
`add_commands(commands, common)` adds them to the `glimpze` parser (cli.py's `build_parser`: the
subcommands' parser and the parent parser of the common options).
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from glimpze.config import Config
from glimpze.displays.devices import DevicePatch
from glimpze.displays.playlists import PlaylistItem
from glimpze.displays.screens import LAYOUTS, ScreenCreate
from glimpze.errors import ValidationFailed
from glimpze.services import Services
from glimpze.store.pagination import MAX_LIMIT, all_pages

DEFAULT_SECONDS = 900


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `screens` and `devices` to the subcommands of the `glimpze` parser."""
    screens = commands.add_parser(
        "screens",
        parents=[common],
        help="screens: feeds laid out for e-ink devices, picture cards and kiosks",
        description="Create, list and delete screens; rotate a screen's read token.",
    )
    screens_sub = screens.add_subparsers(title="actions", metavar="ACTION")
    create = screens_sub.add_parser(
        "create",
        parents=[common],
        help="create a screen",
        description="Create a screen of 1 to 4 feeds; prints its picture and kiosk URLs.",
    )
    create.add_argument("--name", required=True)
    create.add_argument("--feed", action="append", required=True, metavar="FEED_ID", help="a feed (repeat, in order)")
    create.add_argument("--layout", choices=LAYOUTS, help="default: the one that fits the number of feeds")
    create.add_argument("--size", default="800x480", metavar="WxH", help="pixels (default 800x480)")
    create.add_argument("--theme", choices=["light", "dark", "eink"], default="light")
    create.add_argument("--no-updated", action="store_true", help="do not say when each feed was updated")
    create.add_argument("--project", help="project id (default: the default project)")
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(run=cmd_screens_create)
    listing = screens_sub.add_parser("list", parents=[common], help="list screens")
    listing.add_argument("--project", help="project id (default: the default project)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=cmd_screens_list)
    delete = screens_sub.add_parser("delete", parents=[common], help="delete a screen (it leaves every playlist)")
    delete.add_argument("screen_id")
    delete.add_argument("--project", help="project id (default: the default project)")
    delete.set_defaults(run=cmd_screens_delete)
    rotate = screens_sub.add_parser(
        "rotate-token",
        parents=[common],
        help="replace a screen's read token",
        description="Replace a screen's read token; picture cards and kiosks need the new URLs.",
    )
    rotate.add_argument("screen_id")
    rotate.add_argument("--project", help="project id (default: the default project)")
    rotate.add_argument("--json", action="store_true", help="print JSON")
    rotate.set_defaults(run=cmd_screens_rotate)
    screens.set_defaults(run=_help(screens))

    devices = commands.add_parser(
        "devices",
        parents=[common],
        help="e-ink devices (TRMNL firmware)",
        description="List devices, accept them, set their playlists and image format, read their logs.",
    )
    devices_sub = devices.add_subparsers(title="actions", metavar="ACTION")
    dlist = devices_sub.add_parser("list", parents=[common], help="list devices, pending ones included")
    dlist.add_argument("--project", help="project id (default: the default project)")
    dlist.add_argument("--json", action="store_true", help="print JSON")
    dlist.set_defaults(run=cmd_devices_list)
    accept = devices_sub.add_parser(
        "accept",
        parents=[common],
        help="accept a pending device",
        description="Accept a device: it fetches its access token from /api/setup and shows its playlist.",
    )
    accept.add_argument("device_id")
    _playlist_option(accept)
    accept.add_argument("--project", help="project id (default: the default project)")
    accept.add_argument("--json", action="store_true", help="print JSON")
    accept.set_defaults(run=cmd_devices_accept)
    change = devices_sub.add_parser(
        "set", parents=[common], help="change a device", description="Rename a device, set its playlist or format."
    )
    change.add_argument("device_id")
    change.add_argument("--name")
    _playlist_option(change)
    change.add_argument("--bit-depth", type=int, choices=[1, 2])
    change.add_argument("--format", choices=["png", "bmp"])
    change.add_argument("--pause", action="store_true", help="show nothing until accepted again")
    change.add_argument("--project", help="project id (default: the default project)")
    change.add_argument("--json", action="store_true", help="print JSON")
    change.set_defaults(run=cmd_devices_set)
    forget = devices_sub.add_parser("delete", parents=[common], help="forget a device, its logs and images")
    forget.add_argument("device_id")
    forget.add_argument("--project", help="project id (default: the default project)")
    forget.set_defaults(run=cmd_devices_delete)
    logs = devices_sub.add_parser("logs", parents=[common], help="a device's latest log lines")
    logs.add_argument("device_id")
    logs.add_argument("--limit", type=int, default=20)
    logs.add_argument("--project", help="project id (default: the default project)")
    logs.add_argument("--json", action="store_true", help="print JSON")
    logs.set_defaults(run=cmd_devices_logs)
    devices.set_defaults(run=_help(devices))


def _playlist_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--screen",
        action="append",
        metavar="SCREEN_ID[:SECONDS]",
        help=f"a screen of the playlist, shown SECONDS (default {DEFAULT_SECONDS}); repeat for more",
    )


def _cli() -> Any:
    """Where the admin commands' helpers live (`_run`, `_project`, `_print_json`, `_table`): cli.py
    here, cli_commands.py once the command line is a table of commands (its refactor of issue 17)."""
    return importlib.import_module("glimpze.cli")


def _help(parser: argparse.ArgumentParser) -> Any:
    def show(args: argparse.Namespace, config: Config) -> int:
        parser.print_help()
        return 2

    return show


def _playlist(given: list[str] | None) -> list[PlaylistItem] | None:
    if given is None:
        return None
    items = []
    for n, text in enumerate(given):
        screen_id, _, seconds = text.partition(":")
        if seconds and not seconds.isdigit():
            raise ValidationFailed.at(f"--screen[{n}]", f"{text!r}: write SCREEN_ID or SCREEN_ID:SECONDS")
        items.append(PlaylistItem(screen_id, int(seconds) if seconds else DEFAULT_SECONDS))
    return items


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise ValidationFailed.at("--size", f"{text!r}: write it as WIDTHxHEIGHT, such as 800x480")
    return int(width), int(height)


def cmd_screens_create(args: argparse.Namespace, config: Config) -> int:
    spec = ScreenCreate(
        name=args.name,
        feeds=args.feed,
        size=_size(args.size),
        layout=args.layout,
        theme=args.theme,
        show_updated=not args.no_updated,
    )

    async def action(glimpze: Services) -> Any:
        return await glimpze.screens.create(await _cli()._project(glimpze, args.project), spec)

    screen = _cli()._run(config, action)
    if args.json:
        _cli()._print_json(screen)
    else:
        print(
            f"Created screen {screen.id} ({screen.name}, {screen.layout}, {screen.size[0]}x{screen.size[1]}).\n"
            f"  Picture (Home Assistant): {screen.image_url}\n"
            f"  Kiosk page: {screen.kiosk_url}"
        )
    return 0


def cmd_screens_list(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> Any:
        project = await _cli()._project(glimpze, args.project)
        return await all_pages(lambda after: glimpze.screens.page(project, after=after, limit=MAX_LIMIT))

    screens = _cli()._run(config, action)
    if args.json:
        _cli()._print_json(screens)
        return 0
    _cli()._table(
        ["ID", "NAME", "LAYOUT", "SIZE", "FEEDS", "PICTURE URL"],
        [[s.id, s.name, s.layout, f"{s.size[0]}x{s.size[1]}", " ".join(s.feeds), s.image_url] for s in screens],
    )
    return 0


def cmd_screens_delete(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> Any:
        await glimpze.screens.delete(await _cli()._project(glimpze, args.project), args.screen_id)

    _cli()._run(config, action)
    print(f"Deleted screen {args.screen_id}.")
    return 0


def cmd_screens_rotate(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> Any:
        return await glimpze.screens.rotate_read_token(await _cli()._project(glimpze, args.project), args.screen_id)

    screen = _cli()._run(config, action)
    if args.json:
        _cli()._print_json(screen)
    else:
        print(f"New read token for {screen.id} (the old one no longer works):\n\n    {screen.image_url}\n")
    return 0


def cmd_devices_list(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> Any:
        project = await _cli()._project(glimpze, args.project)
        return await all_pages(lambda after: glimpze.devices.page(project, after=after, limit=MAX_LIMIT))

    devices = _cli()._run(config, action)
    if args.json:
        _cli()._print_json(devices)
        return 0
    _cli()._table(
        ["ID", "NAME", "MAC", "CODE", "STATE", "BATTERY", "RSSI", "FIRMWARE", "LAST SEEN"],
        [
            [
                d.id,
                d.name,
                d.mac,
                d.friendly_id,
                ("paired" if d.paired else "accepted") if d.accepted else "pending",
                "" if d.battery_voltage is None else f"{d.battery_voltage:.2f} V",
                "" if d.rssi is None else f"{d.rssi} dBm",
                d.firmware or "",
                d.last_seen_at or "never",
            ]
            for d in devices
        ],
    )
    return 0


def _change(args: argparse.Namespace, config: Config, patch: DevicePatch) -> int:
    async def action(glimpze: Services) -> Any:
        return await glimpze.devices.update(await _cli()._project(glimpze, args.project), args.device_id, patch)

    device, token = _cli()._run(config, action)
    if args.json:
        _cli()._print_json(device)
    else:
        state = ("paired" if device.paired else "accepted") if device.accepted else "paused"
        shown = ", ".join(f"{item.screen_id} ({item.seconds} s)" for item in device.playlist) or "nothing yet"
        print(f"{device.name} ({device.id}) is {state}; its playlist: {shown}.")
        if token:
            print("It fetches its access token from /api/setup at its next wake-up (press its button to wake it).")
    return 0


def cmd_devices_accept(args: argparse.Namespace, config: Config) -> int:
    playlist = _playlist(args.screen)
    patch = DevicePatch(accepted=True) if playlist is None else DevicePatch(accepted=True, playlist=playlist)
    return _change(args, config, patch)


def cmd_devices_set(args: argparse.Namespace, config: Config) -> int:
    fields: dict[str, Any] = {}
    if args.name is not None:
        fields["name"] = args.name
    if (playlist := _playlist(args.screen)) is not None:
        fields["playlist"] = playlist
    if args.bit_depth is not None:
        fields["bit_depth"] = args.bit_depth
    if args.format is not None:
        fields["format"] = args.format
    if args.pause:
        fields["accepted"] = False
    return _change(args, config, DevicePatch(**fields))


def cmd_devices_delete(args: argparse.Namespace, config: Config) -> int:
    async def action(glimpze: Services) -> Any:
        await glimpze.devices.delete(await _cli()._project(glimpze, args.project), args.device_id)

    _cli()._run(config, action)
    print(f"Deleted device {args.device_id}. If it calls again, it waits for approval as a new device.")
    return 0


def cmd_devices_logs(args: argparse.Namespace, config: Config) -> int:
    limit = max(1, min(args.limit, MAX_LIMIT))

    async def action(glimpze: Services) -> Any:
        return await glimpze.devices.logs(
            await _cli()._project(glimpze, args.project), args.device_id, before=None, limit=limit
        )

    logs = _cli()._run(config, action)
    if args.json:
        _cli()._print_json(logs.data)
        return 0
    _cli()._table(
        ["RECEIVED", "LEVEL", "MESSAGE"],
        [[line.received_at, line.level or "", line.message] for line in logs.data],
    )
    return 0
