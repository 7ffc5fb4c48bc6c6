"""`glimpze serve`: the configuration's TLS and side listeners (metrics, ntfy) checked, the data
directory claimed, the app built and served by uvicorn until a signal stops it (the CLI's other
commands are in cli_commands.py)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys
from typing import TYPE_CHECKING

from glimpze import __version__
from glimpze.config import Config, ConfigError

if TYPE_CHECKING:
    from glimpze.ops.datadir import DataDirLock
    from glimpze.store.postgres import ServerLock

log = logging.getLogger("glimpze")


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    # The server's modules load here, not at import: the other commands start without them.
    from glimpze.app import create_app
    from glimpze.config import parse_listen
    from glimpze.ops.datadir import claim
    from glimpze.ops.http_limits import serving_limits
    from glimpze.ops.server import SHUTDOWN_GRACE, Server, ServerConfig, http_protocol, listen_socket
    from glimpze.ops.tls import server_context

    if config.public_url is None and not _is_loopback(config.host):
        log.warning(
            "public_url is not set: webhook and image URLs will say %s. "
            "Set public_url in glimpze.toml (or GLIMPZE_PUBLIC_URL) to the address devices use.",
            config.base_url,
        )
    try:
        tls = server_context(config.tls) if config.tls_enabled else None
    except ConfigError as exc:
        print(f"glimpze: configuration error: {exc}", file=sys.stderr)
        return 2
    # One server process per database, held until the process ends: the data directory's lock on
    # SQLite, an advisory lock on PostgreSQL (several processes on one database: not yet, issue 19).
    if config.postgres_url is None:
        data_dir: DataDirLock | ServerLock | None = claim(config.data_path)
    else:
        from glimpze.store.postgres import ServerLock

        data_dir = ServerLock.claim(config.postgres_url)
        if data_dir is None:
            print(
                "glimpze: the PostgreSQL database of [database] url is in use by another Glimpze server; "
                "stop it first, or give this one its own database (several servers on one database are "
                "not supported yet)",
                file=sys.stderr,
            )
            return 1
    sockets: dict[str, socket.socket] = {}  # the side listeners: metrics, ntfy at its root
    for name, address in (("metrics", config.metrics.listen), ("ntfy", config.ntfy.listen)):
        if address:
            host, port = parse_listen(address)
            try:
                sockets[name] = listen_socket(host, port)
            except OSError as exc:
                log.error("%s.listen: cannot listen on %s: %s", name, address, exc)
                return 1
    app = create_app(config)
    server = Server(
        ServerConfig(
            app,
            http=http_protocol(app.state.glimpze, serving_limits(config.http)),
            tls=tls,
            host=config.host,
            port=config.port,
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,  # X-Forwarded-For is read by Glimpze itself, honouring trusted_proxies
            timeout_graceful_shutdown=int(SHUTDOWN_GRACE),
            lifespan="on",
        ),
        app.state.glimpze,
        metrics_socket=sockets.get("metrics"),
        ntfy_socket=sockets.get("ntfy"),
        watchdog=True,
    )
    scheme = "https" if tls else "http"
    log.info(
        "glimpze %s listening on %s://%s:%d (data in %s)",
        __version__,
        scheme,
        config.host,
        config.port,
        config.data_path.resolve(),
    )
    if "metrics" in sockets:
        log.info("metrics without authentication on http://%s/metrics", config.metrics.listen)
    if "ntfy" in sockets:
        log.info("ntfy publishing at the root of http://%s/", config.ntfy.listen)
    try:
        server.run()
    finally:
        if data_dir is not None:
            data_dir.release()
    return 0 if server.started else 1


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
