"""The dashboard's request plumbing: who is signed in, CSRF, security headers, pages, notices, errors.

Every dashboard route runs `before_request` first. On a POST it checks the CSRF token before
anything else (403): the form field `csrf` (or the `X-CSRF-Token` header of a script's fetch)
must equal the session's token, or, on the sign-in and setup forms, the pre-session cookie's.
Then a page without a session answers 303 to /login (routes marked `PUBLIC` excepted).
`/v1`, `/ingest` and `/widget` are not dashboard routes: they take Bearer credentials, not cookies.

Cookies are HttpOnly and SameSite=Lax; Secure (with the `__Host-` prefix) when `public_url` is
https or TLS is on. Every dashboard response gets the security headers (CSP without inline
scripts, `frame-ancestors 'none'`, nosniff, Referrer-Policy), and HTML is never cached.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import quote, urlsplit

import msgspec
from litestar import Response
from litestar.datastructures import Cookie, FormMultiDict
from litestar.di import NamedDependency, Provide
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.response import Redirect, Template
from litestar.types import ASGIApp, ExceptionHandlersMap, Message, Receive, Scope, Send

from glimpze.accounts.admin import SESSION_SECONDS, DashboardSession
from glimpze.errors import GlimpzeError
from glimpze.ids import same
from glimpze.services import Services
from glimpze.validation import every_field_error, failed, field_error
from glimpze.web.common import AnyRequest, client_address
from glimpze.web.problems import http_error

T = TypeVar("T")

log = logging.getLogger("glimpze.dashboard")

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

PUBLIC = "dashboard_public"  # route opt: no session needed (sign-in, setup, PWA files)
STREAM = "dashboard_stream"  # route opt: answer 401 instead of a redirect (EventSource, fetch)
FRAGMENT = "dashboard_fragment"  # route opt: a piece of a page for the script (no navigation counts)
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
REDRAW_HEADER = "x-glimpze-redraw"  # sent by the script when it reads a page again to redraw its live part
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
NOTICE_SECONDS = 600
NOTICE_SESSIONS = 1000

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # Custom widgets may be hosted images (a 302 from the widget route), on any host.
        "img-src 'self' data: blob: https: http:",
        "connect-src 'self'",
        "manifest-src 'self'",
        "worker-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),  # setup links and read tokens sit in URLs
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]


@dataclass(frozen=True, slots=True)
class ShownKey:
    """A feed's write key, shown once: its notice opens the feed page's quick-start dialog."""

    feed_id: str
    write_key: str
    rotated: bool = False


@dataclass(slots=True)
class Notice:
    """A message for the next page a session opens; `secret` is shown once, with a copy button."""

    text: str
    kind: Literal["success", "error", "info"] = "success"
    secret: str | None = None
    secret_label: str = ""
    shown_key: ShownKey | None = None


class Notices:
    """One-time notices per session, in memory (a restart loses at most an unread message)."""

    def __init__(self) -> None:
        self._by_session: OrderedDict[str, tuple[float, list[Notice]]] = OrderedDict()

    def add(self, session_key: str, notice: Notice) -> None:
        now = time.monotonic()
        _, notices = self._by_session.pop(session_key, (now, []))
        notices.append(notice)
        self._by_session[session_key] = (now, notices)
        while len(self._by_session) > NOTICE_SESSIONS:
            self._by_session.popitem(last=False)

    def take(self, session_key: str) -> list[Notice]:
        at, notices = self._by_session.pop(session_key, (0.0, []))
        return notices if time.monotonic() - at < NOTICE_SECONDS else []


class Ui:
    """What the dashboard keeps beside the services: notices, cookie names, the assets' version."""

    def __init__(self, glimpze: Services) -> None:
        self.glimpze = glimpze
        self.notices = Notices()
        self.secure = glimpze.config.https  # Secure cookies over https (DESIGN §7, Dashboard)
        prefix = "__Host-" if self.secure else ""
        self.session_cookie = prefix + "glimpze_session"
        self.csrf_cookie = prefix + "glimpze_csrf"
        self.asset_version = asset_version()
        self._default_project: str | None = None

    async def default_project(self) -> str:
        if self._default_project is None:
            self._default_project = await self.glimpze.keys.default_project_id()
        return self._default_project

    def cookie(self, name: str, value: str, max_age: int | None) -> Cookie:
        return Cookie(
            key=name, value=value, max_age=max_age, path="/", secure=self.secure, httponly=True, samesite="lax"
        )

    def session_cookie_for(self, session: DashboardSession) -> Cookie:
        assert session.token is not None
        return self.cookie(self.session_cookie, session.token, SESSION_SECONDS)

    def clear_session_cookie(self) -> Cookie:
        return self.cookie(self.session_cookie, "", 0)


