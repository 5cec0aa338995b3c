"""Screenshot of the serving web page for docs/serving.md (docs/img/serve-web.png).

Runs a real uvicorn server with a stand-in runtime (the tests' `FakeRuntime`, with three
modalities and an audio encoder that timed out) and a firewall that redacts SSNs, opens
``/`` in headless Chromium, uploads an image, types text and presses Predict.

    .venv/bin/python scripts/screenshot_web.py [OUT.png]
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from tests.browser import chromium_path  # noqa: E402
from tests.guard.fakes import RegexDetector  # noqa: E402
from tests.serve.fakes import FakeRuntime, LiveServer  # noqa: E402

from polyfuse.guard.engine import Guard  # noqa: E402
from polyfuse.serve.http.app import create_app  # noqa: E402
from polyfuse.serve.types import ServeRequest, ServeResult  # noqa: E402


class DemoRuntime(FakeRuntime):
    """Three labels, uneven contributions, audio degraded by a timeout."""

    async def predict(self, request: ServeRequest) -> ServeResult:
        self.requests.append(request)
        return ServeResult(
            request_id=request.request_id,
            label="cat",
            probabilities={"cat": 0.81, "dog": 0.12, "fox": 0.07},
            contributions={"image": 0.64, "text": 0.36},
            modalities_used=["image", "text"],
            degraded=True,
            degraded_reasons={"audio": "timeout"},
            model={"name": "pets-fusion", "version": "3"},
            timings_ms={"encode:image": 18.2, "encode:text": 6.4, "fuse": 0.9},
        )

    def info(self) -> dict[str, object]:
        labels = ["cat", "dog", "fox"]
        return {**super().info(), "name": "pets-fusion", "labels": labels, "task": "classification"}


def photo(path: Path) -> None:
    y, x = np.mgrid[0:120, 0:180]
    rgb = np.stack([120 + 80 * np.sin(x / 23), 140 + 60 * np.cos(y / 17), 200 - x // 2], -1)
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path)


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    guard = Guard(text_detectors=[RegexDetector(r"\d{3}-\d{2}-\d{4}", "US_SSN")])
    app = create_app(DemoRuntime(("image", "audio", "text")), guard=guard)
    with tempfile.TemporaryDirectory() as tmp, LiveServer(app) as server, sync_playwright() as pw:
        image = Path(tmp) / "cat.png"
        photo(image)
        browser = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.goto(server.url + "/", wait_until="networkidle")
        page.get_by_label("image file").set_input_files(str(image))
        page.get_by_label("text text").fill("my cat Tom, ssn 123-45-6789 (for the vet)")
        page.get_by_role("button", name="Predict").click()
        page.locator("#result").wait_for()
        shot = page.screenshot(full_page=True)
        browser.close()
    # a 64-colour palette keeps the PNG small in the repository
    small = Image.open(io.BytesIO(shot)).convert("RGB").quantize(64)
    out.parent.mkdir(parents=True, exist_ok=True)
    small.save(out, optimize=True)
    print(f"{out} ({out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "img" / "serve-web.png")
