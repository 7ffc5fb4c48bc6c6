"""The deliveries' HTTP/1.1 client (glimpze/delivery/http1.py) against real sockets on 127.0.0.1:
framings, keep-alive, servers that close, answers that are not HTTP, TLS through the SSRF guard."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trustme

from glimpze.delivery import http1
from glimpze.delivery.http1 import HttpError, Origin, Pool
from glimpze.delivery.ssrf import GuardedBackend, TargetPolicy, ssl_context

pytestmark = pytest.mark.anyio

BODY = b'{"id":"evt_1"}'


class Scripted:
    """A server answering each request with the next of `answers`, counting connections; a None
    among them closes the connection at once."""

    def __init__(self, answers: list[bytes | None]) -> None:
        self.answers = list(answers)
        self.connections = 0
        self.ended = 0  # connections the client closed (or this server did)
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                if self.answers[0] is None:
                    self.answers.pop(0)
                    break
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0)
                assert answer is not None
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.ended += 1
            writer.close()


@asynccontextmanager
async def serving(
    answers: list[bytes | None], tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[Scripted, int]]:
    scripted = Scripted(answers)
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0, ssl=tls)
    async with server:
        yield scripted, server.sockets[0].getsockname()[1]


def pool(size: int = 1, context: ssl.SSLContext | None = None) -> Pool:
    return Pool(GuardedBackend(TargetPolicy(["127.0.0.1"])), size, context or ssl_context())


async def post(p: Pool, port: int, *, scheme: str = "http", host: str = "127.0.0.1") -> http1.Answer:
    return await p.request(
        "POST",
        Origin(scheme, host, port),
        b"/hook?x=1",
        [("Content-Type", "application/json"), ("X-Glimpze-Event", "feed.event")],
        BODY,
        connect_timeout=5,
        head_bytes=8,
        read_limit=64,
    )


def answer(status: str, *headers: str, body: bytes = b"") -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n").encode() + body


async def test_a_request_is_one_well_formed_message_and_a_sized_answer_keeps_the_connection() -> None:
    async with serving([answer("204 No Content"), answer("200 OK", "Content-Length: 11", body=b"hello world")]) as (
        server,
        port,
    ):
        p = pool()
        first, second = await post(p, port), await post(p, port)
        assert (first.status, first.head) == (204, b"")
        assert (second.status, second.head) == (200, b"hello wo")  # the first head_bytes
        assert server.connections == 1
        head = server.requests[0].split(b"\r\n")
        assert head[0] == b"POST /hook?x=1 HTTP/1.1" and head[1] == f"Host: 127.0.0.1:{port}".encode()
        assert b"Content-Length: 14" in head and server.requests[0].endswith(b"\r\n\r\n" + BODY)
        await p.aclose()


@pytest.mark.parametrize(
    "framed",
    [
        answer("200 OK", "Transfer-Encoding: chunked", body=b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n"),
        answer("100 Continue") + answer("200 OK", "Content-Length: 9", body=b"Wikipedia"),
        answer("200 OK", "content-length: 9", "Folded: a", " b", body=b"Wikipedia"),
    ],
    ids=["chunked with extensions and trailers", "after 100 Continue", "lower-case and folded headers"],
)
async def test_framings_are_read_to_their_end(framed: bytes) -> None:
    async with serving([framed, answer("204 No Content")]) as (server, port):
        p = pool()
        got = await post(p, port)
        assert (got.status, got.head) == (200, b"Wikipedia"[:8])
        assert (await post(p, port)).status == 204 and server.connections == 1
        await p.aclose()


@pytest.mark.parametrize(
    "ending",
    [
        [answer("200 OK", "Connection: close", "Content-Length: 2", body=b"ok")],
        [answer("200 OK", body=b"to the end"), None],  # no length: the body runs to the connection's end
        [answer("200 OK", "Content-Length: 100", body=b"x" * 100)],  # beyond read_limit: not read to its end
        [b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"],
    ],
    ids=["connection close", "no length", "longer than the read limit", "HTTP/1.0"],
)
async def test_a_connection_that_cannot_go_on_is_not_reused(ending: list[bytes | None]) -> None:
    async with serving([*ending, answer("204 No Content")]) as (server, port):
        p = pool()
        assert (await post(p, port)).status == 200
        assert (await post(p, port)).status == 204
        assert server.connections == 2  # the second request did not go down the first connection
        await p.aclose()


async def test_a_keep_alive_connection_closed_while_idle_is_not_used_again() -> None:
    closing: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(len(BODY))
        writer.write(answer("204 No Content"))
        await writer.drain()
        closing.append(writer)
        writer.close()  # a keep-alive timeout on the server's side

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        p = pool()
        assert (await post(p, port)).status == 204
        await asyncio.sleep(0.05)  # the close arrives while the connection is idle
        assert (await post(p, port)).status == 204  # on a new connection, not a failed attempt
        assert len(closing) == 2
        await p.aclose()


@pytest.mark.parametrize(
    "wrong,message",
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not an HTTP/1.x answer"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "not a header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n", "Content-Length is not a number"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunked body is malformed"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000, "head is longer than"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed the connection before answering"),
    ],
)
async def test_an_answer_that_is_not_http_is_an_error_with_a_reason(wrong: bytes, message: str) -> None:
    async with serving([wrong, None]) as (_, port):
        p = pool()
        with pytest.raises(HttpError, match=message):
            await post(p, port)
        await p.aclose()


async def test_tls_verifies_the_server_certificate() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("hooks.localhost", "127.0.0.1")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with serving([answer("200 OK", "Content-Length: 2", body=b"ok")] * 2, tls=server_context) as (server, port):
        p = pool(context=client_context)
        got = await post(p, port, scheme="https")
        assert (got.status, got.head) == (200, b"ok")
        assert (await post(p, port, scheme="https")).status == 200 and server.connections == 1
        await p.aclose()
    untrusted = pool()  # the system's CAs do not know this one
    async with serving([answer("200 OK")], tls=server_context) as (_, port):
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
            await post(untrusted, port, scheme="https")


async def test_the_guard_refuses_before_connecting() -> None:
    refusing = Pool(GuardedBackend(TargetPolicy()), 1, ssl_context())
    async with serving([answer("204 No Content")]) as (server, port):
        with pytest.raises(Exception, match="target refused"):
            await post(refusing, port)
        assert server.connections == 0


def test_authority_leaves_out_the_default_port() -> None:
    assert Origin("https", "example.com", 443).authority == b"example.com"
    assert Origin("http", "example.com", 8080).authority == b"example.com:8080"
    assert Origin("http", "::1", 80).authority == b"[::1]"


async def test_a_pool_keeps_at_most_its_size_of_idle_connections_across_origins() -> None:
    two = [answer("204 No Content")] * 2  # each server waits for a second request
    async with serving(two) as (first, port1), serving(two) as (second, port2):
        p = pool(size=1)  # a lane of callbacks: one at a time, to any origin
        assert (await post(p, port1)).status == 204
        assert (await post(p, port2)).status == 204  # the first origin's idle connection goes
        await asyncio.sleep(0.05)
        assert (first.ended, second.ended) == (1, 0)
        await p.aclose()
