"""Signed CTA context: URLs minted by the server verify with seed 004's Python verifier (names
changed to glimpze_*), with `glimpze.ctx.verify`, with `POST /v1/ctas/verify` and with the README's
Node verifier; tampering and age fail them; secret rotation; what the payload holds and strips."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from glimpze.chat import ctx
from glimpze.chat.cta_context import SECRET_SETTING, captured_fields, strip_sensitive
from glimpze.clock import FakeClock
from glimpze.ops.logs import redact
from tests.conftest import Api
from tests.cta_setup import SHOP, agent, payload_of, query, reply, rule, session

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
ALL_FIELDS = ["conversation_id", "agent_id", "page_url", "visitor_email", "visitor_name", "captured_fields"]


@pytest.fixture
def clock() -> FakeClock:
    # Wall-clock time: the seed's verifier reads time.time() itself.
    return FakeClock(float(int(time.time())))


# Seed 004, "Verification", Python: as written, with pitchbar_* renamed glimpze_*.
SEED_004_PYTHON = """
import base64, hmac, hashlib, json, time
def verify(query, secret):
    ctx = query.get('glimpze_ctx')
    ts = int(query.get('glimpze_ts') or 0)
    sig = query.get('glimpze_sig', '')
    if not (ctx and ts and sig):
        return None
    if abs(time.time() - ts) > 300:
        return None
    expected = hmac.new(secret.encode(),
                        f"{ts}.{ctx}".encode(),
                        hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, sig):
        return None
    padded = ctx + '=' * (-len(ctx) % 4)
    return json.loads(base64.urlsafe_b64decode(padded))
"""
_seed: dict[str, Any] = {}
exec(SEED_004_PYTHON, _seed)
verify = _seed["verify"]


async def signed_card(api: Api, forward: list[str] | None = None, url: str = f"{SHOP}/demo") -> dict[str, Any]:
    """A reply's card whose rule forwards `forward` (every field by default)."""
    bot = await agent(api)
    await rule(api, bot["id"], label="Demo", url=url, forward_context=ALL_FIELDS if forward is None else forward)
    chat = await session(api, bot["id"], page_url=f"{SHOP}/pricing")
    return (await reply(api, chat["id"], "See our demo."))["cta"]


async def secret_of(api: Api) -> str:
    return (await api.get("/v1/ctas/secret")).json()["secret"]


async def verified_by_api(api: Api, url: str) -> dict[str, Any]:
    response = await api.post("/v1/ctas/verify", json={"url": url})
    assert response.status_code == 200, response.text
    return response.json()


def tampered(url: str, name: str, value: str) -> str:
    return re.sub(f"{name}=[^&#]*", f"{name}={value}", url)


async def test_the_seeds_python_verifier_accepts_minted_urls(api: Api) -> None:
    card = await signed_card(api)
    secret = await secret_of(api)
    assert secret.startswith("gzc_")
    payload = verify(query(card["url"]), secret)
    assert payload is not None
    assert list(payload) == ALL_FIELDS
    assert payload["conversation_id"].startswith("ses_") and payload["agent_id"].startswith("agt_")
    assert payload["page_url"] == f"{SHOP}/pricing"
    assert (payload["visitor_email"], payload["visitor_name"]) == ("ada@example.com", "Ada")
    assert payload["captured_fields"] == {}
    assert ctx.verify(query(card["url"]), secret) == payload
    assert ctx.verify(card["url"], secret) == payload  # a whole URL will do
    assert await verified_by_api(api, card["url"]) == {"valid": True, "payload": payload}
    params = query(card["url"])
    assert re.fullmatch(r"[A-Za-z0-9_-]+", params["glimpze_ctx"])  # base64url, no padding
    assert re.fullmatch(r"[0-9a-f]{64}", params["glimpze_sig"])
    assert int(params["glimpze_ts"]) == int(api.glimpze.clock.now())


async def test_tampering_fails_every_verifier(api: Api) -> None:
    card = await signed_card(api)
    secret = await secret_of(api)
    params = query(card["url"])
    other_ctx = ctx.encode_ctx({**payload_of(card["url"]), "visitor_email": "mallory@example.com"})
    flipped = ("0" if params["glimpze_sig"][0] != "0" else "1") + params["glimpze_sig"][1:]
    for bad in (
        tampered(card["url"], "glimpze_ctx", other_ctx),
        tampered(card["url"], "glimpze_ts", str(int(params["glimpze_ts"]) + 1)),
        tampered(card["url"], "glimpze_sig", flipped),
    ):
        assert verify(query(bad), secret) is None
        assert ctx.verify(query(bad), secret) is None
        assert await verified_by_api(api, bad) == {"valid": False, "reason": "bad_signature"}
    assert verify(query(card["url"]), "gzc_another") is None


