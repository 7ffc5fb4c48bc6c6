"""The dashboard: server-rendered pages (Jinja2) for widgets, feeds, approvals, webhooks,
conversations and settings (push included), installable as a PWA. It reads and writes through the
same services as the API."""

from __future__ import annotations

from litestar import Router
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from glimpze.web.dashboard import (
    approvals,
    auth,
    conversations,
    devices,
    feeds,
    home,
    push,
    pwa,
    screens,
    settings,
    webhooks,
    widgets,
)
from glimpze.web.dashboard.web import (
    DEPENDENCIES,
    EXCEPTION_HANDLERS,
    TEMPLATES,
    SecurityHeaders,
    Ui,
    before_request,
    unknown_path,
)

__all__ = ["Ui", "routers", "template_config", "unknown_path"]


def routers() -> list[Router]:
    """The dashboard's routes: pages (behind the session and CSRF checks, with the `viewer` and `ui`
    dependencies) and the static files."""
    pages = Router(
        "/",
        route_handlers=[
            *auth.ROUTES,
            *home.ROUTES,
            *widgets.ROUTES,
            *feeds.ROUTES,
            *approvals.ROUTES,
            *webhooks.ROUTES,
            *conversations.ROUTES,
            *settings.ROUTES,
            *push.ROUTES,
            *screens.ROUTES,
            *devices.ROUTES,
            *pwa.ROUTES,
        ],
        before_request=before_request,
        dependencies=DEPENDENCIES,
        middleware=[SecurityHeaders],
        exception_handlers=EXCEPTION_HANDLERS,
        include_in_schema=False,
    )
    return [pages, pwa.static_router]


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Jinja2 over `templates/`, trimming the blocks' whitespace; `tojson` keeps the keys' order."""
    return TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=_configure)


def _configure(engine: JinjaTemplateEngine) -> None:
    env = engine.engine
    env.trim_blocks = True
    env.lstrip_blocks = True
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "ensure_ascii": False}
