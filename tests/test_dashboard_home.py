"""The dashboard's home, inbox and webhook views without a browser: tile order kept per project,
lateness, the change notices the live pages hear, unread conversations and their pushes, delivery
counts and the request an inspector shows, and the form and sign-in texts people read."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import msgspec
import pytest

from glimpze.clock import FakeClock
from glimpze.config import Config
from glimpze.feeds.tiles import Placement, TileSettings, arranged, is_stale
from glimpze.push import apprise_urls
from glimpze.store.changes import Change, Changes
from tests.conftest import Api, running
from tests.dashboard import Dash, audit, csrf_of
from tests.receiver import Receiver

pytestmark = pytest.mark.anyio


@pytest.fixture
async def dash(api: Api) -> AsyncIterator[Dash]:
    client = Dash(api.client)
    await client.set_up(api.announced)
    yield client


async def project_of(api: Api) -> str:
    return (await api.glimpze.keys.list_projects())[0].id


async def token(dash: Dash) -> str:
    return csrf_of((await dash.open("/")).text)


# Pure rules


def test_tiles_follow_the_arranged_order_then_creation_order() -> None:
    placements = {"fd_c": Placement(position=0), "fd_a": Placement(position=1)}
    assert arranged(["fd_a", "fd_b", "fd_c", "fd_d"], placements) == ["fd_c", "fd_a", "fd_b", "fd_d"]
    assert arranged(["fd_a", "fd_b"], {}) == ["fd_a", "fd_b"]


def test_a_tile_is_late_after_one_and_a_half_expected_intervals() -> None:
    assert not is_stale(1000.0, None, 10**9)  # no expectation: never late
    assert not is_stale(None, 300, 10**9)  # no event yet: nothing was late
    assert not is_stale(1000.0, 300, 1000.0 + 450)
    assert is_stale(1000.0, 300, 1000.0 + 451)


def test_change_notices_wait_for_the_commit_and_reach_only_their_project() -> None:
    changes = Changes()
    mine, other = changes.subscribe("prj_1"), changes.subscribe("prj_2")
    changes.note("prj_1", "tile", "fd_1")
    changes.note("prj_1", "tile", "fd_1")  # a job run twice notes twice: told once
    assert mine.queue.empty()
    changes.after_commit()
    assert mine.queue.get_nowait() == Change("tile", "fd_1") and mine.queue.empty() and other.queue.empty()
    mine.close()
    changes.note("prj_1", "tile", "fd_2")
    changes.after_commit()
    assert changes.listening == 1


def test_a_listener_that_falls_behind_is_told_to_read_everything_again() -> None:
    changes = Changes()
    behind = changes.subscribe("prj_1")
    for i in range(300):
        changes.note("prj_1", "event", f"evt_{i}", "fd_1")
    changes.after_commit()
    told = [behind.queue.get_nowait() for _ in range(behind.queue.qsize())]
    assert told[0].kind == "resync" and len(told) < 300  # what was queued is dropped; later ones follow


def test_apprise_targets_are_shown_as_given_without_default_parameters() -> None:
    shown = apprise_urls.describe("json://glimpze:s3cret@127.0.0.1:8080/notify")
    assert shown is not None and shown.shown == "json://glimpze:****@127.0.0.1:8080/notify"
    given = apprise_urls.describe("ntfys://ntfy.sh/topic?priority=high")
    assert given is not None and given.shown == "ntfys://ntfy.sh/topic?priority=high"


# Through the app


async def test_the_tile_order_is_kept_per_project(api: Api, dash: Dash) -> None:
    first, second, third = [await api.feed("summary", name=n) for n in ("One", "Two", "Three")]
    project = await project_of(api)
    csrf = await token(dash)

    async def home_order() -> list[str]:
        page = await dash.open("/")
        return re.findall(r'id="tile-(fd_\w+)"', page.text)

    assert await home_order() == [first["id"], second["id"], third["id"]]
    response = await dash.client.post(
        "/tiles/order",
        json={"feeds": [third["id"], first["id"]]},
        headers={"X-CSRF-Token": csrf},
    )
    assert response.status_code == 204
    assert await home_order() == [third["id"], first["id"], second["id"]]  # the rest follow
    await dash.open("/?arrange=1")
    moved = await dash.submit(f"/tiles/{second['id']}/move", {"direction": "earlier"})
    assert moved.status_code == 303 and moved.headers["location"].startswith("/?arrange=1")
    assert await home_order() == [third["id"], second["id"], first["id"]]
    # Another project's feed, a repeat, or a missing CSRF token are refused, and nothing changes.
    refused = await dash.client.post("/tiles/order", json={"feeds": ["fd_nope"]}, headers={"X-CSRF-Token": csrf})
    assert refused.status_code == 422 and refused.json()["errors"][0]["path"] == "$.feeds[0]"
    twice = await dash.client.post(
        "/tiles/order", json={"feeds": [first["id"], first["id"]]}, headers={"X-CSRF-Token": csrf}
    )
    assert twice.status_code == 422 and twice.json()["errors"][0]["path"] == "$.feeds[1]"
    assert (await dash.client.post("/tiles/order", json={"feeds": []})).status_code == 403
    assert await home_order() == [third["id"], second["id"], first["id"]]
    layout = await api.glimpze.tiles.layout(project)
    assert [layout[f["id"]].position for f in (third, second, first)] == [0, 1, 2]


async def test_a_tile_is_late_when_its_feed_misses_its_interval(api: Api, dash: Dash, clock: FakeClock) -> None:
    feed = await api.feed("status", name="Cron")
    await api.ingest(
        feed, {"schema_type": "status", "content": {"title": "Cron", "status": "success", "message": "ok"}}
    )
    await dash.open(f"/feeds/{feed['id']}")
    saved = await dash.follow(await dash.submit(f"/feeds/{feed['id']}/tile", {"size": "", "expected_seconds": "300"}))
    assert "Saved the tile." in saved.text

    def tile(html: str) -> str:
        found = re.search(rf'<li class="([^"]*)"\s+id="tile-{feed["id"]}"', html)
        assert found is not None
        return found.group(1)

    assert "tile-late" not in tile((await dash.open("/")).text)
    clock.advance(451)
    late = (await dash.open("/")).text
    assert "tile-late" in tile(late) and "Late" in late and 'data-expected="300"' in late
    bad = await dash.follow(
        await dash.submit(
            f"/feeds/{feed['id']}/tile", {"expected_seconds": "5", "size": "huge"}, on=f"/feeds/{feed['id']}"
        )
    )
    assert "Not saved." in bad.text
    assert (await api.glimpze.tiles.placement(feed["id"])) == Placement(None, None, 300.0)
    await dash.submit(f"/feeds/{feed['id']}/tile", {"size": "large", "expected_seconds": ""}, on="/")
    assert "tile-large" in tile((await dash.open("/")).text)
    assert TileSettings(size="large") == msgspec.convert({"size": "large"}, TileSettings)


async def test_the_inbox_marks_unread_conversations_until_opened(api: Api, dash: Dash) -> None:
    session = (await api.post("/v1/sessions", json={"visitor": {"id": "v1", "name": "Ada"}})).json()
    quiet = (await api.post("/v1/sessions", json={"visitor": {"id": "v2", "name": "Bob"}})).json()
    await api.post(f"/v1/sessions/{session['id']}/messages", json={"role": "visitor", "text": "Hello there"})
    await api.post(f"/v1/sessions/{quiet['id']}/messages", json={"role": "agent", "text": "Can we help?"})
    inbox = await dash.open("/conversations")
    item = re.search(rf'<li class="([^"]*)" data-session="{session["id"]}"', inbox.text)
    assert item is not None and "is-unread" in item.group(1) and "Hello there" in inbox.text
    assert "You: </span>Can we help?" in inbox.text  # the last message, and who wrote it
    assert 'data-count="conversations">1<' in inbox.text
    chat = await dash.open(f"/conversations/{session['id']}")
    assert 'class="bubble bubble-theirs bubble-visitor"' in chat.text  # a chat, not a numbered list
    inbox = await dash.open("/conversations")
    assert "is-unread" not in inbox.text and 'data-count="conversations" hidden>0<' in inbox.text


async def test_visitor_messages_push_only_when_the_project_asks(config: Config, clock: FakeClock) -> None:
    config.webhooks.allow_targets = ["127.0.0.1"]
    with Receiver() as ntfy:
        async with running(config, clock) as api:
            dash = Dash(api.client)
            await dash.set_up(api.announced)
            await api.glimpze.push.stop_runner()
            project = await project_of(api)
            await dash.submit(
                "/settings/push/targets", {"url": f"json://127.0.0.1:{ntfy.port}/notify"}, on="/settings/push"
            )
            session = (await api.post("/v1/sessions", json={"visitor": {"id": "v1", "name": "Ada"}})).json()
            messages = f"/v1/sessions/{session['id']}/messages"
            await api.post(messages, json={"role": "visitor", "text": "First"})

            async def pushes() -> list[tuple[str, str, str]]:
                log = await api.glimpze.push.log(project, event_id=None, feed_id=None, before=None, limit=5)
                return [(p.title, p.body, p.status) for p in reversed(log.data)]

            assert await pushes() == []  # off by default
            page = await dash.open("/settings/push")
            assert 'name="on"' in page.text and not re.search(r'name="on"\s+checked', page.text)
            await dash.submit("/settings/push/visitor-messages", {"on": "on"})
            await api.post(messages, json={"role": "visitor", "text": "Anyone there?"})
            await api.post(messages, json={"role": "agent", "text": "Yes!"})
            await api.post(messages, json={"role": "visitor", "text": "Again"})
            assert await pushes() == [
                ("Ada wrote", "Anyone there?", "queued"),
                ("Ada wrote", "Again", "coalesced"),  # one per conversation per interval
            ]
            assert await api.glimpze.push.send_due(clock.now()) == 1
            await ntfy.wait_for(1)
            sent = json.loads(ntfy.requests[0].body)
            assert sent["title"] == "Ada wrote" and "Anyone there?" in sent["message"]
            page = await dash.open("/settings/push")
            assert f'href="/conversations/{session["id"]}">conversation<' in page.text


async def test_webhook_states_count_deliveries_and_the_inspector_shows_the_request(
    config: Config, clock: FakeClock
) -> None:
    config.webhooks.allow_targets = ["127.0.0.1"]
    with Receiver() as receiver:
        receiver.default.status = 500
        async with running(config, clock) as api:
            dash = Dash(api.client)
            await dash.set_up(api.announced)
            await api.glimpze.dispatcher.stop_runner()
            hook = (
                await api.post("/v1/webhooks", json={"url": receiver.url, "events": ["*"], "headers": {"X-Env": "t"}})
            ).json()
            listing = await dash.open("/webhooks")
            assert 'data-state="active"' in listing.text and "No deliveries yet" in listing.text
            await api.post(f"/v1/webhooks/{hook['id']}/test")
            await api.post(f"/v1/webhooks/{hook['id']}/test")
            for _ in range(2):
                await api.glimpze.dispatcher.deliver_due(clock.now())
                clock.advance(10)  # the first retry comes after ~5 s: two attempts of each delivery
            listing = await dash.open("/webhooks")
            assert 'data-state="failing"' in listing.text and 'data-hook-state="failing"' in listing.text
            assert "2 deliveries failing, retrying" in listing.text  # deliveries, not the 4 attempts
            delivery = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["data"][0]
            inspector = await dash.open(f"/deliveries/{delivery['id']}")
            assert f"POST {receiver.url}" in inspector.text and "X-Env" in inspector.text
            body = re.search(r'id="sent-body"[^>]*><code>(.*?)</code>', inspector.text, re.S)
            assert body is not None
            # the two deliveries go out concurrently: find this one's request by its webhook-id
            sent = next(
                r for r in reversed(receiver.requests) if r.headers["webhook-id"] == delivery["id"]
            ).body.decode()
            assert json.loads(body.group(1).replace("&#34;", '"')) == json.loads(sent)
            assert inspector.text.count('class="attempt"') == 2 and "HTTP 500" in inspector.text
            replayed = await dash.follow(
                await dash.submit(f"/deliveries/{delivery['id']}/replay", {"next": "inspector"})
            )
            assert replayed.url.path == f"/deliveries/{delivery['id']}" and "Queued delivery" in replayed.text
            await api.patch(f"/v1/webhooks/{hook['id']}", json={"active": False})
            assert 'data-state="disabled"' in (await dash.open("/webhooks")).text


async def test_sign_in_and_form_errors_read_as_sentences(api: Api, dash: Dash) -> None:
    await dash.submit("/logout", on="/")
    wrong = await dash.sign_in("not the password")
    assert "The password is not right." in wrong.text and "password password" not in wrong.text
    await dash.sign_in()
    page = await dash.submit("/webhooks", {"url": "ftp://files.example.com", "events": ["*"], "active": "on"}, on="/")
    assert page.status_code == 422
    field = re.search(r'<input type="url" id="new-url"[^>]*>', page.text)
    assert field is not None and 'aria-invalid="true"' in field.group(0) and "autofocus" in field.group(0)
    error = re.search(r'id="new-url-error">([^<]+)<', page.text)
    assert error is not None and not error.group(1).startswith(("Url", "$."))


@pytest.mark.parametrize("path", ["/", "/feeds?new=1", "/approvals", "/conversations", "/webhooks", "/settings/push"])
async def test_the_pages_keep_csp_and_label_every_field(api: Api, dash: Dash, path: str) -> None:
    await api.feed("approval", name="Deploys")
    page = await dash.open(path)
    assert page.status_code == 200 and audit(page.text) == []
    assert "script-src 'self'" in page.headers["content-security-policy"]
