"""A form-filling client for the dashboard over httpx: sets the password through the setup link,
keeps the session cookie, and submits forms with the CSRF token of the page they are on."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import httpx

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_SETUP = re.compile(r"/setup/([A-Za-z0-9_-]+)")


def setup_token(announced: list[str]) -> str:
    for text in reversed(announced):
        if match := _SETUP.search(text):
            return match.group(1)
    raise AssertionError(f"no setup link announced in {announced!r}")


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def approval_event(description: str, callback: str | None = None) -> dict[str, Any]:
    """An approval event's body, with a POST callback to `callback` when given."""
    body: dict[str, Any] = {
        "schema_type": "approval",
        "content": {"description": description},
        "metadata": {"deployment_id": "deploy-123"},
    }
    if callback:
        body["callback"] = {"url": callback, "method": "POST"}
    return body


class Dash:
    """`await dash.open(path)` reads a page; `await dash.submit(path, fields, on=page)` posts a form."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.last: httpx.Response | None = None

    async def open(self, path: str, status: int = 200) -> httpx.Response:
        response = await self.client.get(path)
        assert response.status_code == status, f"GET {path}: {response.status_code}\n{response.text[:2000]}"
        self.last = response
        return response

    async def submit(self, path: str, fields: dict[str, Any] | None = None, *, on: str | None = None) -> httpx.Response:
        """POST a form from the page `on` (default: the last page read), with its CSRF token."""
        page = await self.client.get(on) if on else self.last
        assert page is not None, "open a page first"
        data = {"csrf": csrf_of(page.text), **(fields or {})}
        return await self.client.post(path, data=data)

    async def set_up(self, announced: list[str], password: str = PASSWORD) -> None:
        token = setup_token(announced)
        await self.open(f"/setup/{token}")
        response = await self.submit(f"/setup/{token}", {"password": password, "confirm": password})
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/"

    async def sign_in(self, password: str = PASSWORD) -> httpx.Response:
        await self.open("/login")
        return await self.submit("/login", {"password": password})

    async def follow(self, response: httpx.Response, status: int = 200) -> httpx.Response:
        assert response.status_code == 303, f"{response.status_code}: {response.text[:2000]}"
        return await self.open(response.headers["location"], status)


class PageAudit(HTMLParser):
    """What a page's HTML breaks of the dashboard's rules: inline scripts, handlers and styles, form
    controls without a label, and POST forms whose first field is not the CSRF token."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.labels: set[str] = set()
        self.controls: list[tuple[str, dict[str, str | None]]] = []
        self._in_script_without_src = False
        self._post_form: str | None = None  # the action of a POST form whose first field is still to come

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and not a.get("src"):
            self.problems.append("inline <script>")
        for name in a:
            if name.startswith("on"):
                self.problems.append(f"inline handler {name} on <{tag}>")
        if "style" in a:
            self.problems.append(f"inline style on <{tag}>")
        if tag == "label" and a.get("for"):
            self.labels.add(a["for"] or "")
        if tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "submit", "button"):
            self.controls.append((tag, a))
        if tag in ("input", "select", "textarea", "button") and self._post_form is not None:
            if not (tag == "input" and a.get("type") == "hidden" and a.get("name") == "csrf" and a.get("value")):
                self.problems.append(f"POST form to {self._post_form} without its CSRF token first")
            self._post_form = None
        if tag == "form" and (a.get("method") or "").lower() == "post":
            self._post_form = a.get("action") or ""

    def unlabelled(self, wrapped: set[str]) -> list[str]:
        return [
            f"<{tag} name={a.get('name')!r}>"
            for tag, a in self.controls
            if not a.get("aria-label") and a.get("id") not in self.labels and a.get("name") not in wrapped
        ]


def audit(html: str) -> list[str]:
    parser = PageAudit()
    parser.feed(html)
    # Checkboxes and radios sit inside their <label class="check">: collect the names they carry.
    wrapped = set(re.findall(r'<label class="check">\s*<input[^>]*name="([^"]+)"', html))
    return parser.problems + [f"unlabelled {c}" for c in parser.unlabelled(wrapped)]
