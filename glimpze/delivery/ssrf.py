"""The SSRF guard: outgoing requests reach only public addresses, unless the operator allows more.

It covers every request Glimpze makes on behalf of a user: webhooks, approval callbacks, Web Push
endpoints and Apprise pushes. Each is checked at connect time, against the address actually
connected to, so neither a name that resolves differently a moment later (DNS rebinding), nor an
address spelled so that only the resolver reads it (`2130706433`, `0x7f000001`, `0177.0.0.1`,
`127.1`, `[::ffff:127.0.0.1]`), nor a redirect can reach a refused address:

- Webhooks, callbacks and Web Push use httpx/httpcore over `GuardedBackend`, the network backend
  of `guarded_pool`: it resolves the host itself, refuses addresses the policy forbids and
  connects to the checked address (TLS still verifies the original host name). Redirects are
  never followed (the dispatcher and Web Push count a 3xx as a failed attempt).
- Apprise sends with libraries of its own (`requests` for most plugins, `smtplib`, raw sockets
  for syslog, IRC or APRS…), and `requests` follows redirects. So `guarded_sockets(policy)` guards
  the sockets themselves: while it is active, `socket.socket.connect`/`connect_ex`/`sendto`/
  `sendmsg` first check the destination (resolving a name here and connecting to the checked
  address), and refuse any socket that is not TCP/UDP over IP. The scope is a context variable,
  so it follows the send into Apprise's worker pool (which copies the caller's context) and into
  threads started inside it (a plugin's own I/O thread); every other connection in the process
  (uvicorn, tests' clients) is untouched. Each redirect is a new connection, checked like the first.

Alternatives weighed for Apprise: checking the host when a target is saved and again before each
send leaves the rebinding window and misses hosts a plugin takes from elsewhere (`?smtp=`, a
redirect); mounting a guarded adapter on `requests` covers only the plugins that use `requests`
and Apprise opens its own sessions; a thread-local policy misses Apprise's worker pool; a separate
process per send costs more memory than Apprise itself. Guarding the sockets in a scope covers
every library written on Python's socket module, whichever plugin uses it. What it cannot see is
network I/O done in C (no Apprise plugin that takes a host does that today); for such a plugin
the check at save time, which every push target gets, is what refuses private hosts.

At save time (`check_url`, `check_saved`) a target's host is resolved, whatever its spelling,
and every address checked, for a 422 `target_not_allowed` that says how to allow it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import functools
import ipaddress
import socket
import ssl
import threading
import typing
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpcore
import httpx

from glimpze.errors import TargetNotAllowed, ValidationFailed

RESPONSE_BUFFER = 256 * 1024  # what a connection reads ahead of httpcore at most
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata services: refused even when an allow_targets entry covers them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254", "192.0.0.192")
)
ALLOW_SETTING = "[webhooks] allow_targets in glimpze.toml (or GLIMPZE_WEBHOOKS_ALLOW_TARGETS)"
RESOLVE_SECONDS = 5.0  # a save-time check waits this long for DNS, then leaves it to the connect-time guard


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
        """Check every address a host resolves to, whatever its spelling (when a target is saved)."""
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


class AsyncioStream(httpcore.AsyncNetworkStream):
    """A connection for httpcore on asyncio's own streams. httpcore's AnyIO backend wraps every read
    and write in a cancel scope and an exception map: a third of a delivery's CPU time (issue 18,
    measured with py-spy at 1,000 deliveries/s). Here a timeout is `asyncio.timeout` around the
    wait, and only errors are translated (to httpcore's, which httpx maps to its own)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            if self._writer.transport.get_write_buffer_size():  # wait only when the socket is full
                async with asyncio.timeout(timeout):
                    await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except (OSError, RuntimeError) as exc:  # RuntimeError: written after the transport closed
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        self._writer.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            self._writer.close()
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except (OSError, ssl.SSLError) as exc:
            self._writer.close()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return self

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":  # an idle connection that was closed, or got bytes nobody asked for
            unread = getattr(self._reader, "_buffer", b"")  # StreamReader has no public way to peek
            return self._reader.at_eof() or self._writer.transport.is_closing() or bool(unread)
        name = {"client_addr": "sockname", "server_addr": "peername"}.get(info, info)
        return self._writer.get_extra_info(name) if name in ("ssl_object", "sockname", "peername", "socket") else None


async def connect_tcp(address: str, port: int, timeout: float | None) -> AsyncioStream:
    """A TCP connection to `address` (already checked) for httpcore."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(address, port, limit=RESPONSE_BUFFER)
    except TimeoutError as exc:
        raise httpcore.ConnectTimeout(f"no connection to {address} within {timeout:g} s") from exc
    except OSError as exc:
        raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
    return AsyncioStream(reader, writer)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy allows."""

    def __init__(self, policy: TargetPolicy) -> None:
        self.policy = policy

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
                return await connect_tcp(address, port, timeout)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        if last_error is not None:
            raise last_error
        raise httpcore.ConnectError("target refused: " + "; ".join(refusals))

    async def connect_unix_socket(self, *args: typing.Any, **kwargs: typing.Any) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not a webhook target")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """Loading the CA bundle takes ~50 ms: once per process."""
    return httpx.create_ssl_context()


def guarded_pool(
    policy: TargetPolicy, *, max_connections: int = 100, network: httpcore.AsyncNetworkBackend | None = None
) -> httpcore.AsyncConnectionPool:
    """An HTTP/1.1 connection pool that connects only where `policy` allows (no proxies, no env).
    Tests may pass the `network` backend to use instead (e.g. httpcore's mock backend)."""
    return httpcore.AsyncConnectionPool(
        ssl_context=ssl_context(),
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


# Checks when a target is saved: a refusal is a 422 naming the field.


async def check_saved(check: Awaitable[None], path: str) -> None:
    """Await a save-time check; a refusal becomes a 422 `target_not_allowed` at `path` whose message
    says how to allow the address. A host that does not resolve now passes: the connect-time
    guard checks it at every connection."""
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):
            await check
    except TargetRefused as exc:
        raise TargetNotAllowed.at(path, str(exc)) from None
    except (OSError, TimeoutError):
        pass


async def check_url(policy: TargetPolicy, url: str, path: str) -> None:
    """Check where an http(s) URL points (a webhook, a callback, a push endpoint) when it is saved."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:  # e.g. a port out of range, an unclosed [IPv6
        raise ValidationFailed.at(path, f"is not a valid URL: {exc}") from None
    await check_saved(policy.check_host(parts.hostname or "", port), path)


# The socket guard, for code Glimpze does not own (Apprise and the libraries of its plugins).


class SocketRefused(ConnectionRefusedError):
    """A connection the socket guard refused: an OSError, so every library treats it as a failed connect."""


@dataclass(slots=True)
class SocketScope:
    """What sockets may reach inside `guarded_sockets`, and what they were refused (for the push log)."""

    policy: TargetPolicy
    refusals: list[str] = field(default_factory=list)

    def destination(self, sock: socket.socket, address: typing.Any) -> typing.Any:
        """The address `sock` may connect or send to in place of `address`; raises SocketRefused."""
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise self._refuse(f"{getattr(sock.family, 'name', sock.family)} sockets are not a push target")
        host, port = str(address[0]), int(address[1])
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
            candidates = [address]
        except ValueError:
            # A name, or an address in a spelling only the resolver reads ("2130706433", "127.1"):
            # resolved here, and the checked address is what the socket connects to.
            candidates = [info[4] for info in socket.getaddrinfo(host, port, sock.family, sock.type)]
        reasons = []
        for candidate in candidates:
            try:
                self.policy.check(str(candidate[0]), port)
                return candidate
            except TargetRefused as exc:
                reasons.append(str(exc))
        raise self._refuse("; ".join(dict.fromkeys(reasons)))

    def _refuse(self, reason: str) -> SocketRefused:
        self.refusals.append(reason)
        return SocketRefused(errno.ECONNREFUSED, f"target refused: {reason}")


_SCOPE: contextvars.ContextVar[SocketScope | None] = contextvars.ContextVar("glimpze_socket_scope", default=None)
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_sendto = socket.socket.sendto
_sendmsg = socket.socket.sendmsg
_thread_start = threading.Thread.start
_installed = False
_installing = threading.Lock()


@contextlib.contextmanager
def guarded_sockets(policy: TargetPolicy) -> Iterator[SocketScope]:
    """Inside this block, and in the threads and worker-pool calls it starts, sockets reach only
    addresses `policy` allows (run it in the worker thread that sends: the scope is this context's)."""
    _install()
    scope = SocketScope(policy)
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def _install() -> None:
    """Wrap the socket methods once per process; outside a scope they only look the scope up."""
    global _installed
    with _installing:
        if _installed:
            return
        socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
        socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]
        socket.socket.sendto = _guarded_sendto  # type: ignore[method-assign,assignment]
        socket.socket.sendmsg = _guarded_sendmsg  # type: ignore[method-assign,assignment]
        threading.Thread.start = _guarded_start  # type: ignore[method-assign,assignment]
        _installed = True


def _guarded_connect(sock: socket.socket, address: typing.Any) -> None:
    scope = _SCOPE.get()
    _connect(sock, address if scope is None else scope.destination(sock, address))


def _guarded_connect_ex(sock: socket.socket, address: typing.Any) -> int:
    scope = _SCOPE.get()
    if scope is not None:
        try:
            address = scope.destination(sock, address)
        except SocketRefused:
            return errno.ECONNREFUSED
    return _connect_ex(sock, address)


def _guarded_sendto(sock: socket.socket, data: typing.Any, *args: typing.Any) -> int:
    """`sendto(data, address)` or `sendto(data, flags, address)`: a datagram (syslog) is checked too."""
    scope = _SCOPE.get()
    if scope is not None:
        args = (*args[:-1], scope.destination(sock, args[-1]))
    return _sendto(sock, data, *args)


def _guarded_sendmsg(
    sock: socket.socket, buffers: typing.Any, ancdata: typing.Any = (), flags: int = 0, address: typing.Any = None
) -> int:
    scope = _SCOPE.get()
    if address is None:
        return _sendmsg(sock, buffers, ancdata, flags)
    return _sendmsg(sock, buffers, ancdata, flags, address if scope is None else scope.destination(sock, address))


def _guarded_start(thread: threading.Thread) -> None:
    """A thread started inside a scope runs inside it (a plugin's own I/O thread: XMPP, MQTT)."""
    scope = _SCOPE.get()
    if scope is not None:
        run = thread.run

        def run_in_scope() -> None:
            _SCOPE.set(scope)
            run()

        thread.run = run_in_scope  # type: ignore[method-assign]
    _thread_start(thread)