async def test_a_url_older_than_300_seconds_fails(api: Api, clock: FakeClock) -> None:
    clock.advance(-301)  # minted 301 s ago
    card = await signed_card(api)
    clock.advance(301)
    secret = await secret_of(api)
    assert verify(query(card["url"]), secret) is None
    assert ctx.verify(query(card["url"]), secret) is None
    assert ctx.verify(query(card["url"]), secret, now=clock.now() - 1) is not None  # 300 s old is fine
    assert await verified_by_api(api, card["url"]) == {"valid": False, "reason": "expired"}
    clock.advance(-2)
    assert (await verified_by_api(api, card["url"]))["valid"] is True


async def test_the_previous_secret_verifies_for_24_hours_after_a_rotation(api: Api, clock: FakeClock) -> None:
    card = await signed_card(api)
    old = await secret_of(api)
    rotated = await api.post("/v1/ctas/rotate-secret")
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new != old and new.startswith("gzc_")
    assert rotated.json()["previous_secret"] == old
    assert (await api.get("/v1/ctas/secret")).json() == rotated.json()
    assert (await verified_by_api(api, card["url"]))["valid"] is True  # signed before the rotation

    rotated_at = clock.now()
    clock.advance(24 * 3600 - 10)
    with_old = ctx.signed_url(f"{SHOP}/demo", {"conversation_id": "ses_x"}, old, int(clock.now()))
    assert (await verified_by_api(api, with_old))["valid"] is True
    clock.t = rotated_at + 24 * 3600 + 10
    with_old = ctx.signed_url(f"{SHOP}/demo", {"conversation_id": "ses_x"}, old, int(clock.now()))
    assert await verified_by_api(api, with_old) == {"valid": False, "reason": "bad_signature"}
    with_new = ctx.signed_url(f"{SHOP}/demo", {"conversation_id": "ses_x"}, new, int(clock.now()))
    assert (await verified_by_api(api, with_new))["valid"] is True
    assert (await api.get("/v1/ctas/secret")).json() == {
        "secret": new,
        "previous_secret": None,
        "previous_secret_expires_at": None,
    }
    # New cards are signed with the new secret.
    assert ctx.verify((await signed_card(api))["url"], new, now=clock.now()) is not None


async def test_a_second_rotation_retires_the_first_secret_at_once(api: Api) -> None:
    first = await secret_of(api)
    second = (await api.post("/v1/ctas/rotate-secret")).json()["secret"]
    third = (await api.post("/v1/ctas/rotate-secret")).json()
    assert third["previous_secret"] == second
    stale = ctx.signed_url(f"{SHOP}/x", {}, first, int(api.glimpze.clock.now()))
    assert await verified_by_api(api, stale) == {"valid": False, "reason": "bad_signature"}


async def test_the_secret_is_made_on_first_use_and_kept(api: Api) -> None:
    project_id = (await api.glimpze.keys.authenticate(api.key)).project_id
    assert await api.glimpze.settings.get(project_id, SECRET_SETTING) is None
    first = (await api.get("/v1/ctas/secret")).json()
    assert first["previous_secret"] is None
    assert (await api.get("/v1/ctas/secret")).json() == first
    card = await signed_card(api)
    assert verify(query(card["url"]), first["secret"]) is not None


async def test_verify_reasons(api: Api) -> None:
    card = await signed_card(api)
    params = query(card["url"])
    assert await verified_by_api(api, f"{SHOP}/demo") == {"valid": False, "reason": "missing_parameters"}
    no_sig = f"{SHOP}/demo?glimpze_ctx={params['glimpze_ctx']}&glimpze_ts={params['glimpze_ts']}"
    assert (await verified_by_api(api, no_sig))["reason"] == "missing_parameters"
    for bad in (
        tampered(card["url"], "glimpze_ts", "soon"),
        tampered(card["url"], "glimpze_sig", "xyz"),
        card["url"] + "&glimpze_sig=" + params["glimpze_sig"],  # given twice
    ):
        assert (await verified_by_api(api, bad))["reason"] == "malformed", bad
    _, other_key = await api.glimpze.keys.create_project("Other")
    theirs = await api.client.post(
        "/v1/ctas/verify", json={"url": card["url"]}, headers={"Authorization": f"Bearer {other_key.key}"}
    )
    assert theirs.json() == {"valid": False, "reason": "bad_signature"}  # another project's secret
    missing = await api.post("/v1/ctas/verify", json={})
    assert missing.status_code == 422 and missing.json()["errors"][0]["path"] == "$.url"


