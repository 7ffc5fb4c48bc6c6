"""The Scriptable widget's data path (examples/scriptable/glimpze-widget.js) against a real `glimpze serve`.

node loads the script (outside Scriptable it exports its functions instead of drawing) and runs
`load(parameter, fetchJson)` with node's own fetch: the parameter is the feed's JSON link with its
read token, as the dashboard shows it. The test checks the one request the script makes, the model
it draws (title, value, state, detail, "… ago", where a tap goes) and its refresh hint, for every
schema, and the readable error a wrong token or a wrong parameter gives.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.server import REPO, UNLIMITED_PLAN, Server

pytestmark = pytest.mark.slow

SCRIPT = REPO / "examples" / "scriptable" / "glimpze-widget.js"
# Runs the script's exported data path for each parameter; prints the models and the requests made.
HARNESS = """
const widget = require(process.argv[1]);
const now = new Date(process.argv[2]);
(async () => {
  const out = [];
  for (const parameter of JSON.parse(process.argv[3])) {
    const requests = [];
    const shown = await widget.load(parameter, async (req) => {
      requests.push(req);
      const response = await fetch(req.url, { method: req.method, headers: req.headers });
      return { status: response.status, body: await response.json() };
    }, now);
    out.push({ shown, requests });
  }
  console.log(JSON.stringify(out));
})().catch((error) => { console.error(error); process.exit(1); });
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("scriptable"))
    server.config.write_text(f'public_url = "{server.url}"\n{UNLIMITED_PLAN}')
    server.start()
    yield server
    server.terminate()


def run_widget(parameters: list[str], now: str) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node, "`node` is not on PATH: the Scriptable widget's test needs Node.js 20 or newer"
    done = subprocess.run(
        [node, "-e", HARNESS, str(SCRIPT), now, json.dumps(parameters)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_the_widget_script_reads_a_feed_with_its_read_token_and_says_how_fresh_it_is(server: Server) -> None:
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.admin_key()}"})
    examples = {
        "summary": {"title": "Revenue", "primary_value": "$12,345", "secondary_value": "+15%"},
        "status": {"title": "Backups", "status": "error", "message": "Disk full on nas-2"},
        "counter": {"title": "Signups", "count": 127, "unit": "users", "trend": "up", "trendValue": "+23%"},
        "approval": {"description": "Deploy v2.3.0 to production?"},
    }
    links = {}
    for schema, content in examples.items():
        feed = api.post("/v1/feeds", json={"name": f"My {schema}", "schema_type": schema}).json()
        sent = httpx.post(
            f"{server.url}/ingest/{feed['id']}",
            json={"schema_type": schema, "content": content},
            headers={"Authorization": f"Bearer {feed['write_key']}"},
        )
        assert sent.status_code == 202, sent.text
        links[schema] = (feed, f"{server.url}/w/{feed['id']}.json?token={feed['read_token']}")
    empty = api.post("/v1/feeds", json={"name": "Nightly", "schema_type": "summary"}).json()
    received = datetime.fromisoformat(
        api.get(f"/v1/feeds/{links['summary'][0]['id']}/widget").json()["event"]["received_at"].replace("Z", "+00:00")
    )
    now = received.timestamp() + 3 * 3600 + 60
    later = datetime.fromtimestamp(now).astimezone().isoformat()

    parameters = [link for _, link in links.values()]
    parameters += [
        f"{server.url}/w/{empty['id']}.json?token={empty['read_token']}",
        f"{server.url}/w/{empty['id']}.json?token=gzr_{'x' * 40}",
        "https://example.com/not-a-widget",
    ]
    summary, status, counter, approval, nothing, wrong, bad = run_widget(parameters, later)

    for (feed, link), result in zip(links.values(), (summary, status, counter, approval), strict=True):
        assert result["requests"] == [{"url": link, "method": "GET", "headers": {"Accept": "application/json"}}]
        assert result["shown"]["openUrl"] == f"{server.url}/feeds/{feed['id']}"  # a tap opens the feed
        assert result["shown"]["updated"] == "3 h ago"
    assert {k: summary["shown"][k] for k in ("title", "value", "detail", "state")} == {
        "title": "Revenue",
        "value": "$12,345",
        "detail": "+15%",
        "state": "neutral",
    }
    assert (status["shown"]["value"], status["shown"]["state"], status["shown"]["detail"]) == (
        "Error",
        "error",
        "Disk full on nas-2",
    )
    assert (counter["shown"]["value"], counter["shown"]["detail"]) == ("127 users", "▲ +23%")
    assert (approval["shown"]["value"], approval["shown"]["waiting"]) == ("Pending", 1)
    assert approval["shown"]["detail"] == "Deploy v2.3.0 to production?"

    # The refresh hint: sooner while a request waits or something fails, else the usual quarter hour.
    def minutes(result: dict[str, Any]) -> float:
        return (datetime.fromisoformat(result["shown"]["refreshAfter"].replace("Z", "+00:00")).timestamp() - now) / 60

    assert [round(minutes(r)) for r in (summary, status, counter, approval)] == [15, 5, 15, 5]
    assert (nothing["shown"]["updated"], nothing["shown"]["detail"]) == ("No data yet", "Waiting for the first event")
    assert wrong["shown"]["failed"] and "read token" in wrong["shown"]["detail"]
    assert bad["shown"]["failed"] and bad["requests"] == [] and "JSON link" in bad["shown"]["detail"]
