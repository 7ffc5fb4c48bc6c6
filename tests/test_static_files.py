"""Static files (`/widget.js`, the dashboard's `/static/…`, `/sw.js`, the manifest): compressed by
`Accept-Encoding` once per process, a strong ETag per form with `Vary: Accept-Encoding`, 304s on
`If-None-Match`, and HEAD answered with GET's headers and no body."""

from __future__ import annotations

import gzip
import importlib.util
from collections.abc import Mapping
from typing import Any

import pytest

from glimpze.web import static
from glimpze.web.dashboard import pwa
from glimpze.web.static import accepted_encodings, make_asset
from tests.conftest import Api
from tests.server import REPO

pytestmark = pytest.mark.anyio

DASHBOARD_STATIC = REPO / "glimpze" / "web" / "dashboard" / "static"
WIDGET_JS = (REPO / "glimpze" / "static" / "widget.js").read_bytes()
# (path, the bytes it serves, or None where they are built at run time)
FILES = [
    ("/widget.js", WIDGET_JS),
    ("/static/app.css", (DASHBOARD_STATIC / "app.css").read_bytes()),
    ("/static/app.js", (DASHBOARD_STATIC / "app.js").read_bytes()),
    ("/sw.js", None),
    ("/manifest.webmanifest", None),
]
PATHS = [path for path, _ in FILES]
IDENTITY = {"Accept-Encoding": "identity"}
GZIP = {"Accept-Encoding": "gzip"}
HAS_BROTLI = importlib.util.find_spec("brotli") is not None


async def raw(
    api: Api, path: str, headers: Mapping[str, str | None], method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and the body as sent (httpx would decode gzip on its own); a header given
    as None is left out (httpx sends its own Accept-Encoding otherwise)."""
    request = api.client.build_request(method, path, headers={k: v for k, v in headers.items() if v is not None})
    for name in [name for name, value in headers.items() if value is None]:
        del request.headers[name]
    response = await api.client.send(request, stream=True)
    try:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()
    return response.status_code, dict(response.headers), body


@pytest.mark.parametrize("path,expected", FILES)
async def test_a_gzip_answer_decodes_to_the_same_bytes(api: Api, path: str, expected: bytes | None) -> None:
    status, plain_headers, plain = await raw(api, path, IDENTITY)
    assert status == 200 and "content-encoding" not in plain_headers
    if expected is not None:
        assert plain == expected
    browser = {"Accept-Encoding": "gzip, deflate, br, zstd"}  # gzip is the one we have without brotli
    status, headers, body = await raw(api, path, GZIP if HAS_BROTLI else browser)
    assert status == 200
    assert headers["content-encoding"] == "gzip" and headers["vary"] == "Accept-Encoding"
    assert int(headers["content-length"]) == len(body) < len(plain)
    assert gzip.decompress(body) == plain
    assert headers["content-type"] == plain_headers["content-type"]


@pytest.mark.parametrize("path", PATHS)
async def test_each_encoding_has_its_own_etag_and_if_none_match_answers_304(api: Api, path: str) -> None:
    _, plain, _ = await raw(api, path, IDENTITY)
    _, zipped, _ = await raw(api, path, GZIP)
    assert plain["etag"] != zipped["etag"]
    assert plain["etag"].startswith('"') and zipped["etag"].startswith('"')  # strong validators
    assert plain["vary"] == zipped["vary"] == "Accept-Encoding"
    for etag, headers in ((zipped["etag"], GZIP), (f"W/{zipped['etag']}", GZIP), (plain["etag"], IDENTITY)):
        status, answer, body = await raw(api, path, {**headers, "If-None-Match": f'"other", {etag}'})
        assert status == 304 and body == b"", etag
        assert answer["etag"] == etag.removeprefix("W/") and answer["vary"] == "Accept-Encoding"
    # The identity form's ETag does not validate the gzip form (another representation), and back.
    status, answer, _ = await raw(api, path, {**GZIP, "If-None-Match": plain["etag"]})
    assert status == 200 and answer["content-encoding"] == "gzip"
    status, answer, _ = await raw(api, path, {**IDENTITY, "If-None-Match": zipped["etag"]})
    assert status == 200 and "content-encoding" not in answer


@pytest.mark.parametrize("path", [*PATHS, "/static/icons/icon-192.png"])
async def test_head_answers_the_headers_of_get_without_a_body(api: Api, path: str) -> None:
    for headers in (IDENTITY, GZIP):
        _, got, body = await raw(api, path, headers)
        status, head, head_body = await raw(api, path, headers, method="HEAD")
        assert status == 200 and head_body == b""
        assert head["content-length"] == got["content-length"] == str(len(body))
        for name in ("content-type", "etag", "cache-control", "content-encoding", "vary"):
            assert head.get(name) == got.get(name), (path, name)
    etag = (await raw(api, path, GZIP))[1]["etag"]
    status, _, body = await raw(api, path, {**GZIP, "If-None-Match": etag}, method="HEAD")
    assert status == 304 and body == b""


@pytest.mark.parametrize("accept", [None, "", "identity", "gzip;q=0", "deflate", "x-unknown", "GZIP;Q=zero"])
async def test_no_compression_unless_accepted(api: Api, accept: str | None) -> None:
    headers: dict[str, str | None] = {"Accept-Encoding": accept}  # None: no header at all
    for path, expected in FILES:
        status, answer, body = await raw(api, path, headers)
        assert status == 200 and "content-encoding" not in answer, (path, accept)
        assert int(answer["content-length"]) == len(body)
        if expected is not None:
            assert body == expected


async def test_the_best_accepted_encoding_wins(api: Api) -> None:
    _, answer, _ = await raw(api, "/widget.js", {"Accept-Encoding": "br;q=1, gzip;q=0.5, *;q=0"})
    assert answer.get("content-encoding") == ("br" if HAS_BROTLI else "gzip")
    _, answer, _ = await raw(api, "/widget.js", {"Accept-Encoding": "*"})
    assert answer.get("content-encoding") == ("br" if HAS_BROTLI else "gzip")
    _, answer, _ = await raw(api, "/widget.js", {"Accept-Encoding": "br"})
    assert answer.get("content-encoding") == ("br" if HAS_BROTLI else None)  # brotli only when installed
    assert accepted_encodings(" gzip ; q=0.3 ,br;q=2, identity;q=x") == {"gzip": 0.3, "br": 1.0, "identity": 0.0}


async def test_files_are_compressed_once_per_process_not_per_request(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = gzip.compress

    def counted(data: bytes, **options: Any) -> bytes:
        calls.append(len(data))
        return real(data, **options)

    monkeypatch.setattr(static.gzip, "compress", counted)
    monkeypatch.setattr(pwa, "_STATIC_ASSETS", {})  # as in a fresh process
    for _ in range(3):
        for headers in (GZIP, IDENTITY):
            status, _, _ = await raw(api, "/static/app.js", headers)
            assert status == 200
    assert calls == [len((DASHBOARD_STATIC / "app.js").read_bytes())]


def test_images_and_small_files_are_not_compressed() -> None:
    png = (DASHBOARD_STATIC / "icons" / "icon-192.png").read_bytes()
    assert [v.encoding for v in make_asset(png, "image/png").variants] == [None]
    assert [v.encoding for v in make_asset(b"a{}", "text/css").variants] == [None]  # gzip would be larger


async def test_unknown_static_paths_are_not_found(api: Api) -> None:
    for path in ("/static/nope.css", "/static/icons", "/static/%2e%2e/web.py", "/static/..%2fweb.py"):
        response = await api.client.get(path)
        assert response.status_code == 404, path
