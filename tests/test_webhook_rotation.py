"""During a signing secret's rotation every delivery carries two `v1` signatures: the webhooks page's
verifiers (Python and Node, run as they are printed) accept it with either secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from glimpze.clock import FakeClock
from tests.conftest import driven
from tests.receiver import Receiver

pytestmark = pytest.mark.anyio

README = (Path(__file__).resolve().parents[1] / "docs" / "webhooks.md").read_text()
CODE_BLOCK = re.compile(r"```(?P<lang>python|js)\n(?P<code>.*?)```", re.S)


def readme_block(lang: str, marker: str) -> str:
    """The webhooks page's `lang` code block that contains `marker`."""
    blocks = [m["code"] for m in CODE_BLOCK.finditer(README) if m["lang"] == lang and marker in m["code"]]
    assert len(blocks) == 1, f"the webhooks page shows one {lang} block with {marker!r}"
    return blocks[0]


def first_v1_only(raw_body: bytes, header: str, secret: str) -> bool:
    """Seed 003's sample verifier: `const [tPart, sigPart] = header.split(',')`."""
    t_part, sig_part = header.split(",")[:2]
    t = t_part.split("=")[1]
    expected = hmac.new(secret.encode(), f"{t}.".encode() + raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, sig_part.split("=")[1])


async def test_readme_verifier_accepts_either_secret_during_rotation(tmp_path: Path, receiver: Receiver) -> None:
    clock = FakeClock(float(int(time.time())))  # the verifiers check the timestamp against real time
    async with driven(tmp_path, clock) as api:
        hook = (await api.post("/v1/webhooks", json={"url": receiver.url, "events": ["webhook.test"]})).json()
        rotated = await api.post(f"/v1/webhooks/{hook['id']}/rotate-secret")  # default overlap: 24 h
        assert rotated.status_code == 200, rotated.text
        old, new = hook["secret"], rotated.json()["secret"]
        assert rotated.json()["previous_secret"] == old != new
        assert (await api.post(f"/v1/webhooks/{hook['id']}/test")).status_code == 200
        await api.glimpze.dispatcher.deliver_due(clock.now())
        await receiver.wait_for(1)
    delivery = receiver.requests[0]
    body, header = delivery.body, delivery.headers["x-glimpze-signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64},v1=[0-9a-f]{64}", header), header
    tampered = body.replace(b"test event", b"tost event")
    assert tampered != body
    cases: list[tuple[bytes, str]] = [(body, old), (body, new), (body, "whsec_someone_else"), (tampered, new)]
    expected = [True, True, False, False]

    # What the page explains: the first signature is the new secret's, so a receiver that reads
    # only the first `v1` and still holds the old secret refuses the delivery.
    assert [first_v1_only(b, header, s) for b, s in cases[:2]] == [False, True]

    namespace: dict[str, Any] = {}
    exec(readme_block("python", "def verify("), namespace)
    assert [namespace["verify"](b, header, s) for b, s in cases] == expected

    if shutil.which("node") is None:
        pytest.skip("node is not installed: the webhooks page's Node verifier was not run")
    script = readme_block("js", "X-Glimpze-Signature") + (
        f"\nconst cases = {json.dumps([[b.decode(), s] for b, s in cases])};\n"
        f"console.log(JSON.stringify(cases.map(([b, s]) => verifyGlimpzeSignature(Buffer.from(b), "
        f"{json.dumps(header)}, s))));\n"
    )
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == expected
