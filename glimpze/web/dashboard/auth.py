"""Sign-in pages: `/login` (form field `password`), `/logout`, and `/setup/{token}` to set the password."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery

from glimpze.accounts.admin import PASSWORD_MIN_CHARS
from glimpze.errors import GlimpzeError, NotFound, RateLimited
from glimpze.web.dashboard.web import (
    PUBLIC,
    client,
    error_text,
    form_of,
    glimpze_of,
    local_path,
    page,
    redirect,
    ui_of,
)

AnyRequest = Request[Any, Any, Any]


@get("/login", opt={PUBLIC: True}, include_in_schema=False)
async def login_page(request: AnyRequest, next: FromQuery[str | None] = None) -> Response[Any]:
    if request.state.get("viewer") is not None:
        return redirect(local_path(next))
    return await _login(request, next=local_path(next))


@post("/login", opt={PUBLIC: True}, include_in_schema=False)
async def login(request: AnyRequest) -> Response[Any]:
    form = await form_of(request)
    target = local_path(form["next"])
    glimpze, ui = glimpze_of(request), ui_of(request)
    try:
        session = await glimpze.admin.sign_in(form.raw("password"), client(request), request.headers.get("user-agent"))
    except RateLimited as exc:
        return await _login(request, next=target, error=exc.detail, status=429, headers=exc.headers)
    except GlimpzeError as exc:
        if exc.status >= 500:
            raise
        return await _login(request, next=target, error=exc.detail, status=401)
    response = redirect(target)
    response.cookies.append(ui.session_cookie_for(session))
    return response


async def _login(
    request: AnyRequest,
    *,
    next: str,
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    response = page(
        request,
        "login.html",
        title="Sign in",
        status=status,
        set_up=await glimpze_of(request).admin.has_password(),
        next=next,
        error=error,
    )
    response.headers.update(headers or {})
    return response


@post("/logout", include_in_schema=False)
async def logout(request: AnyRequest) -> Response[Any]:
    ui = ui_of(request)
    found = request.state.get("viewer")
    if found is not None:
        await ui.glimpze.admin.sign_out(found.session)
    response = redirect("/login")
    response.cookies.append(ui.clear_session_cookie())
    return response


@get("/setup/{token:str}", opt={PUBLIC: True}, include_in_schema=False)
async def setup_page(request: AnyRequest, token: FromPath[str]) -> Response[Any]:
    glimpze = glimpze_of(request)
    try:
        await glimpze.admin.check_setup_token(token, client(request))
    except (NotFound, RateLimited) as exc:
        return _invalid_link(request, exc)
    return _setup(request, token)


@post("/setup/{token:str}", opt={PUBLIC: True}, include_in_schema=False)
async def setup(request: AnyRequest, token: FromPath[str]) -> Response[Any]:
    form = await form_of(request)
    glimpze, ui = glimpze_of(request), ui_of(request)
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


def _setup(request: AnyRequest, token: str, *, error: str | None = None, status: int = 200) -> Response[Any]:
    return page(
        request,
        "setup.html",
        title="Set the password",
        status=status,
        token=token,
        error=error,
        min_chars=PASSWORD_MIN_CHARS,
    )


def _invalid_link(request: AnyRequest, exc: GlimpzeError) -> Response[Any]:
    response = page(request, "setup_invalid.html", title="Setup link not valid", status=exc.status, detail=exc.detail)
    response.headers.update(exc.headers)
    return response


ROUTES = [login_page, login, logout, setup_page, setup]
