"""Drift benchmark: polyfuse monitor vs a confidence-only baseline and the peers, side by side.

On the AV-digits model (clean variant, `examples/av_digits/fused.yaml`), the unseen test
speaker's recordings are split by take (with their MNIST images): even takes are the
reference, odd takes the stream (see `split_test`). Each shift is applied to every stream
row, the model observes the shifted stream once, and windows of 50 / 100 / 200 samples
are drawn from it (``--draws`` random windows per size, without replacement inside a
window). The stream
pool has 250 recordings; a window of 500 would repeat every recording, so 500 is left out.

Shifts (held-apart data; nothing is tuned on them):

- image: gamma 2.2, warm colour cast (the grey model sees it as brightness), resolution
  drop (14x14 images), Gaussian blur (sigma 1), JPEG quality 8;
- audio: band-limited to 1 kHz (resampled to 2 kHz and back: the telephone-like client),
  ESC-50 environmental sound mixed in at 0 dB (test-side clips), pure noise at a low level
  (a dead microphone);
- a 30 % missing-audio surge; a class-prior change (digits 0-2 make 70 % of the window);
- none (unshifted windows: the false-alarm rate).

Compared per window: ``polyfuse`` (`polyfuse.monitor.assess`), ``confidence`` (KS test of
the fused top-class probability, the baseline that watches confidence only), and the peers
(Evidently, alibi-detect) run by ``benchmarks/peers/drift_peer.py`` in their own virtual
environments (``benchmarks/peers/setup.sh``) on the same numbers: each modality's input
statistics, embeddings and head probabilities, and the fused probabilities.

``--model flickr8k`` runs the same comparison on the Flickr8k image + caption concepts model
(multi-label) with image shifts, captions from another domain, a missing-caption surge and
a class-prior change, at windows 50 / 100 / 200 / 500 (see `drift_flickr8k.py`).

Printed: detection rate per shift and window size, false-alarm rate on unshifted windows,
correct-modality rate, seconds per window, and the label-free accuracy estimate against the
window's true accuracy.

    python benchmarks/monitor_drift.py --data ../shared/data --work /tmp/monitor-bench
    python benchmarks/monitor_drift.py --model flickr8k --work /tmp/monitor-bench-flickr
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "benchmarks" / "peers"
IMAGE_SHIFTS = ("image_gamma", "image_colour", "image_lowres", "image_blur", "image_jpeg")
AUDIO_SHIFTS = ("audio_bandlimit", "audio_noise", "audio_dead")
SHIFTS = ("none", *IMAGE_SHIFTS, *AUDIO_SHIFTS, "missing_audio", "class_prior")


def expected(shift: str) -> str | None:
    """The modality a detector should name for ``shift`` (``prediction`` for a prior change)."""
    if shift in IMAGE_SHIFTS:
        return "image"
    if shift in AUDIO_SHIFTS or shift == "missing_audio":
        return "audio"
    if shift == "class_prior":
        return "prediction"
    return None


# ---------------------------------------------------------------- data and shifts
def build_model(data: Path, work: Path, artifact: Path | None) -> tuple[Path, Path]:
    """The clean AV-digits build and a trained fused model (trained here unless given)."""
    import yaml

    from polyfuse.core.config import Config
    from polyfuse.datasets.av_digits import AVDigitsSpec, build
    from polyfuse.train import Trainer

    manifests = build(data, work / "clean", AVDigitsSpec(variant="clean"), progress=False)
    if artifact is None:
        artifact = work / "model"
        if not (artifact / "artifact.json").exists():
            cfg = yaml.safe_load((ROOT / "examples" / "av_digits" / "fused.yaml").read_text())
            print("training the AV-digits fused model ...", flush=True)
            Trainer(Config.from_dict(cfg), artifact, progress=False, reference=False).fit(
                manifests["train"], manifests["val"]
            )
    return artifact, manifests["test"]


def split_test(test: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Reference (even takes) and stream (odd takes) rows of the unseen speaker.

    Interleaved, not takes 0-24 against 25-49: FSDD recorded the takes in sessions, and
    the later takes of the test speaker are quieter (the RMS level moved; every polyfuse
    window of 200 flagged the audio of that split), which is a real shift, not an
    unshifted stream."""
    rows = [json.loads(line) for line in test.open()]
    for r in rows:
        r["image"] = str((test.parent / r["image"]).resolve())
        r["audio"] = str((test.parent / r["audio"]).resolve())
    take = lambda r: int(r["id"].split("-")[0].split("_")[2])  # noqa: E731
    return [r for r in rows if take(r) % 2 == 0], [r for r in rows if take(r) % 2 == 1]


