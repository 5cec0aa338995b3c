"""Opening a page in a real headless Chromium (Debian's ``chromium``) through Playwright.

Locally, tests skip with a reason when the browser or Playwright is missing. Under CI
(``CI=true``, set by ``.ci/run``) a missing browser or Playwright FAILS the test instead:
``.ci/run`` installs Chromium and ``make install`` installs Playwright with the dev extra, so a
skip there would hide that the web page and reports were never rendered.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest


@dataclass
class Page:
    """A loaded page plus the console errors and uncaught exceptions it produced."""

    page: Any
    errors: list[str] = field(default_factory=list)

    def evaluate(self, script: str) -> Any:
        return self.page.evaluate(script)

    def screenshot(self, path: Path, full_page: bool = False) -> None:
        self.page.screenshot(path=str(path), full_page=full_page)


def under_ci() -> bool:
    """True when the environment says this is a CI run (``CI`` set to true/1/yes)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(reason: str) -> NoReturn:
    """Skip the test locally; fail it under CI, where the browser stack must be present."""
    if under_ci():
        pytest.fail(f"{reason}; CI=true, so browser tests fail instead of skipping", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str:
    """Path of the system Chromium, or skip the test (fail it under CI)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    missing("needs Chromium (apt-get install chromium; .ci/run installs it)")


def playwright_sync_api() -> Any:
    """The ``playwright.sync_api`` module, or skip the test (fail it under CI)."""
    try:
        from playwright import sync_api
    except ImportError:
        missing("needs playwright (dev extra)")
    return sync_api


@contextmanager
def open_page(path: Path, width: int = 1200, height: int = 900) -> Iterator[Page]:
    """Load ``path`` in headless Chromium and wait until the network is idle."""
    browser_path = chromium_path()
    sync_api = playwright_sync_api()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            out = Page(page)
            page.on(
                "console",
                lambda m: (
                    out.errors.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda e: out.errors.append(f"page error: {e}"))
            page.goto(path.resolve().as_uri(), wait_until="networkidle")
            yield out
        finally:
            browser.close()
