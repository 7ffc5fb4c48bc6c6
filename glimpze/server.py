"""The ASGI server around the app: uvicorn, with a shutdown that ends SSE streams first.

uvicorn runs the app's lifespan shutdown only after open connections finish (or its graceful
timeout passes), and an SSE stream never finishes on its own: so `Glimpze.stop()` is called as
soon as shutdown begins (SIGTERM, Ctrl-C), and streams end at once (DESIGN §7, Operations).
"""

from __future__ import annotations

import socket

import uvicorn

from glimpze.core import Glimpze


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, glimpze: Glimpze) -> None:
        super().__init__(config)
        self.glimpze = glimpze

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.glimpze.stop()
        await super().shutdown(sockets)
