"""Video end to end on a tiny video-digits build: train the fused example (frames + the
video's own soundtrack), evaluate with modality subsets and Shapley shares, and predict a
clip without an audio track as "audio missing"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyfuse.cli import main
from polyfuse.datasets.video_digits import VideoDigitsSpec, build
from polyfuse.inference.predict import Predictor

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "video_digits"
SPEC = VideoDigitsSpec(takes=2, offsets_ms=(0, 40, -40), no_audio=0.2, silent=0.2)


def test_fused_video_and_soundtrack_train_evaluate_predict(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mnist = shared_data / "mnist" / "mnist_test_0_8000.npz"
    paths = build(mnist, shared_data / "fsdd", tmp_path / "data", SPEC, progress=False)
    art = tmp_path / "art"
    args = ["train", str(EXAMPLES / "fused.yaml"), "--train", str(paths["train"])]
    args += ["--val", str(paths["val"]), "--out", str(art), "-q"]
    for setting in (
        "train.epochs=1",
        "train.card=false",  # the card's full evaluation is tested on AV-digits
        "modalities.video.contract.frames=4",
        "modalities.video.contract.size=[16,16]",
        "modalities.video.encoder.frame_params.widths=[4,8]",
        "modalities.audio.encoder.widths=[4,8]",
        "modalities.audio.quality=false",  # the gate's speech model is tested elsewhere
    ):
        args += ["--set", setting]
    assert main(args) == 0
    info = json.loads((art / "artifact.json").read_text())
    assert {m: v["kind"] for m, v in info["modalities"].items()} == {
        "video": "video",
        "audio": "audio",
    }

    capsys.readouterr()
    assert main(["evaluate", str(art), "--data", str(paths["test"]), "--full", "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 20 and 0.0 <= report["accuracy"] <= 1.0
    test_rows = [json.loads(x) for x in paths["test"].read_text().splitlines()]
    sync = report["sync"]  # offsets of 0 and +-40 ms: every clip with sound is in sync
    assert sync["method"] == "signal"
    assert sync["checked"] == sum(r["audio_track"] == "speech" for r in test_rows)
    assert sync["no_sound"] == sum(r["audio_track"] != "speech" for r in test_rows)

    rows = [json.loads(x) for p in paths.values() for x in p.read_text().splitlines()]
    mute = next(r for r in rows if r["audio_track"] == "none")
    spoken = next(r for r in rows if r["audio_track"] == "speech")
    predictor = Predictor.load(art)
    base = paths["test"].parent
    alone = predictor.predict({"video": str(base / mute["video"])})
    both = predictor.predict({"video": str(base / spoken["video"])})
    assert alone.modalities_used == ("video",)  # no track: audio missing, not an error
    assert set(both.modalities_used) == {"audio", "video"}

    from polyfuse.inference.frames import frame_effects

    art_ = predictor.artifact
    fx = frame_effects(
        art_.model, art_.contracts, art_.task, {"video": str(base / spoken["video"])}, "video"
    )
    assert len(fx.effects) == 4 and fx.times == sorted(fx.times)  # contract frames=4
