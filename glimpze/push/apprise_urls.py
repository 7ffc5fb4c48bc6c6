"""Apprise URLs (`ntfy://…`, `tgram://…`, `json://…`, `mailto://…`, …): checked, shown redacted, sent to.

Apprise is imported on first use (saving a target, or sending), never at start: it costs memory a
server without push targets should not pay.

The SSRF guard covers every send: Apprise connects with libraries of its own (`requests`, which
follows redirects, `smtplib`, plain sockets), so `send` runs inside `ssrf.guarded_sockets`, which
checks each connection, redirects included, against the address actually connected to (see the
ssrf module for why the guard sits at the sockets). When a target is saved, the hosts its URL names
— the host of a self-hosted service (`json://`, `ntfy://`, `gotify://`…, whatever the spelling:
`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`, `localhost`, a LAN name) and an e-mail URL's
SMTP server — are resolved and every address checked, so a refused target gets a 422 that says
how to allow it. A cloud service's URL names no host of its own (a Telegram bot token, a Discord
webhook id): it goes to the service's public address, which the guard checks when sending.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from glimpze.delivery.ssrf import TargetPolicy, guarded_sockets

MAX_URL_CHARS = 2048
REASON_CHARS = 300


@dataclass(frozen=True, slots=True)
class Described:
    """A valid Apprise URL: its service's name, its redacted form and the network hosts it names."""

    service: str
    shown: str
    hosts: tuple[str, ...]
    port: int


def describe(url: str) -> Described | None:
    """What Apprise makes of `url`, or None when it is not a URL Apprise can use (blocking: imports
    Apprise and its plugin; run it in a worker thread)."""
    import apprise

    plugin: Any = apprise.Apprise.instantiate(url)
    if plugin is None:
        return None
    port = getattr(plugin, "port", None)
    secure = bool(getattr(plugin, "secure", False))
    return Described(
        service=str(getattr(plugin, "service_name", None) or type(plugin).__name__),
        shown=_as_given(str(plugin.url(privacy=True)), url),
        hosts=_network_hosts(plugin),
        port=port if isinstance(port, int) else (443 if secure else 80),
    )


def _network_hosts(plugin: Any) -> tuple[str, ...]:
    """The hosts a plugin connects to that its URL chose: the `host` of a plugin whose URL template
    has one (a self-hosted service), and an e-mail plugin's SMTP server."""
    names = []
    if "host" in (getattr(plugin, "template_tokens", None) or {}):
        names.append(getattr(plugin, "host", None))
    names.append(getattr(plugin, "smtp_host", None))
    return tuple(dict.fromkeys(name for name in names if isinstance(name, str) and name))


def _as_given(shown: str, given: str) -> str:
    """Apprise's redacted URL without the parameters it adds with their defaults (`format`,
    `overflow`, `rto`, …): only those the person wrote stay, so the target reads as they gave it."""
    base, _, query = shown.partition("?")
    if not query:
        return shown
    written = {key.lower() for key, _ in parse_qsl(urlsplit(given).query, keep_blank_values=True)}
    kept = [(key, value) for key, value in parse_qsl(query, keep_blank_values=True) if key.lower() in written]
    return f"{base}?{urlencode(kept)}" if kept else base


async def check_hosts(policy: TargetPolicy, described: Described) -> None:
    """Raise TargetRefused when a host the target names resolves to an address the policy forbids
    (OSError when one does not resolve now)."""
    for host in described.hosts:
        await policy.check_host(host, described.port)


def send(url: str, title: str, body: str, timeout: float, policy: TargetPolicy) -> str | None:
    """Send one notification, every connection guarded by `policy` (blocking: run it in a worker
    thread); None on success, else why not."""
    import apprise

    notifier = apprise.Apprise()  # one per call: nothing is shared between threads
    if not notifier.add(url):
        return "Apprise no longer accepts this URL"
    with guarded_sockets(policy) as scope:
        try:
            result: Any = notifier.notify(body=body, title=title, timeout=timeout)
        except TypeError:  # Apprise before 2.0 has no call timeout
            result = notifier.notify(body=body, title=title)
    if result:
        return None
    if scope.refusals:  # Apprise's own message would only say the connection failed
        return f"target refused: {scope.refusals[-1]}"[:REASON_CHARS]
    return _reason(result)


def _reason(result: Any) -> str:
    """The last warning Apprise logged for this call (Apprise ≥ 2 keeps them on the result)."""
    logs = getattr(result, "logs", None)
    messages = [entry.message for entry in logs()] if callable(logs) else []
    return (messages[-1] if messages else "Apprise could not deliver the notification")[:REASON_CHARS]
