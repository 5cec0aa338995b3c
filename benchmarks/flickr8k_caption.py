"""Flickr8k dev captioning: the transformer decoder vs a nearest-neighbour caption baseline.

Image side: frozen EfficientNet-Lite0 7x7 token maps from the feature cache. Baseline:
copy the first caption of the most similar training image (cosine of mean-pooled
features). Decoder: 2 layers, width 256, cross-attention to the 49 image tokens, trained
on the 1,800 training images x 5 captions. BLEU-1..4 and CIDEr-D against the 5 dev
references of each of the 1,000 dev images.

    python benchmarks/flickr8k_caption.py --data ../shared/data --epochs 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--beam", type=int, default=3)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    from polyfuse.data.pooled import image_tokens
    from polyfuse.encoders import build_encoder, resolve_contract
    from polyfuse.evaluation.text_metrics import bleu, cider_d
    from polyfuse.models.captioner import CaptionDecoder, Vocabulary
    from polyfuse.train.captioning import train_decoder

    src = Path(args.data) / "flickr8k"
    lines = (src / "train_2000.jsonl").read_text().splitlines()[:1800]
    train = [json.loads(x) for x in lines]
    dev = [json.loads(x) for x in (src / "dev.jsonl").read_text().splitlines()]
    contract = resolve_contract("image", "image", "efficientnet_lite0", {}, {})
    encoder = build_encoder("efficientnet_lite0", contract, {}).eval()
    t0 = time.perf_counter()
    tr_tok = image_tokens(encoder, [str(src / it["image"]) for it in train], progress=False)
    dv_tok = image_tokens(encoder, [str(src / it["image"]) for it in dev], progress=False)
    print(
        f"image tokens {tuple(tr_tok.shape)} + {tuple(dv_tok.shape)}: "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    refs = [it["captions"] for it in dev]
    results = {}

    nearest = (F.normalize(dv_tok.mean(1), dim=1) @ F.normalize(tr_tok.mean(1), dim=1).T).argmax(1)
    baseline = [train[int(j)]["captions"][0] for j in nearest]
    results["nearest-neighbour caption"] = {
        **bleu(baseline, refs),
        "CIDEr": cider_d(baseline, refs),
    }

    captions = [c for it in train for c in it["captions"]]
    image_of = torch.tensor([i for i, it in enumerate(train) for _ in it["captions"]])
    vocab = Vocabulary.build(captions, min_count=3)
    torch.manual_seed(0)  # initial weights
    decoder = CaptionDecoder(len(vocab))
    t0 = time.perf_counter()
    history = train_decoder(
        decoder,
        tr_tok,
        [vocab.encode(c, decoder.max_len) for c in captions],
        image_of,
        epochs=args.epochs,
    )
    print(
        f"decoder: vocabulary {len(vocab)}, {args.epochs} epochs in "
        f"{time.perf_counter() - t0:.0f} s, loss {history[0]:.3f} -> {history[-1]:.3f}"
    )
    greedy = [
        vocab.decode(x)
        for s in range(0, len(dev), 100)
        for x in decoder.greedy(dv_tok[s : s + 100])
    ]
    results["decoder, greedy"] = {**bleu(greedy, refs), "CIDEr": cider_d(greedy, refs)}
    beam = [vocab.decode(decoder.beam(dv_tok[i], args.beam)) for i in range(len(dev))]
    results[f"decoder, beam {args.beam}"] = {**bleu(beam, refs), "CIDEr": cider_d(beam, refs)}

    print("\n| method | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | CIDEr |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        cells = " | ".join(f"{r[k]:.3f}" for k in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr"))
        print(f"| {name} | {cells} |")
    print("\nexamples:", *[f"  {dev[i]['image']}: {beam[i]}" for i in range(3)], sep="\n")
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {"command": " ".join([Path(sys.executable).name, *sys.argv]), "results": results},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
