"""Ingest throughput: POST /ingest on a real `glimpze serve` vs a no-op JSON POST app, same server.

    python -m bench.ingest [--seconds 5] [--rounds 3] [--connections 32] [--synchronous full]

Both apps run under uvicorn on 127.0.0.1 with the same options, pinned to one core while the
load (wrk when installed, bounded by --seconds) runs on the other (bench/machine.py); the two
alternate for --rounds and the medians are compared. Glimpze runs at its default settings
(`--log-level` or `--synchronous` change them), checkpoints included, and each round reports
its p99 and the WAL file's peak size; at the end, how long the WAL took to shrink once idle.
Targets (issue 15): ingest ≥ 0.6× the no-op rate, p99 ≤ 15 ms in every round, WAL ≤ 64 MiB
(and under 16 MiB within 15 s of the load's end).
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
from bench.machine import MIB, WalWatch, cores_line, pin_load, pin_server, wal_settles
from tests.server import REPO, UNLIMITED_PLAN, Server, free_port

BODY = b'{"schema_type":"counter","content":{"title":"Active Users","count":2314,"unit":"users","trend":"up"}}'


def start_uvicorn(
    app: str, ready: Callable[[str], object], *, server: bool = True
) -> tuple[subprocess.Popen[bytes], str]:
    """`app` ("module:attr") under uvicorn on a free port of 127.0.0.1: (the process, its URL), once
    `ready(url)` stops raising httpx errors. A `server` is pinned to the server's core; otherwise
    (a receiver of deliveries) it stays on the load generator's, where this process runs."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--log-level", "warning", "--no-access-log", "--no-server-header"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if server:
        pin_server(proc.pid)
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


def settings(**values: str | bool | None) -> str:
    """glimpze.toml lines for the settings given (None: the server's default)."""
    toml = {True: "true", False: "false"}
    return "".join(
        f"{name} = {toml[value] if isinstance(value, bool) else repr(value)}\n"
        for name, value in values.items()
        if value is not None
    )


def settle_text(seconds: float | None) -> str:
    return "not within 30 s" if seconds is None else f"{seconds:.1f} s"


def median(results: list[loadgen.Result]) -> loadgen.Result:
    return sorted(results, key=lambda r: r.rps)[len(results) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5, help="length of each run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved no-op/ingest rounds")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--synchronous", choices=["full", "normal"], help="the server's setting (default: its own)")
    parser.add_argument("--tool", choices=["wrk", "python"])
    parser.add_argument("--log-level", help="the server's log_level (default: its own)")
    parser.add_argument("--access-log", action="store_true", help="turn the server's access log on")
    args = parser.parse_args()

    pin_load()
    with tempfile.TemporaryDirectory() as tmp:
        toml = settings(synchronous=args.synchronous, log_level=args.log_level, access_log=args.access_log or None)
        server = Server(Path(tmp), toml + UNLIMITED_PLAN)
        server.start()
        assert server.proc is not None
        pin_server(server.proc.pid)
        noop, noop_url = start_noop()
        try:
            admin = {"Authorization": f"Bearer {server.admin_key()}"}
            feed = httpx.post(
                f"{server.url}/v1/feeds", json={"name": "bench", "schema_type": "counter"}, headers=admin
            ).json()
            headers = {"Authorization": f"Bearer {feed['write_key']}", "Content-Type": "application/json"}
            ingest_url = f"{server.url}/ingest/{feed['id']}"
            print(
                f"{os.cpu_count()} CPUs ({cores_line()}), {args.connections} connections, {args.rounds} rounds of "
                f"{args.seconds:.0f} s runs, synchronous={args.synchronous or 'default'}, "
                f"log_level={args.log_level or 'default'}, access_log={'on' if args.access_log else 'default'}"
            )
            loadgen.run(f"{noop_url}/noop/x", BODY, headers, args.connections, 2, args.tool)  # warm-up
            loadgen.run(ingest_url, BODY, headers, args.connections, 2, args.tool)
            # Interleaved rounds, medians: this machine's speed drifts between runs.
            bases, ingests, peaks = [], [], []
            db = server.data / "glimpze.db"
            for _ in range(args.rounds):
                bases.append(
                    loadgen.run(f"{noop_url}/noop/x", BODY, headers, args.connections, args.seconds, args.tool)
                )
                print("no-op POST  ", bases[-1].line())
                with WalWatch(db) as wal:
                    ingests.append(loadgen.run(ingest_url, BODY, headers, args.connections, args.seconds, args.tool))
                peaks.append(wal.peak)
                print("ingest      ", ingests[-1].line(), f"  WAL peak {wal.peak_mib:.1f} MiB")
            settled = wal_settles(db)
            base, ingest = median(bases), median(ingests)
            stored = httpx.get(f"{server.url}/v1/feeds/{feed['id']}/events?limit=1", headers=admin).json()
            last = stored["data"][0]["id"] if stored["data"] else None
            print(
                f"median: no-op {base.rps:.0f} req/s, ingest {ingest.rps:.0f} req/s\n"
                f"ratio ingest/no-op: {ingest.rps / base.rps:.2f} (target ≥ 0.60)   "
                f"ingest p99 per round: {', '.join(f'{r.p99_ms:.1f}' for r in ingests)} ms (target ≤ 15)   "
                f"WAL peak: {max(peaks) / MIB:.1f} MiB (target ≤ 64)\n"
                f"WAL under 16 MiB {settle_text(settled)} after the load (target ≤ 15 s)   "
                f"non-2xx: {sum(r.non_2xx for r in ingests)}   last event stored: {last}"
            )
        finally:
            noop.kill()
            server.kill()


if __name__ == "__main__":
    main()
