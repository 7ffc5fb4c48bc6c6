"""Action buttons on pushes: a page to open, or an HTTP request Glimpze sends once a person taps it.

A message in ntfy's dialect may carry `view` and `http` actions (feeds/ntfy.py); they become its
push's buttons, stored with the push (`pushes.actions`). A notification only opens pages of this
site (the service worker's rule), so each button is a signed, expiring link (action_links.py,
actions `b0`…`b2`): a `view` button's link redirects to its page; an `http` button's link shows a
confirmation page whose POST sends the request — through the SSRF guard, within the push timeout —
and shows the status it got. Unlike an approval's links, a button may be pressed again until its
link expires, as an ntfy button can.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import msgspec

from glimpze.clock import Clock
from glimpze.delivery.ssrf import refused_reason
from glimpze.push.action_links import BUTTON_ACTIONS, ActionLinks
from glimpze.store.sql import Store

MAX_BUTTONS = len(BUTTON_ACTIONS)
SQL_BUTTONS = "SELECT actions FROM pushes WHERE event_id = ? AND actions IS NOT NULL ORDER BY seq DESC LIMIT 1"


class HttpRequest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What an `http` button sends."""

    url: str
    method: str = "POST"
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: str = ""


class Button(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One action button: it opens `url`, or sends `request`."""

    label: str
    url: str | None = None
    request: HttpRequest | None = None


_BUTTONS = msgspec.json.Decoder(list[Button])


@dataclass(frozen=True, slots=True)
class ButtonView:
    """What a button's link page shows: ok (ready), done or failed (pressed), invalid, expired."""

    state: str
    button: Button | None = None
    outcome: str | None = None


class Buttons:
    """Opens and presses the links of push buttons."""

    def __init__(
        self,
        db: Store,
        clock: Clock,
        links: ActionLinks,
        transport: Callable[[], httpx.AsyncBaseTransport],
        timeout: float,
    ) -> None:
        self.db = db
        self.clock = clock
        self.links = links
        self.transport = transport
        self.timeout = timeout

    def owns(self, token: str) -> bool:
        """Whether `token` is a button's link (else it may be an approval's)."""
        link = self.links.read(token)
        return link is not None and link.action in BUTTON_ACTIONS

    async def view(self, token: str) -> ButtonView:
        """The button behind a link, if the link holds and has not expired (nothing is sent)."""
        link = self.links.read(token)
        if link is None or link.action not in BUTTON_ACTIONS:
            return ButtonView("invalid")
        stored = await self.db.fetch_value(SQL_BUTTONS, (link.event_id,))
        buttons = [] if stored is None else _BUTTONS.decode(stored)
        index = BUTTON_ACTIONS.index(link.action)
        if index >= len(buttons):
            return ButtonView("invalid")
        if link.expires_at <= self.clock.now():
            return ButtonView("expired", buttons[index])
        return ButtonView("ok", buttons[index])

    async def press(self, token: str) -> ButtonView:
        """Send an `http` button's request; the page says how the target answered."""
        view = await self.view(token)
        request = view.button.request if view.button is not None else None
        if view.state != "ok" or request is None:
            return view
        try:
            async with httpx.AsyncClient(transport=self.transport(), timeout=self.timeout, trust_env=False) as client:
                answer = await client.request(
                    request.method, request.url, headers=request.headers, content=request.body.encode()
                )
        except httpx.HTTPError as exc:
            reason = refused_reason(exc) or str(exc) or type(exc).__name__
            return ButtonView("failed", view.button, reason[:300])
        state = "done" if answer.is_success else "failed"
        return ButtonView(state, view.button, f"{answer.status_code} {answer.reason_phrase}".strip())
