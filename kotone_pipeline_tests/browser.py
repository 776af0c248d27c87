"""Headless Chromium for UI tests: Debian's ``chromium`` driven by Playwright.

Use the ``browser`` fixture (one Chromium per test module) and ``new_page(browser)``; both skip with the
reason when no browser can be launched (the package is missing, or Chromium does not start), which is
the only case a UI test may skip. ``.ci/run`` installs ``chromium`` when it can.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM_ENV = "KOTONE_TEST_CHROMIUM"  # another Chromium binary to use instead of Debian's
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# Without the background-networking flags Chromium keeps trying to reach Google on a closed network.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
VIEWPORT = {"width": 1600, "height": 1000}
# The Dagster UI is a single-page app: after network idle it still renders for a moment.
SETTLE_MS = 2500


def chromium_path() -> str | None:
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        return configured if Path(configured).is_file() else None
    found = next((c for c in CHROMIUM_CANDIDATES if Path(c).is_file()), None)
    return found or shutil.which("chromium")


# Module scope, not session: while Playwright's sync API is open, the main thread has a running event loop,
# and tests in later modules that call asyncio.run() would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.skip("no browser: the playwright package is not installed (pip install -e '.[test]')")
    path = chromium_path()
    if path is None:
        pytest.skip(f"no browser: chromium is not installed (apt-get install chromium, or set {CHROMIUM_ENV})")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=path, args=list(CHROMIUM_ARGS), headless=True)
        except Error as exc:
            pytest.skip(f"no browser: {path} does not start: {str(exc).splitlines()[0]}")
        try:
            yield launched
        finally:
            launched.close()


def new_page(browser: Browser) -> Page:
    page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
    page.set_default_timeout(30_000)
    return page


def settle(page: Page, ms: int = SETTLE_MS) -> None:
    """Wait for the single-page app to stop loading, then a moment for rendering."""
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(ms)


def screenshot(page: Page, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
