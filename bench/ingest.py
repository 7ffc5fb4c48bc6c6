"""Ingest throughput: POST /ingest on a real `glimpze serve` vs a no-op JSON POST app, same server.

    python -m bench.ingest [--seconds 5] [--rounds 3] [--connections 32] [--synchronous full]

Both apps run under uvicorn on 127.0.0.1 with the same options; the load (wrk when installed)
is bounded by --seconds; the two alternate for --rounds and the medians are compared.
Targets (issue 2): ingest ≥ 0.5× the no-op rate, p99 ≤ 25 ms.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench import loadgen
from tests.server import REPO, UNLIMITED_PLAN, Server, free_port

BODY = b'{"schema_type":"counter","content":{"title":"Active Users","count":2314,"unit":"users","trend":"up"}}'


def start_uvicorn(app: str, ready: Callable[[str], object]) -> tuple[subprocess.Popen[bytes], str]:
    """`app` ("module:attr") under uvicorn on a free port of 127.0.0.1: (the process, its URL), once
    `ready(url)` stops raising httpx errors."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--log-level", "warning", "--no-access-log", "--no-server-header"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            ready(url)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{app} did not start")


def start_noop() -> tuple[subprocess.Popen[bytes], str]:
    return start_uvicorn("bench.noop_app:app", lambda url: httpx.post(f"{url}/noop/x", content=BODY))


def median(results: list[loadgen.Result]) -> loadgen.Result:
    return sorted(results, key=lambda r: r.rps)[len(results) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5, help="length of each run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved no-op/ingest rounds")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--synchronous", choices=["full", "normal"], default="full")
    parser.add_argument("--tool", choices=["wrk", "python"])
    parser.add_argument("--log-level", default="warning", help="the server's log_level (info writes access logs)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server = Server(
            Path(tmp), f'synchronous = "{args.synchronous}"\nlog_level = "{args.log_level}"\n' + UNLIMITED_PLAN
        )
        server.start()
        noop, noop_url = start_noop()
        try:
            admin = {"Authorization": f"Bearer {server.admin_key()}"}
            feed = httpx.post(
                f"{server.url}/v1/feeds", json={"name": "bench", "schema_type": "counter"}, headers=admin
            ).json()
            headers = {"Authorization": f"Bearer {feed['write_key']}", "Content-Type": "application/json"}
            ingest_url = f"{server.url}/ingest/{feed['id']}"
            print(
                f"{os.cpu_count()} CPUs, {args.connections} connections, {args.rounds} rounds of "
                f"{args.seconds:.0f} s runs, synchronous={args.synchronous}, log_level={args.log_level}"
            )
            loadgen.run(f"{noop_url}/noop/x", BODY, headers, args.connections, 2, args.tool)  # warm-up
            loadgen.run(ingest_url, BODY, headers, args.connections, 2, args.tool)
            # Interleaved rounds, medians: this machine's speed drifts between runs.
            bases, ingests = [], []
            for _ in range(args.rounds):
                bases.append(
                    loadgen.run(f"{noop_url}/noop/x", BODY, headers, args.connections, args.seconds, args.tool)
                )
                print("no-op POST  ", bases[-1].line())
                ingests.append(loadgen.run(ingest_url, BODY, headers, args.connections, args.seconds, args.tool))
                print("ingest      ", ingests[-1].line())
            base, ingest = median(bases), median(ingests)
            stored = httpx.get(f"{server.url}/v1/feeds/{feed['id']}/events?limit=1", headers=admin).json()
            last = stored["data"][0]["id"] if stored["data"] else None
            print(
                f"median: no-op {base.rps:.0f} req/s, ingest {ingest.rps:.0f} req/s\n"
                f"ratio ingest/no-op: {ingest.rps / base.rps:.2f} (target ≥ 0.50)   "
                f"ingest p99: {ingest.p99_ms:.1f} ms (target ≤ 25)   "
                f"non-2xx: {sum(r.non_2xx for r in ingests)}   last event stored: {last}"
            )
        finally:
            noop.kill()
            server.kill()


if __name__ == "__main__":
    main()
