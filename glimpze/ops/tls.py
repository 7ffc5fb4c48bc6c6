"""HTTPS without a proxy: the server's TLS context (TLS 1.2 and newer only) and the HSTS header."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from glimpze.config import ConfigError, TlsConfig

if TYPE_CHECKING:  # Litestar's ASGI types, for the middleware it installs (never imported at run time)
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
# One year: what browsers' preload lists ask for. Sent only when `[tls] hsts = true`.
HSTS_VALUE = b"max-age=31536000"


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    """A server context for `[tls] cert`/`key` that refuses anything older than TLS 1.2, with
    OpenSSL's default cipher suites (forward-secret AEAD ones first); raises ConfigError naming
    the setting when the files cannot be used."""
    assert tls.cert and tls.key
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(tls.cert, tls.key)
    except FileNotFoundError as exc:
        raise ConfigError(f"tls: cannot read {exc.filename}") from None
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(
            f"tls.cert/tls.key: {tls.cert} and {tls.key} are not a matching PEM certificate and private key ({exc})"
        ) from None
    return context


class HstsMiddleware:
    """Pure ASGI: adds `Strict-Transport-Security` to every HTTP response (installed only when
    `[tls] hsts = true`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind: str = scope["type"]  # Litestar's ScopeType, a str enum: compared as the string ASGI says
        if kind != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"strict-transport-security", HSTS_VALUE)]
            await send(message)

        await self.app(scope, receive, send_with_hsts)
