"""Check the built documentation site in a real headless Chromium, as a reader sees it.

``nox -s docs`` runs it after the Sphinx build::

    python docs/check_site.py --chromium /usr/bin/chromium docs/_build

It serves ``BUILD/html`` on 127.0.0.1, opens every page at the width of a common laptop
screen (:data:`VIEWPORT`) and fails, listing every problem, when:

* a page does not load, logs a console error, raises a script error, or a resource it
  asks for (style sheet, script, image, font) fails to load;
* a page shows an error: a docutils system message, or the theme's own (furo writes one in
  red over a ``.. contents::`` block);
* a code block, a table or the page itself is wider than the space it is given (a reader
  would have to scroll sideways to read a comment, or would not see it at all);
* the API reference is not split by topic (:data:`API_PAGES`, each under
  :data:`MAX_PAGE_BYTES`), or a page lists no documented object;
* the front page lacks a heading or a quick-start command of README.md;
* the CLI page lacks an option or a subcommand of the real parser
  (``trio_exec._cli.make_parser``), or a preformatted line of its description or epilog
  (so a table there keeps its rows), or the examples beside ``ssh`` and ``kubectl exec``.

Screenshots of the main pages go to ``BUILD/screenshots/`` (the viewport, and the whole
page for the front page and the CLI page), to look at after a change of theme or layout.

The browser is driven with Playwright's Python API over the Chromium it is given (no
browser download), in a fresh profile, with no network beyond the local server.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from playwright.sync_api import ConsoleMessage, Page, Request, ViewportSize, sync_playwright

VIEWPORT: Final[ViewportSize] = {"width": 1280, "height": 800}
"""The window every page is checked in: where alabaster cut code comments off."""

NARROW_VIEWPORT: Final[ViewportSize] = {"width": 420, "height": 900}
"""A phone-sized window, for the screenshots only (code there may scroll sideways)."""

API_PAGES: Final = (
    "api/index",
    "api/processes",
    "api/events",
    "api/backends",
    "api/streams",
    "api/server",
    "api/supervisor",
    "api/errors",
    "api/testing",
    "api/limits",
)
"""The pages of the API reference, one per topic."""

MAX_PAGE_BYTES: Final = 250 * 1024
"""Largest HTML page of the API reference (the single page it replaced had 470 KiB)."""

MIN_LIMITS: Final = 20
"""Fewest rows the generated limits tables may have (they list about 70 constants)."""

SCREENSHOT_PAGES: Final = (
    "index",
    "cli",
    "tutorial",
    "operations",
    "protocol",
    "comparison",
    "api/index",
    "api/processes",
    "api/limits",
)
"""The pages photographed at :data:`VIEWPORT`."""

FULL_PAGE_SCREENSHOTS: Final = ("index", "cli")
"""The pages also photographed whole."""

PAGE_TIMEOUT_MS: Final = 30_000
"""Longest wait for one page to load, in milliseconds."""

CHROMIUM_ARGS: Final = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""Flags for a headless Chromium that runs as root, with no GPU and no network."""

_OVERFLOWS_JS: Final = """
() => {
  const found = [];
  const page = document.documentElement;
  if (page.scrollWidth > window.innerWidth + 1) {
    found.push(`the page is ${page.scrollWidth}px wide in a ${window.innerWidth}px window`);
  }
  const boxes = document.querySelectorAll(
    "[role=main] pre, [role=main] .table-wrapper, [role=main] table, [role=main] dl.py dt");
  for (const box of boxes) {
    if (box.offsetParent === null) continue;  // hidden
    if (box.scrollWidth > box.clientWidth + 1) {
      const text = (box.innerText || "").trim().split("\\n")[0].slice(0, 80);
      found.push(`${box.tagName.toLowerCase()} needs ${box.scrollWidth}px, has ` +
                 `${box.clientWidth}px: ${JSON.stringify(text)}`);
    }
  }
  return found;
}
"""
"""Every element of the page's main part (``role=main``, whatever the theme) whose content
is wider than its box."""

