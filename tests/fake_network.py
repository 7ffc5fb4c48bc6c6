"""Outgoing HTTP answered in-process, at the network layer: `create_app(network=FakeNetwork(answer))`.

The app's outgoing connection pools (deliveries, callbacks, Web Push) then connect to no socket:
every request is parsed with h11 and handed to `answer(request: httpx.Request) -> httpx.Response`
(raise `httpx.ConnectError` for a receiver that is down). For fuzzing and property tests that
must not reach any address; tests of real delivery use a real receiver (tests/receiver.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import h11
import httpcore
import httpx

Answer = Callable[[httpx.Request], httpx.Response]


class FakeNetwork(httpcore.AsyncNetworkBackend):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(self.answer, host, port)

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("no unix sockets here")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Stream(httpcore.AsyncNetworkStream):
    """One keep-alive connection: requests in through h11, the answers' bytes queued for `read`."""

    def __init__(self, answer: Answer, host: str, port: int) -> None:
        self._answer = answer
        self._origin = f"http://{host}:{port}"
        self._h11 = h11.Connection(h11.SERVER)
        self._request: h11.Request | None = None
        self._body = b""
        self._out = b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:  # httpcore writes b"" to end a Content-Length body; h11 would read it as EOF
            return
        self._h11.receive_data(buffer)
        while True:
            event = self._h11.next_event()
            if isinstance(event, h11.Request):
                self._request, self._body = event, b""
            elif isinstance(event, h11.Data):
                self._body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self._respond()
                return
            else:  # NEED_DATA (more to come), PAUSED or ConnectionClosed
                return

    def _respond(self) -> None:
        assert self._request is not None
        request = httpx.Request(
            self._request.method.decode(),
            self._origin + self._request.target.decode(),
            headers=[(k.decode(), v.decode("latin-1")) for k, v in self._request.headers],
            content=self._body,
        )
        try:
            response = self._answer(request)
        except httpx.ConnectError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        headers = [(k, v) for k, v in response.headers.raw if k.lower() != b"content-length"]
        self._out += self._h11.send(
            h11.Response(
                status_code=response.status_code, headers=[*headers, (b"content-length", b"%d" % len(response.content))]
            )
        )
        if response.content:
            self._out += self._h11.send(h11.Data(data=response.content))
        self._out += self._h11.send(h11.EndOfMessage())
        self._h11.start_next_cycle()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data, self._out = self._out[:max_bytes], self._out[max_bytes:]
        return data

    async def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return self  # https:// URLs too: the answers come from `answer` either way

    async def aclose(self) -> None:
        pass

    def get_extra_info(self, info: str) -> Any:
        return None
