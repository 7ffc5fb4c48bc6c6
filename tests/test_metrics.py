"""GET /metrics: the Prometheus text format, what it counts, and who may read it."""

from __future__ import annotations

import asyncio
import math
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from glimpze import __version__
from glimpze.clock import FakeClock
from glimpze.config import load
from glimpze.ops.metrics import Registry
from tests.conftest import Api, running
from tests.receiver import Answer, Receiver
from tests.server import UNLIMITED_PLAN, Server, free_port

pytestmark = pytest.mark.anyio


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample, keyed by (name, labels); parsing also proves the format is valid."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, frozenset(labels.items()))]


async def scrape(api: Api, **kw: Any) -> str:
    response = await api.get("/metrics", **kw)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


async def test_metrics_count_ingest_per_feed(api: Api) -> None:
    feed = await api.feed("counter")  # free plan: 6 a minute
    other = await api.feed("counter")
    for i in range(8):
        await api.ingest(feed, {"schema_type": "counter", "content": {"title": "n", "count": i}})
    await api.ingest(other, {"schema_type": "counter", "content": {"title": "n", "count": 1}})
    await api.ingest(feed, b"{not json")  # answered, not counted as an event

    text = await scrape(api)
    assert value(text, "glimpze_ingest_events_total", feed_id=feed["id"], status="accepted") == 6
    assert value(text, "glimpze_ingest_events_total", feed_id=feed["id"], status="throttled") == 2
    assert value(text, "glimpze_ingest_events_total", feed_id=other["id"], status="accepted") == 1
    # every ingest request is timed, whatever its answer
    assert value(text, "glimpze_ingest_duration_seconds_count") == 10
    assert value(text, "glimpze_ingest_duration_seconds_bucket", le="+Inf") == 10
    assert value(text, "glimpze_ingest_duration_seconds_sum") > 0
    backend = api.glimpze.db.backend  # the suite's pass: sqlite, or postgresql
    assert value(text, "glimpze_database_backend", backend=backend) == 1
    if backend == "sqlite":
        assert value(text, "glimpze_database_bytes", file="db") > 0
    assert value(text, "glimpze_info", version=__version__) == 1
    assert value(text, "process_resident_memory_bytes") > 10_000_000


async def test_metrics_show_the_delivery_queue(tmp_path: Path, clock: FakeClock) -> None:
    (tmp_path / "glimpze.toml").write_text('[webhooks]\nallow_targets = ["127.0.0.1"]\n')
    config = load(tmp_path / "glimpze.toml", env={}, overrides={"data_dir": str(tmp_path / "data")})
    with Receiver() as receiver:
        receiver.default = Answer(500)
        async with running(config, clock) as api:
            await api.glimpze.dispatcher.stop_runner()
            hook = await api.post("/v1/webhooks", json={"url": receiver.url, "events": ["feed.event"]})
            assert hook.status_code == 201
            feed = await api.feed("counter")
            for i in range(3):
                await api.ingest(feed, {"schema_type": "counter", "content": {"title": "n", "count": i}})

            text = await scrape(api)
            assert value(text, "glimpze_deliveries_queued") == 3
            assert value(text, "glimpze_deliveries_leased") == 0
            assert value(text, "glimpze_delivery_oldest_due_seconds") == 0
            clock.advance(2)
            assert value(await scrape(api), "glimpze_delivery_oldest_due_seconds") == 2

            await api.glimpze.dispatcher.deliver_due(clock.now())  # three failures, retried in ~5 s
            text = await scrape(api)
            assert value(text, "glimpze_delivery_attempts_total", outcome="failed") == 3
            assert value(text, "glimpze_deliveries_queued") == 3
            assert value(text, "glimpze_delivery_oldest_due_seconds") == 0  # none is due yet

            receiver.default = Answer(200)
            clock.advance(6)
            await api.glimpze.dispatcher.deliver_due(clock.now())
            text = await scrape(api)
            assert value(text, "glimpze_delivery_attempts_total", outcome="delivered") == 3
            assert value(text, "glimpze_deliveries_queued") == 0


