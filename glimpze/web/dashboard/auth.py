"""Sign-in pages: `/login` (form field `password`), `/logout`, and `/setup/{token}` to set the password."""

from __future__ import annotations

from litestar import get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from glimpze.accounts.admin import PASSWORD_MIN_CHARS
from glimpze.errors import GlimpzeError, NotFound, RateLimited
from glimpze.services import Services
from glimpze.web.common import AnyRequest, App
from glimpze.web.dashboard.web import (
    PUBLIC,
    DashboardUi,
    client,
    error_text,
    form_of,
    local_path,
    page,
    redirect,
    viewer_of,
)


@get("/login", opt={PUBLIC: True})
async def login_page(request: AnyRequest, glimpze: App, next: FromQuery[str | None] = None) -> Template | Redirect:
    if viewer_of(request) is not None:
        return redirect(local_path(next))
    return await _login(request, glimpze, next=local_path(next))


@post("/login", opt={PUBLIC: True})
async def login(request: AnyRequest, glimpze: App, ui: DashboardUi) -> Template | Redirect:
    form = await form_of(request)
    target = local_path(form["next"])
    try:
        session = await glimpze.admin.sign_in(form.raw("password"), client(request), request.headers.get("user-agent"))
    except RateLimited as exc:
        return await _login(request, glimpze, next=target, error=exc.detail, status=429, headers=exc.headers)
    except GlimpzeError as exc:
        if exc.status >= 500:
            raise
        return await _login(request, glimpze, next=target, error=exc.detail, status=401)
    response = redirect(target)
    response.cookies.append(ui.session_cookie_for(session))
    return response


async def _login(
    request: AnyRequest,
    glimpze: Services,
    *,
    next: str,
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Template:
    response = page(
        request,
        "login.html",
        title="Sign in",
        status=status,
        set_up=await glimpze.admin.has_password(),
        next=next,
        error=error,
    )
    response.headers.update(headers or {})
    return response


@post("/logout")
async def logout(request: AnyRequest, ui: DashboardUi) -> Redirect:
    found = viewer_of(request)
    if found is not None:
        await ui.glimpze.admin.sign_out(found.session)
    response = redirect("/login")
    response.cookies.append(ui.clear_session_cookie())
    return response


@get("/setup/{token:str}", opt={PUBLIC: True})
async def setup_page(request: AnyRequest, glimpze: App, token: FromPath[str]) -> Template:
    try:
        await glimpze.admin.check_setup_token(token, client(request))
    except (NotFound, RateLimited) as exc:
        return _invalid_link(request, exc)
    return _setup(request, token)


@post("/setup/{token:str}", opt={PUBLIC: True})
async def setup(request: AnyRequest, glimpze: App, ui: DashboardUi, token: FromPath[str]) -> Template | Redirect:
    form = await form_of(request)
    try:
        session = await glimpze.admin.set_password(
            token, form.raw("password"), form.raw("confirm"), client(request), request.headers.get("user-agent")
        )
    except (NotFound, RateLimited) as exc:
        return _invalid_link(request, exc)
    except GlimpzeError as exc:
        if exc.status >= 500:
            raise
        return _setup(request, token, error=error_text(exc), status=422)
    response = redirect("/")
    response.cookies.append(ui.session_cookie_for(session))
    return response


def _setup(request: AnyRequest, token: str, *, error: str | None = None, status: int = 200) -> Template:
    return page(
        request,
        "setup.html",
        title="Set the password",
        status=status,
        token=token,
        error=error,
        min_chars=PASSWORD_MIN_CHARS,
    )


def _invalid_link(request: AnyRequest, exc: GlimpzeError) -> Template:
    response = page(request, "setup_invalid.html", title="Setup link not valid", status=exc.status, detail=exc.detail)
    response.headers.update(exc.headers)
    return response


ROUTES = [login_page, login, logout, setup_page, setup]
