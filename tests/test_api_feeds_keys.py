"""/v1/feeds and /v1/keys: CRUD, key rotation with grace, revocation, authentication errors."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from glimpze.clock import FakeClock, iso
from glimpze.config import Config
from tests.conftest import Api, write_locked
from tests.pg import stored_bytes

pytestmark = pytest.mark.anyio

STATUS = {"schema_type": "status", "content": {"title": "API", "status": "info", "message": "ok"}}


async def test_create_feed_returns_webhook_url_and_write_key_once(api: Api) -> None:
    feed = await api.feed("counter", name="Signups")
    assert feed["id"].startswith("fd_")
    assert feed["write_key"].startswith("gzw_")
    assert feed["webhook_url"] == f"http://localhost:8080/ingest/{feed['id']}"
    assert feed["plan"] == "free"
    assert feed["write_key_prefix"] == feed["write_key"][:12]

    fetched = (await api.get(f"/v1/feeds/{feed['id']}")).json()
    assert "write_key" not in fetched
    assert fetched["name"] == "Signups"
    listed = (await api.get("/v1/feeds")).json()
    assert [f["id"] for f in listed["data"]] == [feed["id"]]
    assert listed["next_cursor"] is None
    stored = stored_bytes(api.glimpze.config.db_path)
    assert feed["write_key"].encode() not in stored  # only its hash is kept


@pytest.mark.parametrize(
    "body,path",
    [
        ({"name": "x", "schema_type": "gauge"}, "$.schema_type"),
        ({"name": "x", "schema_type": "summary", "plan": "gold"}, "$.plan"),
        ({"name": "", "schema_type": "summary"}, "$.name"),
        ({"schema_type": "summary"}, "$.name"),
        ({"name": "x", "schema_type": "summary", "colour": 1}, "$.colour"),
    ],
)
async def test_create_feed_validation(api: Api, body: dict[str, Any], path: str) -> None:
    response = await api.post("/v1/feeds", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["path"] == path


async def test_patch_feed_name_and_plan(api: Api) -> None:
    feed = await api.feed("summary")
    response = await api.patch(f"/v1/feeds/{feed['id']}", json={"name": "Revenue", "plan": "pro"})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Revenue"
    assert response.json()["plan"] == "pro"
    assert response.json()["usage"]["minute"]["limit"] == 60
    bad = await api.patch(f"/v1/feeds/{feed['id']}", json={"plan": "nope"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "$.plan"


async def test_delete_feed(api: Api) -> None:
    feed = await api.feed("summary")
    assert (await api.delete(f"/v1/feeds/{feed['id']}")).status_code == 204
    assert (await api.get(f"/v1/feeds/{feed['id']}")).status_code == 404
    assert (await api.ingest(feed, STATUS)).status_code == 404
    assert (await api.delete(f"/v1/feeds/{feed['id']}")).status_code == 404


async def test_rotate_write_key_stops_the_old_key(api: Api) -> None:
    feed = await api.feed("status")
    rotated = (await api.post(f"/v1/feeds/{feed['id']}/rotate-key")).json()
    assert rotated["write_key"] != feed["write_key"]
    assert (await api.ingest(feed, STATUS)).status_code == 401
    assert (await api.ingest({**feed, "write_key": rotated["write_key"]}, STATUS)).status_code == 202


async def test_rotate_write_key_with_grace(api: Api, clock: FakeClock) -> None:
    feed = await api.feed("status", plan="pro")
    response = await api.post(f"/v1/feeds/{feed['id']}/rotate-key", json={"grace_seconds": 60})
    assert response.status_code == 200
    assert (await api.ingest(feed, STATUS)).status_code == 202
    clock.advance(61)
    assert (await api.ingest(feed, STATUS)).status_code == 401


async def test_api_key_lifecycle(api: Api, clock: FakeClock) -> None:
    created = await api.post("/v1/keys", json={"name": "n8n"})
    assert created.status_code == 201
    key = created.json()
    assert key["key"].startswith("gzp_") and key["prefix"] == key["key"][:12]
    n8n = {"Authorization": f"Bearer {key['key']}"}
    assert (await api.client.get("/v1/feeds", headers=n8n)).status_code == 200

    listed = (await api.get("/v1/keys")).json()["data"]
    assert {k["name"] for k in listed} == {"admin", "n8n"}
    assert all("key" not in k for k in listed)
    n8n_listed = next(k for k in listed if k["name"] == "n8n")
    assert n8n_listed["last_used_at"] is not None

    rotated = (await api.post(f"/v1/keys/{key['id']}/rotate", json={"grace_seconds": 3600})).json()
    assert rotated["previous_key_expires_at"] is not None
    fresh = {"Authorization": f"Bearer {rotated['key']}"}
    assert (await api.client.get("/v1/feeds", headers=n8n)).status_code == 200  # in its grace period
    assert (await api.client.get("/v1/feeds", headers=fresh)).status_code == 200
    clock.advance(3601)
    expired = await api.client.get("/v1/feeds", headers=n8n)
    assert expired.status_code == 401 and expired.json()["code"] == "invalid_api_key"

    assert (await api.delete(f"/v1/keys/{key['id']}")).status_code == 204
    assert (await api.client.get("/v1/feeds", headers=fresh)).status_code == 401


async def test_the_last_api_key_cannot_be_revoked(api: Api) -> None:
    [admin] = (await api.get("/v1/keys")).json()["data"]
    response = await api.delete(f"/v1/keys/{admin['id']}")
    assert response.status_code == 409
    assert (await api.get("/v1/keys")).status_code == 200


async def test_last_used_at_is_written_at_most_once_a_minute(api: Api, clock: FakeClock) -> None:
    await api.get("/v1/feeds")
    await api.glimpze.flush()
    written = await api.glimpze.db.fetch_value("SELECT last_used_at FROM api_keys")
    clock.advance(30)
    await api.get("/v1/feeds")
    await api.glimpze.flush()
    assert await api.glimpze.db.fetch_value("SELECT last_used_at FROM api_keys") == written
    clock.advance(31)
    await api.get("/v1/feeds")
    await api.glimpze.flush()
    assert await api.glimpze.db.fetch_value("SELECT last_used_at FROM api_keys") == written + 61


async def test_a_keys_last_use_is_never_hidden_during_a_flush(api: Api, config: Config, clock: FakeClock) -> None:
    other = (await api.post("/v1/keys", json={"name": "ci"})).json()
    assert (await api.client.get("/v1/feeds", headers={"Authorization": f"Bearer {other['key']}"})).status_code == 200
    used_at = iso(clock.now())

    async def shown() -> str | None:
        keys = (await api.get("/v1/keys")).json()["data"]
        return next(k["last_used_at"] for k in keys if k["id"] == other["id"])

    clock.advance(5)
    assert await shown() == used_at
    with write_locked(config.db_path):
        flush = asyncio.create_task(api.glimpze.keys.flush_last_used())
        await asyncio.sleep(0.05)
        assert not flush.done()
        assert await shown() == used_at  # mid-flush: not the row's (empty) value
    await flush
    assert await shown() == used_at
    assert await api.glimpze.db.fetch_value("SELECT last_used_at FROM api_keys WHERE id = ?", (other["id"],)) == (
        clock.now() - 5
    )


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Bearer gzp_" + "a" * 40}, {"Authorization": "gzp_x"}],
)
async def test_v1_needs_a_valid_api_key(api: Api, headers: dict[str, str]) -> None:
    response = await api.client.get("/v1/feeds", headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_write_key_is_not_an_api_key(api: Api) -> None:
    feed = await api.feed("status")
    response = await api.client.get("/v1/feeds", headers={"Authorization": f"Bearer {feed['write_key']}"})
    assert response.status_code == 401


async def test_creates_that_mint_secrets_refuse_idempotency_keys(api: Api) -> None:
    response = await api.post(
        "/v1/feeds", json={"name": "x", "schema_type": "summary"}, headers={"Idempotency-Key": "k"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["path"] == "header.Idempotency-Key"


async def test_feed_list_pagination(api: Api) -> None:
    ids = [(await api.feed("status", name=f"f{i}"))["id"] for i in range(5)]
    page1 = (await api.get("/v1/feeds?limit=2")).json()
    page2 = (await api.get(f"/v1/feeds?limit=2&cursor={page1['next_cursor']}")).json()
    page3 = (await api.get(f"/v1/feeds?limit=2&cursor={page2['next_cursor']}")).json()
    assert [f["id"] for f in page1["data"] + page2["data"] + page3["data"]] == ids
    assert page3["next_cursor"] is None
    for bad in ("0", "101", "x"):
        response = await api.get(f"/v1/feeds?limit={bad}")
        assert response.status_code == 422, bad
        assert response.json()["errors"][0]["path"] == "query.limit"


async def test_unknown_routes_and_methods_answer_problems(api: Api) -> None:
    missing = await api.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    wrong = await api.client.put("/healthz")
    assert wrong.status_code == 405 and wrong.json()["code"] == "method_not_allowed"
    large = await api.post("/v1/agents", content=b'{"name": "' + b"a" * 2**20 + b'"}')
    assert large.status_code == 413 and large.json()["code"] == "payload_too_large"
    assert large.json()["detail"] == "The body is larger than 1 MiB, the most this endpoint accepts."


async def test_options_allows_every_method_the_document_shows(api: Api) -> None:
    """Litestar 2.x answered OPTIONS with the methods of one handler of the path (found by schemathesis)."""
    spec = (await api.client.get("/schema/openapi.json")).json()
    for path, methods in spec["paths"].items():
        documented = {m.upper() for m in methods if m in ("get", "post", "put", "patch", "delete")}
        answer = await api.client.options(re.sub(r"{[^}]+}", "x", path))
        allowed = {m.strip() for m in answer.headers["allow"].split(",")} - {"OPTIONS"}
        assert allowed == documented, (path, answer.headers["allow"])


async def test_healthz_and_openapi(api: Api) -> None:
    health = await api.client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    spec = (await api.client.get("/schema/openapi.json")).json()
    ingest = spec["paths"]["/ingest/{feed_id}"]["post"]
    assert "requestBody" in ingest
    assert {"SummaryEvent", "StatusEvent", "CounterEvent", "ApprovalEvent"} <= set(spec["components"]["schemas"])
    bodiless = {
        "/v1/webhooks/{webhook_id}/test",
        "/v1/deliveries/{delivery_id}/replay",
        "/v1/ctas/rotate-secret",
        "/v1/push/targets/{target_id}/test",
    }
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if (
                method in ("post", "patch", "put")
                and path.startswith("/v1")
                and path not in bodiless
                and not path.endswith(("rotate", "rotate-key", "rotate-read-token"))
            ):
                assert "requestBody" in operation, (method, path)
            if method in ("get", "post", "patch", "put", "delete"):
                assert "application/problem+json" in operation["responses"]["default"]["content"], (method, path)
