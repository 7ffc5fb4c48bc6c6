"""Schemathesis hooks for tests/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

Every request claims its own client address in X-Forwarded-For (the app trusts 127.0.0.1 as a
proxy), so the failed-authentication limiter (20 a minute per address) does not turn the
fuzzer's deliberate bad credentials into 429s for the rest of the run.
"""

from __future__ import annotations

import itertools
from typing import Any

import schemathesis

_addresses = itertools.count(1)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    n = next(_addresses) % (1 << 24)
    case.headers = {**(case.headers or {}), "X-Forwarded-For": f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"}
