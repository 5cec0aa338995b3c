"""tests/browser.py: a missing browser skips locally and fails under CI (CI=true)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import chromium_path, under_ci

CASES = [  # CI value, outcome when no Chromium is on PATH
    (None, pytest.skip.Exception),
    ("", pytest.skip.Exception),
    ("false", pytest.skip.Exception),
    ("0", pytest.skip.Exception),
    ("true", pytest.fail.Exception),
    ("TRUE", pytest.fail.Exception),
    ("1", pytest.fail.Exception),
    ("yes", pytest.fail.Exception),
]


@pytest.mark.parametrize(("ci", "outcome"), CASES)
def test_when_chromium_is_missing_then_skip_locally_and_fail_under_ci(
    ci: str | None, outcome: type[BaseException], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no browser to find
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    assert under_ci() is (outcome is pytest.fail.Exception)
    with pytest.raises(outcome, match="needs Chromium"):
        chromium_path()


def test_when_chromium_is_on_path_then_its_path_is_returned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = tmp_path / "chromium"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    assert chromium_path() == str(browser)
