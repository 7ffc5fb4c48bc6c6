"""ntfy under `/ntfy` and Gotify under `/gotify` (DESIGN §10), and `[ntfy] listen`'s app, which
speaks ntfy at its root: apps that publish to those servers publish to Glimpze unchanged.

Raw ASGI like `/ingest` (web/ingest.py), for the same reasons: the headers ntfy reads are many
and named freely, and errors must be answered in each dialect's own shape, which ntfy and Gotify
clients read (`{"code", "http", "error"}`; `{"error", "errorCode", "errorDescription"}`).

ntfy paths: `POST|PUT /{topic}` (text body and ntfy's headers or query parameters),
`GET|POST|PUT /{topic}/publish` (or `/send`, `/trigger`: publishing as a webhook), and `POST|PUT /`
with ntfy's JSON body. Credentials: `Authorization: Bearer <key>`, Basic with the key as the
password (any user), or `?auth=` (ntfy's base64 of that header). Gotify: `POST /message` with
`?token=`, `X-Gotify-Key` or Bearer.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from litestar import asgi
from litestar.types import Receive, Scope, Send

from glimpze.errors import GlimpzeError, MethodNotAllowed, NotFound
from glimpze.feeds import gotify, ntfy
from glimpze.feeds.feeds import FeedState
from glimpze.feeds.ingest import IngestAnswer
from glimpze.feeds.limits import client_ip
from glimpze.feeds.schemas import EVENT_MAX_BYTES
from glimpze.feeds.uploads import IMAGE_MAX_BYTES, Upload, image_form
from glimpze.services import Services
from glimpze.web.ingest import bearer_token, check_length, read_body, send_answer

_JSON = [(b"content-type", b"application/json")]
WEBHOOK_PATHS = ("publish", "send", "trigger")
NTFY_CREDENTIALS = "as 'Authorization: Bearer gzw_…', as the password of Basic auth, or as ?auth="
GOTIFY_CREDENTIALS = "as ?token=gzw_…, as the X-Gotify-Key header, or as 'Authorization: Bearer gzw_…'"
Shape = Callable[[GlimpzeError], bytes]


@asgi("/ntfy", is_mount=True, copy_scope=False)
async def ntfy_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """ntfy's publishing API under /ntfy (the mount hands over the rest of the path)."""
    await serve_ntfy(scope["litestar_app"].state.glimpze, scope, receive, send)


@asgi("/gotify", is_mount=True, copy_scope=False)
async def gotify_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """Gotify's `POST /message` under /gotify."""
    glimpze: Services = scope["litestar_app"].state.glimpze
    await _answering(glimpze, send, gotify_error, lambda: _gotify(glimpze, scope, receive))