def asset_version() -> str:
    """A short hash of the static files: part of their URLs, so browsers fetch new ones after an update."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:10]


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in administrator, looking at one project."""

    session: DashboardSession
    project_id: str

    @property
    def csrf(self) -> str:
        return self.session.csrf


def ui_of(request: AnyRequest) -> Ui:
    """The dashboard's `Ui`, kept in the app's state (also the `ui` dependency)."""
    ui: Ui = request.app.state.ui
    return ui


def viewer_of(request: AnyRequest) -> Viewer | None:
    """Who is signed in, as `before_request` found it (None on a public page without a session)."""
    found: Viewer | None = request.state.get("viewer")
    return found


def signed_in(request: AnyRequest) -> Viewer:
    """The `viewer` dependency of a page behind the session: `before_request` has already answered
    a request without one (303 to /login, or 401), so a public page must not ask for it."""
    found = viewer_of(request)
    if found is None:
        raise RuntimeError(f"{request.url.path} asks for the viewer but is public: it has no session")
    return found


# Handler parameters the dashboard's router fills, after `before_request` (with `glimpze: App`, the
# services, from the app): `viewer: SignedIn` on pages behind the session, `ui: DashboardUi` anywhere.
SignedIn = NamedDependency[Viewer]
DashboardUi = NamedDependency[Ui]
DEPENDENCIES = {
    "viewer": Provide(signed_in, sync_to_thread=False),
    "ui": Provide(ui_of, sync_to_thread=False),
}


def client(request: AnyRequest) -> str:
    return client_address(request, ui_of(request).glimpze)


async def before_request(request: AnyRequest) -> Template | Response[str] | Redirect | None:
    """CSRF first on every unsafe method, then the sign-in check (see the module docstring)."""
    ui = ui_of(request)
    opt = request.route_handler.opt
    session = await ui.glimpze.admin.session(request.cookies.get(ui.session_cookie))
    found = None
    if session is not None:
        found = Viewer(session, session.project_id or await ui.default_project())
    request.state.viewer = found
    if found is not None and not opt.get(STREAM) and not opt.get(FRAGMENT):
        request.state.counts = await counts(ui.glimpze, found.project_id)
    if request.method not in SAFE_METHODS and not await _csrf_ok(request, ui, found, bool(opt.get(PUBLIC))):
        return error_page(
            request,
            403,
            "This form has expired",
            "The page was open too long, or the request did not come from this dashboard. "
            "Go back, reload the page and try again.",
        )
    if found is None and not opt.get(PUBLIC):
        if opt.get(STREAM):
            return Response("Sign in first.", status_code=401, media_type="text/plain")
        target = "/login"
        if request.method == "GET" and request.url.path != "/":
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            target += "?next=" + quote(path, safe="")
        return Redirect(target, status_code=303)
    return None


async def counts(glimpze: Services, project_id: str) -> dict[str, int]:
    """What the navigation counts: approvals waiting, and conversations with unread visitor messages."""
    return {
        "approvals": await glimpze.approvals.pending_count(project_id),
        "conversations": await glimpze.inbox.unread_count(project_id),
    }


async def _csrf_ok(request: AnyRequest, ui: Ui, found: Viewer | None, public: bool) -> bool:
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            given = (await request.form()).get(CSRF_FIELD)
    if not isinstance(given, str) or not given:
        return False
    if found is not None and same(given, found.csrf):
        return True
    cookie = request.cookies.get(ui.csrf_cookie)
    return public and bool(cookie) and same(given, cookie or "")


def csrf_token(request: AnyRequest) -> tuple[str, Cookie | None]:
    """The token forms on this page carry, and the pre-session cookie to set when it is new."""
    found = viewer_of(request)
    if found is not None:
        return found.csrf, None
    ui = ui_of(request)
    existing = request.cookies.get(ui.csrf_cookie)
    if existing and 20 <= len(existing) <= 100:
        return existing, None
    token = secrets.token_urlsafe(24)
    return token, ui.cookie(ui.csrf_cookie, token, None)


