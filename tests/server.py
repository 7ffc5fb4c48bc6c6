"""Run a real `glimpze serve` subprocess on 127.0.0.1 for tests that need a process to kill."""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.pg import DATABASES, database_for

REPO = Path(__file__).resolve().parent.parent

UNLIMITED_PLAN = """
default_plan = "unlimited"

[plans.unlimited]
events_per_minute = 1000000
events_per_day = 100000000
history_days = 30
custom_feeds = 5
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `glimpze serve` process; start() waits for /healthz, kill() sends SIGKILL."""

    def __init__(
        self,
        root: Path,
        config_text: str = UNLIMITED_PLAN,
        env: dict[str, str] | None = None,
        *,
        args: list[str] | None = None,
        scheme: str = "http",
        verify: Any = True,
        rlimits: dict[int, tuple[int, int]] | None = None,
    ) -> None:
        """`args` are added to `glimpze serve`; `scheme` and `verify` (a CA file for httpx) are for TLS;
        `rlimits` ({resource.RLIMIT_…: (soft, hard)}) are set in the process before it starts."""
        self.root = root
        self.data = root / "data"
        self.config = root / "glimpze.toml"
        self.config.write_text(config_text)
        self.port = free_port()
        self.env = env or {}
        if "GLIMPZE_DATABASE_URL" not in self.env and (url := database_for(self.data)) is not None:
            self.env["GLIMPZE_DATABASE_URL"] = url  # the PostgreSQL pass: a database of its own
        self.args = args or []
        self.scheme = scheme
        self.verify = verify
        self.rlimits = rlimits or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.start_seconds = 0.0  # from starting the process to its first /healthz 200

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / f"server-{self.runs}.log"

    def start(self, timeout: float = 15.0, poll: float = 0.05) -> None:
        """Start the process and wait for /healthz to answer 200, asking every `poll` seconds."""
        self.runs += 1
        env = {**os.environ, "PYTHONPATH": str(REPO), **self.env}
        for name in [n for n in env if n.startswith("GLIMPZE_") and n not in self.env]:
            del env[name]
        began = time.monotonic()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "glimpze",
                "serve",
                "--config",
                str(self.config),
                "--data-dir",
                str(self.data),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *self.args,
            ],
            stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.root,
            preexec_fn=self._set_rlimits if self.rlimits else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"glimpze serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1, verify=self.verify).status_code == 200:
                    self.start_seconds = time.monotonic() - began
                    return
            except httpx.HTTPError:
                pass
            time.sleep(poll)
        self.kill()
        raise RuntimeError(f"glimpze serve did not become healthy:\n{self.output()}")

    def _set_rlimits(self) -> None:
        for kind, limits in self.rlimits.items():
            resource.setrlimit(kind, limits)

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.root.glob("server-*.log")))

    def admin_key(self) -> str:
        match = re.search(r"gzp_[A-Za-z0-9]+", self.output())
        assert match, self.output()
        return match.group(0)

    def rss_mb(self) -> float:
        assert self.proc is not None
        return rss_mb(self.proc.pid)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def rss_mb(pid: int) -> float:
    """The resident set size of a process, in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def run_cli(
    *args: str, data: Path, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `glimpze ARGS --data-dir DATA` as a subprocess (no GLIMPZE_* from this environment);
    raises subprocess.TimeoutExpired (having killed it) when it runs longer than `timeout`."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPZE_")}
    environ.update({"PYTHONPATH": str(REPO), **(env or {})})
    if "GLIMPZE_DATABASE_URL" not in environ and (url := DATABASES.get((data / "glimpze.db").resolve())):
        environ["GLIMPZE_DATABASE_URL"] = url  # the PostgreSQL pass: the database of a server on `data`
    return subprocess.run(
        [sys.executable, "-m", "glimpze", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        env=environ,
        cwd=cwd or data.parent,
        timeout=timeout,
    )
