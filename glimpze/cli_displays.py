"""`glimpze screens …` and `glimpze devices …`: screens and e-ink devices from the command line.

They go through the same services as the server and the dashboard, and may run while it serves.
`COMMANDS` are rows of the command line's table (cli_table.py), which cli.py's `build_parser` turns
into argparse.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from glimpze.cli_table import Command, option
from glimpze.config import Config
from glimpze.displays.devices import DevicePatch
from glimpze.displays.playlists import PlaylistItem
from glimpze.displays.screens import LAYOUTS, ScreenCreate
from glimpze.errors import ValidationFailed
from glimpze.services import Services
from glimpze.store.pagination import MAX_LIMIT, all_pages

DEFAULT_SECONDS = 900


PROJECT = option("--project", help="project id (default: the default project)")
JSON = option("--json", action="store_true", help="print JSON")
SCREEN_ID = option("screen_id")
DEVICE_ID = option("device_id")
PLAYLIST = option(
    "--screen",
    action="append",
    metavar="SCREEN_ID[:SECONDS]",
    help=f"a screen of the playlist, shown SECONDS (default {DEFAULT_SECONDS}); repeat for more",
)


def _commands() -> tuple[Command, ...]:
    return (
        Command(
            "screens",
            None,
            "screens: feeds laid out for e-ink devices, picture cards and kiosks",
            "Create, list and delete screens; rotate a screen's read token.",
        ),
        Command(
            "screens create",
            cmd_screens_create,
            "create a screen",
            "Create a screen of 1 to 4 feeds; prints its picture and kiosk URLs.",
            (
                option("--name", required=True),
                option("--feed", action="append", required=True, metavar="FEED_ID", help="a feed (repeat, in order)"),
                option("--layout", choices=list(LAYOUTS), help="default: the one that fits the number of feeds"),
                option("--size", default="800x480", metavar="WxH", help="pixels (default 800x480)"),
                option("--theme", choices=["light", "dark", "eink"], default="light"),
                option("--no-updated", action="store_true", help="do not say when each feed was updated"),
                PROJECT,
                JSON,
            ),
        ),
        Command("screens list", cmd_screens_list, "list screens", options=(PROJECT, JSON)),
        Command(
            "screens delete",
            cmd_screens_delete,
            "delete a screen (it leaves every playlist)",
            options=(SCREEN_ID, PROJECT),
        ),
        Command(
            "screens rotate-token",
            cmd_screens_rotate,
            "replace a screen's read token",
            "Replace a screen's read token; picture cards and kiosks need the new URLs.",
            (SCREEN_ID, PROJECT, JSON),
        ),
        Command(
            "devices",
            None,
            "e-ink devices (TRMNL firmware)",
            "List devices, accept them, set their playlists and image format, read their logs.",
        ),
        Command("devices list", cmd_devices_list, "list devices, pending ones included", options=(PROJECT, JSON)),
        Command(
            "devices accept",
            cmd_devices_accept,
            "accept a pending device",
            "Accept a device: it fetches its access token from /api/setup and shows its playlist.",
            (DEVICE_ID, PLAYLIST, PROJECT, JSON),
        ),
        Command(
            "devices set",
            cmd_devices_set,
            "change a device",
            "Rename a device, set its playlist or format.",
            (
                DEVICE_ID,
                option("--name"),
                PLAYLIST,
                option("--bit-depth", type=int, choices=[1, 2]),
                option("--format", choices=["png", "bmp"]),
                option("--pause", action="store_true", help="show nothing until accepted again"),
                PROJECT,
                JSON,
            ),
        ),
        Command(
            "devices delete",
            cmd_devices_delete,
            "forget a device, its logs and images",
            options=(DEVICE_ID, PROJECT),
        ),
        Command(
            "devices logs",
            cmd_devices_logs,
            "a device's latest log lines",
            options=(DEVICE_ID, option("--limit", type=int, default=20), PROJECT, JSON),
        ),
    )


def _cli() -> Any:
    """Where the admin commands' helpers live (`_run`, `_project`, `_print_json`, `_table`)."""
    return importlib.import_module("glimpze.cli_commands")


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


COMMANDS = _commands()
