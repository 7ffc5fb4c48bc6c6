"""The SSRF guard: outgoing requests reach only public addresses, unless the operator allows more.

The check holds at connect time: `GuardedBackend`, the network backend of every outgoing
connection pool (`guarded_pool`), resolves the host itself, refuses addresses
the policy forbids and connects to the checked address, so a name that resolves differently a
moment later (DNS rebinding) cannot slip through. TLS still verifies the original host name.
Redirects are never followed (the dispatcher treats a 3xx as a failed attempt).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
import typing
from dataclasses import dataclass

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata services: refused even when an allow_targets entry covers them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254", "192.0.0.192")
)
ALLOW_SETTING = "[webhooks] allow_targets in glimpze.toml (or GLIMPZE_WEBHOOKS_ALLOW_TARGETS)"


class TargetRefused(Exception):
    """The address is not one Glimpze may connect to; the message says which setting allows it."""


@dataclass(frozen=True, slots=True)
class AllowedTarget:
    network: IPNetwork
    port: int | None  # None: any port

    def covers(self, ip: IPAddress, port: int) -> bool:
        return ip in self.network and (self.port is None or self.port == port)


def parse_allow_target(entry: str) -> AllowedTarget:
    """`127.0.0.1`, `127.0.0.1:5678`, `[::1]:5678` or `192.168.0.0/16`; raises ValueError."""
    text = entry.strip()
    port: int | None = None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{entry!r}: expected [IPv6]:port")
            port = _port(rest[1:], entry)
        text = host
    elif text.count(":") == 1:
        text, port_text = text.split(":")
        port = _port(port_text, entry)
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(
            f"{entry!r} is not an IP address, IP:port or CIDR range (host names are not allowed)"
        ) from None
    return AllowedTarget(network, port)


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{entry!r}: {text!r} is not a port number")
    return int(text)


class TargetPolicy:
    """Which addresses outgoing requests may reach."""

    def __init__(self, allow: typing.Iterable[str] = ()) -> None:
        self.allowed = [parse_allow_target(entry) for entry in allow]

    def check(self, address: str, port: int) -> None:
        """Raise TargetRefused unless `address:port` may be connected to."""
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip in METADATA_ADDRESSES:
            raise TargetRefused(f"{ip} is a cloud metadata address; Glimpze never connects to it")
        if _is_public(ip) or any(target.covers(ip, port) for target in self.allowed):
            return
        shown = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
        raise TargetRefused(
            f"{shown} is a {_kind(ip)} address; Glimpze only calls public addresses unless you allow this one "
            f'with {ALLOW_SETTING}, e.g. allow_targets = ["{shown}"]'
        )

    async def check_host(self, host: str, port: int) -> None:
        """Check every address a host name resolves to (at webhook creation, for a helpful 422)."""
        for address in await resolve(host, port):
            self.check(address, port)


def _is_public(ip: IPAddress) -> bool:
    return ip.is_global and not ip.is_multicast


def _kind(ip: IPAddress) -> str:
    for attribute, word in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_unspecified", "unspecified"),
        ("is_private", "private"),
    ):
        if getattr(ip, attribute):
            return word
    if ip.version == 4 and ip in ipaddress.ip_network("100.64.0.0/10"):
        return "carrier-grade NAT"
    return "non-public"


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of a host name (or the literal address), in resolver order, without duplicates."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return [host.strip("[]")]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy allows."""

    def __init__(self, policy: TargetPolicy) -> None:
        self.policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await asyncio.wait_for(resolve(host, port), timeout)
        except (TimeoutError, OSError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        refusals = []
        last_error: Exception | None = None
        for address in addresses:
            try:
                self.policy.check(address, port)
            except TargetRefused as exc:
                refusals.append(str(exc))
                continue
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last_error = exc
        if last_error is not None:
            raise last_error
        raise httpcore.ConnectError("target refused: " + "; ".join(refusals))

    async def connect_unix_socket(self, *args: typing.Any, **kwargs: typing.Any) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not a webhook target")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """Loading the CA bundle takes ~50 ms: once per process."""
    return httpx.create_ssl_context()


def guarded_pool(
    policy: TargetPolicy, *, max_connections: int = 100, network: httpcore.AsyncNetworkBackend | None = None
) -> httpcore.AsyncConnectionPool:
    """An HTTP/1.1 connection pool that connects only where `policy` allows (no proxies, no env).
    Tests may pass the `network` backend to use instead (e.g. httpcore's mock backend)."""
    return httpcore.AsyncConnectionPool(
        ssl_context=_ssl_context(),
        max_connections=max_connections,
        max_keepalive_connections=20,
        keepalive_expiry=5.0,
        http1=True,
        http2=False,
        network_backend=network or GuardedBackend(policy),
    )


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over `guarded_pool` (for httpx clients: Web Push)."""

    def __init__(
        self, policy: TargetPolicy, *, max_connections: int = 100, network: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        # httpx has no public way to pass a network backend, and its __init__ would build a pool
        # (and an SSL context) only to throw it away: set up the one attribute it uses, its pool.
        self._pool = guarded_pool(policy, max_connections=max_connections, network=network)


def refused_reason(exc: BaseException) -> str | None:
    """The refusal message if `exc` (an httpx or httpcore error) came from the guard."""
    text = str(exc)
    return text if "target refused" in text or "metadata address" in text else None
