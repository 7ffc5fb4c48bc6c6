"""CORS and response headers for `/widget/v1`: the project's widget origins, preflights included
(DESIGN §7), and a strict CSP on every answer.

Only the project's widget origins can read an answer with data in it. A preflight carries no
credentials, so it is answered for any origin: a page whose origin no project allows then sends
its call, and gets a 403 `origin_not_allowed` that this middleware answers itself, before any
token is looked at, with CORS headers for that refusal only (it holds nothing but the reason), so
the widget can show and log the reason and stop retrying instead of seeing a network error. An
origin some project allows goes on to the route, which checks it against its token's project (403
`origin_not_allowed` otherwise), so a success only ever reaches that project's origins. Calls
without an Origin (servers, curl) get no CORS headers at all.

Every answer (JSON, problems, the event stream, preflights) is data for the widget's script, never
a page: `default-src 'none'` with `sandbox` keeps a browser that is sent to one of these URLs from
running or loading anything in it, `nosniff` from reading it as another type, and `no-store` (when
the route set no Cache-Control of its own) keeps a visitor's conversation out of caches.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Message, Receive, Scope, Send

from glimpze.chat.tokens import origin_not_allowed
from glimpze.services import Services
from glimpze.web.problems import PROBLEM_JSON, error_body

ALLOW_METHODS = b"GET, POST"
ALLOW_HEADERS = b"Authorization, Content-Type, Idempotency-Key, Last-Event-ID"
# Date lets the widget estimate the server's clock (token lifetimes, card signing times).
EXPOSE_HEADERS = b"Date, Idempotent-Replayed, Retry-After, WWW-Authenticate"
MAX_AGE_SECONDS = b"600"
WIDGET_API_CSP = b"default-src 'none'; frame-ancestors 'none'; sandbox"
SECURITY_HEADERS = (
    (b"content-security-policy", WIDGET_API_CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
)


class ChatCors:
    """Router middleware of the visitor API."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin")
        cors: list[tuple[bytes, bytes]] = []
        if origin is not None:
            if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
                await _preflight(send, origin)
                return
            glimpze: Services = scope["litestar_app"].state.glimpze
            if not await glimpze.chat_tokens.origin_known(origin.decode("latin-1")):
                await _refuse(send, origin)
                return
            cors = _cors_headers(origin)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _secured([*message.get("headers", []), *cors])
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _secured(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` plus each security header the response does not set itself."""
    present = {name.lower() for name, _ in headers}
    return [*headers, *((name, value) for name, value in SECURITY_HEADERS if name not in present)]


def _cors_headers(origin: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin),
        (b"access-control-expose-headers", EXPOSE_HEADERS),
        (b"vary", b"Origin"),
    ]


async def _refuse(send: Send, origin: bytes) -> None:
    """403 `origin_not_allowed`, readable by the page that was refused and holding only the reason."""
    refusal = origin_not_allowed(origin.decode("latin-1"))
    headers = _secured([(b"content-type", PROBLEM_JSON.encode()), *_cors_headers(origin)])
    await _send(send, refusal.status, headers, error_body(refusal))


async def _preflight(send: Send, origin: bytes) -> None:
    headers = _secured(
        [
            (b"access-control-allow-origin", origin),
            (b"vary", b"Origin"),
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", ALLOW_HEADERS),
            (b"access-control-max-age", MAX_AGE_SECONDS),
        ]
    )
    await _send(send, 204, headers, b"")


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(end)
