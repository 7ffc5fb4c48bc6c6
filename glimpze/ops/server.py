"""The ASGI server around the app: uvicorn, with Glimpze's shutdown order, TLS, and the metrics listener.

Shutdown on SIGTERM or SIGINT (DESIGN §7, Operations):
1. stop accepting connections; SSE streams end and waiting long polls answer at once
   (`Services.stop()`), and the dispatcher stops claiming deliveries. uvicorn runs the app's
   lifespan shutdown only after open connections finish, and an SSE stream never finishes on its
   own: so this happens as soon as shutdown begins, not in the lifespan;
2. in-flight requests and in-flight deliveries share one grace period (`SHUTDOWN_GRACE`, 5 s);
   whatever still runs then is cancelled, and the leases of unsent deliveries are released;
3. the lifespan closes the store: queued writes commit, then the WAL is checkpointed (TRUNCATE);
4. the process exits with status 0. (uvicorn would re-raise the signal after a graceful
   shutdown, so the exit status would say "killed by SIGTERM"; a clean stop is a success.)
A watchdog (`SHUTDOWN_LIMIT`) ends a shutdown that hangs all the same, e.g. on a dying disk.

`[metrics] listen` runs a second, tiny uvicorn server in the same loop that answers only
`GET /metrics`, without authentication; `[ntfy] listen` one that speaks ntfy's publishing API at
its root (web/dialects.py), for ntfy clients that always publish there.

Both serve HTTP with `http_protocol()`: uvicorn's httptools protocol with Glimpze's limits on
headers, slow clients and open connections (glimpze.http_limits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from glimpze.ops.http_limits import HttpLimits, protocol
from glimpze.ops.metrics import CONTENT_TYPE
from glimpze.services import Services
from glimpze.web.dialects import ntfy_root_app

log = logging.getLogger("glimpze")

SHUTDOWN_GRACE = 5.0  # seconds in-flight requests and deliveries get to finish
SHUTDOWN_LIMIT = 9.5  # past this the process exits regardless (acknowledged data is already on disk)


class ServerConfig(uvicorn.Config):
    """uvicorn's Config with Glimpze's own TLS context (TLS 1.2+, see glimpze.tls)."""

    def __init__(self, app: Any, *, tls: ssl.SSLContext | None = None, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.tls = tls

    def load(self) -> None:
        super().load()
        if self.tls is not None:
            self.ssl = self.tls


class Server(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        glimpze: Services,
        *,
        metrics_socket: socket.socket | None = None,
        ntfy_socket: socket.socket | None = None,
        watchdog: bool = False,
    ) -> None:
        super().__init__(config)
        self.glimpze = glimpze
        self.metrics_socket = metrics_socket
        self.ntfy_socket = ntfy_socket
        self.watchdog = watchdog
        self._side_servers: list[SideServer] = []
        self._side_tasks: list[asyncio.Task[None]] = []

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                # uvicorn re-raises the signals it caught once the server is down; a graceful
                # stop is a success, so the process exits 0 instead of dying by SIGTERM.
                getattr(self, "_captured_signals", []).clear()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        for app, sock in ((metrics_app, self.metrics_socket), (ntfy_root_app, self.ntfy_socket)):
            if sock is not None:
                side = SideServer(app(self.glimpze), http=self.config.http)
                self._side_servers.append(side)
                self._side_tasks.append(asyncio.create_task(side.serve(sockets=[sock])))

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.watchdog:
            _start_watchdog(SHUTDOWN_LIMIT)
        self.glimpze.stop()
        deliveries = asyncio.ensure_future(self.glimpze.dispatcher.stop(grace=SHUTDOWN_GRACE))
        for side in self._side_servers:
            side.should_exit = True
        await super().shutdown(sockets)  # ≤ SHUTDOWN_GRACE for connections, then the lifespan
        await deliveries
        for task in self._side_tasks:
            await task


class SideServer(uvicorn.Server):
    """A listener of its own beside the main one, in the same loop: `[metrics] listen` (GET /metrics
    without authentication) or `[ntfy] listen` (ntfy at its root)."""

    def __init__(self, app: Any, *, http: Any = "auto") -> None:
        super().__init__(
            uvicorn.Config(
                app,
                http=http,
                lifespan="off",
                log_config=None,
                access_log=False,
                server_header=False,
                timeout_graceful_shutdown=1,
            )
        )

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the main server owns the signals and stops this one


def metrics_app(glimpze: Services) -> Any:
    """A bare ASGI app: `GET /metrics` → the registry's text format; anything else → 404."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            status, body, kind = 200, await glimpze.metrics.render(), CONTENT_TYPE
        else:
            status, body, kind = 404, b"Only GET /metrics is served here.\n", "text/plain; charset=utf-8"
        headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    return app


def http_protocol(glimpze: Services, limits: HttpLimits) -> type[asyncio.Protocol]:
    """The protocol class both servers speak HTTP with, its refusals counted in /metrics."""
    refused = glimpze.metrics.counter(
        "glimpze_http_refused_total",
        "Connections closed before their request reached Glimpze, by reason: headers_too_large, "
        "header_timeout, body_timeout, idle (sent nothing), evicted (to make room for a new one), "
        "too_many_connections",
        ("reason",),
    )
    return protocol(limits, count=lambda reason: refused.inc(reason))


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (raises OSError, e.g. when the port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    sock.set_inheritable(True)
    return sock


def _start_watchdog(limit: float) -> None:
    def give_up() -> None:
        log.error("shutdown took longer than %.1f s; exiting now (acknowledged data is already committed)", limit)
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(limit, give_up)
    timer.daemon = True
    timer.start()
