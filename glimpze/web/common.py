"""What every handler needs: credentials from headers, the client address, strict JSON bodies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_201_CREATED

from glimpze.accounts.keys import Principal
from glimpze.errors import ValidationFailed
from glimpze.feeds.ingest import check_json_content_type
from glimpze.feeds.limits import client_ip, too_many_failures
from glimpze.services import Services
from glimpze.validation import Decoder
from glimpze.web.ingest import bearer_token

T = TypeVar("T")
AnyRequest = Request[Any, Any, Any]

# Handler parameters filled by dependency injection (declared on the app and the /v1 router).
App = NamedDependency[Services]
Caller = NamedDependency[Principal]


def bearer(request: AnyRequest) -> str | None:
    """The token of an `Authorization: Bearer …` header (scheme case-insensitive)."""
    return bearer_token(request.headers.get("authorization"))


def known_etags(request: AnyRequest) -> frozenset[str]:
    """The ETags an `If-None-Match` header lists (weak ones as strong; `*` kept as is)."""
    header = request.headers.get("if-none-match") or ""
    return frozenset(tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip())


def client_address(request: AnyRequest, glimpze: Services) -> str:
    peer = request.client.host if request.client else None
    return client_ip(peer, request.headers.get("x-forwarded-for"), glimpze.trusted_proxies)


async def read_json(request: AnyRequest, decoder: Decoder[T], *, empty: T | None = None) -> T:
    """Decode the body strictly; `empty` is returned for an empty body where one is allowed."""
    body = await request.body()
    if empty is not None and not body:  # no body at all; blanks alone are not JSON
        return empty
    check_json_content_type(request.headers.get("content-type"))
    return decoder.decode(body)


def json_response(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


_encode = msgspec.json.Encoder().encode


async def create_once(
    request: AnyRequest, glimpze: Services, scope: str, create: Callable[[], Awaitable[object]]
) -> Response[bytes]:
    """Run a create under the request's Idempotency-Key (DESIGN §7): a retry with the same key and
    body gets the first answer again, with `Idempotent-Replayed: true`. `create()` returns the
    answer (201) or (status, answer); only successful answers are kept. The route names the
    answer's type for the OpenAPI document with `responses=created(T)`."""

    async def run() -> tuple[int, bytes]:
        result = await create()
        status, answer = result if isinstance(result, tuple) else (201, result)
        return status, _encode(answer)

    key = request.headers.get("idempotency-key")
    status, body, replayed = await glimpze.idempotency.run(scope, key, await request.body(), run)
    return json_response(status, body, {"Idempotent-Replayed": "true"} if replayed else None)


def created(answer: object) -> dict[int, ResponseSpec]:
    """The OpenAPI entry of a route answering with `create_once`: 201 with `answer` (a type) as JSON."""
    spec = ResponseSpec(answer, generate_examples=False, description="Document created, URL follows")
    return {HTTP_201_CREATED: spec}


def refuse_idempotency_key(request: AnyRequest) -> None:
    """Creates that mint a secret keep only its hash, so their answer cannot be replayed."""
    if "idempotency-key" in request.headers:
        raise ValidationFailed.at(
            "header.Idempotency-Key",
            "is not accepted here: this create returns a secret that is stored only as a hash, so its answer "
            "cannot be replayed; send the request without Idempotency-Key",
        )


async def api_principal(request: AnyRequest, glimpze: App) -> Principal:
    """Dependency for /v1: the project behind the Bearer API key, behind the failure limiter."""
    client = client_address(request, glimpze)
    wait = glimpze.auth_failures.blocked(client)
    if wait > 0:
        raise too_many_failures(wait)
    try:
        return await glimpze.keys.authenticate(bearer(request))
    except Exception:
        glimpze.auth_failures.failed(client)
        raise