_SHOWN_ERRORS_JS: Final = """
() => {
  const found = [];
  for (const el of document.querySelectorAll(".system-message, .problematic")) {
    found.push(`a build error shown on the page: ${el.innerText.trim().slice(0, 120)}`);
  }
  for (const el of document.querySelectorAll("[role=main] div, [role=main] nav, [role=main] aside")) {
    const before = getComputedStyle(el, "::before").content;
    if (/error/i.test(before)) {
      found.push(`the theme shows an error: ${before.slice(0, 120)}`);
    }
  }
  return found;
}
"""
"""What a reader would see as an error: docutils' system messages and problematic markup,
and the theme's own complaints (furo prints one, in red, over a ``.. contents::``)."""


@contextmanager
def _serve(root: Path) -> Iterator[str]:
    """An HTTP server of ``root`` on a free loopback port, as its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _pages(html: Path) -> list[str]:
    """Every page of the site (the viewcode source pages included), as ``docname``."""
    return sorted(
        str(path.relative_to(html).with_suffix(""))
        for path in html.rglob("*.html")
        if "_static" not in path.parts and "_sources" not in path.parts
    )


class Problems:
    """The problems found so far, each with the page it is on."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def add(self, page: str, what: str) -> None:
        self.found.append(f"{page}: {what}")

    def check(self, page: str, ok: bool, what: str) -> None:
        if not ok:
            self.add(page, what)


