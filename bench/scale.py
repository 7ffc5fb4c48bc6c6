"""Cost as the work grows (issue 18): every curve in one run, each row as a ratio to its first.

    python -m bench.scale [--only stored,webhooks,polls,sse] [--seconds 5] [--drain-seconds 10] [--quick]

One `glimpze serve` (default settings, an unlimited plan, 127.0.0.1 allowed as a webhook target)
pinned to one core; wrk, the webhook receiver (bench.receiver_app under uvicorn) and this process's
clients on the other (bench/machine.py). Ingest is POST /ingest with 32 connections for --seconds.

- stored: ingest with 0 / 100k / 1M stored events (events and their outgoing `feed.event`s
  written straight into the database with the server stopped: fast).
- webhooks: ingest with 0 / 1 / 10 / 50 webhooks taking `feed.event`; for each, the delivery rate
  during the load and the drain rate of the backlog after it (for --drain-seconds, or until
  everything arrived).
- polls: ingest with 0 / 100 / 500 long polls waiting on a type that never comes
  (`GET /v1/events?types=session.closed&wait=30`); then one such poll with `wait=0` over ≥ 1M
  outgoing events (median of 20).
- sse: 100 / 1,000 / 2,000 open visitor streams: the server's RSS per stream and the time from
  posting an agent message to its arrival on the stream (median and p99 of 50).

Targets (issue 18, one pinned core): ingest with 50 webhooks ≥ 0.6× with none; a backlog for 50
webhooks drains at ≥ 1,000 deliveries/s, one webhook at ≥ 1,200/s; deliveries flow at ≥ 300/s
during sustained ingest; 500 waiting filtered polls cost ingest ≤ 10 %; the filtered wait=0 poll
over 1M outgoing events ≤ 10 ms; stored events and SSE streams stay flat (≥ 0.9×, latency within
a few ms). --quick runs shorter rounds and smaller levels (to check that the bench works).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench import loadgen
from bench.deliveries import received, start_receiver
from bench.ingest import BODY
from bench.machine import cores_line, pin_load, pin_server
from tests.server import UNLIMITED_PLAN, Server

CONNECTIONS = 32
POLL_TYPE = "session.closed"  # never emitted here
PAYLOAD = (
    b'{"id":"evt_fill","event":"feed.event","occurred_at":"2026-11-23T00:00:00.000Z","feed_id":"fd_x",'
    b'"schema_type":"counter","content":{"title":"Active Users","count":2314,"unit":"users","trend":"up"},'
    b'"metadata":{},"intent":{"update_widget":true,"send_push":false}}'
)
FILL_EVENTS = """
    WITH RECURSIVE n(i) AS (SELECT :start UNION ALL SELECT i + 1 FROM n WHERE i < :stop)
    INSERT INTO events (id, feed_id, status, received_at, schema_type, content, metadata, intent, widget_updated, push)
    SELECT 'evt_fill' || i, :feed, 'accepted', :now, 'counter', :content, '{}',
           '{"update_widget":true,"send_push":false}', 0, 'none'
    FROM n
"""
FILL_OUT_EVENTS = """
    WITH RECURSIVE n(i) AS (SELECT :start UNION ALL SELECT i + 1 FROM n WHERE i < :stop)
    INSERT INTO out_events (id, project_id, type, occurred_at, payload, type_seq)
    SELECT 'evt_fill' || i, :project, 'feed.event', :now, :payload, :numbered + i FROM n
"""
LAST_TYPE_SEQ = "SELECT coalesce(max(type_seq), 0) FROM out_events WHERE project_id = ? AND type = 'feed.event'"


class Row:
    """One row of a curve: a level, its figures, and the ratio of its first figure to the first row's."""

    def __init__(self, label: str, value: float, unit: str, extra: str = "") -> None:
        self.label, self.value, self.unit, self.extra = label, value, unit, extra


def table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    base = rows[0].value if rows and rows[0].value else None
    for row in rows:
        ratio = f"{row.value / base:5.2f}×" if base else "   – "
        print(f"  {row.label:<24} {row.value:10.1f} {row.unit:<14} {ratio}   {row.extra}")