async def test_parameters_join_an_existing_query_and_stay_before_the_fragment(api: Api) -> None:
    bot = await agent(api)
    chat = await session(api, bot["id"])
    cta = await rule(api, bot["id"], forward_context=["conversation_id"])
    secret = await secret_of(api)
    for url, before_params, after_params in [
        (f"{SHOP}/demo", f"{SHOP}/demo?", ""),
        (f"{SHOP}/demo?src=chat&x=a%20b", f"{SHOP}/demo?src=chat&x=a%20b&", ""),
        (f"{SHOP}/demo#book", f"{SHOP}/demo?", "#book"),
        (f"{SHOP}/demo?src=chat#book", f"{SHOP}/demo?src=chat&", "#book"),
        (f"{SHOP}/demo?", f"{SHOP}/demo?", ""),
        (f"{SHOP}/demo?src=chat&", f"{SHOP}/demo?src=chat&", ""),
    ]:
        await api.patch(f"/v1/ctas/{cta['id']}", json={"url": url})
        signed = (await reply(api, chat["id"], "hi"))["cta"]["url"]
        assert signed.startswith(before_params + "glimpze_ctx=") and signed.endswith(after_params), signed
        assert re.search(r"glimpze_sig=[0-9a-f]{64}" + re.escape(after_params) + "$", signed), signed
        assert verify(query(signed), secret) == {"conversation_id": chat["id"]}, signed
        assert (await verified_by_api(api, signed))["valid"] is True, signed


async def test_cards_without_forward_context_keep_their_url(api: Api) -> None:
    bot = await agent(api)
    plain = await rule(api, bot["id"], label="Plain", priority=2, url=f"{SHOP}/plain?a=1")
    await rule(api, bot["id"], label="Signed", priority=1, forward_context=["visitor_name"])
    chat = await session(api, bot["id"])
    first, second = (await reply(api, chat["id"], "hi"))["ctas"]
    assert first["url"] == plain["url"]
    assert payload_of(second["url"]) == {"visitor_name": "Ada"}  # exactly the listed fields


async def test_captured_fields_forward_only_what_is_not_sensitive(api: Api) -> None:
    bot = await agent(api)
    await rule(api, bot["id"], label="Demo", forward_context=["captured_fields", "visitor_email", "visitor_name"])
    chat = await session(api, bot["id"])
    fields = {
        "email": "lea@example.com",
        "name": "Lea",
        "phone": "+44 20 7946 0000",
        "Password": 1,
        "apiKey": 2,
        "x-api-key": 3,
        "nested": {"accessToken": 4},
        "plan": "pro",
    }
    captured = await api.post("/v1/leads", json={"session_id": chat["id"], "fields": fields})
    assert captured.status_code == 201, captured.text
    card = (await reply(api, chat["id"], "Thanks!"))["cta"]
    payload = verify(query(card["url"]), await secret_of(api))
    assert payload == {"visitor_email": "lea@example.com", "visitor_name": "Lea", "captured_fields": {"plan": "pro"}}


async def test_the_latest_capture_wins(api: Api) -> None:
    bot = await agent(api)
    await rule(api, bot["id"], label="Demo", forward_context=["visitor_email", "visitor_name", "captured_fields"])
    chat = await session(api, bot["id"])
    other = await session(api, bot["id"], visitor={"id": "v-2"})
    await api.post("/v1/leads", json={"session_id": other["id"], "fields": {"email": "x@example.com", "team": 9}})
    before = payload_of((await reply(api, chat["id"], "hi"))["cta"]["url"])
    assert before == {"visitor_email": "ada@example.com", "visitor_name": "Ada", "captured_fields": {}}
    await api.post("/v1/leads", json={"session_id": chat["id"], "fields": {"phone": "+1 555 0100", "size": "M"}})
    await api.post("/v1/leads", json={"session_id": chat["id"], "fields": {"email": "ada@work.example", "seats": 5}})
    after = payload_of((await reply(api, chat["id"], "hi"))["cta"]["url"])
    # The newest lead's email; the session's name, as no lead of it has one.
    assert after == {"visitor_email": "ada@work.example", "visitor_name": "Ada", "captured_fields": {"seats": 5}}


