"""The documentation stays true: links resolve, the README stays a front door whose test command is
CI's, the reference pages cover every setting, command and route, and the marked walkthroughs run.

A shell block is run when the line before its fence is `<!-- test: run -->` (the block must succeed:
exit 0 and no problem+json in its output) or `<!-- test: run, expect: TEXT -->` (TEXT must appear in
its output). The marked blocks of one page run in order, in one bash, against a real
`glimpze serve` (tests/server.py), with `$GLIMPZE_URL`, `$KEY` (the admin key it printed) and
`$RECEIVER_URL` (a real receiver on 127.0.0.1) set.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import struct
import subprocess
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import msgspec
import pytest

from glimpze.app import create_app
from glimpze.cli import build_parser
from glimpze.config import _TABLES, DEFAULT_PLANS, Config, Plan
from tests.receiver import Receiver
from tests.server import UNLIMITED_PLAN, Server

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, REPO / "CONTRIBUTING.md", REPO / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]
RUNNABLE = [README, *sorted(DOCS.glob("*.md"))]

SERVE_COMMAND = (
    "git clone <this repository> glimpze && cd glimpze && python3 -m venv .venv && "
    ".venv/bin/pip install . && .venv/bin/glimpze serve"
)
TEST_COMMAND = "bash .ci/run"
README_MAX_LINES = 200
IMAGE_MAX_BYTES = 150 * 1024

FENCE = re.compile(r"^\s*(```|~~~)")
MARKER = re.compile(r"^<!-- test: run(?:, expect: (?P<expect>.+?))? -->$")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\((?P<url>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=\"(?P<url>[^\"]+)\"")
AUTOLINK = re.compile(r"<(?P<url>https?://[^>\s]+)>")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
LOCAL_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0", "::1", "[::1]"}


# Reading Markdown


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    marker: str | None  # the `<!-- test: … -->` line before it, if any


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a page, with the marker line before each (blank lines skipped)."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent = len(lines[i]) - len(lines[i].lstrip())
        lang = lines[i].strip()[3:].strip()
        start, i = i, i + 1
        body: list[str] = []
        while i < len(lines) and not lines[i].strip().startswith(opening.group(1)):
            body.append(lines[i][indent:])
            i += 1
        before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        found.append(Block(page, start + 1, lang, "\n".join(body) + "\n", before if MARKER.match(before) else None))
        i += 1
    return found


def prose_raw(page: Path) -> Iterator[tuple[int, str]]:
    """The page's lines outside code blocks, with their numbers."""
    fenced = False
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            yield number, line


