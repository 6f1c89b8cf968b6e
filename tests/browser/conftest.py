"""Browser tests: Playwright driving Chromium, with axe-core for accessibility.

The browser is the system's Chromium (Debian's package ``chromium``; ``.ci/run`` installs it
when it is missing) or one named by ``BACKBONE_TEST_CHROMIUM``, or Playwright's own download if
there is one. Without a browser these tests are skipped with a notice, unless
``BACKBONE_TEST_REQUIRE_BROWSER=1`` (as in CI), when they fail instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SYSTEM_CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def chromium_path() -> str | None:
    """The Chromium to drive, or None to let Playwright use its own (if it has one)."""
    named = os.environ.get("BACKBONE_TEST_CHROMIUM")
    if named:
        return named
    for name in SYSTEM_CHROMIUM:
        found = shutil.which(name)
        if found:
            return found
    return None


def _required() -> bool:
    return os.environ.get("BACKBONE_TEST_REQUIRE_BROWSER") == "1"


def _unavailable(why: str) -> None:
    if _required():
        pytest.fail(f"BACKBONE_TEST_REQUIRE_BROWSER=1 but {why}", pytrace=False)
    pytest.skip(f"browser tests skipped: {why} (install Debian's chromium to run them)")


# Per module: Playwright's event loop lives only as long as the browser tests that need it.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:  # pragma: no cover - a dev install has it
        _unavailable("Playwright is not installed")
        return
    executable = chromium_path()
    manager = sync_playwright().start()
    try:
        try:
            # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
            launched = manager.chromium.launch(
                executable_path=executable, headless=True, args=["--no-sandbox"]
            )
        except Error as exc:
            _unavailable(f"no Chromium could be started ({str(exc).splitlines()[0]})")
            return
        yield launched
        launched.close()
    finally:
        manager.stop()


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1200, "height": 900})
    # Nothing may be fetched from anywhere but Backbone itself: every other request fails the test.
    outside: list[str] = []

    def guard(route: Any) -> None:
        url = route.request.url
        if url.startswith(live_server.url) or url.startswith("data:"):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    yield page
    context.close()
    assert not outside, f"the page fetched from elsewhere: {outside}"


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page (axe is injected from the
    installed package, not fetched)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(
        page,
        options={
            "runOnly": {
                "type": "tag",
                "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
            }
        },
    )
    return [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]


def screenshot(page: Any, name: str) -> None:
    """Keep a screenshot for the README when ``BACKBONE_TEST_SCREENSHOTS=1`` (``make
    screenshots``)."""
    if os.environ.get("BACKBONE_TEST_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)
