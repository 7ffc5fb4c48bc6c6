"""The SSRF guard, checked against the address actually connected to, for every outgoing request:
webhooks, approval callbacks, Apprise pushes and Web Push."""

from __future__ import annotations

import contextvars
import errno
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from glimpze.clock import FakeClock
from glimpze.config import Config, load
from glimpze.delivery.ssrf import GuardedTransport, TargetPolicy, TargetRefused, parse_allow_target
from tests.conftest import Api, row_counts, running
from tests.receiver import Answer, Receiver
from tests.webpush_browser import Browser

pytestmark = pytest.mark.anyio


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


async def fetch(policy: TargetPolicy, url: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=GuardedTransport(policy), follow_redirects=False, trust_env=False) as client:
        return await client.post(url, content=b"{}")


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}/hook",
        "http://[::1]:{port}/hook",
        "http://localhost:{port}/hook",  # a host name resolving to loopback
        "http://[::ffff:127.0.0.1]:{port}/hook",  # IPv4-mapped IPv6
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/hook",
        "http://100.100.100.200/hook",
        "http://192.168.1.1/hook",
        "http://100.64.0.1/hook",  # carrier-grade NAT
        "http://[fd00::1]/hook",  # unique local IPv6
        "http://224.0.0.1/hook",
        "http://0.0.0.0:{port}/hook",
    ],
)
async def test_non_public_targets_are_refused_by_default(receiver: Receiver, template: str) -> None:
    with pytest.raises(httpx.ConnectError, match="target refused|metadata") as info:
        await fetch(TargetPolicy(), template.format(port=receiver.port))
    assert receiver.requests == []
    if "169.254.169.254" not in template and "100.100.100.200" not in template:
        assert "allow_targets" in str(info.value)


async def test_an_allowed_address_and_port_works_and_other_ports_stay_refused(receiver: Receiver) -> None:
    policy = TargetPolicy([f"127.0.0.1:{receiver.port}"])
    assert (await fetch(policy, receiver.url)).status_code == 200
    with Receiver() as other:
        with pytest.raises(httpx.ConnectError, match="target refused"):
            await fetch(policy, other.url)
        assert other.requests == []
    assert len(receiver.requests) == 1


async def test_a_host_name_is_checked_at_connect_time(receiver: Receiver) -> None:
    # "localhost" is allowed only through its address: the guard resolves, checks, then connects.
    policy = TargetPolicy(["127.0.0.1"])
    response = await fetch(policy, f"http://localhost:{receiver.port}/hook")
    assert response.status_code == 200
    assert receiver.requests[0].headers["host"] == f"localhost:{receiver.port}"


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254", "192.0.0.192", "::ffff:169.254.169.254"],
)
def test_metadata_addresses_stay_refused_even_when_allowed(address: str) -> None:
    policy = TargetPolicy(["0.0.0.0/0", "::/0"])
    with pytest.raises(TargetRefused, match="metadata"):
        policy.check(address, 80)


def test_public_addresses_pass() -> None:
    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "1.1.1.1"):
        TargetPolicy().check(address, 443)


@pytest.mark.parametrize(
    "entry,ok",
    [
        ("127.0.0.1", True),
        ("127.0.0.1:5678", True),
        ("[::1]:5678", True),
        ("192.168.0.0/16", True),
        ("::1", True),
        ("n8n.local", False),
        ("127.0.0.1:99999", False),
        ("[::1]5678", False),
        ("10.0.0.0/33", False),
    ],
)
def test_allow_target_entries(entry: str, ok: bool) -> None:
    if ok:
        parse_allow_target(entry)
    else:
        with pytest.raises(ValueError):
            parse_allow_target(entry)


def test_cidr_and_port_rules() -> None:
    policy = TargetPolicy(["192.168.0.0/16", "[::1]:5678"])
    policy.check("192.168.7.9", 1234)
    policy.check("::1", 5678)
    with pytest.raises(TargetRefused):
        policy.check("::1", 5679)
    with pytest.raises(TargetRefused):
        policy.check("10.1.1.1", 80)


# Every outgoing request Glimpze makes for a user: Apprise pushes, webhooks, callbacks, Web Push.

