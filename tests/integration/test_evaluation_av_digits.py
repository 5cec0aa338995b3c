"""The evaluation report on AV-digits: Shapley shares react to uninformative audio, and the
report renders in a real browser."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from polyfuse.cli import main
from polyfuse.datasets import av_digits
from polyfuse.evaluation.analysis import analyses_for, analyze
from polyfuse.evaluation.report.html import write_report
from tests.integration.test_end_to_end import EXAMPLES, _subset

pytestmark = pytest.mark.integration


def _noise_audio(src: Path, dst: Path, seed: int = 0) -> Path:
    """The same rows with every recording replaced by white noise (a dead microphone)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    (dst.parent / "noise").mkdir(parents=True, exist_ok=True)
    rows = [json.loads(x) for x in src.read_text().splitlines()]
    for r in rows:
        wav = dst.parent / "noise" / f"{r['id']}.wav"
        sf.write(wav, (0.1 * rng.standard_normal(8000)).astype(np.float32), 8000)
        r["audio"] = str(wav)
    dst.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dst


def test_shapley_moves_to_the_image_when_audio_is_noise(shared_data: Path, tmp_path: Path) -> None:
    paths = av_digits.build(
        shared_data, tmp_path / "avd", av_digits.AVDigitsSpec("clean"), progress=False
    )
    train = _subset(paths["train"], tmp_path / "train.jsonl", 600, step=3)
    val = _subset(paths["val"], tmp_path / "val.jsonl", 100)
    test = _subset(paths["test"], tmp_path / "test.jsonl", 200, step=2)
    noisy = _noise_audio(test, tmp_path / "noisy" / "test.jsonl")
    art = tmp_path / "art"
    args = ["train", str(EXAMPLES / "av_digits" / "fused.yaml"), "--train", str(train)]
    args += ["--val", str(val), "--out", str(art), "-q"]
    for setting in (
        "train.epochs=6",
        "train.batch_size=32",
        "modalities.image.encoder.widths=[16,32]",
        "modalities.audio.encoder.widths=[16,32]",
        # noise substitution: the model learns that a noise-only recording is no evidence
        "modalities.audio.noise=0.25",
        # the subsets live apart from the build's non-signal list
        f"modalities.audio.substitute.source={paths['train'].parent / 'nonsignal_audio.txt'}",
    ):
        args += ["--set", setting]
    assert main(args) == 0

    clean = analyze(art, test, analyses_for(bootstrap=0), progress=False)
    dead = analyze(art, noisy, analyses_for(bootstrap=0), progress=False)
    for a in (clean, dead):
        for entry in a.contributions["value_functions"].values():
            assert entry["efficiency_max_error"] < 1e-6
    share_clean = clean.contributions["value_functions"]["log_prob"]["share"]
    share_dead = dead.contributions["value_functions"]["log_prob"]["share"]
    assert share_clean["audio"] > 0.15, share_clean  # clean speech is real evidence
    assert share_dead["audio"] < 0.10, (share_clean, share_dead)
    assert share_dead["image"] > share_clean["image"] + 0.1, (share_clean, share_dead)
    # with no usable audio, the fused model does what the image alone does
    image_only = dead.ablation["subsets"]["image"]["accuracy"]
    assert abs(dead.metrics["accuracy"] - image_only) < 0.05

    report = write_report(dead, tmp_path / "report.html")
    from tests.browser import open_page

    with open_page(report) as page:
        assert page.errors == [], page.errors
        assert page.evaluate("document.querySelectorAll('svg').length") >= 8
        page.screenshot(tmp_path / "report.png")
