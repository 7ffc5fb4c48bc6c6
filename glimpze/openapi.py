"""The OpenAPI document at /schema/openapi.json.

Litestar generates it from the handlers; `complete()` then adds what it cannot see:
- request bodies: handlers that must decode strictly read their raw body instead of taking
  `data: Struct` (which Litestar decodes leniently), and name the body type in `opt={"body": T}`;
- the ingest endpoint, an ASGI mount (see routes/ingest.py);
- the error shape: every operation answers problem+json on failure.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.routes import HTTPRoute

from glimpze import __version__
from glimpze.errors import FieldError
from glimpze.ingest import Accepted
from glimpze.schemas import IngestEvent

REF = "#/components/schemas/{name}"


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Glimpze",
        version=__version__,
        description="Live widgets, push, approvals and signed webhooks from any HTTP call.",
        path="/schema",
        render_plugins=[JsonRenderPlugin()],
        components=Components(
            security_schemes={
                "apiKey": SecurityScheme(type="http", scheme="bearer", description="Project API key `gzp_…`"),
                "writeKey": SecurityScheme(type="http", scheme="bearer", description="Feed write key `gzw_…`"),
                "widgetToken": SecurityScheme(
                    type="http", scheme="bearer", description="Widget token `gzt_…` from POST /v1/widget-tokens"
                ),
            }
        ),
    )


class Problem(msgspec.Struct):
    """An RFC 9457 problem: every error answer has this shape."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError]


def complete(app: Litestar) -> None:
    """Add request bodies, the ingest mount and the error shape to the generated document."""
    spec = _schema_dict(app)
    _document_ingest(spec)
    _document_bodies(app, spec)
    _document_problems(spec)


def _document_ingest(spec: dict[str, Any]) -> None:
    (body, accepted, problem), components = msgspec.json.schema_components(
        [IngestEvent, Accepted, Problem], ref_template=REF
    )
    spec.setdefault("components", {}).setdefault("schemas", {}).update(components)
    spec["paths"]["/ingest/{feed_id}"] = {
        "post": {
            "tags": ["ingest"],
            "summary": "Send an event to a feed",
            "description": "Authenticate with the feed's write key: `Authorization: Bearer gzw_…`. "
            "Optional `Idempotency-Key` header. Bodies up to 64 KiB.",
            "operationId": "IngestEvent",
            "security": [{"writeKey": []}],
            "parameters": [
                {"name": "feed_id", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"}},
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "202": {"description": "Accepted and stored", "content": {"application/json": {"schema": accepted}}},
            },
        }
    }


def _document_problems(spec: dict[str, Any]) -> None:
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    if "Problem" not in schemas:
        (problem,), components = msgspec.json.schema_components([Problem], ref_template=REF)
        schemas.update(components)
    else:
        problem = {"$ref": REF.format(name="Problem")}
    for methods in spec.get("paths", {}).values():
        for method, operation in methods.items():
            if method not in ("get", "post", "put", "patch", "delete") or not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            for status in [s for s in responses if s.startswith(("4", "5"))]:
                del responses[status]  # Litestar's own error shape, which Glimpze never sends
            responses["default"] = {
                "description": "An error, as RFC 9457 problem+json",
                "content": {"application/problem+json": {"schema": problem}},
            }


def _document_bodies(app: Litestar, spec: dict[str, Any]) -> None:
    """Add the request body of every handler with `opt["body"]` to the generated document."""
    bodies: list[tuple[str, str, Any]] = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            body = handler.opt.get("body")
            if body is not None:
                for method in handler.http_methods:
                    bodies.append((route.path_format, method.lower(), body))
    if not bodies:
        return
    schemas, components = msgspec.json.schema_components([b[2] for b in bodies], ref_template=REF)
    spec.setdefault("components", {}).setdefault("schemas", {}).update(components)
    for (path, method, _), schema in zip(bodies, schemas):
        operation = spec.get("paths", {}).get(path, {}).get(method)
        if operation is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}


def _schema_dict(app: Litestar) -> dict[str, Any]:
    """The dict Litestar serves, built once and cached by its OpenAPI plugin."""
    return app.plugins.get(OpenAPIPlugin).provide_openapi_schema()
