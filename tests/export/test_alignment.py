"""`polyfuse export` of an alignment artifact (frozen EfficientNet-Lite0 and MiniLM behind a
two-member adapter ensemble with a QB-norm bank): fp32 embeddings equal the eager aligner's,
int8 (static QDQ image, dynamic text) records its retrieval quality, the export loads where
an alignment artifact loads (index, search, evaluate), and the refusals are typed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from polyfuse.cli import main
from polyfuse.core.errors import ArtifactError, ConfigError, ExportError
from polyfuse.export import export_onnx
from polyfuse.retrieval.pipeline import Aligner, evaluate_alignment

pytest.importorskip("onnxscript")
pytestmark = pytest.mark.integration  # the real pretrained encoders


@pytest.fixture(scope="module")
def aligned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny alignment artifact (Flickr8k: 20 images x 5 captions, 2 epochs, two adapter
    pairs, a QB-norm bank) and its validation manifest (12 images x 5 captions)."""
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("transformers")
    from polyfuse.core.config import Config
    from polyfuse.retrieval.pipeline import train_alignment
    from tests.conftest import SHARED_DATA
    from tests.retrieval.flickr import small_split

    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data folder at {SHARED_DATA} (absent outside CI)")
    root = tmp_path_factory.mktemp("align-onnx")
    train, val = small_split(SHARED_DATA, root, 100, 60)
    config = Config.from_dict(
        {
            "task": "contrastive",
            "modalities": {
                "image": {"kind": "image", "encoder": "efficientnet_lite0"},
                "text": {"kind": "text", "encoder": "minilm"},
            },
            "model": {"dim": 32, "dropout": 0.1},
            "train": {"epochs": 2, "batch_size": 8, "seed": 0},
            "align": {"ensemble": 2, "querybank": True},
        }
    )
    train_alignment(config, train, val, root / "art", progress=False)
    return {"art": root / "art", "val": val, "root": root}


@pytest.fixture(scope="module")
def fp32(aligned: dict[str, Path]) -> Path:
    """The fp32 export, retrieval measured on the validation pairs."""
    out = aligned["root"] / "onnx-fp32"
    export_onnx(aligned["art"], out, data=aligned["val"])
    return out


@pytest.fixture(scope="module")
def int8(aligned: dict[str, Path]) -> Path:
    """The int8 export, through the command line."""
    out = aligned["root"] / "onnx-int8"
    args = ["export", str(aligned["art"]), "--format", "onnx", "--quantize", "int8"]
    assert main([*args, "--data", str(aligned["val"]), "--out", str(out), "--json"]) == 0
    return out


def _pairs(val: Path) -> list[dict[str, str]]:
    """One row per image (its first caption): image paths are absolute."""
    return [json.loads(line) for line in val.read_text().splitlines()][::5]


def test_fp32_embeddings_equal_the_eager_aligner(aligned: dict[str, Path], fp32: Path) -> None:
    eager, onnx = Aligner.load(aligned["art"]), Aligner.load(fp32)
    rows = _pairs(aligned["val"])
    for m in ("image", "text"):
        values = [r[m] for r in rows[:5]]  # one batch of 5: captions of different lengths
        want, got = eager.embed(m, values), onnx.embed(m, values)
        assert got.shape == want.shape == (5, 64)  # two members of 32
        assert torch.allclose(got, want, atol=1e-4)
        assert torch.allclose(got.norm(dim=1), torch.ones(5), atol=1e-4)
    assert onnx.model.scale == pytest.approx(eager.model.scale)
    assert onnx.bank is not None and set(onnx.bank) == {"image", "text"}


def test_the_manifest_records_graphs_axes_and_retrieval(
    aligned: dict[str, Path], fp32: Path
) -> None:
    info = json.loads((fp32 / "artifact.json").read_text())
    source = json.loads((aligned["art"] / "artifact.json").read_text())
    assert info["kind"] == "alignment" and info["roles"] == source["roles"]
    assert info["consistency"] == source["consistency"] and info["lineage"] == source["lineage"]
    entry = info["onnx"]
    assert entry["precision"] == "fp32" and entry["quantization"] is None
    assert set(entry["graphs"]) == {"encoder-image", "encoder-text"}
    text = entry["graphs"]["encoder-text"]
    assert [isinstance(d, str) for d in text["inputs"]["data"]["shape"]] == [True, True]
    assert isinstance(entry["graphs"]["encoder-image"]["inputs"]["data"]["shape"][0], str)
    assert text["outputs"]["aligned"]["shape"][1] == 64
    assert max(entry["verification"]["max_abs_diff"].values()) <= 1e-4
    recorded = entry["retrieval"]["fp32"]
    assert recorded["n"] == 60 and recorded["items"] == 12
    assert {"text_to_image.R@5", "image_to_text.R@5", "text_to_image.R@1"} <= set(recorded)
    measured = evaluate_alignment(fp32, aligned["val"], progress=False)
    assert measured["text_to_image"]["R@5"] == pytest.approx(recorded["text_to_image.R@5"])
    assert not (fp32 / "model.safetensors").exists()