class Bench:
    """The server (pinned), its admin key, a counter feed, and the receiver."""

    def __init__(self, root: Path, receiver_url: str) -> None:
        self.receiver_url = receiver_url
        self.server = Server(root, UNLIMITED_PLAN + '\n[webhooks]\nallow_targets = ["127.0.0.1"]\n')
        self.start()
        self.admin = {"Authorization": f"Bearer {self.server.admin_key()}"}
        self.api = httpx.Client(base_url=self.server.url, headers=self.admin, timeout=60)
        feed = self.api.post("/v1/feeds", json={"name": "bench", "schema_type": "counter"}).json()
        self.feed_id = feed["id"]
        self.write = {"Authorization": f"Bearer {feed['write_key']}", "Content-Type": "application/json"}
        self.project = self.query("SELECT project_id FROM feeds WHERE id = ?", (self.feed_id,))
        loadgen.run(self.ingest_url, BODY, self.write, CONNECTIONS, 2)  # warm-up

    @property
    def db(self) -> Path:
        return self.server.data / "glimpze.db"

    @property
    def ingest_url(self) -> str:
        return f"{self.server.url}/ingest/{self.feed_id}"

    def start(self) -> None:
        self.server.start(timeout=60)
        assert self.server.proc is not None
        pin_server(self.server.proc.pid)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        conn = sqlite3.connect(self.db)
        try:
            return conn.execute(sql, params).fetchone()[0]
        finally:
            conn.close()

    def ingest(self, seconds: float) -> loadgen.Result:
        return loadgen.run(self.ingest_url, BODY, self.write, CONNECTIONS, seconds)

    @contextlib.contextmanager
    def stopped(self) -> Iterator[sqlite3.Connection]:
        """The server stopped, its database open for writing; started again afterwards."""
        self.server.terminate()
        conn = sqlite3.connect(self.db, isolation_level=None)
        try:
            yield conn
        finally:
            conn.close()
            self.start()

    def fill(self, stored: int, outgoing: int) -> None:
        """At least `stored` accepted events and `outgoing` outgoing events in the database."""
        have_stored = self.query("SELECT count(*) FROM events")
        have_outgoing = self.query("SELECT count(*) FROM out_events")
        if have_stored >= stored and have_outgoing >= outgoing:
            return
        began = time.perf_counter()
        with self.stopped() as conn:
            conn.execute("BEGIN IMMEDIATE")
            params = {"feed": self.feed_id, "project": self.project, "now": time.time(), "payload": PAYLOAD}
            if stored > have_stored:
                conn.execute(FILL_EVENTS, {**params, "start": have_stored + 1, "stop": stored, "content": BODY})
            if outgoing > have_outgoing:
                numbered = conn.execute(LAST_TYPE_SEQ, (self.project,)).fetchone()[0] - have_outgoing - 1
                fill = {**params, "start": have_outgoing + 1, "stop": outgoing, "numbered": numbered}
                conn.execute(FILL_OUT_EVENTS, fill)
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the server starts with an empty WAL, as usual
        total = (self.query("SELECT count(*) FROM events"), self.query("SELECT count(*) FROM out_events"))
        print(f"  (filled to {total[0]:,} events, {total[1]:,} outgoing in {time.perf_counter() - began:.1f} s)")
        loadgen.run(self.ingest_url, BODY, self.write, CONNECTIONS, 2)  # warm-up after the restart


def stored_curve(b: Bench, levels: list[int], seconds: float) -> None:
    rows = []
    for level in levels:
        b.fill(level, level)
        result = b.ingest(seconds)
        rows.append(Row(f"{level:,} stored", result.rps, "req/s", f"p99 {result.p99_ms:.1f} ms"))
    table("Ingest vs stored events (target: flat)", rows)


def webhooks_curve(b: Bench, levels: list[int], seconds: float, drain_seconds: float) -> dict[str, float]:
    rows, drains, figures = [], [], {}
    for level in levels:
        hooks = [
            b.api.post("/v1/webhooks", json={"url": f"{b.receiver_url}/hook/{i}", "events": ["feed.event"]}).json()
            for i in range(level)
        ]
        before = received(b.receiver_url)
        result = b.ingest(seconds)
        ended = received(b.receiver_url)
        flow = (ended - before) / seconds
        expected = (result.requests - result.non_2xx) * level
        began, got = time.perf_counter(), ended
        while got - before < expected and time.perf_counter() - began < drain_seconds:
            time.sleep(0.1)
            got = received(b.receiver_url)
        took = time.perf_counter() - began
        drain = (got - ended) / took if level else 0.0
        left = expected - (got - before)
        rows.append(Row(f"{level} webhooks", result.rps, "req/s", f"p99 {result.p99_ms:.1f} ms"))
        if level:
            drains.append(
                Row(
                    f"{level} webhooks",
                    drain,
                    "deliveries/s",
                    f"during the load {flow:,.0f}/s; backlog {expected - (ended - before):,} at its end, "
                    f"{left:,} left after {took:.1f} s",
                )
            )
            figures[f"drain {level}"], figures[f"flow {level}"] = drain, flow
        for hook in hooks:  # stop, then delete: their deliveries go with them
            b.api.patch(f"/v1/webhooks/{hook['id']}", json={"active": False})
        time.sleep(1)
        for hook in hooks:
            b.api.delete(f"/v1/webhooks/{hook['id']}")
        figures[f"ingest {level}"] = result.rps
    table("Ingest vs webhooks taking feed.event (target: 50 webhooks ≥ 0.6×)", rows)
    table(
        "Deliveries: drain after the load, flow during it (targets: drain ≥ 1,000/s at 50 and ≥ 1,200/s at 1, "
        "flow ≥ 300/s)",
        drains,
    )
    return figures


