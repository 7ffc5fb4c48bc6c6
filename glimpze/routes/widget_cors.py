"""CORS for `/widget/v1`: the project's widget origins, preflights included (DESIGN §7).

A preflight carries no credentials, so it is answered for an origin that any project allows (or
Glimpze's own); the request that follows is checked against its token's project (403
`origin_not_allowed` otherwise), so a success only ever reaches that project's origins. With no
widget origins set, preflights get 403 and browsers refuse the cross-origin call.
"""

from __future__ import annotations

from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from glimpze.problems import PROBLEM_JSON, problem_body

ALLOW_METHODS = b"GET, POST"
ALLOW_HEADERS = b"Authorization, Content-Type, Idempotency-Key, Last-Event-ID"
EXPOSE_HEADERS = b"Idempotent-Replayed, Retry-After, WWW-Authenticate"
MAX_AGE_SECONDS = b"600"


class WidgetCors:
    """Router middleware of the visitor API."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"]) if scope["type"] == "http" else {}
        origin = headers.get(b"origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        glimpze: Any = scope["litestar_app"].state.glimpze
        known = await glimpze.widget_tokens.origin_known(origin.decode("latin-1"))
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            await _preflight(send, origin if known else None)
            return
        if not known:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_cors_headers(origin)]
                message["headers"].append((b"access-control-expose-headers", EXPOSE_HEADERS))
            await send(message)

        await self.app(scope, receive, send_with_cors)


def _cors_headers(origin: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]


async def _preflight(send: Send, origin: bytes | None) -> None:
    if origin is None:
        body = problem_body(
            403,
            "origin_not_allowed",
            "Origin not allowed",
            "This origin is not one of the project's widget origins; add it with PUT /v1/settings/widget-origins.",
        )
        headers = [(b"content-type", PROBLEM_JSON.encode()), (b"vary", b"Origin")]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    headers = [
        *_cors_headers(origin),
        (b"access-control-allow-methods", ALLOW_METHODS),
        (b"access-control-allow-headers", ALLOW_HEADERS),
        (b"access-control-max-age", MAX_AGE_SECONDS),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
