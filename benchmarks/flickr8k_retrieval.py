"""Flickr8k dev retrieval: least-squares baseline vs InfoNCE adapters, side by side.

Frozen EfficientNet-Lite0 (image) and MiniLM (text) pooled features, served from the
polyfuse feature cache. Variants, all in one run on the same features:

* ``least squares``: ridge map from image features into the MiniLM space (ridge
  strength chosen on the validation images);
* ``InfoNCE``: linear adapter pair trained with multi-positive symmetric InfoNCE
  (dropout 0.5, weight decay 0.5, epoch chosen on validation R@5);
* ``InfoNCE + QB-norm``: the same similarities with querybank normalisation (a fixed
  bank of the training captions / images, beta = the learned logit scale);
* ``ensemble``: mean similarity of ``--seeds`` adapter pairs, then QB-norm.

Train: 1,800 Flickr8k train images x 5 captions; validation: 200 images; test: the
1,000-image dev split (5,000 captions), standard protocol in both directions.

    python benchmarks/flickr8k_retrieval.py --data ../shared/data --seeds 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--work", default="/tmp/polyfuse-bench/flickr8k_retrieval")
    parser.add_argument("--seeds", type=int, default=5, help="adapter pairs in the ensemble")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    import torch

    from polyfuse.retrieval.metrics import retrieval_metrics

    torch.manual_seed(0)
    t0 = time.perf_counter()
    split = _features(args.data, Path(args.work))
    print(f"features: {time.perf_counter() - t0:.0f} s (cached after the first run)", flush=True)

    results: dict[str, Any] = {"least squares": _least_squares(split, retrieval_metrics)}
    results.update(_adapters(split, args.seeds, args.epochs))

    _print_table(results)
    best = max(results, key=lambda k: results[k]["text_to_image"]["R@5"])
    gain = results[best]["text_to_image"]["R@5"] - results["least squares"]["text_to_image"]["R@5"]
    print(
        f"\nbest text->image R@5: {best} {results[best]['text_to_image']['R@5']:.3f}, "
        f"{gain:+.3f} over least squares"
    )
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {"command": " ".join([Path(sys.executable).name, *sys.argv]), "results": results},
                indent=2,
            )
        )
    return 0


def _features(data: str, work: Path) -> dict[str, dict[str, Any]]:
    """Pooled features per split, the image group of every caption, one row per image."""
    from polyfuse.data.manifest import Manifest
    from polyfuse.data.pooled import pair_features
    from polyfuse.datasets.flickr8k import build_alignment
    from polyfuse.encoders import build_encoder, resolve_contract

    encoders = {
        m: build_encoder(name, resolve_contract(m, m, name, {}, {}), {}).eval()
        for m, name in (("image", "efficientnet_lite0"), ("text", "minilm"))
    }
    split: dict[str, dict[str, Any]] = {}
    for name, path in build_alignment(data, work / "manifests").items():
        manifest = Manifest.load(path, ("image", "text"))
        pf = pair_features(encoders, manifest, "image_id", progress=False)
        split[name] = {"feats": pf.feats, "group": pf.group, "first": pf.first}
    return split


def _adapters(split: dict[str, dict[str, Any]], seeds: int, epochs: int) -> dict[str, Any]:
    """InfoNCE adapter pairs (epoch picked on validation R@5), raw, with QB-norm, ensembled."""
    import torch

    from polyfuse.models.alignment import AlignmentModel
    from polyfuse.retrieval.fit import fit_alignment
    from polyfuse.retrieval.metrics import querybank_normalise, retrieval_metrics

    def embed(model: AlignmentModel, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        s = split[name]  # (captions, unique images)
        return model.embed("text", s["feats"]["text"]), model.embed(
            "image", s["feats"]["image"][s["first"]]
        )

    def r5(model: AlignmentModel) -> float:
        zt, zi = embed(model, "val")
        return retrieval_metrics(zt @ zi.T, split["val"]["group"])["text_to_image"]["R@5"]

    tr, group = split["train"], split["dev"]["group"]
    out: dict[str, Any] = {}
    total_t2i = total_i2t = torch.zeros(0)
    for seed in range(seeds):
        model = AlignmentModel({"image": 1280, "text": 384}, dim=512, dropout=0.5)
        fit = fit_alignment(
            model,
            tr["feats"]["image"],
            tr["feats"]["text"],
            tr["group"],
            names=("image", "text"),
            epochs=epochs,
            score=r5,
            seed=seed,
            progress=False,
        )
        with torch.no_grad():
            zt, zi = embed(fit.model, "dev")
            bank_t, bank_i = embed(fit.model, "train")  # training queries: a fixed bank
            sim, beta = zt @ zi.T, fit.model.scale
            t2i = querybank_normalise(sim, bank_t @ zi.T, beta)
            i2t = querybank_normalise(sim.T, bank_i @ zt.T, beta).T
        if seed == 0:
            out["InfoNCE"] = retrieval_metrics(sim, group)
            out["InfoNCE + QB-norm"] = _both(retrieval_metrics, t2i, i2t, group)
            print(f"seed 0: best epoch {fit.best_epoch}, logit scale {beta:.1f}", flush=True)
        total_t2i = t2i if seed == 0 else total_t2i + t2i
        total_i2t = i2t if seed == 0 else total_i2t + i2t
    out[f"ensemble of {seeds} + QB-norm"] = _both(retrieval_metrics, total_t2i, total_i2t, group)
    return out


def _both(metrics: Any, t2i: Any, i2t: Any, group: Any) -> dict[str, Any]:
    """Text->image metrics of one similarity matrix, image->text of another."""
    res: dict[str, Any] = metrics(t2i, group)
    res["image_to_text"] = metrics(i2t, group)["image_to_text"]
    return res


def _print_table(results: dict[str, Any]) -> None:
    head = ["t2i R@1", "t2i R@5", "t2i R@10", "t2i med", "i2t R@1", "i2t R@5", "i2t R@10"]
    print("\n| method | " + " | ".join([*head, "i2t med"]) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        t, i = r["text_to_image"], r["image_to_text"]
        cells = [f"{t[k]:.3f}" for k in ("R@1", "R@5", "R@10")] + [f"{t['median_rank']:.0f}"]
        cells += [f"{i[k]:.3f}" for k in ("R@1", "R@5", "R@10")] + [f"{i['median_rank']:.0f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")


def _least_squares(split: dict[str, dict[str, Any]], metrics: Any) -> dict[str, Any]:
    """Ridge map image -> MiniLM space; ridge strength picked on validation R@5."""
    import torch
    import torch.nn.functional as F

    tr = split["train"]
    x = tr["feats"]["image"]
    mu, sd = x.mean(0), x.std(0) + 1e-6
    a = (x - mu) / sd
    b = tr["feats"]["text"]

    def fit(lam: float) -> torch.Tensor:
        return torch.linalg.solve(a.T @ a + lam * torch.eye(a.shape[1]), a.T @ b)

    def sim(w: torch.Tensor, name: str) -> torch.Tensor:
        s = split[name]
        zi = F.normalize(((s["feats"]["image"][s["first"]] - mu) / sd) @ w, dim=1)
        return F.normalize(s["feats"]["text"], dim=1) @ zi.T

    scores = {
        lam: metrics(sim(fit(lam), "val"), split["val"]["group"])["text_to_image"]["R@5"]
        for lam in (1e2, 1e3, 1e4, 3e4, 1e5, 3e5)
    }
    lam = max(scores, key=lambda k: scores[k])
    print(f"least squares: ridge {lam:g} (validation R@5 {scores[lam]:.3f})", flush=True)
    return metrics(sim(fit(lam), "dev"), split["dev"]["group"])  # type: ignore[no-any-return]


if __name__ == "__main__":
    raise SystemExit(main())
