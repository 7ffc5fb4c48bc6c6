"""`/a/{token}`: the page an Approve / Reject link in a notification opens, or a push button's.

GET only shows the approval and a button; the button's POST takes the action (DESIGN §7: a chat
app's link preview, which fetches the URL, must approve nothing). The token is the credential
(action_links.py): no sign-in, no cookies, and so no CSRF token either. A bad token counts
against the failed-authentication limiter. Pages are small, self-contained HTML: no scripts, no
external resources, not cacheable, not framable, and they send no Referer (the URL is a secret).
A button's link (push/buttons.py) redirects to its page (`view`), or shows its request (`http`)
and sends it on the button's POST.
"""

from __future__ import annotations

import html

from litestar import Response, Router, get, post
from litestar.params import FromPath

from glimpze.push.approvals import LinkView
from glimpze.push.buttons import ButtonView
from glimpze.web.common import AnyRequest, App, client_address

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}
STATUS = {"ok": 200, "done": 200, "invalid": 404, "expired": 410, "used": 409, "decided": 409, "blocked": 429}
VERBS = {"approve": ("Approve", "approved"), "reject": ("Reject", "rejected")}
STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f4f5;color:#18181b}
main{max-width:28rem;margin:10vh auto;padding:1.5rem;background:#fff;border-radius:12px}
.feed{color:#71717a;margin:0}h1{font-size:1.35rem;margin:.25rem 0 1rem}
button{font:inherit;font-weight:600;border:0;border-radius:8px;padding:.75rem 1.5rem;color:#fff;width:100%}
.approve{background:#15803d}.reject{background:#b91c1c}.note{color:#52525b}
@media (prefers-color-scheme:dark){body{background:#18181b;color:#f4f4f5}main{background:#27272a}}
"""


@get("/{token:str}", include_in_schema=False)
async def show_action(token: FromPath[str], request: AnyRequest, glimpze: App) -> Response[str]:
    """The confirmation page: what will be answered, and a button. Nothing changes here."""
    return await _answer(request, glimpze, token, take=False)


@post("/{token:str}", status_code=200, include_in_schema=False)
async def take_action(token: FromPath[str], request: AnyRequest, glimpze: App) -> Response[str]:
    """The page's button: take the link's action (once), recorded as `push`."""
    return await _answer(request, glimpze, token, take=True)


async def _answer(request: AnyRequest, glimpze: App, token: str, *, take: bool) -> Response[str]:
    client = client_address(request, glimpze)
    if glimpze.auth_failures.blocked(client) > 0:
        view = LinkView(state="blocked")
    elif glimpze.buttons.owns(token):
        return await _button(glimpze, token, take=take)
    else:
        view = await (glimpze.approvals.use_link(token) if take else glimpze.approvals.view_link(token))
        if view.state == "invalid":
            glimpze.auth_failures.failed(client)
    return Response(
        page(view), status_code=STATUS[view.state], media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS
    )


async def _button(glimpze: App, token: str, *, take: bool) -> Response[str]:
    view = await (glimpze.buttons.press(token) if take else glimpze.buttons.view(token))
    button = view.button
    if view.state == "ok" and button is not None and button.url is not None:
        return Response("", status_code=303, headers={**SECURITY_HEADERS, "Location": button.url})
    status = {"ok": 200, "done": 200, "failed": 502, "expired": 410}.get(view.state, 404)
    return Response(
        button_page(view), status_code=status, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS
    )


def button_page(view: ButtonView) -> str:
    """The page of an `http` button: its request and a button (ok), or how it went."""
    button = view.button
    if button is None:
        return _html(
            "This link is not valid",
            "<h1>This link is not valid</h1><p class=note>Check that the whole link was opened.</p>",
        )
    head = f"<h1>{_e(button.label)}</h1>"
    if view.state == "expired":
        return _html("Link expired", head + "<p>This link has expired.</p>")
    request = button.request
    target = f"<p class=note>{_e(request.method)} {_e(request.url)}</p>" if request is not None else ""
    if view.state == "ok":
        form = f"<form method=post><button type=submit class=approve>{_e(button.label)}</button></form>"
        return _html(f"{button.label}?", head + target + form + "<p class=note>Nothing is sent until you press it.</p>")
    verdict = "Sent" if view.state == "done" else "Failed"
    return _html(verdict, head + target + f"<p><strong>{verdict}:</strong> {_e(view.outcome or '')}</p>")


def page(view: LinkView) -> str:
    """The HTML of one page."""
    approval = view.approval
    verb, done = VERBS.get(view.action or "", ("Answer", "answered"))
    if approval is None:
        title = "Too many attempts" if view.state == "blocked" else "This link is not valid"
        text = "Try again in a minute." if view.state == "blocked" else "Check that the whole link was opened."
        return _html(title, f"<h1>{title}</h1><p class=note>{text}</p>")
    head = f"<p class=feed>{_e(approval.feed_name)}</p><h1>{_e(approval.description)}</h1>"
    if view.state == "ok":
        button = f"<form method=post><button type=submit class={view.action}>{verb}</button></form>"
        note = f"<p class=note>Requested {_e(approval.requested_at)}. Nothing is sent until you press {verb}.</p>"
        return _html(f"{verb}?", head + button + note)
    if view.state == "done":
        return _html(verb, head + f"<p><strong>{done.capitalize()}.</strong> Your answer is on its way.</p>")
    if view.state == "decided":
        by = _e(approval.decided_by or "someone")
        text = f"Already <strong>{_e(approval.status)}</strong> by {by} at {_e(approval.decided_at or '')}."
        return _html("Already decided", head + f"<p>{text}</p>")
    if view.state == "expired":
        return _html("Link expired", head + "<p>This link has expired. Answer from the dashboard or the API.</p>")
    return _html("Link already used", head + "<p>This link was already used.</p>")


def _html(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">'
        f"<title>{_e(title)} · Glimpze</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>"
    )


def _e(text: str) -> str:
    return html.escape(text, quote=True)


router = Router("/a", route_handlers=[show_action, take_action], include_in_schema=False)