def page(
    request: AnyRequest,
    template: str,
    *,
    title: str,
    section: str = "",
    status: int = 200,
    cookies: list[Cookie] | None = None,
    notices: list[Notice] | None = None,
    **context: object,
) -> Template:
    """An HTML page from `template` with what every page needs (viewer, CSRF token, the session's
    notices unless the handler took them itself)."""
    ui = ui_of(request)
    found = viewer_of(request)
    token, cookie = csrf_token(request)
    counts: dict[str, int] = request.state.get("counts") or {}
    if notices is None:
        # A page's script redrawing its live part reads the page again: that must not eat the notices
        # meant for the page the browser is about to show (after a form's 303, say).
        redraw = request.headers.get(REDRAW_HEADER) is not None
        notices = ui.notices.take(found.session.key) if found is not None and not redraw else []
    base = {
        "title": title,
        "section": section,
        "viewer": found,
        "counts": counts,
        "csrf": token,
        "notices": notices,
        "v": ui.asset_version,
        "base_url": ui.glimpze.config.base_url,
        "public_url_missing": ui.glimpze.config.public_url is None,
    }
    all_cookies = list(cookies or []) + ([cookie] if cookie else [])
    return Template(template_name=template, context={**base, **context}, status_code=status, cookies=all_cookies)


def notify(
    request: AnyRequest,
    text: str,
    kind: Literal["success", "error", "info"] = "success",
    *,
    secret: str | None = None,
    secret_label: str = "",
    shown_key: ShownKey | None = None,
) -> None:
    """A notice for the next page this session opens (after the form's 303)."""
    found = viewer_of(request)
    assert found is not None, "notices are kept per session"
    ui_of(request).notices.add(found.session.key, Notice(text, kind, secret, secret_label, shown_key))


def redirect(path: str) -> Redirect:
    return Redirect(path, status_code=303)


async def attempt(
    request: AnyRequest, action: Callable[[], Awaitable[str | None]], *, then: str, failed: str = ""
) -> Redirect:
    """Run a form's action and go to `then` (303), with a notice: the text the action returns, or
    what the service refused (`failed` before it). A missing object or a server fault is a page."""
    try:
        done = await action()
    except GlimpzeError as exc:
        if exc.status >= 500 or exc.status == 404:
            raise
        notify(request, f"{failed} {error_text(exc)}".strip(), "error")
    else:
        if done:
            notify(request, done)
    return redirect(then)


def local_path(target: str | None, default: str = "/") -> str:
    """`target` when it is a path on this site (after sign-in), else `default`: never another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    return default if parts.scheme or parts.netloc else target


# What a form's fields are called on the page, for error messages (the API's field names are not).
FIELD_LABELS = {
    "url": "The URL",
    "name": "The name",
    "password": "The password",
    "confirm": "The repeated password",
    "current": "The current password",
    "headers": "The custom headers",
    "events": "The events",
    "description": "The description",
    "timezone": "The time zone",
    "start": "The start time",
    "end": "The end time",
    "snoozed_until": "The snooze time",
    "text": "The text",
    "to_team": "The team",
    "to_assignee": "The person",
    "reason": "The reason",
    "resolution": "The resolution",
    "origins": "The widget origins",
    "plan": "The plan",
    "schema_type": "The schema",
    "status": "The status",
    "expected_seconds": "Expected every",
    "size": "The tile size",
}
_VERBS = ("must", "is", "are", "does", "do", "has", "should", "can", "was")


def field_name(path: str) -> str:
    """The form field an error path names: `$.headers` and `$.origins[2]` → headers, origins."""
    name = path.removeprefix("$.").removeprefix("header.").removeprefix("query.")
    return name.split("[", 1)[0].split(".", 1)[0]


def field_member(path: str) -> str:
    """What an error path names inside its field: `$.headers['X-Token']` → X-Token, `$.origins[2]` → [2]."""
    name = path.removeprefix("$.").removeprefix("header.").removeprefix("query.")
    rest = name[len(field_name(path)) :].removeprefix(".")
    return rest[2:-2] if rest.startswith("['") and rest.endswith("']") else rest


def field_errors(exc: GlimpzeError) -> dict[str, str]:
    """A service error's messages by form field, to show beside each field ("form": the rest); an
    error about one member of a field (a header, an origin) names it."""
    errors: dict[str, str] = {}
    for error in exc.errors:
        member = field_member(error.path)
        errors.setdefault(field_name(error.path) or "form", f"{member}: {error.message}" if member else error.message)
    return errors or {"form": exc.detail}


def error_text(exc: GlimpzeError) -> str:
    """A service error as one sentence for a person: the field's label on the page, then what is wrong."""
    if exc.errors:
        return " ".join(_labelled(e.path, e.message) for e in exc.errors)
    return exc.detail