async def _polls(url: str, admin: dict[str, str], count: int, stop: threading.Event, ready: threading.Event) -> None:
    """`count` long polls for POLL_TYPE, each asked again as soon as it is answered, until `stop`."""
    parts = urlsplit(url)
    auth = admin["Authorization"]
    connected = 0

    async def one() -> None:
        nonlocal connected
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        connected += 1
        if connected == count:
            ready.set()
        cursor = ""
        try:
            while not stop.is_set():
                after = f"&after={cursor}" if cursor else ""
                path = f"/v1/events?types={POLL_TYPE}&wait=30{after}"
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: {auth}\r\n\r\n".encode())
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                cursor = body.rsplit(b'"next_cursor":"', 1)[-1].split(b'"', 1)[0].decode()
        finally:
            writer.close()

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    while not stop.is_set():
        await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.contextmanager
def waiting_polls(b: Bench, count: int) -> Iterator[None]:
    if count == 0:
        yield
        return
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(_polls(b.server.url, b.admin, count, stop, ready)))
    thread.start()
    try:
        ready.wait(30)
        time.sleep(1)  # every poll has been read and waits
        yield
    finally:
        stop.set()
        thread.join()


def polls_curve(b: Bench, levels: list[int], seconds: float, outgoing: int) -> dict[str, float]:
    rows = []
    figures = {}
    for level in levels:
        with waiting_polls(b, level):
            result = b.ingest(seconds)
        rows.append(Row(f"{level} waiting polls", result.rps, "req/s", f"p99 {result.p99_ms:.1f} ms"))
        figures[f"ingest {level}"] = result.rps
    table(f"Ingest vs long polls waiting for {POLL_TYPE} (target: 500 cost ≤ 10 %)", rows)
    b.fill(0, outgoing)
    total = b.query("SELECT count(*) FROM out_events")
    times = []
    for _ in range(20):
        began = time.perf_counter()
        answer = b.api.get(f"/v1/events?types={POLL_TYPE}&wait=0")
        times.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200 and answer.json()["data"] == [], answer.text
    figures["poll ms"] = statistics.median(times)
    print(
        f"  one filtered poll, wait=0, over {total:,} outgoing events: median {figures['poll ms']:.1f} ms, "
        f"max {max(times):.1f} ms (target ≤ 10 ms)"
    )
    return figures


async def _sse_level(b: Bench, sessions: list[tuple[str, str]], count: int, samples: int) -> tuple[float, list[float]]:
    """Open `count` streams; (RSS in MiB once open, latencies of `samples` messages in ms)."""
    parts = urlsplit(b.server.url)
    arrived: dict[str, asyncio.Future[float]] = {}
    streams = []

    async def stream(session_id: str, token: str) -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        path = f"/widget/v1/sessions/{session_id}/stream?token={token}"
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n\r\n".encode())
        try:
            while chunk := await reader.read(65536):
                waiting = arrived.get(session_id)
                if waiting is not None and not waiting.done() and b"ping-" in chunk:
                    waiting.set_result(time.perf_counter())
        finally:
            writer.close()

    for session_id, token in sessions[:count]:
        streams.append(asyncio.create_task(stream(session_id, token)))
    await asyncio.sleep(2 + count / 500)  # every stream open and quiet
    assert b.server.proc is not None
    rss = b.server.rss_mb()
    latencies = []
    async with httpx.AsyncClient(base_url=b.server.url, headers=b.admin, timeout=30) as client:
        for n in range(samples):
            session_id = sessions[(n * 7919) % count][0]
            arrived[session_id] = asyncio.get_running_loop().create_future()
            began = time.perf_counter()
            posted = await client.post(
                f"/v1/sessions/{session_id}/messages", json={"role": "agent", "text": f"ping-{n}", "author": "Bo"}
            )
            assert posted.status_code == 201, posted.text
            latencies.append((await asyncio.wait_for(arrived[session_id], 10) - began) * 1000)
            del arrived[session_id]
    for task in streams:
        task.cancel()
    await asyncio.gather(*streams, return_exceptions=True)
    return rss, latencies


