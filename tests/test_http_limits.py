"""What a client may hold before its request reaches the app: header size, slow headers and bodies,
open connections (glimpze.http_limits), against a real `glimpze serve` and an in-process uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from glimpze.config import HttpConfig
from glimpze.ops.http_limits import SLOW_HEADERS_SECONDS, HttpLimits, protocol
from tests.conftest import loopback_socket
from tests.server import REPO, Server

MiB = 1024 * 1024
DEFAULTS = HttpConfig()
HEADER_TIMEOUT = 3.0


def send_huge_header(port: int, size: int) -> tuple[int, bytes]:
    """A request with one `size`-byte header: (bytes the socket took before the server stopped
    reading, what the server answered)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # so "sent" is close to "read"
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    sent, filler = 0, b"a" * 65536
    try:
        sent += sock.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ")
        while sent < size:
            sent += sock.send(filler)
        sock.sendall(b"\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        answer = sock.recv(65536)
    except ConnectionResetError:
        answer = b""
    sock.close()
    return sent, answer


def poll_healthz(url: str, until: Any, at_least: int = 20) -> list[tuple[int, float]]:
    """GET /healthz every 50 ms until `until()` is true (and `at_least` times), or until one is
    not answered 200: (status, seconds) of each."""
    answers: list[tuple[int, float]] = []
    while not until() or len(answers) < at_least:
        began = time.monotonic()
        try:
            status = httpx.get(f"{url}/healthz", timeout=5).status_code
        except httpx.HTTPError:
            status = 0
        answers.append((status, time.monotonic() - began))
        if status != 200:
            break
        time.sleep(0.05)
    return answers


@pytest.mark.slow
def test_huge_headers_are_refused_while_healthz_keeps_answering(tmp_path: Path) -> None:
    # The default limits, but a shorter header timeout (from the environment, which an older
    # Glimpze ignores rather than refusing to start).
    server = Server(tmp_path, env={"GLIMPZE_HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT)})
    server.start()
    try:
        slow = socket.create_connection(("127.0.0.1", server.port))
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")  # and then nothing
        slow_since = time.monotonic()
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        rss_before = server.rss_mb()

        with ThreadPoolExecutor(5) as pool:
            senders = [pool.submit(send_huge_header, server.port, 16 * MiB) for _ in range(4)]
            polls = pool.submit(poll_healthz, server.url, lambda: all(s.done() for s in senders))
            results = [s.result(timeout=60) for s in senders]
            answers = polls.result(timeout=60)

        for sent, answer in results:
            assert sent < 4 * MiB, f"the server read {sent} bytes of a 16 MiB header"
            assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
            if answer:
                body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
                assert body["code"] == "headers_too_large" and body["status"] == 431
        assert answers and all(status == 200 for status, _ in answers), answers
        assert max(seconds for _, seconds in answers) < 1.0, answers
        assert server.rss_mb() - rss_before < 40, "memory stays bounded"
        # just under the limit is an ordinary request
        padding = "p" * (DEFAULTS.max_header_bytes - 1024)
        assert httpx.get(f"{server.url}/healthz", headers={"X-Padding": padding}).status_code == 200

        # the half-sent header is answered 408 and closed once the header timeout has passed
        slow.settimeout(HEADER_TIMEOUT + 5)
        answer = slow.recv(65536)
        waited = time.monotonic() - slow_since
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert HEADER_TIMEOUT - 0.5 < waited < HEADER_TIMEOUT + 3
        assert slow.recv(1) == b""  # closed
        slow.close()
    finally:
        server.kill()


@pytest.mark.slow
def test_a_thousand_half_sent_headers_lock_no_one_out(tmp_path: Path) -> None:
    """systemd's default of 1,024 open files: 1,100 connections that send half a header each."""
    server = Server(tmp_path, rlimits={resource.RLIMIT_NOFILE: (1024, 1024)})
    server.start()
    held: list[socket.socket] = []
    try:
        assert "serving at most 768 connections at once, not 4096" in server.output()
        for _ in range(1100):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
            held.append(sock)
        time.sleep(SLOW_HEADERS_SECONDS)  # from then on, each new client takes a stalled one's place
        answers = poll_healthz(server.url, lambda: True)
        assert all(status == 200 for status, _ in answers), answers
        assert max(seconds for _, seconds in answers) < 1.0, answers
    finally:
        for sock in held:
            sock.close()
        server.kill()


# In-process: uvicorn with the limits on a tiny app, so each limit is met at its edge.


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the body's length; /stream sends five parts 0.3 s apart."""
    assert scope["type"] == "http"
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for _ in range(5):
            await send({"type": "http.response.body", "body": b"part\n", "more_body": True})
            await asyncio.sleep(0.3)
        await send({"type": "http.response.body", "body": b""})
        return
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def limited(limits: HttpLimits) -> AsyncIterator[int]:
    """`echo` served with `limits` on a free port of 127.0.0.1; yields the port."""
    sock = loopback_socket()
    server = uvicorn.Server(uvicorn.Config(echo, http=protocol(limits), lifespan="off", log_config=None))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), task.exception()
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()


async def exchange(port: int, *parts: bytes, pause: float = 0.0, timeout: float = 5.0) -> bytes:
    """Send `parts` (`pause` seconds apart) on one connection; everything read until it closes
    (read all along, so an answer sent before the server closed is kept)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received: list[bytes] = []

    async def read() -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                received.append(chunk)

    reading = asyncio.create_task(read())
    try:
        for i, part in enumerate(parts):
            if i and pause:
                await asyncio.sleep(pause)
            if reading.done():
                break  # the server has answered and closed
            writer.write(part)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        await asyncio.wait_for(reading, timeout)
        return b"".join(received)
    finally:
        writer.close()


def request(path: str = "/", *, header: int = 0, body: bytes = b"", close: bool = True) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    if header:
        lines.append("X-Padding: " + "p" * header)
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer else 0


LIMITS = HttpLimits(max_header_bytes=16 * 1024, header_timeout=0.5, max_connections=64)


@pytest.mark.anyio
async def test_headers_are_counted_per_request_up_to_the_limit_and_never_the_body() -> None:
    async with limited(LIMITS) as port:
        assert status(await exchange(port, request(header=15 * 1024))) == 200
        refused = await exchange(port, request(header=17 * 1024))
        assert refused.startswith(b"HTTP/1.1 431 ") and b"connection: close" in refused
        assert b"content-type: application/problem+json" in refused
        assert json.loads(refused.split(b"\r\n\r\n", 1)[1])["code"] == "headers_too_large"
        # a large body in the same read as small headers is no reason to refuse them
        answer = await exchange(port, request(body=b"b" * MiB))
        assert status(answer) == 200 and answer.endswith(str(MiB).encode())
        # two requests on one connection: 2 x 10 KiB of headers, each under the limit
        twice = await exchange(port, request(header=10 * 1024, close=False), request(header=10 * 1024), pause=0.1)
        assert twice.count(b"HTTP/1.1 200 ") == 2
        # pipelined in one write: the second request's headers are measured on their own
        pipelined = await exchange(port, request(body=b"x" * 100, close=False) + request(header=10 * 1024))
        assert pipelined.count(b"HTTP/1.1 200 ") == 2
        pipelined = await exchange(port, request(close=False) + request(header=17 * 1024))
        assert pipelined.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 431 " in pipelined


@pytest.mark.anyio
async def test_slow_headers_and_stalled_bodies_are_closed_but_slow_responses_are_not() -> None:
    async with limited(LIMITS) as port:
        began = time.monotonic()
        answer = await exchange(port, b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert answer.startswith(b"HTTP/1.1 408 ") and 0.4 < time.monotonic() - began < 2
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == "request_timeout"
        assert await exchange(port) == b""  # connected, sent nothing: closed without a word
        # headers in pieces, each sooner than the timeout but all later: still too slow
        pieces = [b"POST / HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"X-A: 1\r\n", b"X-B: 2\r\n", b"\r\n"]
        assert status(await exchange(port, *pieces, pause=0.2)) == 408
        # a body that stops arriving is closed; one that keeps arriving is not, however long
        head = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
        assert await exchange(port, head + b"12345") == b""
        answer = await exchange(port, head, *[b"12"] * 5, pause=0.3)
        assert status(answer) == 200 and answer.endswith(b"10")
        # a response may take as long as it likes once the request has arrived
        answer = await exchange(port, request("/stream"))
        assert status(answer) == 200 and answer.count(b"part") == 5


@pytest.mark.anyio
async def test_at_the_cap_a_new_client_takes_the_place_of_a_stalled_one_or_is_refused() -> None:
    async with limited(HttpLimits(16 * 1024, header_timeout=30, max_connections=3)) as port:
        stalled = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        for _, writer in stalled:
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")  # and then nothing
            await writer.drain()
            await asyncio.sleep(0.05)
        refused = await exchange(port, request())  # not while they may just be slow to start
        assert refused.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in refused
        assert json.loads(refused.split(b"\r\n\r\n", 1)[1])["code"] == "too_many_connections"
        await asyncio.sleep(1.0)
        # past a second, a new client takes the place of the connection that has waited longest
        assert status(await exchange(port, request())) == 200
        answer = await asyncio.wait_for(stalled[0][0].read(), 5)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        await asyncio.sleep(0.1)
        assert not stalled[1][0].at_eof() and not stalled[2][0].at_eof()  # one place was enough
        for _, writer in stalled:
            writer.close()

        busy = [asyncio.create_task(exchange(port, request("/stream"))) for _ in range(3)]
        await asyncio.sleep(0.3)  # three responses under way: no place to take
        began = time.monotonic()
        assert status(await exchange(port, request())) == 503
        assert time.monotonic() - began < 1
        assert [status(answer) for answer in await asyncio.gather(*busy)] == [200] * 3
        assert status(await exchange(port, request())) == 200


def test_the_open_files_limit_is_raised_and_the_cap_fits_within_it() -> None:
    """Run in a child process: limits lowered there cannot be raised again."""
    script = """
import json, logging, resource
from glimpze.config import HttpConfig
from glimpze.ops.http_limits import raise_open_files_limit, serving_limits
logging.basicConfig(level=logging.WARNING)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 2048))
raised = raise_open_files_limit()
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
print(json.dumps([raised, serving_limits(HttpConfig()).max_connections]))
"""
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 2048:
        pytest.skip("the hard open-files limit here is below 2048")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [2048, 1024 - 256]
    assert "open files are limited to 1024: serving at most 768 connections at once" in result.stderr
