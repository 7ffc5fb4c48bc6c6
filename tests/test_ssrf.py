"""The SSRF guard, checked against the address actually connected to."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from glimpze.ssrf import GuardedTransport, TargetPolicy, TargetRefused, parse_allow_target
from tests.receiver import Receiver

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
