"""Ready-to-run snippets for a feed: curl, an n8n HTTP Request node and Python, for its schema.

Each posts one example event of seed 002's shape to the feed's webhook URL with its write key.
The key is the real one right after the feed is created or its key rotated (shown once), and a
placeholder afterwards.
"""

from __future__ import annotations

import json
import pprint
from dataclasses import dataclass
from typing import Any

WRITE_KEY_PLACEHOLDER = "YOUR_WRITE_KEY"


def example_event(schema_type: str, name: str, base_url: str) -> dict[str, Any]:
    """An example event for a feed named `name` (seed 002's examples, titled with the feed's name)."""
    silent = {"update_widget": True, "send_push": False}
    if schema_type == "summary":
        content: dict[str, Any] = {"title": name, "primary_value": "$12,345", "secondary_value": "+15%"}
        metadata = {"source": "glimpze-snippet"}
        return {"schema_type": "summary", "content": content, "metadata": metadata, "intent": silent}
    if schema_type == "status":
        content = {"title": name, "status": "success", "message": "All systems operational", "details": "45 ms"}
        return {"schema_type": "status", "content": content, "intent": silent}
    if schema_type == "counter":
        content = {
            "title": name,
            "count": 127,
            "unit": "users",
            "trend": "up",
            "trendValue": "+23%",
            "trendSemantic": "positive",
            "subtitle": "Last 24 hours",
        }
        return {"schema_type": "counter", "content": content, "intent": silent}
    if schema_type == "approval":
        return {
            "schema_type": "approval",
            "content": {"description": "Deploy v2.3.0 to production?"},
            "metadata": {"deployment_id": "v2.3.0"},
            "intent": {"send_push": True},
            "callback": {"url": "https://example.com/approval-callback", "method": "POST"},
        }
    if schema_type == "custom":
        images = {"image_url": "https://example.com/widget-medium.png"}
        content = {"medium": images, "widget_url": base_url}
        return {"schema_type": "custom", "content": content, "intent": silent}
    raise ValueError(f"unknown schema {schema_type!r}")


@dataclass(frozen=True, slots=True)
class Snippets:
    curl: str
    n8n: str
    python: str
    body: str


def snippets(schema_type: str, name: str, webhook_url: str, base_url: str, write_key: str | None) -> Snippets:
    key = write_key or WRITE_KEY_PLACEHOLDER
    event = example_event(schema_type, name, base_url)
    body = json.dumps(event, indent=2, ensure_ascii=False)
    return Snippets(
        curl=_curl(webhook_url, key, body),
        n8n=_n8n(webhook_url, name, body),
        python=_python(webhook_url, key, event),
        body=body,
    )


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _curl(url: str, key: str, body: str) -> str:
    return (
        f"curl -X POST {_shell_quote(url)} \\\n"
        f"  -H {_shell_quote('Authorization: Bearer ' + key)} \\\n"
        f"  -H 'Content-Type: application/json' \\\n"
        f"  -d {_shell_quote(body)}"
    )


def _n8n(url: str, name: str, body: str) -> str:
    """A workflow fragment to paste into n8n's canvas: one HTTP Request node with Header Auth.

    n8n keeps credentials apart from workflows, so the node asks for a Header Auth credential
    (name `Authorization`, value `Bearer <write key>`) once pasted."""
    node = {
        "parameters": {
            "method": "POST",
            "url": url,
            "authentication": "genericCredentialType",
            "genericAuthType": "httpHeaderAuth",
            "sendBody": True,
            "specifyBody": "json",
            "jsonBody": body,
            "options": {},
        },
        "name": f"Glimpze: {name}"[:100],
        "type": "n8n-nodes-base.httpRequest",
        "typeVersion": 4.2,
        "position": [0, 0],
    }
    return json.dumps({"nodes": [node], "connections": {}}, indent=2, ensure_ascii=False)


def _python(url: str, key: str, event: dict[str, Any]) -> str:
    literal = pprint.pformat(event, sort_dicts=False, width=100)
    return (
        "import json\n"
        "import urllib.request\n"
        "\n"
        f"event = {literal}\n"
        "request = urllib.request.Request(\n"
        f"    {json.dumps(url)},\n"
        "    data=json.dumps(event).encode(),\n"
        f'    headers={{"Authorization": {json.dumps("Bearer " + key)}, "Content-Type": "application/json"}},\n'
        ")\n"
        "with urllib.request.urlopen(request) as response:\n"
        "    print(response.status, response.read().decode())\n"
    )


UPLOAD_HINT = (
    "curl -X POST '{url}/upload' \\\n"
    "  -H 'Authorization: Bearer {key}' \\\n"
    "  -F small_image=@widget-small.png -F medium_image=@widget-medium.png -F large_image=@widget-large.png \\\n"
    '  -F \'intent={{"update_widget":true,"send_push":false}}\''
)


def upload_snippet(webhook_url: str, write_key: str | None) -> str:
    return UPLOAD_HINT.format(url=webhook_url, key=write_key or WRITE_KEY_PLACEHOLDER)