def _esc_test_clips(data: Path) -> list[np.ndarray]:
    import soundfile as sf

    from polyfuse.datasets.av_digits import noise_split

    clips = []
    for wav in sorted((data / "esc50_8k").glob("*.wav")):
        if noise_split(wav.name) != "test":
            continue  # the AV-digits build's test-side clips only
        x, _ = sf.read(wav, dtype="float32", always_2d=True)
        x = x.mean(1)
        if np.sqrt(np.mean(x**2)) >= 1e-4:
            clips.append(x)
    return clips


def _image_shift(name: str) -> Callable[[np.ndarray], np.ndarray]:
    from PIL import Image, ImageFilter

    def gamma(x: np.ndarray) -> np.ndarray:
        return (255.0 * (x / 255.0) ** 2.2).astype(np.uint8)

    def colour(x: np.ndarray) -> np.ndarray:
        rgb = np.stack([x * 1.0, x * 0.85, x * 0.6], axis=-1) + np.array([40.0, 20.0, 0.0])
        return np.clip(rgb, 0, 255).astype(np.uint8)

    def lowres(x: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(x).resize((14, 14), Image.Resampling.BILINEAR))

    def blur(x: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(x).filter(ImageFilter.GaussianBlur(1.0)))

    return {
        "image_gamma": gamma,
        "image_colour": colour,
        "image_lowres": lowres,
        "image_blur": blur,
    }[name]


def shifted_rows(
    shift: str, rows: list[dict[str, Any]], folder: Path, clips: list[np.ndarray], seed: int
) -> list[dict[str, Any]]:
    """``rows`` with ``shift`` applied to every row (files written under ``folder``)."""
    import soundfile as sf
    from PIL import Image
    from scipy.signal import resample_poly

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, original in enumerate(rows):
        r = dict(original)
        if shift in IMAGE_SHIFTS:
            img = np.asarray(Image.open(r["image"]).convert("L"))
            path = folder / f"{i}.{'jpg' if shift == 'image_jpeg' else 'png'}"
            if shift == "image_jpeg":
                Image.fromarray(img).save(path, quality=8)
            else:
                Image.fromarray(_image_shift(shift)(img)).save(path)
            r["image"] = str(path)
        elif shift in AUDIO_SHIFTS:
            x, rate = sf.read(r["audio"], dtype="float32")
            if shift == "audio_bandlimit":
                y = resample_poly(resample_poly(x, 1, 4), 4, 1)[: x.size]
            elif shift == "audio_noise":
                clip = clips[int(rng.integers(len(clips)))]
                start = int(rng.integers(0, max(1, clip.size - x.size)))
                n = np.resize(clip[start : start + x.size], x.size)
                y = x + n * np.sqrt((np.mean(x**2) + 1e-12) / (np.mean(n**2) + 1e-12))
                y = y / max(1.0, float(np.abs(y).max()))
            else:  # dead microphone: low-level hiss, no speech
                y = rng.normal(0.0, 0.003, x.size)
            path = folder / f"{i}.wav"
            sf.write(path, y.astype(np.float32), rate, subtype="PCM_16")
            r["audio"] = str(path)
        elif shift == "missing_audio" and rng.random() < 0.3:
            r.pop("audio")
        out.append(r)
    return out


