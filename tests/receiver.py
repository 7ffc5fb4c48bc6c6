"""A real HTTP receiver on 127.0.0.1 for webhook, callback and push tests.

It records every request (and every connection: `count_connections()`) and answers from a script (status codes and
headers, in order), so a test can make it fail N times, ask for a retry later, answer 410, or hold
requests until released.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    target: str = ""  # the request target as sent: path and raw query string


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


class Receiver:
    """`with Receiver() as r:` — `r.url`, `r.requests`, `r.script([...])`, `await r.wait_for(n)`."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._script: list[Answer] = []
        self.default = Answer()
        self.hold = threading.Event()  # cleared: requests wait until set (a slow receiver)
        self.hold.set()
        self.in_flight = 0
        self.max_in_flight = 0
        self._peers: list[Any] = []  # every connection accepted, request or not, in order
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without TCP_NODELAY the body waits ~40 ms
            # for the sender's delayed ACK, and a delivery takes 40 ms instead of 1.
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:  # the sender went away mid-request (e.g. it was killed)
                    self.close_connection = True
                    return
                with receiver._lock:
                    receiver.in_flight += 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
                receiver.hold.wait(30)
                parts = urlsplit(self.path)
                with receiver._lock:
                    receiver.in_flight -= 1
                    receiver.requests.append(
                        Received(
                            self.command,
                            parts.path,
                            parse_qs(parts.query),
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            self.path,
                        )
                    )
                    answer = receiver._script.pop(0) if receiver._script else receiver.default
                    receiver._lock.notify_all()
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = _handle

        class Server(ThreadingHTTPServer):
            def verify_request(self, request: Any, client_address: Any) -> bool:
                with receiver._lock:
                    receiver._peers.append(client_address)
                    receiver._lock.notify_all()
                return True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def count_connections(self, timeout: float = 10.0) -> int:
        """How many connections reached the receiver, every one made before this call included: the
        kernel hands them over in order, so once a probe connection of its own is accepted, so is
        every earlier one (a connection made but not yet accepted would otherwise go uncounted)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as probe:
            me = probe.getsockname()
            with self._lock:
                if not self._lock.wait_for(lambda: me in self._peers, timeout):
                    raise AssertionError("the receiver did not accept a connection")
                self._peers.remove(me)
                return len(self._peers)

    def script(self, answers: list[Answer]) -> None:
        """Answer the next requests with these, then with `default`."""
        with self._lock:
            self._script = list(answers)

    def wait_for_sync(self, count: int, timeout: float = 10.0) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: len(self.requests) >= count, timeout)

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Wait (without blocking the event loop) until `count` requests arrived."""
        if not await asyncio.to_thread(self.wait_for_sync, count, timeout):
            raise AssertionError(f"receiver got {len(self.requests)} requests, expected {count} within {timeout} s")

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
