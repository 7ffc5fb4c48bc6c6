"""`GET /media/{sha256}.{ext}`: uploaded images, at URLs that never change their content."""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import ETag
from litestar.params import FromPath
from litestar.response import File

from glimpze.errors import NotFound
from glimpze.web.common import AnyRequest, App, known_etags

# The name is the content's hash, so the answer may be cached forever. nosniff and the CSP keep
# a browser from treating an image as anything else, whatever bytes it holds.
_HEADERS = {
    "Cache-Control": "public, max-age=31536000, immutable",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


@get("/media/{name:str}", tags=["widgets"], summary="An uploaded image ({sha256}.png, .jpg or .webp)")
async def media_file(name: FromPath[str], request: AnyRequest, glimpze: App) -> Response[bytes] | File:
    image = await glimpze.media.find(name)
    path = glimpze.media.path(image.name) if image is not None else None
    if image is None or path is None or not path.is_file():
        raise NotFound(f"No image {name!r} (it may have been deleted with the events that used it).")
    etag = f'"{image.sha256}"'
    if etag in known_etags(request):
        return Response(b"", status_code=304, headers={**_HEADERS, "ETag": etag})
    return File(
        path,
        media_type=image.content_type,
        headers=_HEADERS,
        etag=ETag(value=image.sha256),
        filename=image.name,
        content_disposition_type="inline",
    )
