"""Settings: API keys (created and rotated secrets shown once; revoke; last use), the widget origins,
the admin password, and signing out every browser."""

from __future__ import annotations

from litestar import get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from glimpze.accounts.admin import PASSWORD_MIN_CHARS
from glimpze.accounts.keys import DEFAULT_ROTATION_GRACE_SECONDS, ApiKey
from glimpze.errors import GlimpzeError
from glimpze.services import Services
from glimpze.store.pagination import MAX_LIMIT, all_pages
from glimpze.web.common import AnyRequest, App
from glimpze.web.dashboard.web import (
    DashboardUi,
    Notice,
    SignedIn,
    attempt,
    client,
    error_text,
    form_of,
    notify,
    page,
    redirect,
)


async def _all_keys(glimpze: Services, project_id: str) -> list[ApiKey]:
    return await all_pages(lambda after: glimpze.keys.page(project_id, after=after, limit=MAX_LIMIT))


@get("/settings")
async def settings_page(request: AnyRequest, glimpze: App, viewer: SignedIn) -> Template:
    project = await glimpze.keys.get_project(viewer.project_id)
    return page(
        request,
        "settings.html",
        title="Settings",
        section="settings",
        project=project,
        projects=[(p.id, p.name) for p in await glimpze.keys.list_projects()],
        keys=await _all_keys(glimpze, viewer.project_id),
        origins=await glimpze.settings.widget_origins(viewer.project_id),
        grace_hours=DEFAULT_ROTATION_GRACE_SECONDS // 3600,
        min_chars=PASSWORD_MIN_CHARS,
    )


@post("/settings/keys")
async def create_key(request: AnyRequest, glimpze: App, viewer: SignedIn) -> Redirect:
    form = await form_of(request)

    async def action() -> None:
        key = await glimpze.keys.create(viewer.project_id, form["name"])
        notify(
            request,
            f"Created the API key “{key.name}”. It is shown only now: copy it.",
            secret=key.key,
            secret_label="API key",
        )

    return await attempt(request, action, then="/settings#keys")


@post("/settings/keys/{key_id:str}/rotate")
async def rotate_key(request: AnyRequest, glimpze: App, viewer: SignedIn, key_id: FromPath[str]) -> Redirect:

    async def action() -> None:
        key = await glimpze.keys.rotate(viewer.project_id, key_id)
        hours = DEFAULT_ROTATION_GRACE_SECONDS // 3600
        text = f"Made a new secret for “{key.name}”. The old one keeps working for {hours} hours."
        notify(request, text + " The new one is shown only now:", secret=key.key, secret_label="API key")

    return await attempt(request, action, then="/settings#keys")


@post("/settings/keys/{key_id:str}/revoke")
async def revoke_key(request: AnyRequest, glimpze: App, viewer: SignedIn, key_id: FromPath[str]) -> Redirect:

    async def action() -> str:
        key = await glimpze.keys.get(viewer.project_id, key_id)
        await glimpze.keys.revoke(viewer.project_id, key_id)
        return f"Revoked the API key “{key.name}”; it no longer works."

    return await attempt(request, action, then="/settings#keys")


@post("/settings/widget-origins")
async def set_origins(request: AnyRequest, glimpze: App, viewer: SignedIn) -> Redirect:
    form = await form_of(request)
    given = [line.strip() for line in form.raw("origins").splitlines() if line.strip()]

    async def action() -> str:
        saved = await glimpze.settings.set_widget_origins(viewer.project_id, given)
        return f"Saved {len(saved)} widget origin{'s' if len(saved) != 1 else ''}."

    return await attempt(request, action, then="/settings#origins")


@post("/settings/project")
async def switch_project(request: AnyRequest, glimpze: App, viewer: SignedIn) -> Redirect:
    """Look at another project (made with `glimpze projects create`) in this browser."""
    form = await form_of(request)

    async def action() -> str:
        project = await glimpze.keys.get_project(form["project"])
        await glimpze.admin.set_project(viewer.session, project.id)
        return f"Now showing the project “{project.name}”."

    return await attempt(request, action, then="/settings")


@post("/settings/password")
async def change_password(request: AnyRequest, glimpze: App, ui: DashboardUi) -> Redirect:
    form = await form_of(request)
    try:
        session = await glimpze.admin.change_password(
            form.raw("current"),
            form.raw("password"),
            form.raw("confirm"),
            client(request),
            request.headers.get("user-agent"),
        )
    except GlimpzeError as exc:
        if exc.status >= 500:
            raise
        notify(request, f"The password was not changed. {error_text(exc)}", "error")
        return redirect("/settings#password")
    # Every session ended with the change; this browser continues in a new one.
    ui.notices.add(session.key, Notice("Changed the password. Every other browser is signed out."))
    response = redirect("/settings#password")
    response.cookies.append(ui.session_cookie_for(session))
    return response


@post("/settings/sign-out-everywhere")
async def sign_out_everywhere(ui: DashboardUi) -> Redirect:
    await ui.glimpze.admin.sign_out_everywhere()
    response = redirect("/login")
    response.cookies.append(ui.clear_session_cookie())
    return response


ROUTES = [
    settings_page,
    create_key,
    rotate_key,
    revoke_key,
    set_origins,
    switch_project,
    change_password,
    sign_out_everywhere,
]
