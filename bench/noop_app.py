"""The baseline for bench/ingest.py: a minimal Litestar app whose POST decodes a JSON body into a
msgspec Struct and answers 202, served by the same ASGI server with the same options as Glimpze."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar, Request, Response, post


class Echo(msgspec.Struct):
    schema_type: str
    content: dict[str, Any]


DECODER = msgspec.json.Decoder(Echo)


@post("/noop/{feed_id:str}", status_code=202)
async def noop(feed_id: str, request: Request) -> Response[bytes]:
    event = DECODER.decode(await request.body())
    body = msgspec.json.encode({"id": "evt_0", "feed_id": feed_id, "status": "accepted", "schema": event.schema_type})
    return Response(body, status_code=202, media_type="application/json")


app = Litestar([noop], openapi_config=None, logging_config=None)
