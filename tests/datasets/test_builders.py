"""Dataset builders: demo digits from installed packages, and the shared-data builders."""

from __future__ import annotations

import json
from pathlib import Path

from polyfuse.data import Manifest
from polyfuse.datasets import av_digits, basicmotions, flickr8k, spoken_digits
from polyfuse.train.validate import validate_manifest


def _rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_spoken_digits_from_installed_packages(tmp_path: Path) -> None:
    spec = spoken_digits.SpokenDigitsSpec(train=12, val=4, test=6)
    paths = spoken_digits.build(tmp_path, spec, progress=False)
    report = validate_manifest(paths["train"], progress=False)
    assert report.rows == 12 and not report.bad_rows
    test_voices = {r["voice"] for r in _rows(paths["test"])}
    train_voices = {r["voice"] for r in _rows(paths["train"])}
    assert not test_voices & train_voices, "test voices are unseen in training"


def test_av_digits_splits_are_speaker_disjoint(shared_data: Path, tmp_path: Path) -> None:
    paths = av_digits.build(shared_data, tmp_path, av_digits.AVDigitsSpec("hard"), progress=False)
    speakers = {s: {r["speaker"] for r in _rows(p)} for s, p in paths.items()}
    assert speakers["test"] == {"theo"} and "theo" not in speakers["train"] | speakers["val"]
    images = {s: {r["mnist_index"] for r in _rows(p)} for s, p in paths.items()}
    assert not images["test"] & images["train"], "test images come from a disjoint part of MNIST"
    assert len(_rows(paths["test"])) == 500
    m = Manifest.load(paths["test"], ["image", "audio"])
    assert (m.base_dir / str(m.rows[0].values["audio"])).is_file()
    again = av_digits.build(shared_data, tmp_path, av_digits.AVDigitsSpec("hard"), progress=False)
    assert again == paths


def test_basicmotions_series_shape(shared_data: Path, tmp_path: Path) -> None:
    paths = basicmotions.build(shared_data, tmp_path)
    report = validate_manifest(paths["test"], modalities=["motion=timeseries"], progress=False)
    assert report.rows == 40 and not report.bad_rows
    assert set(report.labels) == {"Standing", "Running", "Walking", "Badminton"}


def test_flickr_concepts_labels_come_from_captions(shared_data: Path, tmp_path: Path) -> None:
    assert flickr8k.concepts_of("A brown dog runs through the snow .") == {"dog", "snow"}
    paths = flickr8k.build_concepts(shared_data, tmp_path)
    rows = _rows(paths["train"])
    assert len(rows) == 1800 and len(_rows(paths["test"])) == 1000
    assert sum("dog" in r["label"] for r in rows) > 300


def test_av_digits_lists_the_training_side_esc50_clips_for_substitution(
    shared_data: Path, tmp_path: Path
) -> None:
    from polyfuse.core.config import Config
    from polyfuse.models.build import build_contracts
    from polyfuse.train.substitute import NonSignalPool

    path = av_digits.write_nonsignal(shared_data / "esc50_8k", tmp_path / av_digits.NONSIGNAL)
    listed = {Path(line).name for line in path.read_text().splitlines()}
    every = {p.name for p in (shared_data / "esc50_8k").glob("*.wav")}
    held = {n for n in every if av_digits.noise_split(n) == "test"}
    assert listed == every - held and len(held) > 40  # the test side is never trained on
    # the example config's substitution reads the list beside the manifests
    examples = Path(__file__).resolve().parents[2] / "examples" / "av_digits"
    config = Config.from_file(examples / "fused.yaml")
    substitute = config.modalities["audio"].substitute
    assert substitute is not None and substitute.source == av_digits.NONSIGNAL
    pool = NonSignalPool.load(build_contracts(config)["audio"], substitute, tmp_path)
    assert len(pool.items) == len(listed)
