"""The 429 path: requests/s of throttled ingest requests vs accepted ones on the same server.

    python -m bench.throttle [--seconds 10] [--connections 32]

One feed on an unlimited plan (every request accepted and stored), one on a 1-per-minute plan
(every request refused with 429 once its token is gone; beyond 10 a minute only counted).
Target (issue 3): the reject path is not slower than the accept path.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import httpx

from bench import loadgen
from bench.ingest import BODY
from tests.server import UNLIMITED_PLAN, Server

TINY = "\n[plans.tiny]\nevents_per_minute = 1\nevents_per_day = 1\nhistory_days = 1\ncustom_feeds = 0\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--tool", choices=["wrk", "python"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), 'log_level = "warning"\n' + UNLIMITED_PLAN + TINY)
        server.start()
        try:
            admin = {"Authorization": f"Bearer {server.admin_key()}"}

            def feed(plan: str) -> tuple[str, dict[str, str]]:
                made = httpx.post(
                    f"{server.url}/v1/feeds", headers=admin, json={"name": plan, "schema_type": "counter", "plan": plan}
                ).json()
                return (
                    f"{server.url}/ingest/{made['id']}",
                    {"Authorization": f"Bearer {made['write_key']}", "Content-Type": "application/json"},
                )

            open_url, open_headers = feed("unlimited")
            tiny_url, tiny_headers = feed("tiny")
            loadgen.run(open_url, BODY, open_headers, args.connections, 2, args.tool)  # warm-up
            loadgen.run(tiny_url, BODY, tiny_headers, args.connections, 2, args.tool)
            accepted = loadgen.run(open_url, BODY, open_headers, args.connections, args.seconds, args.tool)
            print("accepted (202) ", accepted.line())
            throttled = loadgen.run(tiny_url, BODY, tiny_headers, args.connections, args.seconds, args.tool)
            print("throttled (429)", throttled.line())
            rows = httpx.get(
                f"{tiny_url.replace('/ingest/', '/v1/feeds/')}/events?status=throttled&limit=100", headers=admin
            ).json()
            print(
                f"ratio throttled/accepted: {throttled.rps / accepted.rps:.2f}  (target ≥ 1.00)   "
                f"throttled rows stored: {len(rows['data'])}, counted only: {rows['throttled_dropped']}"
            )
        finally:
            server.kill()


if __name__ == "__main__":
    main()
