"""The web page at ``/`` in a real headless Chromium against a real uvicorn server over
the fake runtime: upload, record, predict, results, typed errors, API keys."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from polyfuse.guard.engine import Guard
from polyfuse.serve.config import ServeConfig, hash_key
from polyfuse.serve.http.app import create_app
from polyfuse.serve.review.store import SQLiteStore
from polyfuse.serve.types import ServeError
from tests.browser import chromium_path, playwright_sync_api
from tests.guard.fakes import RegexDetector
from tests.serve.fakes import FakeRuntime, LiveServer
from tests.serve.review.test_routing import RULES

#: A fake microphone (a beep) that needs no permission prompt.
MEDIA_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
TIMEOUT_MS = 5000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    sync_api = playwright_sync_api()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=["--no-sandbox", *MEDIA_ARGS])
        try:
            yield browser
        finally:
            browser.close()


class Session:
    """A server over ``runtime`` and a page opened on it, with its console errors."""

    def __init__(self, browser: Any, runtime: FakeRuntime, **app: Any) -> None:
        self.runtime = runtime
        self.server = LiveServer(create_app(runtime, **app))
        self.browser = browser
        self.errors: list[str] = []

    def __enter__(self) -> Session:
        self.server.__enter__()
        self.context = self.browser.new_context(viewport={"width": 1100, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on(
            "console",
            lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None,
        )
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.goto(self.server.url + "/", wait_until="networkidle")
        return self

    def __exit__(self, *exc: object) -> None:
        self.context.close()
        self.server.__exit__(*exc)

    def text(self, selector: str) -> str:
        return str(self.page.locator(selector).inner_text())

    def predict(self) -> None:
        self.page.get_by_role("button", name="Predict").click()
        self.page.locator("#result, #error").locator("visible=true").wait_for()


def png(path: Path) -> Path:
    from PIL import Image

    pixels = np.zeros((32, 48, 3), dtype=np.uint8)
    pixels[:, :24] = (47, 95, 208)
    pixels[:, 24:] = (240, 180, 40)
    Image.fromarray(pixels).save(path)
    return path


def test_upload_image_and_text_then_prediction_and_contributions_show(
    browser: Any, tmp_path: Path
) -> None:
    image = png(tmp_path / "photo.png")
    with Session(browser, FakeRuntime()) as s:
        assert s.page.title() == "polyfuse"
        assert "model fake" in s.text("#model")
        s.page.get_by_label("image file").set_input_files(str(image))
        s.page.get_by_label("text text").fill("a cat on a mat")
        assert s.page.evaluate("document.querySelector('img.preview').naturalWidth") == 48
        s.predict()

        assert s.text("#label") == "cat"
        assert s.page.locator("#degraded").is_hidden()
        assert s.page.locator("#probabilities .bar.best .name").inner_text() == "cat"
        assert s.text("#probabilities").count("%") == 2
        fills = s.page.locator("#probabilities .fill").evaluate_all(
            "fs => fs.map(f => f.getBoundingClientRect().width / f.parentElement.clientWidth)"
        )
        assert [round(f, 2) for f in fills] == [0.9, 0.1]  # the bars are drawn to scale
        rows = s.page.locator("#contributions .bar")
        assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.name)")) == ["image", "text"]
        assert "50.0%" in s.text("#contributions")
        assert s.text("#used") == "text, image"
        assert s.text("#findings") == "no findings"
        request = s.runtime.requests[0]
        assert s.text("#request-id") == request.request_id
        assert request.inputs == {"image": image.read_bytes(), "text": "a cat on a mat"}
        assert s.errors == []


def test_runtime_error_is_shown_with_code_message_and_hint(browser: Any) -> None:
    error = ServeError("overloaded", "the queue is full", hint="retry in a second", retry_after=1)
    with Session(browser, FakeRuntime(error=error)) as s:
        s.page.get_by_label("text text").fill("a cat")
        s.predict()
        assert s.page.get_by_role("alert").is_visible()
        assert s.text("#error-code") == "overloaded"
        assert s.text("#error-message") == "the queue is full"
        assert s.text("#error-hint") == "hint: retry in a second"
        assert len(s.text("#error-request-id")) == 32
        assert s.page.locator("#result").is_hidden()


def test_degraded_badge_reasons_and_redactions_show(browser: Any) -> None:
    guard = Guard(text_detectors=[RegexDetector(r"\d{3}-\d{2}-\d{4}", "US_SSN")])
    with Session(browser, FakeRuntime(), guard=guard) as s:
        s.page.get_by_label("text text").fill("a dog, ssn 123-45-6789")
        s.predict()
        assert s.text("#label") == "dog"
        assert s.page.locator("#degraded").is_visible()
        assert s.text("#degraded-reasons") == "image: breaker open"
        cells = s.page.locator("#findings tbody tr td").all_inner_texts()
        assert cells[:4] == ["text", "US_SSN", "***-**-**89", "redact"]
        assert "1 span redacted" in s.text("#redactions")
        assert s.text("#output-scan") == "answer checked by the firewall: nothing to redact"
        assert s.runtime.requests[0].inputs["text"] == "a dog, ssn <US_SSN>"
        assert "123-45-6789" not in s.text("#result")


def test_answer_redacted_by_the_output_policy_says_so(browser: Any) -> None:
    from tests.serve.http.test_outputs import MailLabels, guard

    with Session(browser, MailLabels(), guard=guard()) as s:
        s.page.get_by_label("text text").fill("a dog")
        s.predict()
        assert s.text("#label") == "<EMAIL_ADDRESS>"
        assert s.text("#output-scan") == "answer redacted by the firewall: EMAIL_ADDRESS × 1"
        assert "ops@example.com" not in s.text("#result")
        assert s.errors == []


def test_video_upload_is_previewed_sent_and_its_sync_shown(browser: Any, tmp_path: Path) -> None:
    from tests.train.test_validate import write_videos

    late = write_videos(tmp_path)["late"]
    with Session(browser, FakeRuntime(("text", "video"))) as s:
        s.page.get_by_label("video file").set_input_files(str(late))
        player = s.page.locator("video.preview")
        assert player.is_visible()
        assert str(player.get_attribute("src")).startswith("blob:")
        s.page.get_by_label("text text").fill("a cat")
        s.predict()
        assert s.text("#label") == "cat"
        assert s.runtime.requests[0].inputs["video"] == late.read_bytes()
        assert s.text("#sync").startswith("video: sound 3")
        assert s.text("#sync").endswith("ms late (out of sync)")
        rows = s.page.locator("#frames button.bar.frame")
        assert rows.count() == 4
        assert rows.evaluate_all("rs => rs.map(r => r.dataset.t)") == ["0", "0.5", "1", "1.5"]
        widths = s.page.locator("#frames .fill").evaluate_all(
            "fs => fs.map(f => f.getBoundingClientRect().width / f.parentElement.clientWidth)"
        )
        assert [round(w, 2) for w in widths] == [0.0, 1.0, 0.17, 0.0]  # 0.05 / 0.3; none < 0
        assert "+30.0%" in s.text("#frames")
        rows.nth(1).click()  # plays from that frame (where the browser can decode H.264)
        assert s.errors == []


def test_recorded_audio_is_sent_as_wav(browser: Any) -> None:
    import soundfile as sf

    with Session(browser, FakeRuntime(("text", "image", "audio"))) as s:
        record = s.page.get_by_role("button", name="Record")
        record.click()
        s.page.get_by_text("recording…").wait_for()
        s.page.wait_for_timeout(700)
        s.page.get_by_role("button", name="Stop").click()
        s.page.get_by_text("KiB WAV").wait_for()
        assert s.page.locator("audio").is_visible()
        s.predict()
        assert s.text("#label") == "dog"
        data = s.runtime.requests[0].inputs["audio"]
        assert isinstance(data, bytes) and data[:4] == b"RIFF"
        samples, rate = sf.read(io.BytesIO(data))
        assert rate == 16000 and samples.ndim == 1 and len(samples) > 0.4 * rate
        assert np.abs(samples).max() > 0.01  # the fake microphone's beep, not silence
        assert s.errors == []


def test_api_key_is_asked_for_then_sent(browser: Any) -> None:
    config = ServeConfig(api_key_hashes=(hash_key("k1"),))
    with Session(browser, FakeRuntime(), config=config) as s:
        assert s.text("#error-code") == "unauthorized"
        key = s.page.get_by_label("API key")
        assert key.is_visible()
        key.fill("k1")
        key.press("Tab")  # the change event: the page stores the key and reloads /v1/info
        s.page.get_by_label("text text").wait_for()
        assert s.page.locator("#error").is_hidden()
        assert s.page.evaluate("sessionStorage.getItem('polyfuse.apiKey')") == "k1"
        s.page.get_by_label("text text").fill("a cat")
        s.predict()
        assert s.text("#label") == "cat", s.text("body")


def test_page_and_assets_are_public_self_contained_and_locked_down() -> None:
    import httpx  # a plain client: the browser fixture's event loop may be running

    config = ServeConfig(api_key_hashes=(hash_key("k1"),))
    assets = [("/", "text/html"), ("/web/app.js", "javascript"), ("/web/style.css", "css")]
    app = create_app(FakeRuntime(), config)
    with LiveServer(app) as server, httpx.Client(base_url=server.url) as client:
        for path, kind in assets:
            response = client.get(path)
            assert response.status_code == 200 and kind in response.headers["content-type"]
            assert "script-src 'self'" in response.headers["content-security-policy"]
            assert b"http://" not in response.content and b"https://" not in response.content
        assert client.get("/v1/info").status_code == 401
        info = client.get("/v1/info", headers={"X-API-Key": "k1"}).json()
        assert info["modalities"] == ["text", "image"] and info["labels"] == ["cat", "dog"]
        assert client.get("/web/missing.js").status_code == 401


@pytest.mark.parametrize(
    ("page", "selector"), [("/docs", ".swagger-ui .info .title"), ("/redoc", "h1")]
)
def test_api_docs_render_offline(browser: Any, page: str, selector: str) -> None:
    outside: list[str] = []
    with LiveServer(create_app(FakeRuntime())) as server:
        context = browser.new_context()
        try:
            context.route("**/*", lambda r: _route(r, server.url, outside))
            tab = context.new_page()
            tab.set_default_timeout(TIMEOUT_MS)
            tab.goto(server.url + page, wait_until="networkidle")
            assert "polyfuse" in tab.locator(selector).first.inner_text()
        finally:
            context.close()
    assert outside == []


def _route(route: Any, local: str, outside: list[str]) -> None:
    if route.request.url.startswith((local, "data:")):
        route.continue_()
    else:  # no network: what a CDN would have served never arrives
        outside.append(route.request.url)
        route.abort()


def test_review_page_lists_shows_inputs_and_sends_a_label(browser: Any, tmp_path: Path) -> None:
    """Answers below confidence 0.95 go to review (the fake answers 0.9 or 0.8): the main
    page says so, the review page lists them, shows the stored image and text, and a label
    resolves the item."""
    image = png(tmp_path / "photo.png")
    config = ServeConfig(
        review=f"sqlite://{tmp_path / 'review.db'}",
        review_inputs=True,
        review_threshold=0.95,
        review_reasons=RULES,
    )
    with Session(browser, FakeRuntime(), config=config) as s:
        s.page.get_by_label("image file").set_input_files(str(image))
        s.page.get_by_label("text text").fill("a cat on a mat")
        s.predict()
        assert s.text("#review") == "sent to human review: low confidence"
        s.page.get_by_label("text text").fill("a dog")
        s.predict()
        first, second = (r.request_id for r in s.runtime.requests)

        s.page.get_by_role("link", name="review queue").click()
        s.page.locator("#items tr").nth(1).wait_for()
        assert s.page.title() == "polyfuse · review"
        assert s.text("#count") == "2 pending"
        assert s.page.locator("#items tr td:nth-child(3)").all_inner_texts() == [
            "low confidence",
            "low confidence",
        ]
        s.page.get_by_role("button", name=first).click()
        s.page.locator("#item-inputs img.preview").wait_for()
        s.page.wait_for_function(
            "document.querySelector('#item-inputs img.preview').naturalWidth === 48"
        )
        assert s.text("#item-inputs pre") == "a cat on a mat"
        assert s.text("#item-answer") == "cat"
        assert s.page.get_by_label("cat").is_checked()  # the model's answer preselected
        s.page.get_by_label("dog").check()
        s.page.get_by_label("reviewer").fill("ana")
        s.page.get_by_role("button", name="Submit label").click()
        s.page.get_by_text("saved: the model's answer was wrong").wait_for()
        s.page.wait_for_function("document.querySelectorAll('#items tr').length === 1")
        assert s.text("#count") == "1 pending"
        assert s.page.get_by_role("button", name=second).is_visible()
        s.page.get_by_label("reason").select_option("firewall")
        s.page.get_by_text("nothing waiting for review").wait_for()
        assert s.errors == []
    done = SQLiteStore(tmp_path / "review.db").get(first)
    assert done is not None and (done.label, done.reviewer) == ("dog", "ana")
