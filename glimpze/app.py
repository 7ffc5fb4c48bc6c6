"""`create_app(config, *, clock, network, announce)`: the only way to build the Glimpze ASGI app."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpcore
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.exceptions import NotFoundException
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from glimpze.accounts.keys import NewApiKey
from glimpze.clock import Clock
from glimpze.config import Config
from glimpze.ops.logs import AccessLogMiddleware
from glimpze.ops.scheduler import build_scheduler
from glimpze.ops.tls import HstsMiddleware
from glimpze.services import Services
from glimpze.web import actions, chat, dashboard, displays, widgets
from glimpze.web.api import agents, approvals, ctas, feeds, keys, leads, push, sessions, settings, webhooks
from glimpze.web.api import devices as api_devices
from glimpze.web.api import screens as api_screens
from glimpze.web.api.chat_tokens import mint_chat_token
from glimpze.web.chat_script import widget_js
from glimpze.web.common import api_principal
from glimpze.web.dialects import gotify_endpoint, ntfy_endpoint
from glimpze.web.ingest import ingest_endpoint
from glimpze.web.media import media_file
from glimpze.web.openapi import openapi_config
from glimpze.web.ops import healthz, metrics
from glimpze.web.problems import EXCEPTION_HANDLERS

log = logging.getLogger("glimpze")

API_MAX_BODY_BYTES = 1024 * 1024


def create_app(
    config: Config,
    *,
    clock: Clock | None = None,
    network: httpcore.AsyncNetworkBackend | None = None,
    announce: Callable[[str], None] | None = None,
) -> Litestar:
    """The app for `config`. Tests pass a fake `clock`, and may pass the `network` backend of outgoing
    connections (webhooks, callbacks, Web Push) instead of the SSRF-guarded one;
    `announce(text)` receives first-start messages (default: printed to stdout)."""
    glimpze = Services(config, clock=clock, network=network)
    say = announce or _print

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await glimpze.open()
        # Periodic jobs run on real time only: with a fake clock the test calls them with its `now`.
        scheduler = build_scheduler(glimpze) if glimpze.clock.ticks else None
        try:
            _, key = await glimpze.keys.ensure_default_project()
            if key is not None:
                say(_admin_key_banner(key))
            if not await glimpze.admin.has_password():
                say(setup_banner(config.base_url, await glimpze.admin.new_setup_token()))
            await glimpze.webpush.open()
            await glimpze.dispatcher.start()
            await glimpze.push.start()
            if scheduler is not None:
                scheduler.start()
            # Everything built so far lives as long as the process: keep it out of the cyclic
            # GC's full collections, which otherwise pause the loop for tens of ms under load.
            gc.collect()
            gc.freeze()
            yield
        finally:
            glimpze.stop()
            if scheduler is not None and scheduler.running:
                scheduler.shutdown(wait=False)
            # Deliveries and pushes in flight share one grace period (SIGTERM: out within 10 s).
            await asyncio.gather(glimpze.dispatcher.stop(), glimpze.push.stop())
            await glimpze.close()

    v1 = Router(
        "/v1",
        route_handlers=[
            feeds.router,
            keys.router,
            webhooks.router,
            *webhooks.deliveries_and_events,
            agents.router,
            ctas.agent_ctas,
            ctas.router,
            sessions.router,
            leads.router,
            settings.router,
            approvals.router,
            push.router,
            mint_chat_token,
            api_screens.router,
            api_devices.router,
        ],
        dependencies={"principal": Provide(api_principal)},
        security=[{"apiKey": []}],
    )
    app = Litestar(
        route_handlers=[
            ingest_endpoint,
            ntfy_endpoint,
            gotify_endpoint,
            widgets.router,
            displays.screens_router,
            displays.device_router,
            media_file,
            healthz,
            metrics,
            v1,
            chat.router,
            widget_js,
            actions.router,
            *dashboard.routers(),
        ],
        dependencies={"glimpze": Provide(lambda: glimpze, use_cache=True, sync_to_thread=False)},
        exception_handlers={**EXCEPTION_HANDLERS, NotFoundException: dashboard.unknown_path},
        lifespan=[lifespan],
        middleware=[
            *([AccessLogMiddleware] if config.access_log else []),
            OptionsAllowMiddleware,
            *([HstsMiddleware] if config.tls.hsts else []),
        ],
        openapi_config=openapi_config(),
        logging_config=None,
        request_max_body_size=API_MAX_BODY_BYTES,
        state=State({"glimpze": glimpze, "ui": dashboard.Ui(glimpze)}),
        template_config=dashboard.template_config(),
        signature_namespace={"Services": Services},
    )
    return app


class OptionsAllowMiddleware:
    """Pure ASGI: `Allow` on an OPTIONS answer lists every method the path serves.

    Litestar 2.x builds a path's automatic OPTIONS answer from the handlers registered for it
    first (litestar-org/litestar#4169, fixed in 3.0), so `OPTIONS /v1/feeds` said "OPTIONS, POST"
    without GET. Other requests pass straight through.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "OPTIONS":
            await self.app(scope, receive, send)
            return
        handler = scope.get("route_handler")
        routes = scope["litestar_app"].routes
        methods = next((r.methods for r in routes if isinstance(r, HTTPRoute) and handler in r.route_handlers), None)

        async def send_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and methods:
                headers = list(message.get("headers", []))
                if any(name.lower() == b"allow" for name, _ in headers):
                    allow = ", ".join(sorted(methods)).encode()
                    message["headers"] = [(n, v) for n, v in headers if n.lower() != b"allow"] + [(b"allow", allow)]
            await send(message)

        await self.app(scope, receive, send_allow)


def _admin_key_banner(key: NewApiKey) -> str:
    return (
        "\n"
        "  Glimpze created the default project and its admin API key (shown only this once):\n\n"
        f"      {key.key}\n\n"
        "  Use it as 'Authorization: Bearer <key>' on /v1. Lost it? Run 'glimpze keys create --name NAME'.\n"
    )


def setup_banner(base_url: str, token: str) -> str:
    return (
        "\n"
        "  No dashboard password is set yet. Open this one-time link to choose it:\n\n"
        f"      {base_url}/setup/{token}\n\n"
        "  (A new link is printed at every start until a password exists; 'glimpze admin reset-password'\n"
        "  prints one at any time.)\n"
    )


def _print(text: str) -> None:
    print(text, file=sys.stdout, flush=True)