def write_manifest(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------- windows
def favoured(obs: Any) -> np.ndarray:
    """Rows the AV-digits class-prior shift over-samples: digits 0-2."""
    out: np.ndarray = np.asarray(obs.labels) <= 2
    return out


def window_indices(
    obs: Any,
    shift: str,
    size: int,
    draws: int,
    rng: np.random.Generator,
    prior: Callable[[Any], np.ndarray] = favoured,
) -> list[np.ndarray]:
    """``draws`` random windows of ``size`` rows (class-prior windows: 70 % of the rows
    ``prior`` favours, as many as there are)."""
    n = len(obs)
    out = []
    for _ in range(draws):
        if shift == "class_prior":
            low = np.flatnonzero(prior(obs))
            high = np.flatnonzero(~prior(obs))
            k = min(round(0.7 * size), len(low))
            idx = np.concatenate(
                [rng.choice(low, k, replace=False), rng.choice(high, size - k, replace=False)]
            )
        else:
            idx = rng.choice(n, size, replace=False)
        out.append(np.sort(idx))
    return out


def blocks(obs: Any) -> dict[str, np.ndarray]:
    """The feature blocks the peers see (NaN rows where a modality is absent)."""
    out = {}
    for m, v in obs.modalities.items():
        absent = ~v.present
        for key, arr in (
            ("statistics", v.statistics),
            ("embedding", v.embedding),
            ("probs", v.probs),
        ):
            a = np.array(arr, dtype=np.float64)
            a[absent] = np.nan
            out[f"{m}/{key}"] = a
    out["prediction/probs"] = np.asarray(obs.probs, dtype=np.float64)
    return out


def run_peer(
    peer: str, python: str, ref: Any, windows: list[Any], work: Path
) -> list[dict[str, Any]] | str:
    """Per-window results of a peer, or the reason it could not run."""
    arrays: dict[str, Any] = {}
    names = list(blocks(ref))
    for b, a in blocks(ref).items():
        arrays[f"ref/{b}"] = a
    for i, w in enumerate(windows):
        for b, a in blocks(w).items():
            arrays[f"win{i}/{b}"] = a
    arrays["blocks"] = np.array(names)
    inp, out = work / f"peer_{peer}_in.npz", work / f"peer_{peer}_out.json"
    np.savez(inp, **arrays)
    cmd = [
        python,
        str(PEERS / "drift_peer.py"),
        "--peer",
        peer,
        "--input",
        str(inp),
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode
        return f"failed: {last}"
    result: list[dict[str, Any]] = json.loads(out.read_text())["windows"]
    return result


def _log_p(p: float) -> float:
    return float(-np.log10(max(p, 1e-300)))


def min_p(result: Any) -> float:
    """Smallest p-value over an assessment's decisions, scaled back to one false-alarm
    budget (the decisions share alpha by Bonferroni)."""
    decisions = [*result.modalities.values(), *result.missing.values(), result.prediction]
    return min(1.0, len(decisions) * min(d.p_value for d in decisions))


def peer_score(window: dict[str, Any]) -> float:
    """A peer window's drift score: -log10 of its smallest block p-value (Bonferroni over
    blocks) where it reports p-values, else the largest block score (Evidently's share of
    drifted columns or classifier AUC) offset so it ranks after any p-value."""
    ps = [r["p_value"] for r in window["blocks"].values() if r.get("p_value") is not None]
    if ps:
        return _log_p(min(1.0, len(window["blocks"]) * min(ps)))
    scores = [r["score"] for r in window["blocks"].values() if r.get("score") is not None]
    return max(scores, default=0.0)


def peer_named(window: dict[str, Any]) -> tuple[bool, set[str]]:
    """(drift, modalities named) from a peer window result (any drifted block counts)."""
    named = {b.split("/")[0] for b, r in window["blocks"].items() if r.get("drift")}
    return bool(named), named


# ---------------------------------------------------------------- main
def main() -> None:  # noqa: PLR0915 - one linear script
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/monitor-bench")
    ap.add_argument("--model", choices=("av_digits", "flickr8k"), default="av_digits")
    ap.add_argument("--artifact", help="a trained model of --model (default: train one)")
    ap.add_argument("--sizes", help="window sizes (default 50,100,200; flickr8k adds 500)")
    ap.add_argument("--draws", type=int, default=20, help="random windows per shift and size")
    ap.add_argument("--shifts", help="comma-separated (default: every shift of --model)")
    ap.add_argument(
        "--peers",
        default="evidently,alibi",
        help="peers to run (their venvs: /work/peers/NAME or --peer-python NAME=PATH)",
    )
    ap.add_argument("--peer-python", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--json", dest="json_out", help="write every row here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from scipy.stats import ks_2samp

    from polyfuse.data.manifest import Manifest
    from polyfuse.inference.predict import Predictor
    from polyfuse.monitor import ReferenceProfile, assess, build_profile, observe

    data, work = Path(args.data), Path(args.work)
    t_start = time.perf_counter()
    given = Path(args.artifact) if args.artifact else None
    if args.model == "flickr8k":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import drift_flickr8k as setup

        artifact, ref_rows, stream_rows = setup.build_model(data, work, given)
        expect, prior, all_shifts = setup.expected, setup.favoured, setup.SHIFTS
        shift_rows = lambda shift, rows, folder: setup.shifted_rows(  # noqa: E731
            shift, rows, folder, data, seed=1
        )
        default_sizes = "50,100,200,500"
    else:
        artifact, test = build_model(data, work, given)
        ref_rows, stream_rows = split_test(test)
        clips = _esc_test_clips(data)
        expect, prior, all_shifts = expected, favoured, SHIFTS
        shift_rows = lambda shift, rows, folder: shifted_rows(  # noqa: E731
            shift, rows, folder, clips, seed=1
        )
        default_sizes = "50,100,200"
    predictor = Predictor.load(artifact, device="cpu")
    label = predictor.artifact.config.label
    ref_manifest = Manifest.load(
        write_manifest(work / "reference.jsonl", ref_rows), predictor.modalities, label
    )
    profile: ReferenceProfile = build_profile(predictor, ref_manifest, progress=False)
    outputs = profile.observations.outputs
    sizes = [int(s) for s in (args.sizes or default_sizes).split(",")]
    shifts = args.shifts.split(",") if args.shifts else list(all_shifts)
    pythons = {p: f"/work/peers/{p}/bin/python" for p in args.peers.split(",") if p}
    pythons.update(dict(kv.split("=", 1) for kv in args.peer_python))
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    peer_notes: dict[str, str] = {}
    for shift in shifts:
        stream = shift_rows(shift, stream_rows, work / "shifts" / shift)
        manifest = Manifest.load(
            write_manifest(work / "shifts" / f"{shift}.jsonl", stream), predictor.modalities, label
        )
        obs = observe(predictor, manifest, vocab=profile.vocab, progress=False)
        for size in sizes:
            spans = window_indices(obs, shift, size, args.draws, rng, prior)
            windows = [obs.take(idx) for idx in spans]
            conf_ref = outputs.confidence(profile.observations.probs)
            for i, w in enumerate(windows):
                t0 = time.perf_counter()
                result = assess(profile, w)
                ours_s = time.perf_counter() - t0
                truth = float(w.correct.mean())
                cal = profile.calibration
                est = None if cal is None else cal.estimate(w, result.drifted)
                named = set(result.drifted) | (
                    {"prediction"} if result.prediction.drift and not result.drifted else set()
                )
                rows.append(
                    {
                        "shift": shift,
                        "size": size,
                        "window": i,
                        "method": "polyfuse",
                        "drift": result.drift,
                        "named": sorted(named),
                        "seconds": ours_s,
                        "accuracy": truth,
                        "estimate": None if est is None else est.value,
                        "cbpe": None if est is None else est.cbpe,
                        "atc": None if est is None else est.atc,
                        "agreement": None if est is None else est.agreement,
                        "cross_modal": None if est is None else est.cross_modal,
                        "score": _log_p(min_p(result)),
                    }
                )
                t0 = time.perf_counter()
                p = float(ks_2samp(conf_ref, outputs.confidence(w.probs)).pvalue)
                rows.append(
                    {
                        "shift": shift,
                        "size": size,
                        "window": i,
                        "method": "confidence",
                        "drift": p < 0.05,
                        "named": [],
                        "seconds": time.perf_counter() - t0,
                        "score": _log_p(p),
                    }
                )
            for peer, python in pythons.items():
                if peer in peer_notes:
                    continue
                if not Path(python).exists():
                    peer_notes[peer] = (
                        f"not installed ({python} missing: run benchmarks/peers/setup.sh)"
                    )
                    continue
                res = run_peer(peer, python, profile.observations, windows, work)
                if isinstance(res, str):
                    peer_notes[peer] = res
                    continue
                for i, wr in enumerate(res):
                    drift, named = peer_named(wr)
                    rows.append(
                        {
                            "shift": shift,
                            "size": size,
                            "window": i,
                            "method": peer,
                            "drift": drift,
                            "named": sorted(named),
                            "seconds": wr["seconds"],
                            "score": peer_score(wr),
                        }
                    )
        print(f"  {shift}: observed {len(obs)} rows", flush=True)
    report(rows, sizes, shifts, peer_notes, expect)
    print(f"{time.perf_counter() - t_start:.0f} s in all")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"rows": rows, "peers": peer_notes}, indent=1))


