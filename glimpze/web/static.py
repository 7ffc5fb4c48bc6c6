"""Static files as browsers like them: compressed by `Accept-Encoding`, strong ETags, 304s, HEAD.

`/widget.js` and the dashboard's files (`/static/…`, `/sw.js`, `/manifest.webmanifest`) are each an
`Asset`: the bytes and their compressed forms, made once per process (the caller keeps the asset)
and never per request. gzip always; brotli too when the `brotli` package happens to be installed
(it is not a dependency). A compressed form is kept only when it is smaller.

Every form has its own strong ETag (the identity one plus `-gzip`/`-br`), as RFC 9110 asks of
different representations, and every answer of a compressible file says `Vary: Accept-Encoding`
so caches keep the forms apart. `If-None-Match` (weak comparison, `*` included) answers 304 for
the form this request would get. HEAD answers the same headers as GET, Content-Length included,
with no body.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType

from litestar.response.base import ASGIResponse
from litestar.types import Method

from glimpze.web.common import AnyRequest, known_etags

METHODS: list[Method] = ["GET", "HEAD"]  # for `@route(…, http_method=METHODS)`
GZIP_LEVEL = 9  # once per process: the best ratio costs nothing per request
BROTLI_QUALITY = 11
COMPRESSIBLE = ("text/", "application/javascript", "application/json", "application/manifest+json", "image/svg+xml")
MEDIA_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webp": "image/webp",
    ".woff2": "font/woff2",
}
DEFAULT_MEDIA_TYPE = "application/octet-stream"


def _brotli() -> ModuleType | None:
    try:
        return importlib.import_module("brotli")
    except ImportError:
        return None


@dataclass(frozen=True, slots=True)
class Variant:
    """One form of a file: its bytes, its `Content-Encoding` (None: as stored) and its ETag."""

    body: bytes
    encoding: str | None
    etag: str


@dataclass(frozen=True, slots=True)
class Asset:
    """A static file in every form worth sending, and the headers all its answers carry."""

    media_type: str
    variants: tuple[Variant, ...]  # identity first
    headers: tuple[tuple[str, str], ...]

    @property
    def compressible(self) -> bool:
        return len(self.variants) > 1

    def variant(self, accept_encoding: str | None) -> Variant:
        """The compressed form the client accepts with the highest q (the smaller on a tie), else the
        stored bytes."""
        accepted = accepted_encodings(accept_encoding or "")
        best, best_key = self.variants[0], (0.0, 0)
        for variant in self.variants[1:]:
            key = (accepted.get(variant.encoding or "", accepted.get("*", 0.0)), -len(variant.body))
            if key[0] > 0 and key > best_key:
                best, best_key = variant, key
        return best


def accepted_encodings(header: str) -> dict[str, float]:
    """`Accept-Encoding` as {coding: q}; a malformed q counts as 0 (not accepted)."""
    accepted: dict[str, float] = {}
    for part in header.split(","):
        coding, _, params = part.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        accepted[coding] = q
    return accepted


def media_type_of(name: str) -> str:
    dot = name.rfind(".")
    return MEDIA_TYPES.get(name[dot:].lower(), DEFAULT_MEDIA_TYPE) if dot >= 0 else DEFAULT_MEDIA_TYPE


def make_asset(data: bytes, media_type: str, headers: Mapping[str, str] | None = None) -> Asset:
    """`data` with its compressed forms (for a compressible type) and their ETags: done once, kept by the caller."""
    tag = hashlib.sha256(data).hexdigest()[:32]
    variants = [Variant(data, None, f'"{tag}"')]
    if media_type.startswith(COMPRESSIBLE):
        # mtime=0: the same bytes compress to the same body in every process (and every replica).
        forms: list[tuple[str, Callable[[bytes], bytes]]] = [
            ("gzip", lambda raw: gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0))
        ]
        brotli = _brotli()
        if brotli is not None:
            forms.insert(0, ("br", lambda raw: brotli.compress(raw, quality=BROTLI_QUALITY)))
        for encoding, compress in forms:
            body = compress(data)
            if len(body) < len(data):
                variants.append(Variant(body, encoding, f'"{tag}-{encoding}"'))
    return Asset(media_type, tuple(variants), tuple((headers or {}).items()))


def serve(request: AnyRequest, asset: Asset) -> ASGIResponse:
    """The answer to a GET or HEAD of `asset`: the chosen form, a 304, or only the headers."""
    variant = asset.variant(request.headers.get("accept-encoding"))
    headers = [*asset.headers, ("ETag", variant.etag)]
    if asset.compressible:
        headers.append(("Vary", "Accept-Encoding"))
    etags = known_etags(request)
    if variant.etag in etags or "*" in etags:
        return ASGIResponse(body=b"", status_code=304, headers=headers)
    headers += [("Content-Type", asset.media_type), ("Content-Length", str(len(variant.body)))]
    if variant.encoding is not None:
        headers.append(("Content-Encoding", variant.encoding))
    head = request.method == "HEAD"
    return ASGIResponse(body=b"" if head else variant.body, is_head_response=head, headers=headers)