def _load(page: Page, base: str, docname: str, problems: Problems) -> None:
    """Open a page and record what went wrong while it loaded."""
    messages: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            messages.append(f"console error: {message.text}")

    def on_failed(request: Request) -> None:
        messages.append(f"failed to load {request.url}: {request.failure}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: messages.append(f"script error: {error}"))
    page.on("requestfailed", on_failed)
    try:
        response = page.goto(f"{base}{docname}.html", wait_until="load", timeout=PAGE_TIMEOUT_MS)
        problems.check(
            docname,
            response is not None and response.ok,
            f"HTTP {response.status if response else 'no response'}",
        )
    finally:
        page.remove_listener("console", on_console)
        page.remove_listener("requestfailed", on_failed)
    for message in messages:
        problems.add(docname, message)


def _lines(page: Page, selector: str) -> set[str]:
    """Each line of the text of the elements ``selector`` matches, spaces collapsed."""
    texts: list[str] = page.locator(selector).evaluate_all("els => els.map(e => e.innerText)")
    return {" ".join(line.split()) for text in texts for line in text.splitlines()}


def _check_front_page(page: Page, readme: str, problems: Problems) -> None:
    """The front page is the README: its headings and its quick-start commands."""
    headings = {" ".join(h.split()) for h in _lines(page, "[role=main] h1, [role=main] h2")}
    headings = {h.rstrip("#¶ ") for h in headings}
    prose = re.sub(r"^```.*?^```", "", readme, flags=re.MULTILINE | re.DOTALL)
    for heading in re.findall(r"^#{1,2} (.+)$", prose, flags=re.MULTILINE):
        problems.check("index", heading in headings, f"no heading {heading!r} of README.md")
    code = _lines(page, "[role=main] pre")
    quick_start = re.search(r"## Quick start\n(.*?)\n## ", readme, flags=re.DOTALL)
    commands = re.findall(r"^\$ .+$", quick_start[1] if quick_start else "", re.MULTILINE)
    problems.check("index", bool(commands), "README.md has no quick-start command")
    for command in commands:
        problems.check(
            "index", " ".join(command.split()) in code, f"no quick-start line {command!r}"
        )


def _check_cli_page(page: Page, problems: Problems) -> None:
    """The CLI page is generated from the real parser, and shows it whole."""
    from cli_parser import RAW_FORMATTERS, all_parsers  # beside this file

    from trio_exec._cli import make_parser

    text = " ".join(page.locator("[role=main]").inner_text().split())
    preformatted = _lines(page, "[role=main] pre")
    for parser in all_parsers(make_parser()):
        name = parser.prog
        problems.check("cli", name.split()[-1] in text, f"no {name}")
        for action in parser._actions:
            for option in action.option_strings:
                problems.check("cli", option in text, f"no option {option} of {name}")
        formatter = parser.formatter_class
        if isinstance(formatter, type) and issubclass(formatter, RAW_FORMATTERS):
            for block in (parser.description, parser.epilog):
                for line in (block or "").splitlines():
                    if line.startswith((" ", "\t")) and line.strip():
                        problems.check(
                            "cli",
                            " ".join(line.split()) in preformatted,
                            f"the line {line.strip()!r} of {name}'s help is not kept as a line",
                        )
    dashed = re.search(r".{20}\N{EN DASH}-?[a-z][-a-z]*", text)
    problems.check(
        "cli", dashed is None, f"an option's -- turned into a dash: {dashed and dashed[0]!r}"
    )
    for habit in ("$ ssh ", "$ kubectl exec "):
        problems.check(
            "cli",
            any(line.startswith(habit) for line in preformatted),
            f"no example beside {habit.strip()}",
        )


def _check_api_pages(html: Path, page: Page, docname: str, problems: Problems) -> None:
    size = (html / f"{docname}.html").stat().st_size
    problems.check(docname, size <= MAX_PAGE_BYTES, f"{size} bytes, more than {MAX_PAGE_BYTES}")
    if docname == "api/limits":
        rows = page.locator("[role=main] table tbody tr").count()
        problems.check(docname, rows >= MIN_LIMITS, f"{rows} limits, fewer than {MIN_LIMITS}")
    elif docname != "api/index":
        problems.check(
            docname, page.locator("[role=main] dl.py").count() > 0, "documents no object"
        )


def check_site(build: Path, chromium: str) -> list[str]:
    """Every problem found on the site built in ``build/html``; screenshots in
    ``build/screenshots``."""
    html = build / "html"
    shots = build / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text("utf-8")
    problems = Problems()
    pages = _pages(html)
    for docname in API_PAGES:
        problems.check(docname, docname in pages, "missing")
    with (
        _serve(html) as base,
        tempfile.TemporaryDirectory(prefix="trio-exec-docs-chromium-") as profile,
        sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=chromium,
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport=VIEWPORT,
        )
        context.route(
            re.compile(r"^(?!http://127\.0\.0\.1:)"), lambda route: route.abort()
        )  # nothing leaves the machine; a page that tries logs a failed request
        page = context.pages[0] if context.pages else context.new_page()
        for docname in pages:
            _load(page, base, docname, problems)
            for shown in page.evaluate(_SHOWN_ERRORS_JS):
                problems.add(docname, shown)
            if not docname.startswith("_modules/"):  # source listings are as wide as the source
                for overflow in page.evaluate(_OVERFLOWS_JS):
                    problems.add(docname, overflow)
            if docname in SCREENSHOT_PAGES:
                name = docname.replace("/", "-")
                page.screenshot(path=str(shots / f"{name}.png"))
                if docname in FULL_PAGE_SCREENSHOTS:
                    page.screenshot(path=str(shots / f"{name}-full.png"), full_page=True)
            if docname == "index":
                _check_front_page(page, readme, problems)
            elif docname == "cli":
                _check_cli_page(page, problems)
            elif docname.startswith("api/"):
                _check_api_pages(html, page, docname, problems)
        page.set_viewport_size(NARROW_VIEWPORT)
        for docname in ("index", "cli"):
            _load(page, base, docname, problems)
            page.screenshot(path=str(shots / f"{docname}-narrow.png"))
        context.close()
    return problems.found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the browser binary")
    parser.add_argument("build", type=Path, help="the Sphinx output folder (holds html/)")
    args = parser.parse_args()
    problems = check_site(args.build, args.chromium)
    for problem in problems:
        print(f"docs check: {problem}", file=sys.stderr)
    pages = len(_pages(args.build / "html"))
    if problems:
        print(f"docs check: {len(problems)} problems on {pages} pages", file=sys.stderr)
        return 1
    print(f"docs check: {pages} pages load cleanly; screenshots in {args.build / 'screenshots'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
