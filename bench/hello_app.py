"""The start-up baseline for bench/footprint.py: the smallest ASGI app, one 200 to everything.

python -m uvicorn bench.hello_app:app --lifespan off --port PORT
"""

from __future__ import annotations

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})
