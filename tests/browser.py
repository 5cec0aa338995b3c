"""Opening a page in a real headless Chromium (Debian's ``chromium``) through Playwright.

Tests skip with a reason when the browser or Playwright is missing; ``.ci/run``
installs Chromium, and ``make install`` installs Playwright with the dev extra.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def chromium_path() -> str:
    """Path of the system Chromium, or skip the test."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("needs Chromium (apt-get install chromium; .ci/run installs it)")


@contextmanager
def open_page(path: Path, width: int = 1200, height: int = 900) -> Iterator[Page]:
    """Load ``path`` in headless Chromium and wait until the network is idle."""
    browser_path = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (dev extra)")
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
