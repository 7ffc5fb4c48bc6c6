"""Screens: the list with live previews and the create dialog, and a screen's page (its picture as a
colour PNG and as the 1-bit and 2-bit e-ink images, live; its settings; its picture and kiosk links).

A preview is re-read when a notice names one of the screen's feeds (`tile:fd_…`) or the screen.
"""

from __future__ import annotations

from typing import Any

from litestar import Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from glimpze.displays.screens import (
    DEFAULT_SIZE,
    LAYOUT_FEEDS,
    MAX_SIDE,
    MIN_SIDE,
    Screen,
    ScreenCreate,
    ScreenPatch,
    bit_depth_of,
    reader_screen,
)
from glimpze.errors import GlimpzeError, ValidationFailed
from glimpze.services import Services
from glimpze.store.pagination import MAX_LIMIT, all_pages
from glimpze.web.common import AnyRequest, App, known_etags
from glimpze.web.dashboard.web import (
    Form,
    SignedIn,
    attempt,
    convert,
    field_errors,
    form_of,
    notify,
    page,
    redirect,
)
from glimpze.web.dashboard.widgets import project_feeds

LAYOUT_CHOICES = [
    ("full", "Full: one feed"),
    ("halves", "Halves: two feeds side by side"),
    ("hero", "Hero: one large, two small"),
    ("grid", "Grid: four feeds, 2 × 2"),
]
THEME_CHOICES = [("light", "Light"), ("dark", "Dark"), ("eink", "E-ink (black and white)")]
SLOTS = max(LAYOUT_FEEDS.values())


def _values(form: Form) -> dict[str, Any]:
    """A screen form's fields as the service's input (the feed slots in order, empty ones left out)."""
    feeds = [value.strip() for value in form.data.getall("feed", []) if isinstance(value, str) and value.strip()]
    values: dict[str, Any] = {
        "name": form["name"],
        "feeds": feeds,
        "size": (_side(form["width"], 0), _side(form["height"], 1)),
        "theme": form["theme"] or "light",
        "show_updated": form.checked("show_updated"),
    }
    if form["layout"]:
        values["layout"] = form["layout"]
    return values


def _side(text: str, n: int) -> int:
    if not text.isdigit():
        raise ValidationFailed.at(f"$.size[{n}]", f"must be a whole number of pixels, {MIN_SIDE} to {MAX_SIDE}")
    return int(text)


async def _all_screens(glimpze: Services, project_id: str) -> list[Screen]:
    return await all_pages(lambda after: glimpze.screens.page(project_id, after=after, limit=MAX_LIMIT))


async def _versions(glimpze: Services, project_id: str, screens: list[Screen]) -> dict[str, str]:
    """Each screen's picture filename now: part of its preview's URL, so a changed picture is fetched."""
    versions = {}
    for screen in screens:
        reader = await glimpze.screens.screen_of(project_id, screen.id)
        if reader is not None:
            versions[screen.id] = (await glimpze.screens.draw(reader)).filename
    return versions


