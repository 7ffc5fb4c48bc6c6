"""The OpenAPI document at /schema/openapi.json.

Litestar generates it from the handlers; `complete()` then adds what it cannot see:
- request bodies: handlers that must decode strictly read their raw body instead of taking
  `data: Struct` (which Litestar decodes leniently), and name the body type in `opt={"body": T}`
  (with `"body_optional": True` when an empty body means the defaults);
- the ingest endpoints, an ASGI mount (see routes/ingest.py): JSON events and image uploads;
- list limits: `?limit=` is 1 to 100 everywhere (checked by the service, not by Litestar);
- uploaded images: `/media/{name}` answers PNG, JPEG or WebP, whichever was uploaded;
- the error shape: every operation answers problem+json on failure.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar, Request
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.routes import HTTPRoute

from glimpze import __version__
from glimpze.errors import FieldError
from glimpze.feeds.events import Accepted
from glimpze.feeds.images import CONTENT_TYPES, WIDGET_PIXELS
from glimpze.feeds.schemas import CustomContent, IngestEvent
from glimpze.feeds.uploads import IMAGE_FIELDS, IMAGE_MAX_BYTES, UPLOAD_MAX_BYTES
from glimpze.store.pagination import DEFAULT_LIMIT, MAX_LIMIT

REF = "#/components/schemas/{name}"


class CompletingJsonRender(JsonRenderPlugin):
    """Serves /schema/openapi.json, completing Litestar's document on first use (see `complete`).

    Building the document costs ~150 ms, so it happens when someone asks, not at every start.
    """

    def __init__(self) -> None:
        super().__init__()
        self._completed = False

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if not self._completed:
            complete(request.app, openapi_schema)
            self._completed = True
        return super().render(request, openapi_schema)


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Glimpze",
        version=__version__,
        description="Live widgets, push, approvals and signed webhooks from any HTTP call.",
        path="/schema",
        render_plugins=[CompletingJsonRender()],
        components=Components(
            security_schemes={
                "apiKey": SecurityScheme(type="http", scheme="bearer", description="Project API key `gzp_…`"),
                "metricsToken": SecurityScheme(
                    type="http", scheme="bearer", description="The `[metrics] token` of glimpze.toml"
                ),
                "writeKey": SecurityScheme(type="http", scheme="bearer", description="Feed write key `gzw_…`"),
                "readToken": SecurityScheme(type="http", scheme="bearer", description="Feed read token `gzr_…`"),
                "readTokenQuery": SecurityScheme(
                    type="apiKey",
                    security_scheme_in="query",
                    name="token",
                    description="Feed read token `gzr_…` in the URL, for devices that cannot send headers",
                ),
                "widgetToken": SecurityScheme(
                    type="http", scheme="bearer", description="Widget token `gzt_…` from POST /v1/widget-tokens"
                ),
            }
        ),
    )


class UploadAccepted(msgspec.Struct):
    """The 202 answer to an upload: an ingest answer plus the stored content with the image URLs."""

    id: str
    feed_id: str
    status: str
    widget_updated: bool
    push: str
    content: CustomContent


class Problem(msgspec.Struct):
    """An RFC 9457 problem: every error answer has this shape."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError]


def complete(app: Litestar, spec: dict[str, Any]) -> None:
    """Add request bodies, the ingest mount, list limits and the error shape to the generated document."""
    _document_ingest(spec)
    _document_bodies(app, spec)
    _document_limits(spec)
    _document_media(spec)
    _document_problems(spec)


def _document_limits(spec: dict[str, Any]) -> None:
    """Every `?limit=` is checked by pagination.check_limit: say so (handlers take a plain int)."""
    for methods in spec.get("paths", {}).values():
        for operation in methods.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                if parameter.get("name") == "limit" and parameter.get("in") == "query":
                    parameter["schema"] = {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_LIMIT,
                        "default": DEFAULT_LIMIT,
                    }


def _document_media(spec: dict[str, Any]) -> None:
    """A handler has one media type; a stored image has the type it was uploaded with."""
    operation = spec.get("paths", {}).get("/media/{name}", {}).get("get")
    if operation is not None:
        image = {"schema": {"type": "string", "format": "binary"}}
        operation.setdefault("responses", {})["200"] = {
            "description": "The image, as uploaded",
            "content": {content_type: image for content_type in CONTENT_TYPES.values()},
        }


def _document_ingest(spec: dict[str, Any]) -> None:
    (body, accepted, uploaded, problem), components = msgspec.json.schema_components(
        [IngestEvent, Accepted, UploadAccepted, Problem], ref_template=REF
    )
    spec.setdefault("components", {}).setdefault("schemas", {}).update(components)
    parameters = [
        {"name": "feed_id", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"}},
    ]
    spec["paths"]["/ingest/{feed_id}"] = {
        "post": {
            "tags": ["ingest"],
            "summary": "Send an event to a feed",
            "description": "Authenticate with the feed's write key: `Authorization: Bearer gzw_…`. "
            "Optional `Idempotency-Key` header. Bodies up to 64 KiB.",
            "operationId": "IngestEvent",
            "security": [{"writeKey": []}],
            "parameters": parameters,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "202": {"description": "Accepted and stored", "content": {"application/json": {"schema": accepted}}},
            },
        }
    }
    images = {
        name: {
            "type": "string",
            "format": "binary",
            "description": f"PNG, JPEG or WebP of exactly {'×'.join(map(str, WIDGET_PIXELS[size]))} px"
            + (f"; the dark-mode variant of {size}_image" if dark else ""),
        }
        for name, (size, dark) in IMAGE_FIELDS.items()
    }
    spec["paths"]["/ingest/{feed_id}/upload"] = {
        "post": {
            "tags": ["ingest"],
            "summary": "Upload widget images to a custom feed",
            "description": "Multipart form with the write key as for JSON events. At least one light image; "
            f"each image at most {IMAGE_MAX_BYTES // 2**20} MiB, the body at most {UPLOAD_MAX_BYTES // 2**20} MiB. "
            "The format is read from the bytes; the size must be exact. One bad field stores nothing.",
            "operationId": "UploadImages",
            "security": [{"writeKey": []}],
            "parameters": parameters,
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                **images,
                                "widget_url": {"type": "string", "description": "http(s) URL a tap opens"},
                                "intent": {"type": "string", "description": 'JSON, e.g. {"update_widget":true}'},
                                "metadata": {"type": "string", "description": 'JSON object, e.g. {"source":"cron"}'},
                            },
                        }
                    }
                },
            },
            "responses": {
                "202": {
                    "description": "Accepted and stored; `content` holds the URLs of the stored images",
                    "content": {"application/json": {"schema": uploaded}},
                },
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
    bodies: list[tuple[str, str, Any, bool]] = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            body = handler.opt.get("body")
            if body is not None:
                for http_method in handler.http_methods:
                    bodies.append((route.path_format, http_method.lower(), body, not handler.opt.get("body_optional")))
    if not bodies:
        return
    schemas, components = msgspec.json.schema_components([b[2] for b in bodies], ref_template=REF)
    spec.setdefault("components", {}).setdefault("schemas", {}).update(components)
    for (path, method, _, required), schema in zip(bodies, schemas):
        operation = spec.get("paths", {}).get(path, {}).get(method)
        if operation is not None:
            operation["requestBody"] = {"required": required, "content": {"application/json": {"schema": schema}}}
