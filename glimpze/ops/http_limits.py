"""What a client may hold before its request reaches the app: header size, header and body timeouts,
open connections, and the process's open-files limit they all draw on.

uvicorn's httptools protocol (the fast one, ~2x h11 on ingest) reads a request line and headers of
any size and waits for them forever; only a response arms its keep-alive timer. So `protocol()`
builds a subclass of it that, per connection:
- counts the bytes received while headers are incomplete and answers 431 `headers_too_large`
  (problem+json) once they pass `max_header_bytes`: at most one read (≤ 256 KiB) more is taken
  in, and never the rest of a 16 MiB header; complete headers are measured exactly;
- closes a connection whose headers are not complete `header_timeout` seconds after it opened,
  or after the first byte of its next request (408 `request_timeout` when part of a request
  arrived, silently when nothing did), and one whose request body stops arriving for as long
  (unless the app is not reading it yet: then the client is not the one being slow);
- at `max_connections` open at once, makes room for a new connection by closing the one that
  has waited longest (over a second) for its headers, so connections that send half a header
  cannot lock clients out; otherwise answers the new one 503 `too_many_connections` and closes
  it unread.
A request whose headers are complete is untouched: its response may stream for hours (SSE).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from glimpze.config import HttpConfig
from glimpze.errors import GlimpzeError, HeadersTooLarge, RequestTimeout, TooManyConnections
from glimpze.web.problems import PROBLEM_JSON, error_body

log = logging.getLogger("glimpze.http")

# Open files kept for everything but client connections: the database and its readers, the lock
# file, logs, outgoing webhook, callback and push connections, the metrics listener.
RESERVED_FILES = 256
WARN_EVERY_SECONDS = 60.0
SLOW_HEADERS_SECONDS = 1.0  # at the connection cap, headers pending this long give their place up
REQUEST_LINE_BYTES = len("OPTIONS  HTTP/1.1\r\n\r\n")  # a request line and the blank line, but the target

Refused = Callable[[str], None]  # called with the reason: headers_too_large, header_timeout, …


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_header_bytes: int
    header_timeout: float
    max_connections: int

    @classmethod
    def of(cls, config: HttpConfig) -> HttpLimits:
        return cls(config.max_header_bytes, config.header_timeout_seconds, config.max_connections)


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (a systemd unit's LimitNOFILE, a
    shell's `ulimit -Hn`); returns the soft limit in force. A sandbox that forbids it (seccomp's
    @resources) leaves the limit as it is."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as exc:
        log.debug("cannot raise the open-files limit from %d to %d: %s", soft, hard, exc)
        return soft
    return hard


def serving_limits(config: HttpConfig) -> HttpLimits:
    """The limits `glimpze serve` runs with: the connection cap lowered, with a warning, to what the
    open-files limit leaves (running out of files would refuse connections at random instead)."""
    files = raise_open_files_limit()
    connections = config.max_connections
    fit = max(16, files - RESERVED_FILES)
    if connections > fit:
        log.warning(
            "open files are limited to %d: serving at most %d connections at once, not %d "
            "(raise LimitNOFILE, or ulimit -n, to at least %d)",
            files,
            fit,
            connections,
            connections + RESERVED_FILES,
        )
        connections = fit
    return HttpLimits(config.max_header_bytes, config.header_timeout_seconds, connections)


def protocol(limits: HttpLimits, count: Refused | None = None) -> type[asyncio.Protocol]:
    """uvicorn's `http=` protocol class enforcing `limits`; each refusal is logged (at most once a
    minute per reason) and handed to `count(reason)`."""
    attributes = {"limits": limits, "refusals": Refusals(count), "waiting": OrderedDict()}
    return type("GlimpzeHttpProtocol", (LimitedHttpToolsProtocol,), attributes)


class Refusals:
    """Refused connections: counted, and a warning at most once a minute per reason (with the
    number since the last one). Clients that connect and send nothing (browsers open spare
    connections) are counted only."""

    def __init__(self, count: Refused | None = None) -> None:
        self.count = count
        self._pending: dict[str, int] = {}
        self._logged: dict[str, float] = {}

    def add(self, reason: str) -> None:
        if self.count is not None:
            self.count(reason)
        if reason == "idle":
            return
        self._pending[reason] = self._pending.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._logged.get(reason, -WARN_EVERY_SECONDS) >= WARN_EVERY_SECONDS:
            log.warning("refused %d connection(s): %s", self._pending.pop(reason), reason.replace("_", " "))
            self._logged[reason] = now


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header, timeout and connection limits (see the module).

    One timer per connection, armed when it opens, watches it at least every `header_timeout`
    seconds: a request only sets a deadline, so keep-alive requests pay no timer of their own.
    """

    limits: ClassVar[HttpLimits] = HttpLimits.of(HttpConfig())
    refusals: ClassVar[Refusals] = Refusals()
    # The server's connections waiting for a request's headers, longest-waiting first.
    waiting: ClassVar[OrderedDict[LimitedHttpToolsProtocol, None]] = OrderedDict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_headers = True  # False while a request's body arrives
        self._header_bytes = 0  # received since the current request began, while its headers are incomplete
        self._headers_due: float | None = None  # when the current request's headers must be complete
        self._last_read = 0.0
        self._too_large = False
        self._completed_in_read = False  # a request ended in the read being parsed
        self._counted_whole = True  # every byte of the current request was counted
        self._watch: asyncio.TimerHandle | None = None

    # uvicorn narrows the transport to asyncio.Transport (with an ignore of its own): the override follows it.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            detail = "The server has as many connections open as it serves at once; retry in a second."
            self._refuse("too_many_connections", TooManyConnections(detail), retry=True)
            return
        self._wait_for_headers()
        self._watch = self.loop.call_at(self._headers_due or 0.0, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        self.waiting.pop(self, None)
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._completed_in_read = False
        if self._reading_headers:
            self._header_bytes += len(data)
            if self._headers_due is None:  # the first byte of the next request
                self._wait_for_headers()
        else:
            self._last_read = self.loop.time()
        super().data_received(data)
        if self._reading_headers and self._header_bytes > self.limits.max_header_bytes:
            self._too_large = True
        if self._too_large:
            if self._answering():  # a pipelined request: answered once the one before it is
                self.flow.pause_reading()
            else:
                self._refuse_too_large()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._too_large and not self._answering():
            self._refuse_too_large()

    def _answering(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete or bool(self.pipeline)

    def _refuse_too_large(self) -> None:
        limit = self.limits.max_header_bytes
        detail = f"The request line and headers are larger than {limit // 1024} KiB, the most this server reads."
        self._refuse("headers_too_large", HeadersTooLarge(detail))

    def on_message_begin(self) -> None:
        # A request that began in the read where the one before it ended was not counted from its
        # first byte (the count covers whole reads): its headers are measured once complete.
        self._counted_whole = not self._completed_in_read
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        counted, limit = self._header_bytes, self.limits.max_header_bytes
        self._reading_headers, self._header_bytes, self._headers_due = False, 0, None
        self.waiting.pop(self, None)
        self._last_read = self.loop.time()
        # The count includes whatever followed the headers in their last read (a body), so past
        # the limit they are measured exactly: that is no reason to refuse them.
        if self._too_large or (counted > limit or not self._counted_whole) and self._header_size() > limit:
            self._too_large = True  # refused once the read is parsed; the app never sees it
            return
        super().on_headers_complete()

    def _header_size(self) -> int:
        return (
            REQUEST_LINE_BYTES
            + len(self.url)
            + sum(map(len, chain.from_iterable(self.headers)))
            + 4 * len(self.headers)
        )

    def on_body(self, body: bytes) -> None:
        if not self._too_large:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._reading_headers, self._completed_in_read = True, True  # what comes next is a new request
        if not self._too_large:
            super().on_message_complete()

    def _wait_for_headers(self) -> None:
        self._headers_due = self.loop.time() + self.limits.header_timeout
        self.waiting[self] = None

    def _make_room(self) -> bool:
        """At the cap, a new client takes the place of the connection that has waited longest for
        its headers, if that is over a second (a slow client, or one holding a place on purpose);
        False otherwise: then every connection is busy, or idle between requests for at most
        uvicorn's keep-alive timeout."""
        for other in self.waiting:
            if other.transport.is_closing():
                continue  # refused already, not yet gone
            waited = self.loop.time() + self.limits.header_timeout - (other._headers_due or 0.0)
            if waited < SLOW_HEADERS_SECONDS:
                return False
            detail = "The request line and headers were too slow to arrive while other clients waited."
            other._refuse("evicted", RequestTimeout(detail) if other._header_bytes else None)
            return True
        return False

    def _check(self) -> None:
        """The watch: a request's headers past their deadline, or a body idle as long, end the
        connection; a response under way or a keep-alive pause is none of its business."""
        self._watch = None
        if self.transport.is_closing():
            return
        now, timeout = self.loop.time(), self.limits.header_timeout
        due = now + timeout
        if self._reading_headers and self._headers_due is not None:
            if now >= self._headers_due:
                if not self._header_bytes:
                    self._refuse("idle", None)  # connected and sent nothing: close without a word
                else:
                    detail = f"The request line and headers did not arrive within {timeout:g} seconds."
                    self._refuse("header_timeout", RequestTimeout(detail))
                return
            due = self._headers_due
        elif not self._reading_headers and not self.flow.read_paused:  # paused: the app is not reading yet
            idle = now - self._last_read
            if idle >= timeout:
                self._refuse("body_timeout", None)
                return
            due = now + timeout - idle
        self._watch = self.loop.call_at(due, self._check)

    def _refuse(self, reason: str, error: GlimpzeError | None, *, retry: bool = False) -> None:
        """Answer `error` (unless a response is under way, or there is none) and close."""
        if self.transport.is_closing():
            return
        self.waiting.pop(self, None)
        if error is not None and (self.cycle is None or self.cycle.response_complete):
            body = error_body(error)
            head = [STATUS_LINE[error.status]]
            for name, value in self.server_state.default_headers:
                head += [name, b": ", value, b"\r\n"]
            head += [
                b"content-type: ",
                PROBLEM_JSON.encode(),
                b"\r\ncontent-length: ",
                str(len(body)).encode(),
                b"\r\nconnection: close\r\n",
                b"retry-after: 1\r\n" if retry else b"",
                b"\r\n",
                body,
            ]
            self.transport.write(b"".join(head))
        self.transport.close()
        self.refusals.add(reason)
