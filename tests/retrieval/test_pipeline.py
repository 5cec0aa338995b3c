"""``task: contrastive`` end to end: polyfuse train -> alignment artifact -> Aligner embeddings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from polyfuse.cli import main
from polyfuse.core.config import Config
from polyfuse.core.errors import ArtifactError, ConfigError
from polyfuse.retrieval.pipeline import Aligner
from polyfuse.train import Trainer
from tests.retrieval.flickr import EXAMPLES


def test_config_and_trainer_refusals(tmp_path: Path) -> None:
    cfg = {
        "task": "contrastive",
        "modalities": {
            "image": {"kind": "image", "encoder": "image_cnn"},
            "text": {"kind": "text", "encoder": "minilm"},
        },
    }
    config = Config.from_dict(cfg)
    with pytest.raises(ConfigError, match="not trained by Trainer"):
        Trainer(config, tmp_path / "x", progress=False).fit(tmp_path / "none.jsonl")
    from polyfuse.retrieval.pipeline import train_alignment

    with pytest.raises(ConfigError, match="frozen"):
        train_alignment(config, tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "out")
    with pytest.raises(ArtifactError, match="not an alignment artifact"):
        Aligner.load(tmp_path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small alignment artifact trained through `polyfuse train` (120 images, 4 epochs)."""
    from tests.conftest import SHARED_DATA
    from tests.retrieval.flickr import small_split

    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data folder at {SHARED_DATA} (absent outside CI)")
    root = tmp_path_factory.mktemp("align")
    train, val = small_split(SHARED_DATA, root, 600, 200)  # 120 / 40 images
    art = root / "art"
    args = ["train", str(EXAMPLES / "flickr8k" / "align.yaml"), "--train", str(train)]
    args += ["--val", str(val), "--out", str(art), "-q", "--set", "train.epochs=4"]
    args += ["--set", "align.ensemble=2", "--set", "align.scorer_epochs=3"]
    assert main(args) == 0
    return {"art": art, "val": val, "root": root}


@pytest.mark.integration
def test_cli_training_writes_an_alignment_artifact(trained: dict[str, Path]) -> None:
    art = trained["art"]
    files = ("artifact.json", "config.yaml", "contracts.json", "model.safetensors")
    for name in (*files, "querybank.safetensors", "scorer.safetensors"):
        assert (art / name).is_file()
    info = json.loads((art / "artifact.json").read_text())
    assert info["kind"] == "alignment" and 1 <= info["best_epoch"] <= 4
    assert info["ensemble"] == 2 and len(info["best_epochs"]) == 2
    assert info["consistency"]["scorer"]["members"] == 2
    assert info["consistency"]["scorer"]["extra_dim"] == 11  # colour tokens
    assert info["val"]["text_to_image"]["R@10"] > 10 / 40  # better than chance on 40 images


def _val_rows(trained: dict[str, Path]) -> list[dict]:
    return [json.loads(x) for x in trained["val"].read_text().splitlines()[::5][:10]]


@pytest.mark.integration
def test_aligner_embeds_and_classifies_zero_shot(trained: dict[str, Path]) -> None:
    aligner = Aligner.load(trained["art"])
    rows = _val_rows(trained)  # 10 images and one caption each
    images = aligner.embed("image", [r["image"] for r in rows])
    texts = aligner.embed("text", [r["text"] for r in rows])
    assert images.shape == texts.shape == (10, 1024)  # two adapter pairs, concatenated
    torch.testing.assert_close(images.norm(dim=1), torch.ones(10))
    assert int((texts @ images.T).argmax(1).eq(torch.arange(10)).sum()) >= 3  # chance: 1
    probs = aligner.zero_shot([r["image"] for r in rows], ["dog", "snow", "water"])
    assert probs.shape == (10, 3)
    torch.testing.assert_close(probs.sum(1), torch.ones(10))
    pairs = aligner.consistency([rows[0]["image"]] * 2, [rows[0]["text"], rows[5]["text"]])
    (true, true_flag), (wrong, _) = pairs
    assert math.isfinite(true) and isinstance(true_flag, bool) and wrong < true
    # the direct path (raw inputs through the encoders) matches the cached one
    cached = aligner.pair_scores([(rows[0]["image"], rows[0]["text"])], cached=True)
    assert abs(float(cached[0]) - true) < 1e-3


@pytest.mark.integration
def test_evaluate_retrieval_and_consistency(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from polyfuse.datasets.flickr8k import build_consistency
    from tests.conftest import SHARED_DATA

    art = str(trained["art"])
    capsys.readouterr()
    assert main(["evaluate", art, "--data", str(trained["val"]), "--json", "-q"]) == 0
    retrieval = json.loads(capsys.readouterr().out)
    assert set(retrieval["text_to_image"]) == {"R@1", "R@5", "R@10", "median_rank"}
    assert retrieval["n"] == {"queries": 200, "items": 40}
    # the threshold calibrated on validation flags about 5% of true pairs
    cons = build_consistency(SHARED_DATA, trained["root"] / "c", neighbours=False)["val"]
    small = trained["root"] / "cons.jsonl"
    small.write_text("\n".join(cons.read_text().splitlines()[:300]) + "\n")
    assert main(["evaluate", art, "--data", str(small), "--json", "-q"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert set(c["consistency"]) == {"auc", "threshold", "false_alarm_rate", "recall", "n"}
    assert c["auc_by_kind"]["random"] > 0.75 and c["consistency"]["false_alarm_rate"] < 0.2


@pytest.mark.integration
def test_index_and_search(trained: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    art, val, db = trained["art"], trained["val"], trained["root"] / "db"
    aligner = Aligner.load(art)
    capsys.readouterr()
    assert main(["index", str(art), "--data", str(val), "--db", str(db), "-q"]) == 0
    assert "40 image rows, 200 text rows" in capsys.readouterr().out
    caption = _val_rows(trained)[0]["text"]
    assert main(["search", "--db", str(db), "--text", caption, "-k", "40", "--json"]) == 0
    hits = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [h["rank"] for h in hits] == list(range(1, 41))  # every image, ranked
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    everything = aligner.embed("image", [h["id"] for h in hits])
    expected = (aligner.embed("text", [caption]) @ everything.T)[0]
    torch.testing.assert_close(torch.tensor(scores), expected, atol=1e-4, rtol=1e-4)
    assert all(len(h["text"]) == 5 for h in hits)  # each image carries its captions
    assert main(["search", "--db", str(trained["root"] / "nope"), "--text", "x"]) == 2
