"""Operations endpoints: `GET /healthz` and `GET /metrics`."""

from __future__ import annotations

import hmac

import msgspec
from litestar import Response, get

from glimpze import __version__
from glimpze.errors import Forbidden, InvalidMetricsToken, Unhealthy
from glimpze.ops.metrics import CONTENT_TYPE
from glimpze.services import Services
from glimpze.web.common import AnyRequest, App, bearer, client_address


class Health(msgspec.Struct):
    status: str
    version: str
    database: str


@get("/healthz", tags=["operations"], summary="Liveness and database check")
async def healthz(glimpze: App) -> Health:
    try:
        await glimpze.db.fetch_value("SELECT count(*) FROM projects")
    except Exception as exc:
        raise Unhealthy(f"The database cannot be read: {exc}") from None
    if not glimpze.db.writer_alive:
        raise Unhealthy("The database writer has stopped.")
    return Health("ok", __version__, "ok")


@get(
    "/metrics",
    tags=["operations"],
    summary="Prometheus metrics (text format)",
    description="Metrics cover every project, so reading them is the operator's right: `Authorization: Bearer` "
    "with the `[metrics] token`, or, when no token is set, an API key of the default project (the admin key "
    "printed at first start is one). A key of another project gets 403 `forbidden`. (`[metrics] listen` serves "
    "them without authentication on a separate address.)",
    media_type=CONTENT_TYPE,
    security=[{"metricsToken": []}, {"apiKey": []}],
)
async def metrics(request: AnyRequest, glimpze: App) -> Response[bytes]:
    await authorize_metrics(glimpze, bearer(request), client_address(request, glimpze))
    return Response(await glimpze.metrics.render(), media_type=CONTENT_TYPE)


async def authorize_metrics(glimpze: Services, secret: str | None, client: str) -> None:
    """The `[metrics] token` when one is set, else an API key of the default project (the
    operator's): metrics name every project's feeds. Behind the failed-authentication limiter
    like every credential."""
    token = glimpze.config.metrics.token

    async def check() -> None:
        if token is None:
            principal = await glimpze.keys.authenticate(secret)
            if principal.project_id != await glimpze.keys.default_project_id():
                raise Forbidden(
                    "Metrics cover every project: they are read with an API key of the default project, "
                    "the [metrics] token, or on the [metrics] listen address, not with another project's key."
                )
        elif secret is None or not hmac.compare_digest(secret.encode(), token.encode()):
            raise InvalidMetricsToken("Send the [metrics] token from glimpze.toml as 'Authorization: Bearer …'.")

    await glimpze.auth_failures.guard(client, check)
