"""The n8n workflows of examples/n8n (issue 21), replayed against a real Glimpze.

Each file is checked as an n8n workflow export (unique node names, connections between existing
nodes, the node types and versions the guide names). The request each HTTP Request node would
make is read from its parameters, with the few `{{ }}` expressions it uses taken from a small
table (an expression missing from the table fails the test: the body must not depend on what
was not foreseen, such as `$now`), and sent to the real app; a local receiver stands in for
n8n's resume URL and webhook. The Code nodes' JavaScript runs in `node` with a stand-in for what
n8n gives it (tests/n8n_code.js).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook

from glimpze.clock import FakeClock
from glimpze.delivery.signing import verify_glimpze_signature
from tests.conftest import Api, driven, out_events
from tests.receiver import Received, Receiver
from tests.server import REPO, UNLIMITED_PLAN

pytestmark = pytest.mark.anyio

EXAMPLES = REPO / "examples" / "n8n"
HARNESS = Path(__file__).with_name("n8n_code.js")
PLACEHOLDER_SERVER = "https://glimpze.example.com"
PLACEHOLDER_SECRET = "whsec_PASTE_THE_WEBHOOK_SIGNING_SECRET"
# The node versions the guide names (n8n's own exports carry these typeVersions).
VERSIONS = {
    "n8n-nodes-base.httpRequest": 4.2,
    "n8n-nodes-base.wait": 1.1,
    "n8n-nodes-base.webhook": 2,
    "n8n-nodes-base.code": 2,
    "n8n-nodes-base.switch": 3,
    "n8n-nodes-base.if": 2,
    "n8n-nodes-base.noOp": 1,
    "n8n-nodes-base.manualTrigger": 1,
    "n8n-nodes-base.scheduleTrigger": 1.2,
}
EXPRESSION = re.compile(r"\{\{\s*(.*?)\s*\}\}")


@pytest.fixture
def clock() -> FakeClock:
    # Real time: the Code node and the standardwebhooks verifier compare timestamps with the clock.
    return FakeClock(float(int(time.time())))


@pytest.fixture
async def api(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Api]:
    async with driven(tmp_path, clock, UNLIMITED_PLAN) as api:
        yield api


def workflow(name: str) -> dict[str, Any]:
    """An example, checked as an n8n workflow export."""
    flow: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    assert set(flow) == {"name", "nodes", "connections", "settings"}, name
    names = [node["name"] for node in flow["nodes"]]
    assert len(names) == len(set(names)), f"node names repeat in {name}"
    for node in flow["nodes"]:
        assert VERSIONS[node["type"]] == node["typeVersion"], node["name"]
        assert {"id", "name", "type", "typeVersion", "position", "parameters"} <= set(node), node["name"]
        if node["type"] in ("n8n-nodes-base.wait", "n8n-nodes-base.webhook"):
            assert node["webhookId"], node["name"]
    ids = [node["id"] for node in flow["nodes"]]
    assert len(ids) == len(set(ids))
    for source, outputs in flow["connections"].items():
        assert source in names, source
        for output in outputs["main"]:
            assert all(link["node"] in names and link["type"] == "main" for link in output), source
    return flow


def node_named(flow: dict[str, Any], name: str) -> dict[str, Any]:
    return next(node for node in flow["nodes"] if node["name"] == name)


def nodes_of(flow: dict[str, Any], node_type: str) -> list[dict[str, Any]]:
    return [node for node in flow["nodes"] if node["type"] == f"n8n-nodes-base.{node_type}"]


def next_node(flow: dict[str, Any], source: str, output: int = 0) -> str:
    [link] = flow["connections"][source]["main"][output]
    return str(link["node"])


def evaluate(value: str, table: dict[str, str]) -> str:
    """An n8n parameter: as it is, or (starting with "=") with each `{{ expression }}` taken from
    `table` (KeyError for one the table does not have)."""
    if not value.startswith("="):
        return value
    return EXPRESSION.sub(lambda found: table[found[1]], value[1:])


def http_request(
    node: dict[str, Any], table: dict[str, str], *, server: str, feeds: dict[str, str], credential: str
) -> tuple[str, str, dict[str, str], bytes | None]:
    """(method, URL, headers, body) of the request an HTTP Request node (v4.2) makes; its Header
    Auth credential is `credential` (the value of `Authorization`)."""
    params = node["parameters"]
    url = evaluate(params["url"], table).replace(PLACEHOLDER_SERVER, server)
    for placeholder, feed_id in feeds.items():
        url = url.replace(placeholder, feed_id)
    headers: dict[str, str] = {}
    if params.get("authentication") == "genericCredentialType":
        assert params["genericAuthType"] == "httpHeaderAuth"
        headers["Authorization"] = credential
    if params.get("sendHeaders"):
        for header in params["headerParameters"]["parameters"]:
            headers[header["name"]] = evaluate(header["value"], table)
    body = None
    if params.get("sendBody"):
        assert params["specifyBody"] == "json"
        body = json.dumps(json.loads(evaluate(params["jsonBody"], table))).encode()
        headers["Content-Type"] = "application/json"
    return params["method"], url, headers, body


def run_code(node: dict[str, Any], items: list[dict[str, Any]], *, allow: str = "crypto", **context: Any) -> Any:
    """Run a Code node's JavaScript with node, as n8n would ("Run Once for All Items")."""
    assert node["parameters"]["mode"] == "runOnceForAllItems"
    code = node["parameters"]["jsCode"].replace(PLACEHOLDER_SECRET, context.pop("secret", PLACEHOLDER_SECRET))
    nodejs = shutil.which("node")
    assert nodejs, "node (Node.js 20) is needed to run the Code nodes"
    run = subprocess.run(
        [nodejs, str(HARNESS)],
        input=json.dumps({"code": code, "items": items, **context}),
        env={**os.environ, "NODE_FUNCTION_ALLOW_BUILTIN": allow},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def switch_output(node: dict[str, Any], table: dict[str, str]) -> int:
    """Which output of a Switch (v3, rules) an item leaves by: the first rule that matches."""
    for index, rule in enumerate(node["parameters"]["rules"]["values"]):
        [condition] = rule["conditions"]["conditions"]
        assert condition["operator"] == {"type": "string", "operation": "equals"}
        if evaluate(condition["leftValue"], table) == condition["rightValue"]:
            return index
    raise AssertionError("no rule matched")


async def deliver(api: Api, clock: FakeClock) -> int:
    return int(await api.glimpze.dispatcher.deliver_due(clock.now()))


async def test_the_approval_loop_resumes_on_each_answer_and_loops_on_defer(
    api: Api, clock: FakeClock, receiver: Receiver
) -> None:
    flow = workflow("approval-loop.json")
    feed = await api.feed("approval")
    ask = node_named(flow, "Ask for approval")
    wait = node_named(flow, next_node(flow, ask["name"]))
    assert wait["type"] == "n8n-nodes-base.wait" and wait["parameters"]["resume"] == "webhook"
    resume_url = f"{receiver.url}/webhook-waiting/4217"  # n8n's {WEBHOOK_URL}/webhook-waiting/{execution id}
    table = {"$execution.resumeUrl": resume_url, "$execution.id": "4217", "$workflow.id": "Wf7kQ2x9Lm3pZa1B"}
    method, url, headers, body = http_request(
        ask, table, server="", feeds={"fd_YOUR_APPROVAL_FEED": feed["id"]}, credential=f"Bearer {feed['write_key']}"
    )
    assert body is not None
    sent = json.loads(body)
    assert sent["callback"] == {"url": resume_url, "method": wait["parameters"]["httpMethod"]}  # the methods match
    answer = await api.client.request(method, url, headers=headers, content=body)
    assert answer.status_code == 202, answer.text
    event_id = answer.json()["id"]
    switch = node_named(flow, next_node(flow, wait["name"]))

    async def answered(action: str) -> tuple[Received, str]:
        """Answer in Glimpze; the callback n8n's Wait node gets, and where the Switch sends it."""
        response = await api.post(f"/v1/approvals/{event_id}/respond", json={"action_type": action})
        assert response.status_code == 200, response.text
        before = len(receiver.requests)
        assert await deliver(api, clock) == 1
        [callback] = receiver.requests[before:]
        output = switch_output(switch, {"$json.body.action_type": json.loads(callback.body)["action_type"]})
        return callback, next_node(flow, switch["name"], output)

    deferred, then = await answered("defer")
    assert then == wait["name"]  # back to waiting on the same resume URL
    approved, then = await answered("approve")
    assert then == "Approved: deploy"
    for callback, action in ((deferred, "defer"), (approved, "approve")):
        assert callback.method == "POST" and callback.path.endswith("/webhook-waiting/4217")
        got = json.loads(callback.body)
        assert list(got) == ["feed_id", "action_type", "event_id", "timestamp", "metadata"]  # seed 002's body
        assert got["feed_id"] == feed["id"] and got["event_id"] == event_id and got["action_type"] == action
        assert got["metadata"] == {"n8n_workflow": "Wf7kQ2x9Lm3pZa1B", "n8n_execution": "4217"}
        signature = callback.headers["x-glimpze-signature"]
        assert verify_glimpze_signature(feed["callback_secret"], signature, callback.body, now=clock.now())
        assert StandardWebhook(feed["callback_secret"]).verify(callback.body, callback.headers) == got
    rejected = switch_output(switch, {"$json.body.action_type": "reject"})
    assert next_node(flow, switch["name"], rejected) == "Rejected: stop"


def webhook_item(delivery: Received) -> dict[str, Any]:
    """What n8n's Webhook node (v2, Options > Raw Body) outputs for a delivery."""
    return {
        "json": {"headers": delivery.headers, "params": {}, "query": {}, "body": json.loads(delivery.body)},
        "binary": {"data": {"data": base64.b64encode(delivery.body).decode(), "mimeType": "application/json"}},
    }


async def test_the_code_node_verifies_a_real_delivery_and_refuses_a_tampered_one(
    api: Api, clock: FakeClock, receiver: Receiver
) -> None:
    flow = workflow("webhook-trigger-verify.json")
    [trigger] = nodes_of(flow, "webhook")
    assert trigger["parameters"]["httpMethod"] == "POST" and trigger["parameters"]["options"]["rawBody"] is True
    verify = node_named(flow, next_node(flow, trigger["name"]))
    assert verify["type"] == "n8n-nodes-base.code"
    hook = (await api.post("/v1/webhooks", json={"url": receiver.url, "events": ["feed.event"]})).json()
    feed = await api.feed("counter")
    stored = await api.ingest(feed, {"schema_type": "counter", "content": {"title": "Orders", "count": 7}})
    assert await deliver(api, clock) == 1
    [delivery] = receiver.requests
    secret = hook["secret"]

    passed = run_code(verify, [webhook_item(delivery)], secret=secret)
    assert passed == {"items": [{"json": json.loads(delivery.body)}]}
    assert passed["items"][0]["json"]["id"] == stored.json()["id"]
    chosen = node_named(flow, next_node(flow, verify["name"]))
    [condition] = chosen["parameters"]["conditions"]["conditions"]
    assert evaluate(condition["leftValue"], {"$json.event": "feed.event"}) == condition["rightValue"]

    tampered = Received(delivery.method, delivery.path, {}, delivery.headers, delivery.body.replace(b"7", b"8"))
    refused = run_code(verify, [webhook_item(tampered)], secret=secret)
    assert "signature refused" in refused["error"]
    other_secret = "whsec_" + base64.b64encode(b"x" * 24).decode()
    assert "signature refused" in run_code(verify, [webhook_item(delivery)], secret=other_secret)["error"]
    # A correct signature over a timestamp from an hour ago: outside the tolerance.
    old = str(int(time.time()) - 3600)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{delivery.headers['webhook-id']}.{old}.".encode() + delivery.body, hashlib.sha256).digest()
    stale_headers = {
        **delivery.headers,
        "webhook-timestamp": old,
        "webhook-signature": f"v1,{base64.b64encode(mac).decode()}",
    }
    stale = Received(delivery.method, delivery.path, {}, stale_headers, delivery.body)
    assert "away from this clock" in run_code(verify, [webhook_item(stale)], secret=secret)["error"]
    unsigned = Received(delivery.method, delivery.path, {}, {"content-type": "application/json"}, delivery.body)
    assert "Not a signed Glimpze delivery" in run_code(verify, [webhook_item(unsigned)], secret=secret)["error"]
    # Without NODE_FUNCTION_ALLOW_BUILTIN=crypto, n8n refuses require('crypto').
    assert "NODE_FUNCTION_ALLOW_BUILTIN" in run_code(verify, [webhook_item(delivery)], allow="", secret=secret)["error"]


async def test_a_retried_ingest_stores_one_event_and_gets_the_same_answer(api: Api) -> None:
    flow = workflow("ingest-retry.json")
    [build] = nodes_of(flow, "code")
    [send] = nodes_of(flow, "httpRequest")
    assert next_node(flow, build["name"]) == send["name"]
    assert send["retryOnFail"] is True and send["maxTries"] >= 2 and send["waitBetweenTries"] > 0
    assert "$now" not in json.dumps(send["parameters"]) and "Math.random" not in json.dumps(send["parameters"])
    feed = await api.feed("status")
    context = {"workflow": {"id": "Wf7kQ2x9Lm3pZa1B"}, "execution": {"id": "1"}}
    first = run_code(build, [{"json": {}}], **context)["items"][0]["json"]
    elsewhere = run_code(build, [{"json": {}}], **context)["items"][0]["json"]  # another install, same ids
    assert first["idempotency_key"].startswith("n8n-Wf7kQ2x9Lm3pZa1B-1-")
    assert first["idempotency_key"] != elsewhere["idempotency_key"]
    table = {
        "$json.idempotency_key": first["idempotency_key"],
        "JSON.stringify($json.event)": json.dumps(first["event"]),
    }

    def request() -> tuple[str, str, dict[str, str], bytes | None]:
        """The HTTP Request node's parameters evaluated again, as each try of Retry On Fail does."""
        return http_request(
            send, table, server="", feeds={"fd_YOUR_STATUS_FEED": feed["id"]}, credential=f"Bearer {feed['write_key']}"
        )

    method, url, headers, body = request()
    assert headers["Idempotency-Key"] == first["idempotency_key"]
    answer = await api.client.request(method, url, headers=headers, content=body)
    assert answer.status_code == 202, answer.text
    assert request() == (method, url, headers, body)  # a retry makes the very same request
    retried = await api.client.request(method, url, headers=headers, content=body)
    assert retried.status_code == 202 and retried.json() == answer.json()
    assert retried.headers["idempotent-replayed"] == "true"
    assert len(out_events(api.glimpze.config.db_path, "feed.event")) == 1
    # What {{ $now }} in the body would do: another body under the same key is refused.
    changed = json.loads(body or b"{}")
    changed["metadata"]["checked_at"] = "2026-01-01T00:00:00.000Z"
    refused = await api.client.request(method, url, headers=headers, content=json.dumps(changed).encode())
    assert refused.status_code == 422 and refused.json()["code"] == "idempotency_key_reused"
