"""Operations endpoints: `GET /healthz`."""

from __future__ import annotations

import msgspec
from litestar import get

from glimpze import __version__
from glimpze.errors import GlimpzeError
from glimpze.routes.common import App


class Health(msgspec.Struct):
    status: str
    version: str
    database: str


class Unhealthy(GlimpzeError):
    status = 503
    code = "unhealthy"
    title = "Not healthy"


@get("/healthz", tags=["operations"], summary="Liveness and database check")
async def healthz(glimpze: App) -> Health:
    try:
        await glimpze.db.fetch_value("SELECT count(*) FROM projects")
    except Exception as exc:
        raise Unhealthy(f"The database cannot be read: {exc}") from None
    if not glimpze.db.writer_alive:
        raise Unhealthy("The database writer has stopped.")
    return Health("ok", __version__, "ok")