def report_equal_far(
    rows: list[dict[str, Any]], sizes: list[int], shifts: list[str], methods: list[str]
) -> None:
    """Detection rates with every method's threshold set to a 5 % false-alarm rate."""
    print("\nat equal false-alarm rate: each method's score threshold set to the 95th percentile")
    print("of its unshifted windows (FAR 5 %), detection rate per shift:")
    for size in sizes:
        print(f"\nwindow {size}")
        print("| shift | " + " | ".join(methods) + " |")
        print("|---" * (len(methods) + 1) + "|")
        cut = {}
        for m in methods:
            null = [
                r["score"]
                for r in rows
                if r["shift"] == "none" and r["size"] == size and r["method"] == m
            ]
            cut[m] = float(np.quantile(null, 0.95)) if null else float("inf")
        for shift in shifts:
            if shift == "none":
                continue
            cells = []
            for m in methods:
                rs = [
                    r
                    for r in rows
                    if r["shift"] == shift and r["size"] == size and r["method"] == m
                ]
                cells.append(f"{np.mean([r['score'] > cut[m] for r in rs]):.2f}" if rs else "-")
            print(f"| {shift} | " + " | ".join(cells) + " |")


def report(
    rows: list[dict[str, Any]],
    sizes: list[int],
    shifts: list[str],
    notes: dict[str, str],
    expect: Callable[[str], str | None] = expected,
) -> None:
    """Detection / false-alarm / correct-modality / time tables and the accuracy estimate."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for peer, note in notes.items():
        print(f"peer {peer}: {note}")
    for size in sizes:
        print(
            f"\nwindow {size}: detection rate (false-alarm rate for 'none'); "
            "correct modality among detections"
        )
        print("| shift | " + " | ".join(methods) + " |")
        print("|---" * (len(methods) + 1) + "|")
        for shift in shifts:
            cells = []
            for m in methods:
                rs = [
                    r
                    for r in rows
                    if r["shift"] == shift and r["size"] == size and r["method"] == m
                ]
                if not rs:
                    cells.append("-")
                    continue
                rate = sum(r["drift"] for r in rs) / len(rs)
                want = expect(shift)
                hits = [r for r in rs if r["drift"]]
                if want and hits and m != "confidence":
                    ok = sum(
                        want in r["named"]
                        and (want == "prediction" or len(set(r["named"]) - {"prediction"}) == 1)
                        for r in hits
                    ) / len(hits)
                    cells.append(f"{rate:.2f} ({ok:.2f})")
                else:
                    cells.append(f"{rate:.2f}")
            print(f"| {shift} | " + " | ".join(cells) + " |")
        secs = {
            m: statistics.median(
                r["seconds"] for r in rows if r["size"] == size and r["method"] == m
            )
            for m in methods
        }
        print("median seconds per window: " + ", ".join(f"{m} {s:.3f}" for m, s in secs.items()))
    report_equal_far(rows, sizes, shifts, methods)
    print("\nlabel-free accuracy estimate (polyfuse) vs true window accuracy, window 200 if run:")
    size = 200 if 200 in sizes else sizes[-1]
    print(
        "| shift | true accuracy | estimate | mean error | max over-estimate "
        "| CBPE error | ATC error |"
    )
    print("|---|---|---|---|---|---|---|")
    for shift in shifts:
        rs = [
            r
            for r in rows
            if r["shift"] == shift
            and r["size"] == size
            and r["method"] == "polyfuse"
            and r["estimate"] is not None
        ]
        if not rs:
            continue
        err = [r["estimate"] - r["accuracy"] for r in rs]
        atc = [r["atc"] - r["accuracy"] for r in rs if r["atc"] is not None]
        print(
            f"| {shift} | {statistics.mean(r['accuracy'] for r in rs):.3f} | "
            f"{statistics.mean(r['estimate'] for r in rs):.3f} | {statistics.mean(err):+.3f} | "
            f"{max(err):+.3f} | {statistics.mean(r['cbpe'] - r['accuracy'] for r in rs):+.3f} | "
            + (f"{statistics.mean(atc):+.3f} |" if atc else "- (too few reference errors) |")
        )


if __name__ == "__main__":
    main()