def prose(page: Path) -> Iterator[tuple[int, str]]:
    """Like prose_raw(), with inline code removed: `[plans.NAME]` in backticks is no link."""
    for number, line in prose_raw(page):
        yield number, INLINE_CODE.sub("", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link shows its text
    text = text.replace("`", "").strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_raw(page):
        match = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> Iterator[tuple[int, str]]:
    for number, line in prose(page):
        for pattern in (LINK, HTML_LINK, AUTOLINK):
            for match in pattern.finditer(line):
                yield number, match.group("url")


def table(page: Path, heading: str) -> list[list[str]]:
    """The rows (cells, backticks kept) of the first table under `heading`, its header row excluded."""
    rows: list[list[str]] = []
    inside = False
    for _, line in prose_raw(page):
        if re.match(r"^#{1,6}\s", line):
            if inside and rows:
                break
            inside = line.lstrip("#").strip() == heading
            continue
        if inside and line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            rows.append(cells)
        elif inside and rows:
            break
    assert rows, f"{page.name} has no table under '{heading}'"
    assert set("".join(rows[1])) <= set("-:| "), f"{page.name}: the table under '{heading}' has no header row"
    return rows[2:]


def plain(cell: str) -> str:
    return cell.replace("`", "").replace("\\|", "|").strip()


# Links, the README and the commands


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_resolves(page: Path) -> None:
    problems = []
    for number, url in links(page):
        where = f"{page.relative_to(REPO)}:{number}: {url}"
        parts = urlsplit(url)
        if parts.scheme in ("http", "https"):
            if (parts.hostname or "") in LOCAL_HOSTS:
                problems.append(f"{where}: a link to this machine is dead for every reader")
            continue
        if parts.scheme:
            if parts.scheme != "mailto":
                problems.append(f"{where}: unexpected scheme")
            continue
        target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
        if not target.is_relative_to(REPO):
            problems.append(f"{where}: points outside the repository")
        elif not target.exists():
            problems.append(f"{where}: no such file")
        elif parts.fragment:
            if target.suffix != ".md":
                problems.append(f"{where}: an anchor into a file that is not Markdown")
            elif parts.fragment not in anchors(target):
                problems.append(f"{where}: no heading '#{parts.fragment}' in {target.relative_to(REPO)}")
    assert not problems, "\n".join(problems)


def test_the_index_links_every_page() -> None:
    linked = {(DOCS / unquote(urlsplit(url).path)).resolve() for _, url in links(DOCS / "README.md")}
    missing = [p.name for p in DOCS.glob("*.md") if p.name != "README.md" and p.resolve() not in linked]
    assert not missing, f"docs/README.md does not link {missing}"


def test_the_readme_is_a_front_door() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move the rest to docs/"
    for image in (DOCS / "images").glob("*.png"):
        assert image.stat().st_size < IMAGE_MAX_BYTES, f"{image.name} is {image.stat().st_size} bytes"
    shown = {url for _, url in links(README) if url.startswith("docs/images/")}
    assert {"docs/images/home.png", "docs/images/home-phone.png"} <= shown


def test_the_quick_start_commands_are_the_ones_ci_runs() -> None:
    quick = [b.code.strip() for b in blocks(README) if b.lang == "sh"][:2]
    assert quick == [SERVE_COMMAND, TEST_COMMAND]
    script = REPO / shlex.split(TEST_COMMAND)[1]
    assert script.is_file()
    # The README promises the whole suite: the script's pytest run selects no subset of it. Its
    # second run repeats tests/postgres_modules.txt on PostgreSQL (issue 19).
    lines = [line for line in script.read_text().splitlines() if not line.lstrip().startswith("#")]
    runs = [line for line in lines if "-m pytest" in line and "GLIMPZE_TEST_DATABASE=postgresql" not in line]
    assert len(runs) == 1, runs
    assert [line for line in lines if line.startswith("GLIMPZE_TEST_DATABASE=postgresql")], "the PostgreSQL pass"
    args = shlex.split(runs[0].split("-m pytest", 1)[1], comments=True)
    assert not [a for a in args if a in ("-k", "-m", "--deselect", "--lf") or a.startswith(("tests", "--ignore"))]


# The reference pages against the code


def toml_value(value: Any) -> str:
    """A default as the configuration page writes it."""
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return msgspec.json.encode(value).decode()


def serve_flags() -> set[str]:
    parser = build_parser()
    serve = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["serve"]
    return {o for a in serve._actions for o in a.option_strings if o.startswith("--")}


def test_the_configuration_page_lists_every_setting_with_its_default() -> None:
    page = DOCS / "configuration.md"
    sections: dict[str, tuple[type[msgspec.Struct], str]] = {"Settings": (Config, "")}
    sections |= {f"[{name}]": (struct_, f"{name.upper()}_") for name, struct_ in _TABLES.items()}
    flags_used = set()
    for heading, (struct_, prefix) in sections.items():
        defaults = struct_()
        fields = [f for f in struct_.__struct_fields__ if f not in ("plans", *_TABLES)]
        rows = {plain(r[0]): r for r in table(page, heading)}
        assert sorted(rows) == sorted(fields), f"{heading}: documented {sorted(rows)}, declared {sorted(fields)}"
        for name, (_, env, flag, default, meaning) in rows.items():
            assert plain(env) == f"GLIMPZE_{prefix}{name.upper()}", (heading, name, env)
            assert plain(default) == toml_value(getattr(defaults, name)), (heading, name, default)
            assert meaning, (heading, name)
            if flag != "—":
                flags_used.add(plain(flag))
    assert flags_used <= serve_flags(), flags_used - serve_flags()
    assert serve_flags() - {"--help", "--config"} <= flags_used, "a flag of glimpze serve is not in a row"


def test_the_plan_tables_show_the_default_plans() -> None:
    documented = {plain(r[0]): [int(c) for c in r[1:]] for r in table(DOCS / "configuration.md", "Plans")}
    assert documented == {n: [getattr(p, f) for f in Plan.__struct_fields__] for n, p in DEFAULT_PLANS.items()}
    quotas = table(DOCS / "sending-events.md", "Plans and quotas")
    shown = {r[0]: [int(c.split()[0]) for c in r[1:]] for r in quotas}
    assert shown == documented


def leaf_commands() -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs and path:
            found[path] = parser
        for sub in subs:
            for name, child in sub.choices.items():
                walk(child, f"{path} {name}".strip())

    walk(build_parser(), "")
    return found


def test_the_configuration_page_lists_every_command_and_option() -> None:
    rows = {plain(r[0]): r for r in table(DOCS / "configuration.md", "Command line")}
    by_command = {" ".join(w for w in cmd.split()[1:] if not w.isupper() and "[" not in w): cmd for cmd in rows}
    commands = leaf_commands()
    assert sorted(by_command) == sorted(commands)
    for name, parser in commands.items():
        cmd, options = by_command[name], plain(rows[by_command[name]][1])
        for action in parser._actions:
            if action.option_strings:
                for option in action.option_strings:
                    if option.startswith("--") and option not in ("--help", "--config", "--data-dir"):
                        assert option in options, f"glimpze {name}: {option} is not documented"
            elif not isinstance(action, argparse._SubParsersAction):
                assert action.dest.upper() in cmd, f"glimpze {name}: {action.dest.upper()} is not documented"


def test_the_api_page_lists_every_route(tmp_path: Path) -> None:
    schema = create_app(Config(data_dir=str(tmp_path))).openapi_schema.to_schema()
    served = {
        (m.upper(), p)
        for p, ops in schema["paths"].items()
        for m in ops
        if m in ("get", "post", "put", "patch", "delete")
    }
    documented = {(m.strip(), plain(r[1])) for r in table(DOCS / "api.md", "Endpoints") for m in r[0].split(",")}
    assert not served - documented, f"routes missing from docs/api.md: {sorted(served - documented)}"
    stale = {(m, p) for m, p in documented - served if not p.startswith("/ingest/")}
    assert not stale, f"docs/api.md lists routes the app does not serve: {sorted(stale)}"


def test_the_verifiers_other_tests_run_are_in_their_pages() -> None:
    """tests/test_webhook_rotation.py and tests/test_cta_context.py run these blocks as printed."""
    hooks = blocks(DOCS / "webhooks.md")
    assert len([b for b in hooks if b.lang == "python" and "def verify(" in b.code]) == 1
    assert len([b for b in hooks if b.lang == "js" and "X-Glimpze-Signature" in b.code]) == 1
    cards = [b for b in blocks(DOCS / "conversations.md") if b.lang == "js" and "glimpze_sig" in b.code]
    assert cards and "function verify(query, secret)" in cards[0].code


# The walkthroughs, run


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    for tool in ("bash", "curl", "jq"):
        if shutil.which(tool) is None:
            pytest.fail(f"the docs' walkthroughs need {tool}: apt-get install -y {tool}")
    config = UNLIMITED_PLAN + '\n[webhooks]\nallow_targets = ["127.0.0.1"]\n'
    s = Server(tmp_path_factory.mktemp("docs-server"), config)
    s.start()
    try:
        yield s
    finally:
        s.kill()


SEPARATOR = "@@glimpze-docs: block {} done@@"


@dataclass
class Run:
    outputs: list[str]  # one per marked block
    cwd: Path


def run_page(page: Path, server: Server, receiver: Receiver, cwd: Path) -> Run:
    marked = [b for b in blocks(page) if b.marker]
    assert all(b.lang in ("sh", "bash") for b in marked), f"{page.name}: only shell blocks can be run"
    script = ["set -euo pipefail"]
    for i, block in enumerate(marked):
        script += [block.code, f"printf '\\n{SEPARATOR}\\n' {i}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPZE_")}
    env |= {"GLIMPZE_URL": server.url, "KEY": server.admin_key(), "RECEIVER_URL": receiver.url}
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )
    parts = re.split(r"\n?@@glimpze-docs: block \d+ done@@\n", done.stdout)
    finished = len(parts) - 1
    if done.returncode != 0:
        failing = marked[min(finished, len(marked) - 1)]
        pytest.fail(
            f"{page.name}:{failing.line}: the block exited {done.returncode}\n"
            f"--- its output\n{parts[-1]}\n--- stderr\n{done.stderr}"
        )
    for block, output in zip(marked, parts, strict=False):
        match = MARKER.match(block.marker or "")
        assert match is not None
        expect = match.group("expect")
        if expect is None:
            assert "urn:glimpze:error:" not in output, f"{page.name}:{block.line} answered a problem:\n{output}"
        else:
            assert expect in output, f"{page.name}:{block.line} should print {expect!r}; it printed:\n{output}"
    return Run(parts[: len(marked)], cwd)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_readme_and_the_webhook_setup_have_walkthroughs_that_run() -> None:
    assert [b for b in blocks(README) if b.marker], "README.md: mark the first event's walkthrough"
    assert [b for b in blocks(DOCS / "webhooks.md") if b.marker], "docs/webhooks.md: mark the webhook setup"


