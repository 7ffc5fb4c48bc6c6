"""Regular expressions on replies (CTA rules' `pattern` and keywords): searched with a time bound.

Python's `re` backtracks, so a pattern such as `(a+)+$` runs for minutes against a few dozen
characters, and a running search cannot be interrupted. Running it in a thread would not help: a
thread cannot be stopped, so every timed-out search would keep a core busy until it ends (possibly
never), and while it runs the event loop gets the GIL back only once per switch interval (5 ms).
Restricting the syntax would not either: `a*a*a*a*b` uses no nested quantifier and is still
O(n⁵) on a 10,000-character reply; even the escaped alternation a rule's keywords become is
O(n·k·m), a second or more for fifty long keywords against a long reply.

So searches run in a child process: `python -I -S -c WORKER`, the standard library's `re` and
nothing else (a few MB of memory, started by the first search). Each search gets
`SEARCH_TIMEOUT_SECONDS` of real time (not the injected clock, which tests freeze), counted once
the worker is ready; a search that takes longer counts as no match, and its process is killed and
replaced on the next search. Callers also pass a deadline, so one reply never waits much more than
its budget however many rules it meets. Searches take turns on one pipe: each round trip costs
about 0.1 ms, and a slow search is cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sys

log = logging.getLogger("glimpze.patterns")

SEARCH_TIMEOUT_SECONDS = 0.25  # a sane search of a 10,000-character reply takes well under 1 ms
STARTUP_TIMEOUT_SECONDS = 10.0
PATTERN_MAX_CHARS = 500

# The worker says "ready" once started (so its start-up is not counted as search time), then
# answers one request per line: a JSON array [[pattern, …], text] gets 1 (every pattern found),
# 0, or ! (could not search). `re` caches compiled patterns, so a repeated one compiles once.
WORKER = r"""
import json, re, sys
read, write = sys.stdin.buffer.readline, sys.stdout.buffer
write.write(b"ready\n")
write.flush()
for line in iter(read, b""):
    try:
        patterns, text = json.loads(line)
        answer = b"1\n" if all(re.search(p, text) for p in patterns) else b"0\n"
    except Exception:
        answer = b"!\n"
    write.write(answer)
    write.flush()
"""


def check_pattern(pattern: str) -> str | None:
    """Why `pattern` cannot be used (a message for a 422), or None when it compiles."""
    if len(pattern) > PATTERN_MAX_CHARS:
        return f"is longer than {PATTERN_MAX_CHARS} characters"
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        return f"is not a valid regular expression: {exc}"
    return None


class PatternSearcher:
    """Searches patterns in a worker process, each within `timeout` seconds of real time."""

    def __init__(self, timeout: float = SEARCH_TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self.timeouts = 0  # searches cut off so far
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def search(self, patterns: list[str], text: str, *, deadline: float | None = None) -> bool | None:
        """True when every one of `patterns` is found in `text`, False when not; None when the
        search did not finish in time (or before `deadline`, in `loop.time()` seconds) or could
        not run."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            if deadline is not None and deadline <= loop.time():
                return None
            try:
                process = await self._worker()
            except OSError as exc:
                log.error("the pattern worker did not start: %s", exc)
                return None
            budget = self.timeout if deadline is None else min(self.timeout, deadline - loop.time())
            if budget <= 0:
                return None
            assert process.stdin is not None and process.stdout is not None
            request = json.dumps([patterns, text], ensure_ascii=False).encode() + b"\n"
            try:
                async with asyncio.timeout(budget):
                    process.stdin.write(request)
                    await process.stdin.drain()
                    answer = await process.stdout.readline()
            except TimeoutError:
                self.timeouts += 1
                await self._stop()
                return None
            except BaseException:
                # Cancelled or broken half-way: an answer may still be on its way, and the next
                # search must not read it as its own.
                await self._stop()
                raise
            if answer not in (b"1\n", b"0\n"):
                await self._stop()
                return None
            return answer == b"1\n"

    async def close(self) -> None:
        async with self._lock:
            await self._stop()

    async def _worker(self) -> asyncio.subprocess.Process:
        """The running worker, or a new one once it says it is ready; raises OSError."""
        if self._process is not None and self._process.returncode is None:
            return self._process
        self._process = process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",  # isolated: no environment variables, user site or current directory
            "-S",  # no site-packages: the worker needs only the standard library
            "-c",
            WORKER,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert process.stdout is not None
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT_SECONDS):
                ready = await process.stdout.readline()
        except BaseException as exc:
            await self._stop()
            if isinstance(exc, TimeoutError):
                raise OSError(f"no answer within {STARTUP_TIMEOUT_SECONDS:g} s") from None
            raise
        if ready != b"ready\n":
            await self._stop()
            raise OSError("it exited at once")
        return process

    async def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await process.wait()
