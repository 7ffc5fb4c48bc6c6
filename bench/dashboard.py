"""The dashboard's home screen: its first load with 20 feeds, and how soon an event repaints its tile.

    python -m bench.dashboard [--feeds 20] [--loads 5] [--events 20]

A real `glimpze serve` (unlimited plan) and Debian's Chromium through Playwright. Home's first load
is measured in a fresh browser context each time (nothing cached): the requests it makes (the
live channel included), the bytes it receives, and the time from navigation to the load event;
the baseline is the same measurement of a static page of the same server (`/static/offline.html`).
Then, with home open, an event is posted to one feed `--events` times with httpx: the time from
just before the POST to the frame after the tile shows that event (a MutationObserver in the
page, read after the next animation frame, both on this machine's clock), median and max; the
baseline is the POST's own round trip.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.footprint import machine
from tests.browser import chromium
from tests.dashboard import PASSWORD
from tests.server import UNLIMITED_PLAN, Server

SCHEMAS = ["summary", "status", "counter", "summary", "counter"]
CONTENT = {
    "summary": {"title": "Revenue", "primary_value": "$12,345", "secondary_value": "+15%"},
    "status": {"title": "API", "status": "success", "message": "All systems operational"},
    "counter": {"title": "Signups", "count": 127, "unit": "users", "trend": "up", "trendValue": "+23%"},
}
WATCH = """([feed, id]) => new Promise((done) => {
  const painted = () => requestAnimationFrame(() => requestAnimationFrame(() => done(Date.now())));
  const shown = () => document.querySelector(`[data-tile][data-feed="${feed}"]`)?.dataset.eventId === id;
  if (shown()) return painted();
  const observer = new MutationObserver(() => { if (shown()) { observer.disconnect(); painted(); } });
  observer.observe(document.querySelector('[data-tiles]'), { subtree: true, childList: true, attributes: true });
})"""


def first_load(browser: Any, url: str, path: str, state: dict[str, Any] | None) -> tuple[int, int, float]:
    """(requests, bytes received, ms from navigation to the load event) of `path` in a fresh context."""
    context = browser.new_context(base_url=url, storage_state=state, service_workers="block")
    page = context.new_page()
    started: list[Any] = []
    finished: list[Any] = []
    page.on("request", lambda request: started.append(request))
    page.on("requestfinished", lambda request: finished.append(request))
    page.goto(path, wait_until="load")
    page.wait_for_timeout(300)  # the script's requests after load (the live channel)
    received = 0
    for request in finished:
        sizes = request.sizes()
        received += sizes["responseHeadersSize"] + sizes["responseBodySize"]
    ms = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
    context.close()
    return len(started), received, float(ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feeds", type=int, default=20)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--events", type=int, default=20)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as root:
        server = Server(Path(root))
        server.config.write_text(f'public_url = "{server.url}"\n{UNLIMITED_PLAN}')
        server.start()
        try:
            api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key()}"})
            feeds = []
            for i in range(args.feeds):
                schema = SCHEMAS[i % len(SCHEMAS)]
                feed = api.post("/v1/feeds", json={"name": f"Feed {i + 1}", "schema_type": schema}).json()
                body = {"schema_type": schema, "content": CONTENT[schema]}
                auth = {"Authorization": f"Bearer {feed['write_key']}"}
                assert httpx.post(f"{server.url}/ingest/{feed['id']}", json=body, headers=auth).status_code == 202
                feeds.append(feed)
            with sync_playwright() as playwright:
                browser = chromium(playwright)
                context = browser.new_context(base_url=server.url)
                page = context.new_page()
                link = re.search(r"http://\S+/setup/\S+", server.output())
                assert link, server.output()
                page.goto(link.group(0))
                page.get_by_label("New password").fill(PASSWORD)
                page.get_by_label("Repeat it").fill(PASSWORD)
                page.get_by_role("button", name="Save and sign in").click()
                page.wait_for_url(f"{server.url}/")
                state = context.storage_state()
                context.close()

                homes = [first_load(browser, server.url, "/", state) for _ in range(args.loads)]
                statics = [first_load(browser, server.url, "/static/offline.html", None) for _ in range(args.loads)]

                context = browser.new_context(base_url=server.url, storage_state=state, service_workers="block")
                page = context.new_page()
                page.goto("/")
                page.wait_for_function("document.body.dataset.liveState === 'open'")
                feed = feeds[0]
                auth = {"Authorization": f"Bearer {feed['write_key']}"}
                repaints, posts = [], []
                with httpx.Client() as poster:
                    for i in range(args.events):
                        body = {"schema_type": "summary", "content": {"title": "Revenue", "primary_value": f"${i}"}}
                        started = time.time() * 1000
                        response = poster.post(f"{server.url}/ingest/{feed['id']}", json=body, headers=auth)
                        posts.append(time.time() * 1000 - started)
                        painted = page.evaluate(WATCH, [feed["id"], response.json()["id"]])
                        repaints.append(painted - started)
                        page.wait_for_timeout(50)
                context.close()
                browser.close()
        finally:
            server.terminate()

    requests = statistics.median(h[0] for h in homes)
    received = statistics.median(h[1] for h in homes)
    load_ms = statistics.median(h[2] for h in homes)
    static_ms = statistics.median(s[2] for s in statics)
    print(f"machine: {machine()} (shared: other work may run at the same time)")
    print(f"home, first load with {args.feeds} feeds (median of {args.loads}, nothing cached):")
    print(f"  {requests:.0f} requests, {received / 1024:.1f} KiB received, {load_ms:.0f} ms to the load event")
    print(
        f"  baseline, a static page of the same server: {statistics.median(s[0] for s in statics):.0f} requests, "
        f"{statistics.median(s[1] for s in statics) / 1024:.1f} KiB, {static_ms:.0f} ms "
        f"(home takes {load_ms / max(static_ms, 0.001):.1f}x)"
    )
    print(f"POST /ingest to the tile repainted ({args.events} events):")
    print(f"  median {statistics.median(repaints):.0f} ms, max {max(repaints):.0f} ms")
    print(f"  baseline, the POST's own round trip: median {statistics.median(posts):.1f} ms, max {max(posts):.1f} ms")


if __name__ == "__main__":
    main()
