"""An example website that embeds the Glimpze widget, with the backend route that mints its tokens.

For development and tests only; it uses the standard library and nothing of Glimpze:

    # allow this site's origin once, then run it with an API key of the project
    curl -X PUT http://127.0.0.1:8080/v1/settings/widget-origins -H "Authorization: Bearer gzp_…" \\
         -H "Content-Type: application/json" -d '{"origins": ["http://127.0.0.1:8000"]}'
    GLIMPZE_API_KEY=gzp_… python examples/widget-host/server.py --glimpze-url http://127.0.0.1:8080

and open http://127.0.0.1:8000. Routes:

    GET  /                the shop's page with the widget; `?hostile` adds a stylesheet that tries to
                          hide and restyle everything, `?plain` leaves the widget out
    POST /glimpze-token   the token endpoint the widget calls (`data-token-url`): mints a widget token
                          for this browser's visitor with POST /v1/widget-tokens
    GET  /landing/NAME    a CTA destination: checks the signed context with POST /v1/ctas/verify

The page sends a strict Content-Security-Policy (no inline scripts or styles) to show what a site
needs to allow for the widget: Glimpze's origin in `script-src` and `connect-src`, nothing else.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from http import cookies
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

VISITOR_COOKIE = "demo_visitor"

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Acme Shop</title>
<link rel="stylesheet" href="/site.css">{hostile}
</head>
<body>
<header><h1>Acme Shop</h1><nav><a href="/">Home</a> · <a href="/?hostile">Hostile CSS</a></nav></header>
<main>
  <p id="intro">Solar-powered garden lights, shipped anywhere in Europe.</p>
  <button id="host-button" type="button">Add to cart</button>
  <div class="product"><h2>Garden light, pack of 4</h2><p>€ 39 · free returns</p></div>
</main>
{widget}
</body>
</html>
"""
WIDGET_TAG = (
    '<script src="{glimpze}/widget.js" data-token-url="/glimpze-token" data-title="Acme support" '
    'data-greeting="Questions about an order or our lights? Ask here." defer></script>'
)
SITE_CSS = """
body { font: 16px/1.5 Georgia, serif; margin: 0 auto; max-width: 46rem; padding: 1rem; color: #222; }
header { display: flex; justify-content: space-between; align-items: baseline; }
#host-button { background: #16a34a; color: #fff; border: 0; border-radius: 4px; padding: 0.5rem 1rem; }
.product { border: 1px solid #ddd; padding: 0 1rem; margin-top: 1rem; }
"""
# What a careless or hostile page might do; the widget must look and work the same.
HOSTILE_CSS = """
body * { display: none !important; }
button, div { all: unset; }
* { font-family: "Comic Sans MS", cursive !important; color: red !important; }
html { font-size: 8px; }
:root { --gz-accent: red; }
glimpze-widget { opacity: 0; transform: scale(0.1); }
"""
LANDING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><link rel="stylesheet" href="/site.css"></head>
<body><h1>{title}</h1><p id="verdict">{verdict}</p><pre id="payload">{payload}</pre></body></html>
"""


class Site:
    """Settings of the running example."""

    def __init__(self, glimpze_url: str, api_key: str, origin: str, agent_id: str | None, ttl: int) -> None:
        self.glimpze_url = glimpze_url.rstrip("/")
        self.api_key = api_key
        self.origin = origin
        self.agent_id = agent_id
        self.ttl = ttl

    def glimpze(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        """POST to Glimpze's /v1 API with the API key (server side: it never reaches a browser)."""
        request = urllib.request.Request(
            self.glimpze_url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def csp(self) -> str:
        glimpze = "{0.scheme}://{0.netloc}".format(urlsplit(self.glimpze_url))
        return (
            f"default-src 'self'; script-src 'self' {glimpze}; connect-src 'self' {glimpze}; style-src 'self'; "
            "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )


class Handler(BaseHTTPRequestHandler):
    site: Site

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path, _, query = self.path.partition("?")
        if path == "/":
            widget = "" if "plain" in query else WIDGET_TAG.format(glimpze=html.escape(self.site.glimpze_url))
            hostile = '\n<link rel="stylesheet" href="/hostile.css">' if "hostile" in query else ""
            self.send(200, "text/html; charset=utf-8", PAGE.format(widget=widget, hostile=hostile).encode())
        elif path == "/site.css":
            self.send(200, "text/css", SITE_CSS.encode())
        elif path == "/hostile.css":
            self.send(200, "text/css", HOSTILE_CSS.encode())
        elif path == "/favicon.ico":
            self.send(204, "image/x-icon", b"")
        elif path.startswith("/landing/"):
            self.landing(path.removeprefix("/landing/"))
        else:
            self.send(404, "text/plain", b"not found")

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/glimpze-token":
            self.send(404, "text/plain", b"not found")
            return
        # The site decides who the visitor is (here: a cookie; a real site uses its own sign-in)
        # and what the session starts with; Glimpze signs it into a short-lived token.
        body = {
            "visitor": {"id": self.visitor_id(), "name": "Guest"},
            "context": {"site": "acme-example"},
            "origin": self.site.origin,
            "ttl_seconds": self.site.ttl,
        }
        if self.site.agent_id:
            body["agent_id"] = self.site.agent_id
        status, answer = self.site.glimpze("/v1/widget-tokens", body)
        if status != 201:
            sys.stderr.write(f"minting a widget token failed: {status} {answer[:500]!r}\n")
            self.send(502, "application/json", b'{"error": "no widget token"}')
            return
        token = json.loads(answer)
        out = json.dumps({"token": token["token"], "expires_at": token["expires_at"]}).encode()
        self.send(200, "application/json", out)

    def landing(self, name: str) -> None:
        status, answer = self.site.glimpze("/v1/ctas/verify", {"url": self.site.origin + self.path})
        result = json.loads(answer) if status == 200 else {"valid": False, "reason": f"HTTP {status}"}
        if result.get("valid"):
            verdict, payload = "Signed context verified.", json.dumps(result["payload"], indent=2)
        else:
            verdict, payload = f"No valid signed context ({result.get('reason')}).", ""
        page = LANDING.format(title=html.escape(name), verdict=html.escape(verdict), payload=html.escape(payload))
        self.send(200, "text/html; charset=utf-8", page.encode())

    def visitor_id(self) -> str:
        jar = cookies.SimpleCookie(self.headers.get("Cookie") or "")
        if VISITOR_COOKIE in jar:
            return jar[VISITOR_COOKIE].value
        self._new_visitor = "v-" + secrets.token_hex(8)
        return self._new_visitor

    def send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", self.site.csp())
            self.visitor_id()  # every page view has a visitor
        new = getattr(self, "_new_visitor", None)
        if new:
            self.send_header("Set-Cookie", f"{VISITOR_COOKIE}={new}; Path=/; HttpOnly; SameSite=Lax")
        self.end_headers()
        self.wfile.write(body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glimpze-url", required=True, help="Glimpze's address, e.g. http://127.0.0.1:8080")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed at start)")
    parser.add_argument("--origin", help="this site's origin as browsers see it (default http://HOST:PORT)")
    parser.add_argument("--agent-id", default=os.environ.get("GLIMPZE_AGENT_ID"), help="the agent that answers")
    parser.add_argument("--ttl", type=int, default=600, help="widget token lifetime in seconds (30..3600)")
    args = parser.parse_args(argv)
    api_key = os.environ.get("GLIMPZE_API_KEY")
    if not api_key:
        parser.error("set GLIMPZE_API_KEY to an API key of the project (gzp_…)")
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    address = f"http://{args.host}:{server.server_address[1]}"  # the port chosen when given 0
    Handler.site = Site(args.glimpze_url, api_key, args.origin or address, args.agent_id, args.ttl)
    print(f"example site on {address} (Glimpze at {args.glimpze_url})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
