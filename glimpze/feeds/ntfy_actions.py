"""ntfy's action buttons (`X-Actions`, or `actions` in a JSON publish), read as ntfy reads them.

The header takes a JSON array, or ntfy's short format: actions separated by `;`, each a list of
`key=value` sections separated by `,`, where `action=`, `label=` and (for `view` and `http`)
`url=` may be left out; a value may be quoted with `"` or `'` to hold commas and semicolons, and
`headers.X=` / `extras.X=` set one header or extra (a port of ntfy's server/actions.go). At most
three actions; `view` and `http` need a URL; an `http` action that GETs or HEADs sends no body.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

MAX_ACTIONS = 3
KINDS = ("view", "broadcast", "http")
_WITH_URL = ("view", "http")
_KEY = re.compile(r"([-.\w]+)\s*=\s*")
_SPACES = " \t\r\n"
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


class ActionError(ValueError):
    """The actions cannot be read; the message says why, in ntfy's words."""


def parse_actions(text: str) -> list[dict[str, Any]]:
    """The actions a header holds, checked; raises ActionError."""
    text = text.strip()
    if text.startswith("["):
        try:
            actions = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            raise ActionError(f"JSON error: {exc}") from None
        if not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions):
            raise ActionError("the JSON form is an array of objects")
        return check_actions(actions)
    return check_actions(_Parser(text).parse())


def check_actions(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ntfy's rules for a list of actions (either form), with `action` in lower case and `method`
    in upper case."""
    if len(actions) > MAX_ACTIONS:
        raise ActionError(f"only {MAX_ACTIONS} actions allowed")
    for action in actions:
        kind = str(action.get("action", "")).lower()
        action["action"] = kind
        if "method" in action:
            action["method"] = str(action["method"]).upper()
        if kind not in KINDS:
            raise ActionError(f"parameter 'action' cannot be {kind!r}, valid values are 'view', 'broadcast' and 'http'")
        if not action.get("label"):
            raise ActionError("parameter 'label' is required")
        if kind in _WITH_URL and not action.get("url"):
            raise ActionError(f"parameter 'url' is required for action {kind!r}")
        if kind == "http" and action.get("method") in ("GET", "HEAD") and action.get("body"):
            raise ActionError(f"parameter 'body' cannot be set if method is {action['method']}")
        for key in ("headers", "extras"):
            value = action.get(key, {})
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ActionError(f"parameter {key!r} is an object of strings")
    return actions


class _Parser:
    """ntfy's short format, section by section (see the module docstring)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> list[dict[str, Any]]:
        actions = []
        while self.pos < len(self.text):
            actions.append(self._action())
        return actions

    def _action(self) -> dict[str, Any]:
        action: dict[str, Any] = {"headers": {}, "extras": {}}
        section = 0
        while True:
            key, value, last = self._section()
            _populate(action, section, key, value)
            self._skip_spaces()
            if last:
                for key in ("headers", "extras"):
                    if not action[key]:
                        del action[key]
                return action
            section += 1

    def _section(self) -> tuple[str, str, bool]:
        self._skip_spaces()
        key = ""
        match = _KEY.match(self.text, self.pos)
        if match:
            key, self.pos = match[1], match.end()
        char = self._peek()
        if char in ("", ";", ","):
            self.pos += len(char)
            return key, "", char in ("", ";")
        if char in ('"', "'"):
            value, last = self._quoted(char)
            return key, value, last
        start = self.pos
        while self._peek() not in ("", ";", ","):
            self.pos += 1
        end = self._peek()
        value = self.text[start : self.pos].strip()
        self.pos += len(end)
        return key, value, end in ("", ";")

    def _quoted(self, quote: str) -> tuple[str, bool]:
        self.pos += 1
        start, previous = self.pos, ""
        while True:
            char = self._peek()
            if char == "":
                raise ActionError(f"unexpected end of input, quote started at position {start}")
            if char == quote and previous != "\\":
                value = self.text[start : self.pos].replace("\\" + quote, quote)
                self.pos += 1
                self._skip_spaces()
                end = self._peek()
                if end not in ("", ";", ","):
                    raise ActionError(f"unexpected character {end!r} at position {self.pos}")
                self.pos += len(end)
                return value, end in ("", ";")
            previous = char
            self.pos += 1

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _skip_spaces(self) -> None:
        while self._peek() and self._peek() in _SPACES:
            self.pos += 1


def _populate(action: dict[str, Any], section: int, key: str, value: str) -> None:
    if not key and section == 0:
        key = "action"
    elif not key and section == 1:
        key = "label"
    elif not key and section == 2 and str(action.get("action", "")).lower() in _WITH_URL:
        key = "url"
    if not key:
        raise ActionError(f"term {value!r} unknown")
    if key.startswith("headers."):
        action["headers"][key.removeprefix("headers.")] = value
    elif key.startswith("extras."):
        action["extras"][key.removeprefix("extras.")] = value
    elif key.lower() == "clear":
        if value.lower() not in _BOOLEANS:
            raise ActionError(f"parameter 'clear' cannot be {value!r}, only boolean values are allowed")
        action["clear"] = _BOOLEANS[value.lower()]
    elif key.lower() in ("action", "label", "url", "method", "body", "intent"):
        action[key.lower()] = value
    else:
        raise ActionError(f"key {key!r} unknown")
