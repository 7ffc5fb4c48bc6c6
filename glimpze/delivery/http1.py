"""A small HTTP/1.1 client for deliveries: one request, its status, headers and the first bytes of
its answer, over keep-alive connections of an httpcore network backend (ssrf.GuardedBackend, or a
test's), a pool per lane.

Why not httpcore's pool and h11: a delivery is one small POST with headers checked when they were
saved, and its answer is read only for the attempt log. httpcore spent ~550 µs of CPU per request
on this machine (anyio cancel scopes and locks per read and write, h11's validation, the pool's
bookkeeping: 60 % of the dispatcher's time); this client spends ~60 µs (issue 18, measured against
the same receiver), which is most of what lets one core drain 1,000+ deliveries a second.

What it does: writes the request in one write (`Host`, the given headers, `Content-Length`);
reads the status line and headers (at most `MAX_HEAD` bytes, informational 1xx answers skipped),
then the body as framed (`Transfer-Encoding: chunked`, `Content-Length`, none for 204/304, else up
to the connection's end), keeping its first `head_bytes` and reading at most `read_limit`. A
connection is reused only when the answer was read to its end and neither side said
`Connection: close`; an idle one is dropped after KEEPALIVE_SECONDS or once the server closed it
(readable while idle). Timeouts are the caller's (`asyncio.timeout` around the whole request): a
connection cut off mid-request is closed, never reused. TLS goes through the backend's
`start_tls` with the server's name (the SSRF guard connects to the address it checked). Failures
raise `HttpError` (or the backend's connect errors), whose text goes to the attempt log.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

import httpcore

MAX_HEAD = 64 * 1024
KEEPALIVE_SECONDS = 5.0
READ_CHUNK = 64 * 1024


class Share(Protocol):
    """A turn of a shared budget (the dispatcher's fair share), held by one request."""

    patience: float  # seconds of waiting for the answer the turn is held for, at most

    def release(self) -> None: ...


# Gives a request its turn (None: no budget to share), held while the request is written and its
# answer awaited, but not past the turn's patience: a slow receiver costs the loop nothing.
Turn = Callable[[], AbstractAsyncContextManager[Share | None]]


@contextlib.asynccontextmanager
async def no_turn() -> AsyncIterator[None]:
    yield None


class HttpError(Exception):
    """The answer could not be read: the connection closed early, or it is not HTTP/1.x."""


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str  # "http" | "https"
    host: str  # as it goes in Host and TLS: IDNA, IPv6 without brackets
    port: int

    @property
    def authority(self) -> bytes:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return (host if self.port == default else f"{host}:{self.port}").encode("ascii")


@dataclass(slots=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]  # names in lower case
    head: bytes  # the first bytes of the body


class _Connection:
    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.idle_since = 0.0

    async def fill(self) -> None:
        data = await self.stream.read(READ_CHUNK)
        if not data:
            raise HttpError("the server closed the connection before answering in full")
        self.buffer += data

    async def until(self, marker: bytes, limit: int) -> bytes:
        """The bytes up to and including `marker`, taken from the buffer."""
        start = 0
        while (end := self.buffer.find(marker, start)) < 0:
            if len(self.buffer) > limit:
                raise HttpError(f"the answer's head is longer than {limit} bytes")
            start = max(0, len(self.buffer) - len(marker) + 1)
            await self.fill()
        end += len(marker)
        taken = bytes(self.buffer[:end])
        del self.buffer[:end]
        return taken

    async def take(self, count: int) -> bytes:
        while len(self.buffer) < count:
            await self.fill()
        taken = bytes(self.buffer[:count])
        del self.buffer[:count]
        return taken

    async def wait(self) -> None:
        """Until the answer's first bytes (or the connection's end) arrive."""
        if not self.buffer:
            await self.fill()

    def readable(self) -> bool:
        """An idle connection with something to read (the server's close) cannot take a request."""
        return bool(self.buffer) or bool(self.stream.get_extra_info("is_readable"))


class Pool:
    """Keep-alive connections of one lane: at most `size` requests at a time, every idle
    connection kept (up to `size`) for KEEPALIVE_SECONDS."""

    def __init__(self, network: httpcore.AsyncNetworkBackend, size: int, ssl_context: ssl.SSLContext) -> None:
        self.network = network
        self.size = size
        self.ssl_context = ssl_context
        self._slots = asyncio.Semaphore(size)
        self._idle: dict[Origin, list[_Connection]] = {}

    async def request(
        self,
        method: str,
        origin: Origin,
        target: bytes,
        headers: list[tuple[str, str]],
        body: bytes | None,
        *,
        connect_timeout: float,
        head_bytes: int,
        read_limit: int,
        turn: Turn = no_turn,
    ) -> Answer:
        """Send one request; the answer's status, headers and the first `head_bytes` of its body.
        `turn()` is taken once connected, and given back once the answer is read or its patience
        ran out (see Turn)."""
        async with self._slots:
            connection = await self._connection(origin, connect_timeout)
            reusable = False
            try:
                async with turn() as share:
                    await connection.stream.write(_request(method, origin, target, headers, body))
                    if share is not None:
                        try:
                            async with asyncio.timeout(share.patience):
                                await connection.wait()
                        except TimeoutError:
                            share.release()  # the receiver is slow: waiting for it costs nothing
                    answer, reusable = await _answer(connection, method, head_bytes, read_limit)
                return answer
            finally:
                if reusable:
                    await self._keep(origin, connection)
                else:
                    await _close(connection)

    async def _keep(self, origin: Origin, connection: _Connection) -> None:
        """Keep `connection` for the next request to `origin`; at most `size` idle ones in all (a
        lane of callbacks may call many origins), the oldest going first."""
        connection.idle_since = time.monotonic()
        self._idle.setdefault(origin, []).append(connection)
        if sum(len(kept) for kept in self._idle.values()) > self.size:
            oldest = min((key for key, kept in self._idle.items() if kept), key=lambda k: self._idle[k][0].idle_since)
            await _close(self._idle[oldest].pop(0))

    async def _connection(self, origin: Origin, timeout: float) -> _Connection:
        idle = self._idle.get(origin, [])
        while idle:
            connection = idle.pop()
            if time.monotonic() - connection.idle_since < KEEPALIVE_SECONDS and not connection.readable():
                return connection
            await _close(connection)
        stream = await self.network.connect_tcp(origin.host, origin.port, timeout=timeout)
        if origin.scheme == "https":
            stream = await stream.start_tls(self.ssl_context, server_hostname=origin.host, timeout=timeout)
        return _Connection(stream)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                await _close(connection)


async def _close(connection: _Connection) -> None:
    try:
        await connection.stream.aclose()
    except Exception:  # closing what failed: nothing left to do
        pass


def _request(method: str, origin: Origin, target: bytes, headers: list[tuple[str, str]], body: bytes | None) -> bytes:
    """The request's bytes. Header names and values were checked when saved (webhooks.py) or are
    Glimpze's own; a GET carries no body and no Content-Length."""
    lines = [b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method.encode("ascii"), target, origin.authority)]
    lines += [b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    if body is not None:
        lines.append(b"Content-Length: %d\r\n" % len(body))
    lines.append(b"\r\n")
    if body:
        lines.append(body)
    return b"".join(lines)


async def _answer(connection: _Connection, method: str, head_bytes: int, read_limit: int) -> tuple[Answer, bool]:
    """The answer, and whether the connection may take another request."""
    while True:
        version, status, headers = _parse_head(await connection.until(b"\r\n\r\n", MAX_HEAD))
        if not 100 <= status < 200:
            break  # 100 Continue, 103 Early Hints: the real answer follows
    fields: dict[bytes, bytes] = {}
    for name, value in headers:
        fields[name] = fields[name] + b", " + value if name in fields else value
    tokens = {t.strip() for t in fields.get(b"connection", b"").lower().split(b",")}
    keep = b"close" not in tokens and (version == b"HTTP/1.1" or b"keep-alive" in tokens)
    if method == "HEAD" or status in (204, 304):
        return Answer(status, headers, b""), keep
    if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
        head, complete = await _chunked(connection, head_bytes, read_limit)
    elif b"content-length" in fields:
        try:
            length = int(fields[b"content-length"].split(b",")[0])
        except ValueError:
            raise HttpError("the answer's Content-Length is not a number") from None
        head, complete = await _sized(connection, length, head_bytes, read_limit)
    else:  # the body runs to the connection's end: read what the limit allows, never reuse it
        head, complete = await _to_close(connection, head_bytes, read_limit), False
    return Answer(status, headers, head), keep and complete


def _parse_head(raw: bytes) -> tuple[bytes, int, list[tuple[bytes, bytes]]]:
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise HttpError(f"not an HTTP/1.x answer: {lines[0][:100]!r}")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t") and headers:  # an obsolete folded line continues the last header
            name, value = headers[-1]
            headers[-1] = (name, value + b" " + line.strip())
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise HttpError(f"not a header line: {line[:100]!r}")
        headers.append((name.lower(), value.strip()))
    return parts[0], int(parts[1]), headers


async def _sized(connection: _Connection, length: int, head_bytes: int, limit: int) -> tuple[bytes, bool]:
    """The first `head_bytes` of a body of `length` bytes; complete when all of it was read."""
    if length > limit:  # read the head only; the rest will not be read, so the connection goes
        return await connection.take(min(length, head_bytes)), False
    return (await connection.take(length))[:head_bytes], True


async def _chunked(connection: _Connection, head_bytes: int, limit: int) -> tuple[bytes, bool]:
    head = bytearray()
    read = 0
    while True:
        size_line = await connection.until(b"\r\n", MAX_HEAD)
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HttpError("the answer's chunked body is malformed") from None
        if size == 0:
            while await connection.until(b"\r\n", MAX_HEAD) != b"\r\n":  # trailers, up to the empty line
                pass
            return bytes(head), True
        if read + size > limit:
            head += (await connection.take(min(size, max(0, head_bytes - len(head)))))[: head_bytes - len(head)]
            return bytes(head), False
        chunk = (await connection.take(size + 2))[:size]  # the data, then its CRLF
        head += chunk[: max(0, head_bytes - len(head))]
        read += size


async def _to_close(connection: _Connection, head_bytes: int, limit: int) -> bytes:
    data = bytearray(connection.buffer)
    connection.buffer.clear()
    while len(data) < limit:
        chunk = await connection.stream.read(READ_CHUNK)
        if not chunk:
            break
        data += chunk
    return bytes(data[:head_bytes])