# Loopback in the spellings a resolver takes. Apprise's JSON plugin refuses `0177.0.0.1` and `127.1`
# (Home Assistant's takes them), and `[::ffff:127.0.0.1]` only without a port (it then means port 80).
LOOPBACK_SPELLINGS = {
    "decimal": "json://2130706433:{port}/hook",
    "hex": "json://0x7f000001:{port}/hook",
    "octal": "hassio://0177.0.0.1:{port}/accesstoken",
    "short": "hassio://127.1:{port}/accesstoken",
    "localhost": "json://localhost:{port}/hook",
    "mapped": "json://[::ffff:127.0.0.1]/hook",
    "mapped, in hex": "json://[::ffff:7f00:1]:{port}/hook",
}
STATUS_EVENT = {
    "schema_type": "status",
    "content": {"title": "Production API", "status": "error", "message": "Database connection failed"},
    "intent": {"send_push": True},
}


def configured(tmp_path: Path, allow: list[str] | None = None) -> Config:
    overrides: dict[str, Any] = {"data_dir": str(tmp_path / "data"), "webhooks.allow_targets": allow}
    return load(None, env={}, overrides=overrides)


def refused_at(response: httpx.Response, path: str) -> str:
    """The message of a 422 `target_not_allowed` naming `path`."""
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "target_not_allowed" and problem["errors"][0]["path"] == path, problem
    return str(problem["errors"][0]["message"])


async def test_push_targets_at_any_spelling_of_loopback_reach_nothing(tmp_path: Path, clock: FakeClock) -> None:
    with Receiver() as listener:
        urls = {name: template.format(port=listener.port) for name, template in LOOPBACK_SPELLINGS.items()}
        async with running(configured(tmp_path), clock) as api:
            admin = api.key
            for name, url in urls.items():
                assert "allow_targets" in refused_at(await api.post("/v1/push/targets", json={"url": url}), "$.url"), (
                    name
                )
            assert (await api.get("/v1/push/targets")).json()["data"] == []

        # Saved while the operator allowed loopback; then the allowance is gone.
        async with running(configured(tmp_path, ["127.0.0.1", "::1"]), clock, key=admin) as api:
            saved = {}
            for name, url in urls.items():
                response = await api.post("/v1/push/targets", json={"url": url})
                assert response.status_code == 201, (name, response.text)
                saved[name] = response.json()["id"]
            sent = await api.post(f"/v1/push/targets/{saved['decimal']}/test")
            assert sent.json()["status"] == "sent"  # the listener does count what reaches it
        reached = listener.count_connections()
        assert reached >= 1 and len(listener.requests) == 1

        async with running(configured(tmp_path), clock, key=admin) as api:
            await api.glimpze.push.stop_runner()
            for name, target_id in saved.items():
                result = (await api.post(f"/v1/push/targets/{target_id}/test")).json()
                assert result["status"] == "failed" and "target refused" in result["error"], (name, result)
            feed = await api.feed("status")
            answer = await api.ingest(feed, STATUS_EVENT)
            assert answer.json()["push"] == "queued", answer.text
            assert await api.glimpze.push.send_due(clock.now()) == 1
            [entry] = (await api.get("/v1/push/log")).json()["data"]
            assert entry["status"] == "failed" and len(entry["results"]) == len(saved)
            assert all("target refused" in result["error"] for result in entry["results"]), entry
        assert listener.count_connections() == reached and len(listener.requests) == 1