async def _list_page(
    request: AnyRequest,
    glimpze: Services,
    viewer: SignedIn,
    *,
    dialog: bool,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Template:
    screens = await _all_screens(glimpze, viewer.project_id)
    feeds = await project_feeds(glimpze, viewer.project_id)
    return page(
        request,
        "screens.html",
        title="Screens",
        section="screens",
        status=status,
        screens=screens,
        versions=await _versions(glimpze, viewer.project_id, screens),
        feed_names={feed.id: feed.name for feed in feeds},
        feeds=feeds,
        slots=SLOTS,
        layouts=LAYOUT_CHOICES,
        themes=THEME_CHOICES,
        dialog=dialog,
        form=form or {"width": DEFAULT_SIZE[0], "height": DEFAULT_SIZE[1], "theme": "light", "show_updated": True},
        errors=errors or {},
        first_error=next(iter(errors or {}), None),
        live_on=" ".join(["screen", *(f"tile:{feed.id}" for feed in feeds)]),
    )


@get("/screens")
async def screens_page(
    request: AnyRequest, glimpze: App, viewer: SignedIn, new: FromQuery[str | None] = None
) -> Template:
    return await _list_page(request, glimpze, viewer, dialog=new is not None)


@post("/screens")
async def create_screen(request: AnyRequest, glimpze: App, viewer: SignedIn) -> Response[Any]:
    form = await form_of(request)
    try:
        screen = await glimpze.screens.create(viewer.project_id, convert(_values(form), ScreenCreate))
    except GlimpzeError as exc:
        if exc.status >= 500:
            raise
        values = {**form.values(), "feeds": form.data.getall("feed", []), "show_updated": form.checked("show_updated")}
        return await _list_page(
            request, glimpze, viewer, dialog=True, form=values, errors=field_errors(exc), status=exc.status
        )
    notify(request, f"Created the screen “{screen.name}”.")
    return redirect(f"/screens/{screen.id}")


@get("/screens/{screen_id:str}")
async def screen_page(request: AnyRequest, glimpze: App, viewer: SignedIn, screen_id: FromPath[str]) -> Template:
    screen = await glimpze.screens.get(viewer.project_id, screen_id)
    feeds = await project_feeds(glimpze, viewer.project_id)
    version = (await _versions(glimpze, viewer.project_id, [screen])).get(screen.id, "")
    return page(
        request,
        "screen.html",
        title=screen.name,
        section="screens",
        screen=screen,
        version=version,
        feeds=feeds,
        feed_names={feed.id: feed.name for feed in feeds},
        slots=SLOTS,
        layouts=LAYOUT_CHOICES,
        themes=THEME_CHOICES,
        form={
            "name": screen.name,
            "feeds": screen.feeds,
            "layout": screen.layout,
            "width": screen.size[0],
            "height": screen.size[1],
            "theme": screen.theme,
            "show_updated": screen.show_updated,
        },
        errors={},
        first_error=None,
        live_on=" ".join([f"screen:{screen.id}", *(f"tile:{feed_id}" for feed_id in screen.feeds)]),
    )


@get("/screens/{screen_id:str}/preview.png")
async def screen_preview(
    request: AnyRequest, glimpze: App, viewer: SignedIn, screen_id: FromPath[str], bit_depth: FromQuery[int] = 8
) -> Response[Any]:
    """The screen's picture for the dashboard (the session, not the read token, opens it)."""
    screen = reader_screen(await glimpze.screens.row(viewer.project_id, screen_id))
    picture = await glimpze.screens.draw(screen, bit_depth=bit_depth_of(bit_depth))
    headers = {"ETag": picture.etag, "Cache-Control": "private, no-cache"}
    if picture.etag in known_etags(request):
        return Response(b"", status_code=304, headers=headers)
    return Response(picture.data, media_type="image/png", headers=headers)


@post("/screens/{screen_id:str}")
async def update_screen(request: AnyRequest, glimpze: App, viewer: SignedIn, screen_id: FromPath[str]) -> Response[Any]:
    form = await form_of(request)

    async def save() -> str:
        patch = convert(_values(form), ScreenPatch)
        screen = await glimpze.screens.update(viewer.project_id, screen_id, patch)
        return f"Saved “{screen.name}”."

    return await attempt(request, save, then=f"/screens/{screen_id}", failed="Not saved.")


@post("/screens/{screen_id:str}/rotate-read-token")
async def rotate_token(request: AnyRequest, glimpze: App, viewer: SignedIn, screen_id: FromPath[str]) -> Response[Any]:
    await glimpze.screens.rotate_read_token(viewer.project_id, screen_id)
    notify(request, "Made a new read token; picture cards and kiosks need the new links.")
    return redirect(f"/screens/{screen_id}#links")


@post("/screens/{screen_id:str}/delete")
async def delete_screen(request: AnyRequest, glimpze: App, viewer: SignedIn, screen_id: FromPath[str]) -> Response[Any]:
    screen = await glimpze.screens.get(viewer.project_id, screen_id)
    await glimpze.screens.delete(viewer.project_id, screen_id)
    notify(request, f"Deleted the screen “{screen.name}”; it left every device's playlist.")
    return redirect("/screens")


ROUTES = [screens_page, create_screen, screen_page, screen_preview, update_screen, rotate_token, delete_screen]
