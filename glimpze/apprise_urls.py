"""Apprise URLs (`ntfy://…`, `tgram://…`, `json://…`, `mailto://…`, …): checked, shown redacted, sent to.

Apprise is imported on first use (saving a target, or sending), never at start: it costs memory a
server without push targets should not pay. It sends with its own HTTP client, so the SSRF guard
is applied around it: the host of a target (when it names one: an IP, `localhost`, or a dotted
name; a Telegram bot id or a Discord webhook id is not a host) must be a public address, or one
`[webhooks] allow_targets` allows — checked when the target is saved and again before each send.
A name that resolves elsewhere between that check and Apprise's own connection is not caught;
the guarded transport covers webhooks, callbacks and Web Push, which take untrusted URLs.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from glimpze.ssrf import TargetPolicy

MAX_URL_CHARS = 2048


@dataclass(frozen=True, slots=True)
class Described:
    """A valid Apprise URL: its service's name, its redacted form and the network host it names."""

    service: str
    shown: str
    host: str | None
    port: int | None
    secure: bool


def describe(url: str) -> Described | None:
    """What Apprise makes of `url`, or None when it is not a URL Apprise can use (blocking: imports
    Apprise and its plugin; run it in a worker thread)."""
    import apprise

    plugin: Any = apprise.Apprise.instantiate(url)
    if plugin is None:
        return None
    host = getattr(plugin, "host", None)
    port = getattr(plugin, "port", None)
    return Described(
        service=str(getattr(plugin, "service_name", None) or type(plugin).__name__),
        shown=_as_given(str(plugin.url(privacy=True)), url),
        host=host if isinstance(host, str) and _names_a_host(host) else None,
        port=port if isinstance(port, int) else None,
        secure=bool(getattr(plugin, "secure", False)),
    )


def _as_given(shown: str, given: str) -> str:
    """Apprise's redacted URL without the parameters it adds with their defaults (`format`,
    `overflow`, `rto`, …): only those the person wrote stay, so the target reads as they gave it."""
    base, _, query = shown.partition("?")
    if not query:
        return shown
    written = {key.lower() for key, _ in parse_qsl(urlsplit(given).query, keep_blank_values=True)}
    kept = [(key, value) for key, value in parse_qsl(query, keep_blank_values=True) if key.lower() in written]
    return f"{base}?{urlencode(kept)}" if kept else base


def _names_a_host(host: str) -> bool:
    if host == "localhost" or "." in host:
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


async def check_host(policy: TargetPolicy, described: Described) -> None:
    """Raise TargetRefused when the target's host resolves to an address the policy forbids."""
    if described.host is None:
        return
    port = described.port or (443 if described.secure else 80)
    try:
        await policy.check_host(described.host, port)
    except OSError:
        pass  # not resolvable now: Apprise will fail to send, and say so


def send(url: str, title: str, body: str, timeout: float) -> str | None:
    """Send one notification (blocking: run it in a worker thread); None on success, else why not."""
    import apprise

    notifier = apprise.Apprise()  # one per call: nothing is shared between threads
    if not notifier.add(url):
        return "Apprise no longer accepts this URL"
    try:
        result: Any = notifier.notify(body=body, title=title, timeout=timeout)
    except TypeError:  # Apprise before 2.0 has no call timeout
        result = notifier.notify(body=body, title=title)
    return None if result else _reason(result)


def _reason(result: Any) -> str:
    """The last warning Apprise logged for this call (Apprise ≥ 2 keeps them on the result)."""
    logs = getattr(result, "logs", None)
    messages = [entry.message for entry in logs()] if callable(logs) else []
    return (messages[-1] if messages else "Apprise could not deliver the notification")[:300]