async def test_a_redirect_to_a_refused_address_is_never_followed(tmp_path: Path, clock: FakeClock) -> None:
    """Apprise, a webhook and a Web Push endpoint on an allowed receiver that answers 302 to a refused port."""
    with Receiver() as receiver, Receiver() as refused:
        receiver.default = Answer(302, {"Location": f"http://127.0.0.1:{refused.port}/stolen"})
        async with running(configured(tmp_path, [f"127.0.0.1:{receiver.port}"]), clock) as api:
            await api.glimpze.dispatcher.stop_runner()
            await api.glimpze.push.stop_runner()
            target = await api.post("/v1/push/targets", json={"url": f"json://127.0.0.1:{receiver.port}/hook"})
            assert target.status_code == 201, target.text
            pushed = (await api.post(f"/v1/push/targets/{target.json()['id']}/test")).json()
            assert pushed["status"] == "failed" and "target refused" in pushed["error"], pushed

            hook = await api.post("/v1/webhooks", json={"url": receiver.url, "events": ["*"]})
            assert hook.status_code == 201, hook.text
            await api.post(f"/v1/webhooks/{hook.json()['id']}/test")
            await api.glimpze.dispatcher.deliver_due(clock.now())
            [delivery] = (await api.get(f"/v1/webhooks/{hook.json()['id']}/deliveries")).json()["data"]
            assert delivery["status"] == "failed" and delivery["last_status_code"] == 302

            subscription = Browser().subscription(f"{receiver.url}/sub")
            subscribed = await api.post("/v1/push/subscriptions", json=subscription)
            assert subscribed.status_code == 201, subscribed.text
            web_pushed = (await api.post(f"/v1/push/targets/{subscribed.json()['id']}/test")).json()
            assert web_pushed["status"] == "failed" and "302" in web_pushed["error"], web_pushed
        assert [r.path for r in receiver.requests] == ["/hook", "/hook", "/hook/sub"]
        assert refused.count_connections() == 0 and refused.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam",  # the cloud metadata service
        "http://192.168.1.20:5678/webhook-waiting/42",  # n8n on the LAN, not allowed
        "http://localhost:5678/webhook-waiting/42",  # a name resolving to loopback
    ],
)
async def test_approval_callbacks_to_refused_addresses_are_refused_at_ingest(
    api: Api, config: Config, url: str
) -> None:
    feed = await api.feed("approval")
    before = row_counts(config.db_path)
    event = {"schema_type": "approval", "content": {"description": "Deploy?"}, "callback": {"url": url}}
    message = refused_at(await api.ingest(feed, event), "$.callback.url")
    assert row_counts(config.db_path) == before  # no event, no approval, no delivery
    # The same refusal, and the same hint, as a webhook to that URL gets.
    assert message == refused_at(await api.post("/v1/webhooks", json={"url": url, "events": ["*"]}), "$.url")
    if "169.254" not in url:
        assert "allow_targets" in message
    accepted = await api.ingest(feed, {**event, "callback": {"url": "https://n8n.example.com/webhook-waiting/42"}})
    assert accepted.status_code == 202, accepted.text
    assert (
        int(accepted.headers["RateLimit-Remaining"]) == int(accepted.headers["RateLimit-Limit"]) - 1
    )  # no token taken


def test_a_guarded_send_checks_every_socket_it_opens_in_any_thread_and_nothing_else(
    receiver: Receiver, tmp_path: Path
) -> None:
    """The socket guard Apprise sends run in: this thread, threads it starts (a plugin's own I/O
    thread), a worker pool that copies the context (Apprise's), names and odd spellings resolved by
    the guard, `connect_ex`, datagrams (syslog), Unix sockets. Outside the scope nothing changes."""
    from glimpze.delivery.ssrf import SocketRefused, guarded_sockets

    outcomes: list[str] = []

    def attempt(host: str = "127.0.0.1") -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            try:
                sock.connect((host, receiver.port))
                outcomes.append("connected")
            except SocketRefused as exc:
                outcomes.append("refused" if "loopback" in str(exc) else str(exc))

    with ThreadPoolExecutor(1) as pool:
        pool.submit(outcomes.clear).result()  # its worker thread exists before the scope
        with guarded_sockets(TargetPolicy()) as scope:
            attempt()
            attempt("2130706433")  # a spelling only the resolver reads
            attempt("localhost")
            thread = threading.Thread(target=attempt)
            thread.start()
            thread.join()
            pool.submit(contextvars.copy_context().run, attempt).result()
            with pytest.raises(SocketRefused):
                socket.create_connection(("127.0.0.1", receiver.port), timeout=5)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                assert sock.connect_ex(("127.0.0.1", receiver.port)) == errno.ECONNREFUSED
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram, pytest.raises(SocketRefused):
                datagram.sendto(b"<14>hello", ("127.0.0.1", receiver.port))
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix, pytest.raises(SocketRefused):
                unix.connect(str(tmp_path / "some.sock"))
        assert outcomes == ["refused"] * 5 and len(scope.refusals) == 9
        assert receiver.count_connections() == 0
        attempt()  # outside the scope
        pool.submit(attempt).result()
    assert outcomes[5:] == ["connected", "connected"] and receiver.count_connections() == 2
