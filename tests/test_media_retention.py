"""Stored images live exactly as long as a kept event links to them; orphans are swept."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from glimpze.clock import FakeClock
from glimpze.feeds.media import ORPHAN_GRACE_SECONDS, Media, MediaFile
from tests import imagefiles as img
from tests.conftest import Api, row_counts, stored_files

pytestmark = pytest.mark.anyio

DAY = 86400


def media_names(answer: dict[str, Any]) -> set[str]:
    return {
        url.rsplit("/", 1)[1] for size in answer["content"].values() if isinstance(size, dict) for url in size.values()
    }


async def test_retention_deletes_images_only_purged_events_used(api: Api, clock: FakeClock) -> None:
    feed = await api.feed("custom", plan="pro")  # 14 days of history
    shared = img.widget("small", seed=1)
    old = (await api.upload(feed, {"small_image": shared, "medium_image": img.widget("medium", seed=2)})).json()
    clock.advance(10 * DAY)
    kept = (await api.upload(feed, {"small_image": shared, "large_image": img.widget("large", seed=3)})).json()
    clock.advance(5 * DAY)
    quiet = await api.upload(feed, {"small_image": img.widget("small", seed=4)}, {"intent": '{"update_widget": false}'})
    clock.advance(15 * DAY)  # all three are past 14 days; the widget state (`kept`) stays anyway

    assert await api.glimpze.retention.purge_expired(clock.now()) == 2

    names = set(stored_files(api.glimpze.config.data_path))
    assert names == media_names(kept)  # the shared small image stays: the widget state uses it
    rows = row_counts(Path(api.glimpze.config.db_path))
    assert rows["media"] == 2 and rows["event_media"] == 2
    for name in names:
        assert (await api.client.get(f"/media/{name}")).status_code == 200
    for name in (media_names(old) | media_names(quiet.json())) - names:
        assert (await api.client.get(f"/media/{name}")).status_code == 404


async def test_deleting_a_feed_frees_its_images(api: Api) -> None:
    feed = await api.feed("custom", plan="pro")
    await api.upload(feed, {"small_image": img.widget("small")})
    assert (await api.delete(f"/v1/feeds/{feed['id']}")).status_code == 204
    await api.glimpze.retention.purge_expired(api.glimpze.clock.now())
    assert stored_files(api.glimpze.config.data_path) == []
    assert row_counts(Path(api.glimpze.config.db_path))["media"] == 0


async def test_orphan_and_spool_files_are_swept_once_old(api: Api, clock: FakeClock) -> None:
    media: Media = api.glimpze.media
    feed = await api.feed("custom", plan="pro")
    kept = media_names((await api.upload(feed, {"small_image": img.widget("small")})).json())
    orphan = media.path("ab" * 32 + ".png")  # a crash between linking a file and committing its row
    orphan.write_bytes(img.widget("small", seed=9))
    spool = media.incoming / "half-written"
    spool.write_bytes(b"\x89PNG")
    wall = clock.now() - ORPHAN_GRACE_SECONDS / 2  # young files are left alone: an upload may own them
    for path in (orphan, spool):
        os.utime(path, (wall, wall))
    await media.collect(clock.now())
    assert orphan.exists() and spool.exists()

    clock.advance(ORPHAN_GRACE_SECONDS)
    await media.collect(clock.now())
    assert not orphan.exists() and not spool.exists()
    assert set(stored_files(api.glimpze.config.data_path)) == kept


async def test_an_upload_relinks_its_file_when_collection_took_it_meanwhile(api: Api, monkeypatch: Any) -> None:
    media: Media = api.glimpze.media
    feed = await api.feed("custom", plan="pro")
    small = img.widget("small")

    async def adopt_then_lose(files: list[MediaFile]) -> None:
        # As if collect() unlinked the image (no row referenced it yet) right after adoption.
        media._adopt(files)
        for file in files:
            media.path(file.name).unlink()

    monkeypatch.setattr(media, "adopt", adopt_then_lose)
    answer = (await api.upload(feed, {"small_image": small})).json()
    url = answer["content"]["small"]["image_url"].removeprefix("http://localhost:8080")
    assert (await api.client.get(url)).content == small


async def test_spool_files_never_outlive_the_request(api: Api) -> None:
    feed = await api.feed("custom", plan="pro")
    await api.upload(feed, {"small_image": img.widget("small")})
    await api.upload(feed, {"small_image": img.gif("small")})
    assert list(api.glimpze.media.incoming.iterdir()) == []