def field_label(path: str) -> str:
    name, member = field_name(path), field_member(path)
    label = FIELD_LABELS.get(name) or (name.replace("_", " ").capitalize() if name else "The value")
    return f"{label} ({member})" if member else label


def _labelled(path: str, message: str) -> str:
    label = field_label(path)
    joiner = " " if message.split(" ", 1)[0] in _VERBS else ": "
    return f"{label}{joiner}{message.rstrip('.')}."


def convert(values: Mapping[str, object], type_: type[T]) -> T:
    """Form values into a service's input Struct, checked as strictly as the API decodes JSON."""
    try:
        return msgspec.convert(values, type_)
    except msgspec.ValidationError as exc:
        first = field_error(str(exc), type_)
        raise failed([first, *every_field_error(msgspec.json.encode(values), type_)]) from None


async def form_of(request: AnyRequest) -> Form:
    return Form(await request.form())


class Form:
    """The submitted form's fields as strings (absent fields are empty)."""

    def __init__(self, data: FormMultiDict) -> None:
        self.data = data

    def __getitem__(self, name: str) -> str:
        value = self.data.get(name)
        return value.strip() if isinstance(value, str) else ""

    def raw(self, name: str) -> str:
        value = self.data.get(name)
        return value if isinstance(value, str) else ""

    def all(self, name: str) -> list[str]:
        return [v.strip() for v in self.data.getall(name, []) if isinstance(v, str) and v.strip()]

    def checked(self, name: str) -> bool:
        return self[name] in ("on", "true", "1", "yes")

    def values(self) -> dict[str, str]:
        return {key: self.raw(key) for key in self.data if key != CSRF_FIELD}


# Errors as pages


def error_page(request: AnyRequest, status: int, heading: str, detail: str) -> Template:
    return page(request, "error.html", title=heading, status=status, heading=heading, detail=detail)


def glimpze_error_page(request: AnyRequest, exc: GlimpzeError) -> Template:
    if exc.status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc.detail)
    response = error_page(request, exc.status, exc.title, error_text(exc))
    response.headers.update(exc.headers)
    return response


def http_error_page(request: AnyRequest, exc: HTTPException) -> Template:
    status = exc.status_code
    if status == 404:
        return error_page(request, 404, "Not found", "There is nothing here. It may have been deleted.")
    if status == 405:
        return error_page(request, 405, "Not allowed", f"{request.method} is not allowed here.")
    detail = exc.detail if isinstance(exc.detail, str) else "The request could not be handled."
    return error_page(request, status, "The request could not be handled", detail)


def internal_error_page(request: AnyRequest, exc: Exception) -> Template:
    log.exception("unhandled error in %s %s", request.method, request.url.path)
    return error_page(request, 500, "Something went wrong", "The server hit an unexpected error; it has been logged.")


API_PREFIXES = ("/v1/", "/ingest/", "/widget/", "/w/", "/s/", "/api/", "/media/", "/schema", "/healthz", "/metrics")


def unknown_path(request: AnyRequest, exc: HTTPException) -> Response[bytes]:
    """The app's answer to a path no route has: a page for a browser asking for one outside the
    API's paths, problem+json everywhere else (API clients keep their one error shape)."""
    accepts_html = "text/html" in request.headers.get("accept", "")
    if not accepts_html or request.url.path.startswith(API_PREFIXES):
        return http_error(request, exc)
    response = error_page(request, exc.status_code, "Not found", "There is no page here.")
    response.headers.update({name.decode(): value.decode() for name, value in SECURITY_HEADERS})
    return response


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    GlimpzeError: glimpze_error_page,
    HTTPException: http_error_page,
    Exception: internal_error_page,
}


class SecurityHeaders:
    """Pure ASGI middleware: the security headers on every dashboard response, and no caching of HTML."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        extra = SECURITY_HEADERS  # HSTS, when on, comes from tls.HstsMiddleware on every response

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers.extend(pair for pair in extra if pair[0] not in present)
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if content_type.startswith(b"text/html") and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