def test_int8_export_quantizes_per_encoder_and_records_both(int8: Path) -> None:
    entry = json.loads((int8 / "artifact.json").read_text())["onnx"]
    assert entry["precision"] == "int8"
    assert entry["quantization"]["graphs"] == {
        "encoder-image": "static",
        "encoder-text": "dynamic",
    }
    quality = entry["retrieval"]
    assert set(quality) == {"fp32", "int8"}
    for direction in ("text_to_image", "image_to_text"):
        key = f"{direction}.R@5"
        assert abs(quality["int8"][key] - quality["fp32"][key]) <= 0.25  # 12 images: 3 ranks


def test_int8_embeddings_stay_close_to_the_eager_ones(aligned: dict[str, Path], int8: Path) -> None:
    eager, quantized = Aligner.load(aligned["art"]), Aligner.load(int8)
    rows = _pairs(aligned["val"])
    for m in ("image", "text"):
        values = [r[m] for r in rows]
        want, got = eager.embed(m, values), quantized.embed(m, values)
        assert torch.allclose(got.norm(dim=1), torch.ones(len(rows)), atol=1e-3)
        cosine = (want * got).sum(1)  # per-channel int8, adapters fp32: about 0.99
        assert float(cosine.mean()) >= 0.97 and float(cosine.min()) >= 0.9


def test_an_export_indexes_and_searches_like_the_artifact(
    aligned: dict[str, Path], fp32: Path, tmp_path: Path
) -> None:
    from polyfuse.retrieval.pipeline import build_index, search_index

    counts = build_index(fp32, aligned["val"], tmp_path / "db", progress=False)
    assert counts == {"image": 12, "text": 60}
    eager_counts = build_index(aligned["art"], aligned["val"], tmp_path / "eager", progress=False)
    assert eager_counts == counts
    query = _pairs(aligned["val"])[0]["text"]
    got = search_index(tmp_path / "db", "text", query, k=3)
    want = search_index(tmp_path / "eager", "text", query, k=3)
    assert [h.id for h in got] == [h.id for h in want]
    assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-2)
    from polyfuse.serve.runtime.align import AlignServices

    services = AlignServices.load(index=tmp_path / "db")  # the export, named by index.json
    assert services is not None and services.routes == ("search", "consistency")
    served = asyncio.run(services.search({"text": query}, 3))
    assert [h["id"] for h in served["hits"]] == [h.id for h in got]
    (score, _), *_ = services.aligner.consistency([_pairs(aligned["val"])[0]["image"]], [query])
    assert -1.0 <= score <= 1.0


def test_a_graph_that_differs_from_the_aligner_is_named(
    aligned: dict[str, Path], fp32: Path
) -> None:
    from polyfuse.export.alignment import verify_embedders

    aligner = Aligner.load(aligned["art"])
    assert max(verify_embedders(aligner, fp32).values()) <= 1e-4
    with torch.no_grad():
        member = aligner.model.members[0]
        weight = member.proj["text"][1].weight  # type: ignore[index]
        weight.add_(0.05 * torch.randn_like(weight))  # the eager adapters move on
    with pytest.raises(ExportError, match=r"^encoder-text: the exported graph differs") as err:
        verify_embedders(aligner, fp32)
    assert err.value.graph == "encoder-text"


def test_refusals_are_typed(aligned: dict[str, Path], fp32: Path, tmp_path: Path) -> None:
    from polyfuse.export.alignment import check_source

    with pytest.raises(ConfigError, match="needs calibration data") as err:
        export_onnx(aligned["art"], tmp_path / "out", quantize="int8")
    assert err.value.hint is not None and "--data" in err.value.hint
    assert not (tmp_path / "out").exists()
    with pytest.raises(ArtifactError, match="already an ONNX export"):
        export_onnx(fp32, tmp_path / "again")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="not an ONNX export"):
        export_onnx(aligned["art"], tmp_path / "busy")
    source = Aligner.load(aligned["art"])
    assert source.scorers == []
    check_source(source)
    scored = Aligner(source.model, source.encoders, source.info, scorers=[nn.Linear(1, 1)])
    with pytest.raises(ExportError, match="consistency scorers") as scorer_err:
        check_source(scored)  # a scorer reads token sequences an export does not compute
    assert scorer_err.value.hint is not None and "align.scorer" in scorer_err.value.hint
