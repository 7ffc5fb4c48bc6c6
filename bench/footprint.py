"""Footprint of `glimpze serve`: idle RSS, RSS after 100,000 ingested events, cold start.

    python -m bench.footprint [--events 100000] [--starts 5] [--settle 3]

Each figure comes with its baseline from the same run: RSS against a bare Python process and
against the smallest ASGI app under the same uvicorn (uvloop, httptools), start-up against that
app's start to its first 200. Idle RSS is read after start and one /healthz, once the process
has been quiet for --settle seconds. The events go through POST /ingest with 16 connections
(synchronous = "full", an unlimited plan). Start-up is from starting the process to the first
200 of /healthz, polled every 10 ms: on a new data directory (the schema is created) and on one
that has the 100,000 events.

Targets (issue 11, on 2 cores): idle ≤ 90 MB, after 100,000 events within 20 MB of idle,
cold start ≤ 2 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import loadgen
from bench.ingest import BODY
from tests.server import REPO, UNLIMITED_PLAN, Server, free_port, rss_mb

IDLE_TARGET_MB = 90
GROWTH_TARGET_MB = 20
START_TARGET_S = 2.0
POLL = 0.01


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), platform.machine())
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{platform.system()} {platform.release()}"
    )


def settled_rss(pid: int, seconds: float) -> float:
    """The median of RSS samples over `seconds` of quiet."""
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(rss_mb(pid))
        time.sleep(0.1)
    return statistics.median(samples)


def bare_python_rss(settle: float) -> float:
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        return settled_rss(proc.pid, settle)
    finally:
        proc.kill()
        proc.wait()


def hello_app(settle: float) -> tuple[float, float]:
    """(seconds from start to the first 200, settled RSS) of bench.hello_app under uvicorn."""
    port = free_port()
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.hello_app:app", "--host", "127.0.0.1", "--port", str(port)]
        + ["--lifespan", "off", "--log-level", "warning", "--no-access-log"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError("the hello app exited")
            if time.monotonic() - began > 15:
                raise RuntimeError("the hello app did not start")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(POLL)
        took = time.monotonic() - began
        return took, settled_rss(proc.pid, settle)
    finally:
        proc.kill()
        proc.wait()


def glimpze_start(root: Path) -> float:
    """Seconds from starting `glimpze serve` on `root`/data to its first /healthz 200."""
    root.mkdir(exist_ok=True)
    server = Server(root, UNLIMITED_PLAN)
    try:
        server.start(poll=POLL)
        return server.start_seconds
    finally:
        server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--starts", type=int, default=5, help="start-up runs of each kind (the median is shown)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of quiet before RSS is read")
    args = parser.parse_args()
    print(machine())

    bare = bare_python_rss(args.settle)
    hello = [hello_app(args.settle) for _ in range(args.starts)]
    hello_start = statistics.median(h[0] for h in hello)
    hello_rss = statistics.median(h[1] for h in hello)

    with tempfile.TemporaryDirectory() as tmp:
        fresh = [glimpze_start(Path(tmp) / f"fresh-{n}") for n in range(args.starts)]

        (Path(tmp) / "main").mkdir()
        server = Server(Path(tmp) / "main", UNLIMITED_PLAN)
        server.start(poll=POLL)
        try:
            admin = {"Authorization": f"Bearer {server.admin_key()}"}
            assert httpx.get(f"{server.url}/healthz").status_code == 200
            idle = settled_rss(server.proc.pid, args.settle)  # type: ignore[union-attr]
            feed = httpx.post(
                f"{server.url}/v1/feeds", json={"name": "bench", "schema_type": "counter"}, headers=admin
            ).json()
            headers = {"Authorization": f"Bearer {feed['write_key']}", "Content-Type": "application/json"}
            began = time.monotonic()
            sent = loadgen.send(f"{server.url}/ingest/{feed['id']}", BODY, headers, args.events)
            ingest_seconds = time.monotonic() - began
            during = rss_mb(server.proc.pid)  # type: ignore[union-attr]
            loaded = settled_rss(server.proc.pid, args.settle)  # type: ignore[union-attr]
        finally:
            server.kill()
        conn = sqlite3.connect(server.data / "glimpze.db")
        stored = conn.execute("SELECT count(*) FROM events WHERE status = 'accepted'").fetchone()[0]
        conn.close()
        again = [glimpze_start(Path(tmp) / "main") for _ in range(args.starts)]

    fresh_start, warm_start = statistics.median(fresh), statistics.median(again)
    growth = loaded - idle
    rows = [
        ("bare python process", f"{bare:6.1f} MB"),
        ("uvicorn hello app", f"{hello_rss:6.1f} MB, start to first 200 {hello_start:.2f} s (median of {args.starts})"),
        (
            "glimpze serve, idle",
            f"{idle:6.1f} MB   {idle / hello_rss:.2f}× the hello app, {idle / bare:.1f}× bare python"
            f"   (target ≤ {IDLE_TARGET_MB} MB)",
        ),
        (
            f"  after {stored:,} events",
            f"{loaded:6.1f} MB   +{growth:.1f} MB over idle ({during:.1f} MB as the load ended, {sent.non_2xx} "
            f"non-2xx, {args.events / ingest_seconds:,.0f} events/s)   (target ≤ +{GROWTH_TARGET_MB} MB)",
        ),
        (
            "  start, new data dir",
            f"{fresh_start:6.2f} s    {fresh_start / hello_start:.1f}× the hello app (max {max(fresh):.2f} s)"
            f"   (target ≤ {START_TARGET_S} s)",
        ),
        (
            f"  start, {stored:,} events",
            f"{warm_start:6.2f} s    {warm_start / hello_start:.1f}× the hello app (max {max(again):.2f} s)",
        ),
    ]
    for label, figure in rows:
        print(f"{label:<30} {figure}")
    met = idle <= IDLE_TARGET_MB and growth <= GROWTH_TARGET_MB and max(fresh_start, warm_start) <= START_TARGET_S
    met = met and stored == args.events and sent.non_2xx == 0
    print("targets met" if met else "TARGETS MISSED")


if __name__ == "__main__":
    main()
