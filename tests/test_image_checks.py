"""The image checks on their own: formats, structure, bounded memory, blocked loaders, lazy pyvips."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from glimpze.feeds.images import WIDGET_PIXELS, CheckedImage, ImageRejected, check_image, vips
from tests import imagefiles as img
from tests.server import REPO


@pytest.mark.parametrize("fmt", img.FORMATS)
@pytest.mark.parametrize("size", list(WIDGET_PIXELS))
def test_every_accepted_format_at_every_size(fmt: str, size: str) -> None:
    width, height = WIDGET_PIXELS[size]
    assert check_image(img.widget(size, fmt), f"{size}_image", size) == CheckedImage(fmt, width, height)


def test_progressive_jpeg_and_lossless_webp_are_fine() -> None:
    image = vips().Image.new_from_buffer(img.widget("small"), "")
    assert check_image(image.jpegsave_buffer(interlace=True), "small_image", "small").ext == "jpg"
    assert check_image(image.webpsave_buffer(lossless=True), "small_image", "small").ext == "webp"


def test_a_size_that_fits_another_widget_is_still_wrong() -> None:
    with pytest.raises(ImageRejected, match="medium_image is 474×474 px; medium widgets need exactly 1014×474 px"):
        check_image(img.widget("small"), "medium_image", "medium")


def test_animated_webp_is_refused() -> None:
    pyvips = vips()
    frames = pyvips.Image.arrayjoin(
        [pyvips.Image.new_from_buffer(img.widget("small", seed=i), "") for i in range(2)], across=1
    )
    frames = frames.copy()
    frames.set_type(pyvips.GValue.gint_type, "page-height", 474)
    animated = frames.webpsave_buffer()
    with pytest.raises(ImageRejected, match="animated WebP"):
        check_image(animated, "small_image", "small")


def test_rotated_jpeg_is_refused() -> None:
    pyvips = vips()
    image = pyvips.Image.new_from_buffer(img.widget("small"), "").copy()
    image.set_type(pyvips.GValue.gint_type, "orientation", 6)
    with pytest.raises(ImageRejected, match="EXIF orientation 6"):
        check_image(image.jpegsave_buffer(), "small_image", "small")


def test_other_loaders_are_blocked_even_when_called_directly() -> None:
    pyvips = vips()
    for data in (img.svg(), img.gif("small"), img.tiff("small"), img.avif("small")):
        with pytest.raises(pyvips.Error):
            pyvips.Image.new_from_buffer(data, "")


def test_bomb_header_is_refused_fast_in_bounded_memory(tmp_path: Path) -> None:
    """A fresh process, so its peak RSS says what this one check cost (libvips' memory included)."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(img.png_declaring(100_000, 100_000))
    script = textwrap.dedent(
        f"""
        import json, resource, sys, time
        from glimpze.feeds.images import ImageRejected, check_image, vips
        vips()  # import and lock down pyvips first: only the check itself is measured
        data = open({str(bomb)!r}, "rb").read()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        try:
            check_image(data, "small_image", "small")
            message = None
        except ImageRejected as exc:
            message = str(exc)
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"message": message, "seconds": elapsed, "grew_kib": after - before}}))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["message"] == "small_image is 100000×100000 px; small widgets need exactly 474×474 px"
    assert result["seconds"] < 0.5
    assert result["grew_kib"] < 50 * 1024


def test_an_idle_server_does_not_import_pyvips(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from glimpze.app import create_app
        from glimpze.cli import main
        from glimpze.config import load
        create_app(load(None, env={{}}, overrides={{"data_dir": {str(tmp_path)!r}}}))
        print("pyvips" in sys.modules)
        """
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"
