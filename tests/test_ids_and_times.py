"""Ids and ISO times are built by fast paths (issue 15's ingest budget): they give exactly the text
of the plain definitions."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from glimpze import ids
from glimpze.clock import iso


def plain_iso(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def plain_base32(number: int, chars: int) -> str:
    return "".join(ids._CROCKFORD[(number >> shift) & 31] for shift in range(5 * (chars - 1), -1, -5))


def test_iso_is_datetimes_text_at_every_rounding_edge() -> None:
    rng = random.Random(15)
    edges = [0.9999995, 0.9999994, 0.0000005, 0.0000015, 0.9995, 0.0005, 0.999, 0.5, 0.0]
    times = [whole + edge for whole in (0, 1, 1_700_000_000, 4_102_444_799) for edge in edges]
    times += [1_700_000_000 + i * 1e-7 for i in range(20_000)]  # through a second, in and out of the cache
    times += [rng.uniform(0, 4e9) for _ in range(50_000)]  # jumping between seconds
    for ts in times:
        assert iso(ts) == plain_iso(ts), repr(ts)


def test_ids_encode_like_one_character_at_a_time() -> None:
    rng = random.Random(15)
    for chars in range(1, 14):
        for _ in range(500):
            number = rng.getrandbits(80)
            assert ids._base32(number, chars) == plain_base32(number, chars), (number, chars)
    new = ids.new_id("evt_")
    assert len(new) == 4 + ids.ID_TIME_CHARS + ids.ID_RANDOM_CHARS and set(new[4:]) <= set(ids._CROCKFORD)
