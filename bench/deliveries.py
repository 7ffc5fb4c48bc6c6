"""Webhook delivery throughput, and what one active webhook costs ingest.

    python -m bench.deliveries [--deliveries 10000] [--seconds 5]

1. Drain: 10,000 deliveries are queued while the server is stopped (a webhook exists; events are
   written straight into its database with the outbox's statement: the webhook takes them); the server
   starts and its dispatcher sends them to a local receiver (a separate uvicorn process).
   Baseline in the same run: a plain loop of signed httpx POSTs to the same receiver with the
   same concurrency (4 in flight); also the same loop on httpcore, which the dispatcher sends with.
   Targets (issue 5): ≥ 0.5× the httpx rate and ≥ 1,000 deliveries/s.
2. Ingest with one active webhook vs none (wrk, 32 connections). Target: ≥ 0.8×.

Glimpze runs at its default settings, pinned to one core; the receiver and the load generator
share the other (bench/machine.py). Every phase reports the WAL file's peak size, every ingest
round its p99. Targets (issue 15): p99 ≤ 15 ms in every round, WAL ≤ 64 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import httpcore
import httpx

from bench import loadgen
from bench.ingest import BODY, median, settle_text, start_uvicorn
from bench.machine import MIB, WalWatch, cores_line, pin_load, pin_server, wal_settles
from glimpze.delivery.dispatcher import SQL_QUEUE_STATS
from glimpze.delivery.outbox import SQL_INSERT_EVENT
from tests.server import UNLIMITED_PLAN, Server

CONCURRENCY = 4


def start_receiver() -> tuple[subprocess.Popen[bytes], str]:
    return start_uvicorn("bench.receiver_app:app", lambda url: httpx.get(f"{url}/count"), server=False)


def received(url: str) -> int:
    return int(httpx.get(f"{url}/count").text)


async def plain_loop(url: str, count: int, *, core: bool = False) -> float:
    """Signed POSTs from one httpx client (or, with `core`, the httpcore pool under it, which the
    dispatcher uses), `CONCURRENCY` in flight: requests per second."""
    secret = b"whsec_bench"
    body = b'{"id":"evt_x","event":"feed.event","occurred_at":"2026-11-23T00:00:00.000Z","content":{"count":1}}'
    left = count

    def signed() -> dict[str, str]:
        t = int(time.time())
        sig = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
        return {"Content-Type": "application/json", "X-Glimpze-Signature": f"t={t},v1={sig}"}

    async with httpx.AsyncClient(trust_env=False) as client, httpcore.AsyncConnectionPool() as pool:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                if core:
                    response = await pool.request("POST", f"{url}/hook", content=body, headers=signed())
                    assert response.status == 204
                else:
                    assert (await client.post(f"{url}/hook", content=body, headers=signed())).status_code == 204

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return count / (time.perf_counter() - start)


def queue_deliveries(db: Path, project_id: str, count: int) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    now = time.time()
    payload = b'{"id":"evt_x","event":"feed.event","occurred_at":"2026-11-23T00:00:00.000Z","content":{"count":1}}'
    for i in range(count):  # the outbox's own statement: the webhook's span takes the events
        params = (f"evt_bench{i:08d}", project_id, "feed.event", now, payload, None, None)
        conn.execute(SQL_INSERT_EVENT, params).fetchone()
    conn.execute("COMMIT")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5, help="length of each ingest run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    pin_load()
    print(cores_line())
    receiver, receiver_url = start_receiver()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            server = Server(Path(tmp), UNLIMITED_PLAN + '\n[webhooks]\nallow_targets = ["127.0.0.1"]\n')

            def start() -> None:
                server.start()
                assert server.proc is not None
                pin_server(server.proc.pid)

            start()
            admin = {"Authorization": f"Bearer {server.admin_key()}"}
            hook = httpx.post(
                f"{server.url}/v1/webhooks",
                headers=admin,
                json={"url": f"{receiver_url}/hook", "events": ["feed.event"]},
            ).json()
            project = sqlite3.connect(server.data / "glimpze.db").execute("SELECT id FROM projects").fetchone()[0]
            server.kill()

            # 1. drain
            queue_deliveries(server.data / "glimpze.db", project, args.deliveries)
            baseline = asyncio.run(plain_loop(receiver_url, args.deliveries))
            core = asyncio.run(plain_loop(receiver_url, args.deliveries, core=True))
            before = received(receiver_url)
            db = server.data / "glimpze.db"
            with WalWatch(db) as drain_wal:
                start()
                while received(receiver_url) == before:  # from the first delivery: server start-up excluded
                    time.sleep(0.002)
                began, first = time.perf_counter(), received(receiver_url) - before
                while received(receiver_url) - before < args.deliveries:
                    if time.perf_counter() - began > 120:
                        raise RuntimeError(f"only {received(receiver_url) - before} deliveries after 120 s")
                    time.sleep(0.02)
                drain = (args.deliveries - first) / (time.perf_counter() - began)
            print(f"plain signed httpx loop ({CONCURRENCY} in flight): {baseline:7.0f} req/s")
            print(f"plain signed httpcore loop ({CONCURRENCY} in flight): {core:7.0f} req/s")
            print(f"dispatcher drain of {args.deliveries} deliveries:  {drain:7.0f} deliveries/s")
            print(f"ratio drain/plain httpx: {drain / baseline:.2f} (target ≥ 0.50), target ≥ 1000/s")
            print(
                f"ratio drain/plain httpcore: {drain / core:.2f}   "
                f"WAL peak during the drain: {drain_wal.peak_mib:.1f} MiB"
            )

            # 2. ingest with and without an active webhook
            httpx.patch(f"{server.url}/v1/webhooks/{hook['id']}", headers=admin, json={"active": False})
            feed = httpx.post(
                f"{server.url}/v1/feeds", headers=admin, json={"name": "bench", "schema_type": "counter"}
            ).json()
            headers = {"Authorization": f"Bearer {feed['write_key']}", "Content-Type": "application/json"}
            url = f"{server.url}/ingest/{feed['id']}"
            loadgen.run(url, BODY, headers, 32, 2)  # warm-up
            without, with_hook, peaks = [], [], []
            for _ in range(args.rounds):
                httpx.patch(f"{server.url}/v1/webhooks/{hook['id']}", headers=admin, json={"active": False})
                with WalWatch(db) as wal:
                    without.append(loadgen.run(url, BODY, headers, 32, args.seconds))
                peaks.append(wal.peak)
                print("ingest, no webhook      ", without[-1].line(), f"  WAL peak {wal.peak_mib:.1f} MiB")
                httpx.patch(f"{server.url}/v1/webhooks/{hook['id']}", headers=admin, json={"active": True})
                with WalWatch(db) as wal:
                    with_hook.append(loadgen.run(url, BODY, headers, 32, args.seconds))
                peaks.append(wal.peak)
                print("ingest, one webhook     ", with_hook[-1].line(), f"  WAL peak {wal.peak_mib:.1f} MiB")
            a, b = median(without), median(with_hook)
            print(f"ratio ingest with/without webhook: {b.rps / a.rps:.2f} (target ≥ 0.80)")
            print(
                f"p99 per round: {', '.join(f'{r.p99_ms:.1f}' for r in without)} ms without the webhook, "
                f"{', '.join(f'{r.p99_ms:.1f}' for r in with_hook)} ms with it (target ≤ 15)   "
                f"WAL peak: {max(peaks) / MIB:.1f} MiB (target ≤ 64)"
            )
            # the deliveries of the webhook rounds were queued durably; how long until all are sent?
            began = time.perf_counter()
            total = sum(r.requests - r.non_2xx for r in with_hook)
            queue = sqlite3.connect(db)
            with WalWatch(db) as wal:
                while queue.execute(SQL_QUEUE_STATS, {"now": time.time()}).fetchone()[0]:
                    if time.perf_counter() - began > 300:
                        break
                    time.sleep(0.1)
            print(
                f"the {total} deliveries queued during the webhook rounds were all sent "
                f"{time.perf_counter() - began:.1f} s after the load ended (WAL peak {wal.peak_mib:.1f} MiB); "
                f"WAL under 16 MiB {settle_text(wal_settles(db))} after that"
            )
            queue.close()
            server.kill()
    finally:
        receiver.kill()


if __name__ == "__main__":
    main()