@pytest.mark.parametrize("page", [p for p in RUNNABLE if any(b.marker for b in blocks(p))], ids=lambda p: p.name)
def test_the_marked_walkthroughs_run(page: Path, server: Server, receiver: Receiver, tmp_path: Path) -> None:
    run = run_page(page, server, receiver, tmp_path)
    if page == README:
        assert png_size(tmp_path / "revenue.png") == (1014, 474)  # step 4: the medium widget
    if page.name == "widgets.md":
        assert png_size(tmp_path / "revenue-medium.png") == (1014, 474)
    if page.name == "displays.md":
        assert png_size(tmp_path / "hallway.png") == (800, 480)  # the screen's picture URL
    if page.name == "webhooks.md":
        check_the_test_delivery_verifies(run, receiver)


def check_the_test_delivery_verifies(run: Run, receiver: Receiver) -> None:
    """The walkthrough's webhook.test reaches the receiver, signed so that the page's own Python
    verifier accepts it with the secret the walkthrough printed, and no other secret."""
    secret = re.search(r'"secret":"(whsec_[^"]+)"', run.outputs[0])
    assert secret, run.outputs[0]

    def arrived() -> list[Any]:
        return [r for r in receiver.requests if r.headers.get("x-glimpze-event") == "webhook.test"]

    for _ in range(150):  # the dispatcher sends within a second; allow a loaded machine 15 s
        if arrived():
            break
        receiver.wait_for_sync(len(receiver.requests) + 1, timeout=0.1)
    delivery = next(iter(arrived()), None)
    assert delivery is not None, "the webhook.test delivery did not arrive"
    code = next(b.code for b in blocks(DOCS / "webhooks.md") if b.lang == "python" and "def verify(" in b.code)
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    header = delivery.headers["x-glimpze-signature"]
    assert namespace["verify"](delivery.body, header, secret.group(1)) is True
    assert namespace["verify"](delivery.body, header, "whsec_someone_else") is False


def test_block_parsing_reads_markers_and_indented_fences() -> None:
    """The parser the checks above rely on: markers, languages, indented fences, headings' anchors."""
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "page.md"
        page.write_text(
            "# A `code` heading: here\n\n<!-- test: run, expect: ok -->\n```sh\necho ok\n```\n\n"
            "- item\n\n  ```js\n  let a = 1;\n  ```\n\n## On a phone's home screen\n"
        )
        found = blocks(page)
        assert [(b.lang, b.code, b.marker) for b in found] == [
            ("sh", "echo ok\n", "<!-- test: run, expect: ok -->"),
            ("js", "let a = 1;\n", None),
        ]
        assert anchors(page) == {"a-code-heading-here", "on-a-phones-home-screen"}