def ntfy_root_app(glimpze: Services) -> Any:
    """`[ntfy] listen`'s app: ntfy's publishing API at the root."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await serve_ntfy(glimpze, scope, receive, send)

    return app


async def serve_ntfy(glimpze: Services, scope: Any, receive: Receive, send: Send) -> None:
    """Answer one ntfy request (its path relative to where ntfy is served)."""
    await _answering(glimpze, send, ntfy_error, lambda: _ntfy(glimpze, scope, receive))


async def _answering(
    glimpze: Services, send: Send, shape: Shape, answer: Callable[[], Awaitable[IngestAnswer]]
) -> None:
    start = time.perf_counter()
    try:
        outcome = await answer()
    except GlimpzeError as exc:
        await send_answer(send, exc.status, shape(exc), exc.headers, _JSON)
    else:
        extra = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
        await send_answer(send, outcome.status, outcome.body, {**outcome.headers, **extra}, _JSON)
    finally:
        glimpze.ingest.latency.observe(time.perf_counter() - start)


async def _ntfy(glimpze: Services, scope: Any, receive: Receive) -> IngestAnswer:
    parts = [part for part in scope["path"].split("/") if part]
    method, headers = scope["method"], _headers(scope)
    query = scope.get("query_string", b"").decode("latin-1")
    if not parts:
        if method not in ("POST", "PUT"):
            raise MethodNotAllowed("Publish with POST or PUT: ntfy's JSON body here, or a message to /{topic}.")
        body = await read_body(receive, headers.get("content-length"), EVENT_MAX_BYTES)
        message = ntfy.read_json(body)
        feed = await _ntfy_feed(glimpze, scope, headers, query, message.topic)
        return await _publish(glimpze, feed, message, headers)
    webhook = len(parts) == 2 and parts[1] in WEBHOOK_PATHS
    if len(parts) > 2 or len(parts) == 2 and not webhook or not ntfy.TOPIC.fullmatch(parts[0]):
        raise NotFound(f"There is no ntfy route {scope['path']!r}: Glimpze takes ntfy publishes only (to /{{topic}}).")
    if method not in (("GET", "POST", "PUT") if webhook else ("POST", "PUT")):
        raise MethodNotAllowed(f"{method} is not allowed here: publish with POST or PUT (or GET /{{topic}}/publish).")
    check_length(headers.get("content-length"), IMAGE_MAX_BYTES)
    feed = await _ntfy_feed(glimpze, scope, headers, query, parts[0])
    limit = IMAGE_MAX_BYTES if feed.schema_type == "custom" else EVENT_MAX_BYTES
    body = await read_body(receive, headers.get("content-length"), limit)
    message = ntfy.read_request(parts[0], headers, query, body)
    return await _publish(glimpze, feed, message, headers)


async def _ntfy_feed(glimpze: Services, scope: Any, headers: dict[str, str], query: str, topic: str) -> FeedState:
    secret = ntfy_secret(headers.get("authorization"), dict(parse_qsl(query)))
    return await glimpze.publishers.feed(secret, topic, _client(glimpze, scope, headers), NTFY_CREDENTIALS)


async def _publish(
    glimpze: Services, feed: FeedState, message: ntfy.NtfyMessage, headers: dict[str, str]
) -> IngestAnswer:
    plan = glimpze.config.plans.get(feed.plan_name) or glimpze.config.plans[glimpze.config.default_plan]
    expires_after, key = plan.history_days * 86400.0, headers.get("idempotency-key") or headers.get("x-id")
    if feed.schema_type != "custom" or message.file is None:
        return await glimpze.ingest.submit(feed, ntfy.submission(message, feed, expires_after), key)
    async with image_form(message.file, glimpze.media) as form:
        upload = Upload(form, glimpze.media)
        return await glimpze.ingest.submit(feed, ntfy.submission(message, feed, expires_after, upload), key)


async def _gotify(glimpze: Services, scope: Any, receive: Receive) -> IngestAnswer:
    if scope["path"].strip("/") != "message":
        raise NotFound(f"There is no Gotify route {scope['path']!r}: Glimpze takes POST /message only.")
    if scope["method"] != "POST":
        raise MethodNotAllowed("Publish with POST /message.")
    headers = _headers(scope)
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    secret = query.get("token") or headers.get("x-gotify-key") or bearer_token(headers.get("authorization"))
    feed = await glimpze.publishers.feed(secret, None, _client(glimpze, scope, headers), GOTIFY_CREDENTIALS)
    body = await read_body(receive, headers.get("content-length"), EVENT_MAX_BYTES)
    message = gotify.read_body(headers.get("content-type"), body)
    return await glimpze.ingest.submit(feed, gotify.submission(message, feed), headers.get("idempotency-key"))


def ntfy_secret(authorization: str | None, query: dict[str, str]) -> str | None:
    """The key in ntfy's credentials: a Bearer token, Basic auth's password (or its user when the
    password is empty), either one base64-encoded in `?auth=` as ntfy encodes it."""
    value = (authorization or "").strip()
    encoded = query.get("auth") or query.get("authorization")
    if encoded:
        try:
            value = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError):
            return None
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip() or None
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(rest.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or user or None
    return None


def ntfy_error(exc: GlimpzeError) -> bytes:
    """ntfy's error shape: `{"code": 40101, "http": 401, "error": "…"}`."""
    code = 40000 if exc.status == 400 else exc.status * 100 + 1
    return msgspec.json.encode({"code": code, "http": exc.status, "error": exc.detail})


def gotify_error(exc: GlimpzeError) -> bytes:
    """Gotify's error shape: `{"error": "Unauthorized", "errorCode": 401, "errorDescription": "…"}`."""
    try:
        phrase = HTTPStatus(exc.status).phrase
    except ValueError:
        phrase = "Error"
    return msgspec.json.encode({"error": phrase, "errorCode": exc.status, "errorDescription": exc.detail})


def _headers(scope: Any) -> dict[str, str]:
    """Header names in lower case; values as UTF-8 (ntfy reads them so), else Latin-1."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = value.decode("latin-1")
        headers.setdefault(name.decode("latin-1").lower(), text)
    return headers


def _client(glimpze: Services, scope: Any, headers: dict[str, str]) -> str:
    peer = scope.get("client")
    return client_ip(peer[0] if peer else None, headers.get("x-forwarded-for"), glimpze.trusted_proxies)
