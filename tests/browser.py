"""Browser tests' shared setup: Debian's Chromium driven by Playwright, never a downloaded browser.

`chromium(playwright)` launches `/usr/bin/chromium` (or `$GLIMPZE_CHROMIUM`) headless with the flags
that let it run in containers and keep it off the network. Without a Chromium or the playwright
package the browser tests are skipped, unless `GLIMPZE_REQUIRE_BROWSER=1` (set by `.ci/run`), where
they fail instead: CI must never pass by skipping them.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "widget-host" / "server.py"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    wanted = os.environ.get("GLIMPZE_CHROMIUM") or "/usr/bin/chromium"
    return wanted if Path(wanted).exists() else shutil.which("chromium")


def need_browser() -> str:
    """The Chromium binary, or skip (fail under GLIMPZE_REQUIRE_BROWSER=1) with how to get one."""
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "the playwright package is missing: pip install -e '.[test]'"
    path = chromium_path()
    if problem is None and path is None:
        problem = "Chromium is missing: apt-get install -y chromium"
    if problem is not None:
        if os.environ.get("GLIMPZE_REQUIRE_BROWSER") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    assert path is not None
    return path


def chromium(playwright: Any) -> Any:
    """A headless Chromium from the system (Playwright never downloads one here)."""
    return playwright.chromium.launch(executable_path=need_browser(), headless=True, args=CHROMIUM_FLAGS)


class ExampleSite:
    """`examples/widget-host/server.py` as a subprocess on 127.0.0.1: a website on its own port (so
    its origin differs from Glimpze's) whose backend mints widget tokens with `api_key`."""

    def __init__(
        self, root: Path, glimpze_url: str, api_key: str, *, agent_id: str | None = None, ttl: int = 600
    ) -> None:
        self.log_path = root / "example-site.log"  # its request log (stderr); stdout names its address
        self.args = [sys.executable, str(EXAMPLE), "--glimpze-url", glimpze_url, "--port", "0", "--ttl", str(ttl)]
        if agent_id:
            self.args += ["--agent-id", agent_id]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPZE_")} | {"GLIMPZE_API_KEY": api_key}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 20.0) -> None:
        """Start it and wait for the line that names its address (it binds port 0: no race for a port)."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=log, env=self.env)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        match = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        if match is None:
            self.stop()
            raise RuntimeError(f"the example site did not start: {line!r}\n{self.log_path.read_text()}")
        self.url = match.group(1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def sign_in_first_time(page: Any, server_url: str, server_output: str, password: str) -> None:
    """Choose the dashboard password through the setup link a first start printed, signing `page` in."""
    link = re.search(r"http://\S+/setup/\S+", server_output)
    assert link, server_output
    page.goto(link.group(0))
    page.get_by_label("New password").fill(password)
    page.get_by_label("Repeat it").fill(password)
    page.get_by_role("button", name="Save and sign in").click()
    page.wait_for_url(f"{server_url}/")
