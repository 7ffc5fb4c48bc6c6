"""The command line as data: a `Command` per command or action, with its `Option`s (cli.py builds
argparse from them; cli_displays.py adds its own to the table)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict, Unpack

from glimpze.config import Config

Handler = Callable[[argparse.Namespace, Config], int]


class Settings(TypedDict, total=False):
    """What an option's `add_argument` call is given besides its names."""

    help: str
    metavar: str
    required: bool
    choices: list[str] | list[int]
    type: Callable[[str], int]
    default: str | int | list[str]
    action: str
    nargs: str


@dataclass(frozen=True, slots=True)
class Option:
    """An option (`--name`) or a positional argument (`name`) of a command."""

    names: tuple[str, ...]
    settings: Settings


def option(*names: str, **settings: Unpack[Settings]) -> Option:
    return Option(names, settings)


@dataclass(frozen=True, slots=True)
class Command:
    """A command (`keys`) or an action of one (`keys create`): the words that call it, what it runs
    (None: a command with actions, which shows its help), its line in `--help`, its description
    in its own `--help`, and its options."""

    words: str
    run: Handler | None
    help: str
    description: str | None = None
    options: tuple[Option, ...] = ()
