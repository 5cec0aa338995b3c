"""Captioning quality of an artifact: BLEU-1..4 and CIDEr-D against a manifest's references."""

from __future__ import annotations

from pathlib import Path


def evaluate_captioning(artifact: str | Path, data: str | Path, beam: int = 3) -> dict[str, float]:
    """BLEU-1..4 and CIDEr-D of the artifact's captions against the manifest's references
    (all ``text`` rows of an image are its references)."""
    from polyfuse.data.manifest import Manifest
    from polyfuse.evaluation.text_metrics import bleu, cider_d
    from polyfuse.inference.captioner import Captioner

    captioner = Captioner(artifact)
    image, text = captioner.info["roles"]["image"], captioner.info["roles"]["text"]
    refs: dict[str, list[str]] = {}
    for r in Manifest.load(data, (image, text)).rows:
        if image in r.values and text in r.values:
            refs.setdefault(str(r.values[image]), []).append(str(r.values[text]))
    base = Path(data).parent
    paths = [str(p if Path(p).is_absolute() else base / p) for p in refs]
    hyps = captioner.caption(paths, beam=beam)
    scores = bleu(hyps, list(refs.values()))
    return {**scores, "CIDEr": cider_d(hyps, list(refs.values())), "n": float(len(paths))}