async def test_metrics_need_an_api_key(api: Api) -> None:
    assert (await api.client.get("/metrics")).status_code == 401
    wrong = await api.client.get("/metrics", headers={"Authorization": "Bearer gzp_wrong"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_api_key"


async def test_metrics_refuse_keys_of_other_projects(api: Api) -> None:
    """Metrics name every project's feeds: reading them is the operator's right."""
    other = await api.feed("counter")
    await api.ingest(other, {"schema_type": "counter", "content": {"title": "n", "count": 1}})
    _, client_key = await api.glimpze.keys.create_project("Client site")
    refused = await api.client.get("/metrics", headers={"Authorization": f"Bearer {client_key.key}"})
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "forbidden" and other["id"] not in refused.text
    # any key of the default project will do, not only the admin key printed at first start
    made = await api.post("/v1/keys", json={"name": "prometheus"})
    assert made.status_code == 201, made.text
    scraped = await api.client.get("/metrics", headers={"Authorization": f"Bearer {made.json()['key']}"})
    assert scraped.status_code == 200 and other["id"] in scraped.text


async def test_a_metrics_token_replaces_api_keys(tmp_path: Path, clock: FakeClock) -> None:
    token = "m" * 32
    (tmp_path / "glimpze.toml").write_text(f'[metrics]\ntoken = "{token}"\n')
    config = load(tmp_path / "glimpze.toml", env={}, overrides={"data_dir": str(tmp_path / "data")})
    async with running(config, clock) as api:
        refused = await api.get("/metrics")  # the admin API key
        assert refused.status_code == 401 and refused.json()["code"] == "invalid_metrics_token"
        assert (await api.client.get("/metrics", headers={"Authorization": f"Bearer {token}x"})).status_code == 401
        ok = await api.client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and "glimpze_deliveries_queued" in ok.text


async def test_guessing_the_metrics_token_is_rate_limited(tmp_path: Path, clock: FakeClock) -> None:
    (tmp_path / "glimpze.toml").write_text(f'[metrics]\ntoken = "{"t" * 20}"\n')
    config = load(tmp_path / "glimpze.toml", env={}, overrides={"data_dir": str(tmp_path / "data")})
    async with running(config, clock) as api:
        statuses = [
            (await api.client.get("/metrics", headers={"Authorization": f"Bearer guess{i}"})).status_code
            for i in range(25)
        ]
        assert statuses[:20] == [401] * 20 and statuses[20:] == [429] * 5


def test_registry_renders_valid_text_and_refuses_conflicting_declarations() -> None:
    registry = Registry()
    counter = registry.counter("x_total", 'help with "quotes" and \\ backslash', ("who",))
    counter.inc('a"b\\c\nd')
    counter.inc("plain", amount=2.5)
    assert registry.counter("x_total", "again", ("who",)) is counter
    with pytest.raises(ValueError):
        registry.gauge("x_total", "no", ("who",))
    with pytest.raises(ValueError):
        registry.counter("x_total", "no", ("other",))
    histogram = registry.histogram("h_seconds", "h", buckets=(0.1, 1))
    for observed in (0.05, 0.1, 0.5, 5):
        histogram.observe(observed)
    registry.gauge("g", "empty gauge")  # declared, no samples yet: HELP and TYPE only

    text = asyncio.run(registry.render()).decode()
    assert value(text, "x_total", who='a"b\\c\nd') == 1
    assert value(text, "x_total", who="plain") == 2.5
    # cumulative buckets: le is inclusive
    assert [value(text, "h_seconds_bucket", le=le) for le in ("0.1", "1", "+Inf")] == [2, 3, 4]
    assert math.isclose(value(text, "h_seconds_sum"), 5.65)
    assert "# TYPE g gauge" in text


@pytest.mark.slow
def test_a_separate_listen_address_serves_metrics_without_auth(tmp_path: Path) -> None:
    metrics_port = free_port()
    server = Server(tmp_path, UNLIMITED_PLAN + f'\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n')
    server.start()
    try:
        open_metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert open_metrics.status_code == 200
        assert open_metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert value(open_metrics.text, "glimpze_deliveries_queued") == 0
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/v1/feeds", timeout=5).status_code == 404
        # the main port still wants a credential
        assert httpx.get(f"{server.url}/metrics", timeout=5).status_code == 401
        admin = {"Authorization": f"Bearer {server.admin_key()}"}
        assert httpx.get(f"{server.url}/metrics", headers=admin, timeout=5).status_code == 200
        assert server.terminate() == 0
    finally:
        server.kill()


@pytest.mark.slow
def test_a_taken_metrics_address_stops_the_start(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        server = Server(tmp_path, UNLIMITED_PLAN + f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
        with pytest.raises(RuntimeError, match="exited with 1"):
            server.start()
    assert f"metrics.listen: cannot listen on 127.0.0.1:{port}" in server.output()