def test_stripping_at_any_depth() -> None:
    assert captured_fields(
        {"Password": 1, "apiKey": 2, "x-api-key": 3, "nested": {"accessToken": 4}, "plan": "pro"}
    ) == {"plan": "pro"}
    value = {
        "user_password_hint": "x",
        "API_KEY": 1,
        "client-secret": 2,
        "tokens": [3],
        "Api-Key-Id": 4,
        "list": [{"refresh_token": 1}, {"keep": [1, {"SECRET": 2}]}, 3],
        "deep": {"a": {"b": {"password": 1}}},
        "empty_before": {},
        "none_before": [],
        "ok": None,
    }
    assert strip_sensitive(value) == {
        "list": [{"keep": [1]}, 3],
        "empty_before": {},
        "none_before": [],
        "ok": None,
    }
    assert captured_fields({"name": "N", "email": "e@x.co", "phone": None, "token": 1}) == {}
    deep: Any = "leaf"
    for _ in range(500):
        deep = {"k": deep}
    assert captured_fields({"deep": deep, "plan": "pro"}) == {"plan": "pro"}  # too deep to forward


def test_ctx_uses_the_standard_library_only() -> None:
    """`glimpze/chat/ctx.py` works on its own: customers copy it or import it without Glimpze's dependencies."""
    source = (ROOT / "glimpze" / "chat" / "ctx.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    # And it runs with no site-packages at all (-S), loaded by file path.
    secret, now = "gzc_test", int(time.time())
    url = ctx.signed_url("https://a.example/x?y=1", {"visitor_name": "Zoë"}, secret, now)
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('ctx', {str(ROOT / 'glimpze' / 'chat' / 'ctx.py')!r})\n"
        "ctx = importlib.util.module_from_spec(spec); spec.loader.exec_module(ctx)\n"
        f"print(ctx.verify({url!r}, {secret!r}))\n"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "{'visitor_name': 'Zoë'}"


def test_ctx_verify_on_its_own() -> None:
    secret, now = "gzc_s", 1_800_000_000
    params = ctx.sign({"a": 1}, secret, now)
    assert ctx.verify(params, secret, now=now) == {"a": 1}
    assert ctx.verify(params, ["gzc_new", secret], now=now) == {"a": 1}  # during a rotation
    assert ctx.verify({k: [v] for k, v in params.items()}, secret, now=now) == {"a": 1}  # parse_qs shape
    assert ctx.verify({**params, "glimpze_sig": params["glimpze_sig"].upper()}, secret, now=now) == {"a": 1}
    assert ctx.verify(params, secret, now=now + 300) == {"a": 1}
    assert ctx.verify(params, secret, now=now - 300) == {"a": 1}
    assert ctx.verify(params, secret, now=now + 301) is None
    assert ctx.verify(params, secret, now=now - 301) is None  # from the future
    assert ctx.verify({}, secret, now=now) is None
    assert ctx.verify({**params, "glimpze_sig": "é" * 64}, secret, now=now) is None
    assert ctx.verify({**params, "glimpze_ts": " 1"}, secret, now=now) is None
    assert ctx.check({k: [v, v] for k, v in params.items()}, secret, now) == (None, ctx.MALFORMED)
    assert ctx.verify(params, [], now=now) is None
    not_an_object = ctx.encode_ctx([1])  # type: ignore[arg-type]
    assert (
        ctx.verify(
            {
                "glimpze_ctx": not_an_object,
                "glimpze_ts": str(now),
                "glimpze_sig": ctx.signature(secret, now, not_an_object),
            },
            secret,
            now=now,
        )
        is None
    )


README_NODE = re.compile(r"```js\n(?P<code>.*?)```", re.S)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
async def test_the_readmes_node_verifier_accepts_minted_urls_and_refuses_tampered_ones(api: Api) -> None:
    blocks = README_NODE.finditer((ROOT / "docs" / "conversations.md").read_text())
    code = next((block for block in blocks if "glimpze_sig" in block["code"]), None)
    assert code is not None, "the README shows a Node verifier"
    card = await signed_card(api)
    secret = await secret_of(api)
    params = query(card["url"])
    bad_sig = ("0" if params["glimpze_sig"][0] != "0" else "1") + params["glimpze_sig"][1:]
    cases = [params, {**params, "glimpze_sig": bad_sig}, {**params, "glimpze_sig": "abc"}, {}]
    script = code["code"] + (
        f"\nconst cases = {json.dumps(cases)};\n"
        f"console.log(JSON.stringify(cases.map(q => verify(q, {json.dumps(secret)}))));\n"
    )
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [payload_of(card["url"]), None, None, None]


async def test_the_secret_never_reaches_the_logs(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    secret = await secret_of(api)
    rotated = (await api.post("/v1/ctas/rotate-secret")).json()["secret"]
    await signed_card(api)
    assert secret not in caplog.text and rotated not in caplog.text
    assert secret not in redact(f"a log line that quotes {secret}")  # and would be masked if one did