def sse_curve(b: Bench, levels: list[int], samples: int = 50) -> None:
    sessions = []
    for i in range(max(levels)):
        token = b.api.post("/v1/widget-tokens", json={"visitor": {"id": f"v-{i}", "name": "V"}}).json()["token"]
        opened = httpx.post(f"{b.server.url}/widget/v1/sessions", headers={"Authorization": f"Bearer {token}"})
        sessions.append((opened.json()["id"], token))
    time.sleep(2)
    idle = b.server.rss_mb()
    rows = []
    for level in levels:
        rss, latencies = asyncio.run(_sse_level(b, sessions, level, samples))
        latencies.sort()
        per_stream = (rss - idle) * 1024 / level
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        extra = f"p99 {p99:.1f} ms; RSS {rss:.0f} MiB (idle {idle:.0f}), {per_stream:.0f} KiB per stream"
        rows.append(Row(f"{level:,} streams", statistics.median(latencies), "ms to arrive", extra))
    table("SSE streams: a message's time to arrive (target: flat)", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="stored,webhooks,polls,sse", help="curves to run, comma-separated")
    parser.add_argument("--seconds", type=float, default=5, help="length of each ingest round")
    parser.add_argument("--drain-seconds", type=float, default=10, help="how long a drain is watched at most")
    parser.add_argument("--quick", action="store_true", help="short rounds and small levels: does it work?")
    args = parser.parse_args()
    only = set(args.only.split(","))
    stored, hooks, polls, streams, outgoing = (
        [0, 100_000, 1_000_000],
        [0, 1, 10, 50],
        [0, 100, 500],
        [100, 1000, 2000],
        1_000_000,
    )
    if args.quick:
        args.seconds, args.drain_seconds = min(args.seconds, 2), min(args.drain_seconds, 4)
        stored, hooks, polls, streams, outgoing = [0, 100_000], [0, 1, 10], [0, 100], [100, 300], 200_000

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of streams and polls
    pin_load()
    print(cores_line())
    receiver, receiver_url = start_receiver()
    figures: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            b = Bench(Path(tmp), receiver_url)
            try:
                if "stored" in only:
                    stored_curve(b, stored, args.seconds)
                if "polls" in only:
                    figures |= {f"polls {k}": v for k, v in polls_curve(b, polls, args.seconds, outgoing).items()}
                if "webhooks" in only:
                    figures |= {
                        f"hooks {k}": v for k, v in webhooks_curve(b, hooks, args.seconds, args.drain_seconds).items()
                    }
                if "sse" in only:
                    sse_curve(b, streams)
            finally:
                b.server.kill()
    finally:
        receiver.kill()
    summary(figures, hooks, polls)


def summary(figures: dict[str, float], hooks: list[int], polls: list[int]) -> None:
    lines: list[tuple[str, Callable[[], bool]]] = []
    top, most = hooks[-1], polls[-1]
    if f"hooks ingest {top}" in figures:
        ratio = figures[f"hooks ingest {top}"] / figures["hooks ingest 0"]
        lines.append((f"ingest with {top} webhooks {ratio:.2f}× (≥ 0.6)", lambda: ratio >= 0.6))
        drain, one = figures[f"hooks drain {top}"], figures.get("hooks drain 1", 0.0)
        lines.append((f"drain at {top} webhooks {drain:,.0f}/s (≥ 1,000)", lambda: drain >= 1000))
        lines.append((f"drain at 1 webhook {one:,.0f}/s (≥ 1,200)", lambda: one >= 1200))
        flow = min(figures[f"hooks flow {k}"] for k in hooks if k)
        lines.append((f"deliveries during sustained ingest ≥ {flow:,.0f}/s (≥ 300)", lambda: flow >= 300))
    if f"polls ingest {most}" in figures:
        cost = 1 - figures[f"polls ingest {most}"] / figures["polls ingest 0"]
        lines.append((f"{most} waiting polls cost ingest {cost:.0%} (≤ 10 %)", lambda: cost <= 0.10))
        ms = figures["polls poll ms"]
        lines.append((f"filtered wait=0 poll {ms:.1f} ms (≤ 10)", lambda: ms <= 10))
    if lines:
        print("\nTargets:")
        for text, met in lines:
            print(f"  {'met   ' if met() else 'MISSED'} {text}")


if __name__ == "__main__":
    main()
