"""Batch jobs on a real local Ray instance (two CPUs, an actor pool per stage), through the
CLI: predictions equal to the single-process ``polyfuse predict``, a folder of embedding
parts resumed on Ray equal to the in-process job, and a bad ``--ray-address``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from polyfuse.batch.parts import part_name, read_parts
from polyfuse.batch.runners import check_address
from polyfuse.cli import main
from polyfuse.core.errors import ConfigError
from tests.batch.conftest import assert_same_predictions, read_jsonl

RAY = ["--ray", "--batch-size", "4", "--part-rows", "8", "-q"]


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="ray[data] is not installed (pip install ray[data])")
    pytest.importorskip("ray.data", reason="ray[data] is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_predict_equals_single_process(
    ray_instance: Any, classifier: Path, manifest: Path, tmp_path: Path
) -> None:
    single = tmp_path / "single.jsonl"
    args = ["predict", str(classifier), "--data", str(manifest)]
    assert main([*args, "--out", str(single), "-q"]) == 0
    out, lines = tmp_path / "preds.parquet", tmp_path / "ray.jsonl"
    assert main([*args, "--out", str(out), *RAY, "--jsonl", str(lines)]) == 0
    assert_same_predictions(read_jsonl(lines), read_jsonl(single))
    table = read_parts(out).to_pylist()
    assert len(table) == 21 and sum(r["error"] is not None for r in table) == 2


def test_ray_embed_resumes_a_folder_and_equals_the_in_process_job(
    ray_instance: Any, classifier: Path, manifest: Path, tmp_path: Path
) -> None:
    local, ray = tmp_path / "local", tmp_path / "ray"
    args = ["embed", str(classifier), "--data", str(manifest), "--part-rows", "8"]
    assert main([*args, "--out", str(local), "-q"]) == 0
    shutil.copytree(local, ray)
    (ray / part_name(1)).unlink()  # as if the job was stopped before part 1 was written
    kept = (ray / part_name(0)).stat().st_mtime_ns
    assert main([*args, "--out", str(ray), *RAY]) == 0  # Ray computes part 1 only
    assert (ray / part_name(0)).stat().st_mtime_ns == kept
    got, expected = (read_parts(f).to_pylist() for f in (ray, local))
    assert [r["row"] for r in got] == [r["row"] for r in expected] == list(range(21))
    for g, e in zip(got, expected, strict=True):
        assert g["error"] == e["error"]
        for m in ("image", "text", "series"):
            assert (g[m] is None) == (e[m] is None)
            assert g[m] is None or g[m] == pytest.approx(e[m], abs=1e-5)
    assert any(r["image"] is None and r["error"] is None for r in got[8:16])


def test_bad_ray_address_is_a_typed_error_with_a_hint(
    classifier: Path, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match=r"nothing answers at 127\.0\.0\.1:9") as err:
        check_address("127.0.0.1:9")
    assert err.value.hint is not None and "ray start --head" in err.value.hint
    with pytest.raises(ConfigError, match="not HOST:PORT"):
        check_address("my-cluster")
    args = ["predict", str(classifier), "--data", str(manifest), "--out", str(tmp_path / "p")]
    capsys.readouterr()
    assert main([*args, "--ray-address", "127.0.0.1:9"]) == 2
    assert "hint: start a head with `ray start --head" in capsys.readouterr().err
    assert main(["predict", str(classifier), "--data", str(manifest), "--ray"]) == 2
    assert "--ray writes Parquet parts to a folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def aligned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny alignment artifact (frozen EfficientNet-Lite0 + MiniLM) and a pair manifest
    of 8 drawn images with two captions each: (artifact folder, manifest)."""
    from PIL import Image, ImageDraw

    root = tmp_path_factory.mktemp("aligned")
    rows = []
    for k, (colour, shape) in enumerate(
        (c, s) for c in ("red", "green", "blue", "yellow") for s in ("square", "circle")
    ):
        img = Image.new("RGB", (64, 64), (240, 240, 240))
        draw = ImageDraw.Draw(img)
        (draw.rectangle if shape == "square" else draw.ellipse)((8, 8, 56, 56), fill=colour)
        img.save(root / f"img{k}.png")
        for caption in (f"a {colour} {shape}", f"a {shape} coloured {colour}"):
            rows.append({"image": f"img{k}.png", "text": caption})
    data = root / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "task": "contrastive",
        "modalities": {
            "image": {"kind": "image", "encoder": "efficientnet_lite0"},
            "text": {"kind": "text", "encoder": "minilm"},
        },
        "model": {"dim": 32, "dropout": 0.0},
        "train": {"epochs": 2, "batch_size": 8, "lr": 3e-3, "seed": 0},
        "align": {"ensemble": 1, "querybank": False, "scorer": False},
    }
    (root / "align.yaml").write_text(json.dumps(config))  # JSON is YAML
    args = ["train", str(root / "align.yaml"), "--train", str(data), "--val", str(data)]
    assert main([*args, "--out", str(root / "art"), "-q"]) == 0
    return root / "art", data


@pytest.mark.integration
def test_ray_index_writes_the_tables_of_polyfuse_index(
    ray_instance: Any, aligned: tuple[Path, Path], tmp_path: Path
) -> None:
    import numpy as np

    from polyfuse.retrieval.index import VectorIndex
    from polyfuse.retrieval.pipeline import Aligner

    art, data = aligned
    base = ["index", str(art), "--data", str(data), "-q"]
    assert main([*base, "--db", str(tmp_path / "local")]) == 0
    assert main([*base, "--db", str(tmp_path / "ray"), "--ray", "--batch-size", "8"]) == 0
    assert (tmp_path / "ray" / "_embeddings" / part_name(0)).is_file()
    aligner = Aligner.load(art)
    for name, count in (("image", 8), ("text", 16)):
        ray, local = (
            VectorIndex.open(tmp_path / k, name).table.to_arrow().to_pylist()
            for k in ("ray", "local")
        )
        assert len(ray) == count
        assert [(r["id"], r["metadata"]) for r in ray] == [(r["id"], r["metadata"]) for r in local]
        got = np.asarray([r["vector"] for r in ray])
        # the single-process index reads float16-cached encoder features
        np.testing.assert_allclose(got, [r["vector"] for r in local], atol=5e-3)
        values = [json.loads(r["metadata"])[name] for r in ray]
        values = [str(data.parent / v) for v in values] if name == "image" else values
        direct = aligner.embed(name, values).numpy()  # the encoders on raw inputs, in fp32
        # MiniLM in batches of 8 here, of 32 there: float32 matmuls of other shapes
        np.testing.assert_allclose(got, direct, atol=1e-4)
