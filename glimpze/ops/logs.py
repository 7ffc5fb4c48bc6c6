"""Logging: one line per record (logfmt-style text or JSON) and an access log without secrets.

The access log never sees headers (so no Authorization) and masks secret-bearing query
parameters such as `?token=`. Setup happens in the CLI, never at import.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import TYPE_CHECKING, Any, cast

import msgspec

if TYPE_CHECKING:  # Litestar's ASGI types, for the middleware it installs (never imported at run time)
    from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

access_log = logging.getLogger("glimpze.access")

_SECRET_QUERY = re.compile(r"(?i)((?:^|&)(?:token|key|secret|password|sig|glimpze_sig)=)[^&]*")
_SECRET_PATH = re.compile(r"(/setup/|/a/)[^/?]+")  # /a/: approval action links (action_links.py)
_SECRET_VALUE = re.compile(r"\b(gz[pwrtacs]_|whsec_)[A-Za-z0-9+/=_.-]+")


def redact(text: str) -> str:
    """Mask anything that looks like one of our secrets."""
    return _SECRET_VALUE.sub(r"\1…", text)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields = getattr(record, "fields", None)
        message = redact(record.getMessage())
        line = f"{stamp}Z {record.levelname.lower():7} {record.name}: {message}"
        if fields:
            line += " " + " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        data.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(data).decode()


def _quote(value: Any) -> str:
    text = str(value)
    return f'"{text}"' if (" " in text or not text) else text


def setup(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("apscheduler", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def safe_target(path: str, query: bytes) -> str:
    path = _SECRET_PATH.sub(r"\1…", path)
    if not query:
        return path
    masked = _SECRET_QUERY.sub(r"\1…", query.decode("latin-1"))
    return f"{path}?{masked}"


def _path(scope: HTTPScope) -> str:
    """The path as requested: mounted apps see only the rest of it in scope["path"]."""
    raw = scope.get("raw_path")
    return raw.decode("latin-1") if raw else scope["path"]


class AccessLogMiddleware:
    """Pure ASGI: logs method, target, status, duration and client after each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind: str = scope["type"]  # Litestar's ScopeType, a str enum: compared as the string ASGI says
        if kind != "http" or not access_log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        http = cast("HTTPScope", scope)  # an HTTP scope, as `kind` said (a string test does not narrow the enum)
        start = time.perf_counter()
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            client = http.get("client")
            access_log.info(
                "%s %s %d",
                http["method"],
                safe_target(_path(http), http.get("query_string", b"")),
                status,
                extra={
                    "fields": {
                        "ms": round((time.perf_counter() - start) * 1000, 1),
                        "client": client[0] if client else "-",
                    }
                },
            )
