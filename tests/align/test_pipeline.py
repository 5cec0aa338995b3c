"""``task: contrastive`` end to end: polyfuse train -> alignment artifact -> Aligner embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from polyfuse.align.pipeline import Aligner
from polyfuse.cli import main
from polyfuse.config import Config
from polyfuse.errors import ArtifactError, ConfigError
from polyfuse.train import Trainer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


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
    from polyfuse.align.pipeline import train_alignment

    with pytest.raises(ConfigError, match="frozen"):
        train_alignment(config, tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "out")
    with pytest.raises(ArtifactError, match="not an alignment artifact"):
        Aligner.load(tmp_path)


@pytest.mark.integration
def test_train_alignment_from_the_cli(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from polyfuse.datasets.flickr8k import build_alignment

    paths = build_alignment(shared_data, tmp_path / "m")
    train = tmp_path / "train.jsonl"
    val = tmp_path / "val.jsonl"
    train.write_text("\n".join(paths["train"].read_text().splitlines()[:600]) + "\n")  # 120 images
    val.write_text("\n".join(paths["val"].read_text().splitlines()[:200]) + "\n")  # 40 images
    art = tmp_path / "art"
    args = ["train", str(EXAMPLES / "flickr8k" / "align.yaml"), "--train", str(train)]
    args += ["--val", str(val), "--out", str(art), "--json", "-q", "--set", "train.epochs=4"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 1 <= summary["best_epoch"] <= 4
    assert summary["val text_to_image R@10"] > 10 / 40  # better than chance on 40 images
    for name in ("artifact.json", "config.yaml", "contracts.json", "model.safetensors"):
        assert (art / name).is_file()

    aligner = Aligner.load(art)
    rows = [json.loads(x) for x in val.read_text().splitlines()[::5][:10]]  # 10 images
    images = aligner.embed("image", [r["image"] for r in rows])
    texts = aligner.embed("text", [r["text"] for r in rows])
    assert images.shape == texts.shape == (10, 512)
    torch.testing.assert_close(images.norm(dim=1), torch.ones(10))
    assert int((texts @ images.T).argmax(1).eq(torch.arange(10)).sum()) >= 3  # chance: 1

    assert main(["evaluate", str(art), "--data", str(val), "--json", "-q"]) == 0
    retrieval = json.loads(capsys.readouterr().out)
    assert set(retrieval["text_to_image"]) == {"R@1", "R@5", "R@10", "median_rank"}
    assert retrieval["n"] == {"queries": 200, "items": 40}

    # consistency: the threshold calibrated on validation flags about 5% of true pairs
    from polyfuse.datasets.flickr8k import build_consistency

    cons = build_consistency(shared_data, tmp_path / "c")["val"]
    small = tmp_path / "cons.jsonl"
    small.write_text("\n".join(cons.read_text().splitlines()[:300]) + "\n")
    assert main(["evaluate", str(art), "--data", str(small), "--json", "-q"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert set(c["consistency"]) == {"auc", "threshold", "false_alarm_rate", "recall", "n"}
    assert c["auc_by_kind"]["random"] > 0.75 and c["consistency"]["false_alarm_rate"] < 0.2
    score, flag = aligner.consistency([rows[0]["image"]], [rows[0]["text"]])[0]
    assert -1 <= score <= 1 and isinstance(flag, bool)

    probs = aligner.zero_shot([r["image"] for r in rows], ["dog", "snow", "water"])
    assert probs.shape == (10, 3)
    torch.testing.assert_close(probs.sum(1), torch.ones(10))

    # index the validation pairs and search them from the CLI
    db = tmp_path / "db"
    assert main(["index", str(art), "--data", str(val), "--db", str(db), "-q"]) == 0
    assert "40 image rows, 200 text rows" in capsys.readouterr().out
    caption = rows[0]["text"]
    assert main(["search", "--db", str(db), "--text", caption, "-k", "40", "--json"]) == 0
    hits = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [h["rank"] for h in hits] == list(range(1, 41))  # every image, ranked
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    everything = aligner.embed("image", [h["id"] for h in hits])
    expected = (aligner.embed("text", [caption]) @ everything.T)[0]
    torch.testing.assert_close(torch.tensor(scores), expected, atol=1e-4, rtol=1e-4)
    assert all(len(h["text"]) == 5 for h in hits)  # each image carries its captions
    assert main(["search", "--db", str(tmp_path / "nope"), "--text", "x"]) == 2
