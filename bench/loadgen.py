"""A bounded HTTP/1.1 load generator for the benchmarks: wrk when installed, else asyncio sockets.

`run(url, body, headers, connections, seconds)` returns requests/s, p50/p99 latency (ms) and the
count of non-2xx answers. Every run stops by itself after `seconds`; `send(url, body, headers,
count)` stops after `count` requests (or `seconds`, whichever comes first).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    tool: str

    def line(self) -> str:
        return (
            f"{self.rps:9.0f} req/s   p50 {self.p50_ms:6.2f} ms   p99 {self.p99_ms:6.2f} ms   "
            f"non-2xx {self.non_2xx}   ({self.requests} requests, {self.tool})"
        )


def run(
    url: str,
    body: bytes,
    headers: dict[str, str],
    connections: int = 32,
    seconds: float = 10.0,
    tool: str | None = None,
) -> Result:
    tool = tool or ("wrk" if shutil.which("wrk") else "python")
    if tool == "wrk":
        return _wrk(url, body, headers, connections, seconds)
    return asyncio.run(_python(url, body, headers, connections, seconds))


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = io.open("{body}", "rb"):read("*a")
{headers}
"""


def send(
    url: str, body: bytes, headers: dict[str, str], count: int, connections: int = 16, seconds: float = 600.0
) -> Result:
    """POST `body` `count` times (the Python generator: wrk cannot stop at a count)."""
    return asyncio.run(_python(url, body, headers, connections, seconds, count))


def _wrk(url: str, body: bytes, headers: dict[str, str], connections: int, seconds: float) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        body_path = Path(tmp) / "body.json"
        body_path.write_bytes(body)
        script = Path(tmp) / "post.lua"
        lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
        script.write_text(_WRK_SCRIPT.format(body=body_path, headers=lines))
        out = subprocess.run(
            ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds:.0f}s", "--latency", "-s", str(script), url],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        value, unit = float(m[1]), m[2]
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    if errors:
        print("   wrk:", errors[0])
    return Result(rps, ms("50"), ms("99"), requests, int(non_2xx[1]) if non_2xx else 0, "wrk")


async def _python(
    url: str, body: bytes, headers: dict[str, str], connections: int, seconds: float, count: int | None = None
) -> Result:
    parts = urlsplit(url)
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {len(body)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    ).encode()
    request = head + body
    latencies: list[float] = []
    non_2xx = 0
    deadline = time.perf_counter() + seconds
    budget = [count if count is not None else -1]  # requests left to start; -1: no count

    async def worker() -> None:
        nonlocal non_2xx
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while time.perf_counter() < deadline and budget[0] != 0:
                budget[0] -= 1
                start = time.perf_counter()
                writer.write(request)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - start)
                if not status_line.split(b" ")[1].startswith(b"2"):
                    non_2xx += 1
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return Result(len(latencies) / elapsed, pick(0.5), pick(0.99), len(latencies), non_2xx, "python")
