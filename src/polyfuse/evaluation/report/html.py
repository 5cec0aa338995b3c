"""The evaluation report: one self-contained HTML file (inline SVG charts, embedded media).

It opens offline in any browser: no scripts, no external styles, fonts or images.
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from polyfuse.core.errors import PolyfuseError
from polyfuse.evaluation.analysis import Analysis
from polyfuse.evaluation.report import media, svg
from polyfuse.modalities.audio import AudioContract
from polyfuse.modalities.base import AbsentInputError
from polyfuse.modalities.video import VideoClip

CSS = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:16px 24px;color:#222}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;border-bottom:1px solid #ddd;margin-top:32px}
h3{font-size:15px;margin-bottom:6px}.meta{color:#666;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f6f8}
td:first-child,th:first-child{text-align:left}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;border-radius:6px;
padding:8px 14px;min-width:130px}.card b{display:block;font-size:20px}
.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.flag{color:#b03a2e;font-weight:bold}.ok{color:#1e8449}
.example{border:1px solid #ddd;border-radius:6px;padding:6px;margin:4px;display:inline-block;
vertical-align:top;font-size:12px;max-width:330px}.example img{image-rendering:pixelated}
.text{font-family:ui-monospace,monospace;font-size:12px}nav a{margin-right:10px;font-size:13px}
details{margin:6px 0}
"""

SECTIONS = (
    ("summary", "Summary"),
    ("classes", "Classes and calibration"),
    ("ablation", "Missing modalities"),
    ("contributions", "Modality contributions"),
    ("agreement", "Agreement"),
    ("failures", "Failures"),
    ("slices", "Slices"),
    ("robustness", "Robustness to corruption"),
    ("sync", "Sound and picture sync"),
    ("saliency", "Saliency"),
    ("bad-rows", "Bad rows"),
)


def write_report(analysis: Analysis, path: str | Path, examples: int = 4) -> Path:
    """Render ``analysis`` to ``path`` (HTML) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(analysis, examples), encoding="utf-8")
    return out


def render_report(analysis: Analysis, examples: int = 4) -> str:
    """The report as an HTML string.

    Args:
        examples: examples shown per failure category.
    """
    a = analysis
    info = a.info
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>polyfuse evaluation: {escape(Path(info['artifact']).name or 'model')}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>polyfuse evaluation report</h1>",
        f"<div class='meta'>artifact <code>{escape(info['artifact'])}</code> &middot; data "
        f"<code>{escape(info['data'])}</code> &middot; {info['n']} samples &middot; "
        f"{escape(info['fusion'])} over {escape(', '.join(info['modalities']))} &middot; "
        f"{_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}</div>",
        "<nav>" + "".join(f"<a href='#{k}'>{t}</a>" for k, t in SECTIONS) + "</nav>",
    ]
    parts += _summary(a)
    parts += _classes(a)
    parts += _ablation(a)
    parts += _contributions(a)
    parts += _agreement(a)
    parts += _failures(a, examples)
    parts += _slices(a)
    parts += _robustness(a)
    parts += _sync(a)
    parts += _saliency(a)
    parts += _bad_rows(a)
    parts.append("</body></html>")
    return "\n".join(parts)


def escape(x: object) -> str:
    """HTML-escaped text of ``x`` (shared by the drift report)."""
    return html.escape(str(x))


def number(x: Any, digits: int = 3) -> str:
    """A value for a table cell: floats to ``digits`` places, ``-`` for None."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return escape(x)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An HTML table; ``rows`` hold ready HTML cells (shared by the drift report)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _h2(key: str) -> str:
    return f"<h2 id='{key}'>{dict(SECTIONS)[key]}</h2>"


def _summary(a: Analysis) -> list[str]:
    m = a.metrics
    ci = m.get("confidence_intervals", {})
    cards = []
    for key, label in (
        ("accuracy", "accuracy"),
        ("macro_f1", "macro F1"),
        ("micro_f1", "micro F1"),
    ):
        if key in m:
            band = ci.get(key)
            extra = f"<small>95% CI {band['low']:.3f} - {band['high']:.3f}</small>" if band else ""
            cards.append(f"<div class='card'>{label}<b>{m[key]:.3f}</b>{extra}</div>")
    auc = (m.get("roc_auc") or {}).get("macro")
    if auc is not None:
        cards.append(f"<div class='card'>ROC-AUC (one-vs-rest)<b>{auc:.3f}</b></div>")
    if "calibration" in m:
        cards.append(f"<div class='card'>ECE<b>{m['calibration']['ece']:.3f}</b></div>")
    for key in ("log_loss", "mae", "rmse", "r2"):
        if key in m:
            cards.append(f"<div class='card'>{key}<b>{m[key]:.3f}</b></div>")
    cards.append(f"<div class='card'>samples<b>{m.get('n', 0)}</b>{len(a.bad_rows)} bad rows</div>")
    return [_h2("summary"), "<div class='cards'>" + "".join(cards) + "</div>"]


def _classes(a: Analysis) -> list[str]:
    m = a.metrics
    out = [_h2("classes")]
    per = m.get("per_class")
    if not per:
        return [*out, "<p>Not a classification task.</p>"]
    aucs = (m.get("roc_auc") or {}).get("per_class", {})
    rows = [
        (
            escape(k),
            number(v["precision"]),
            number(v["recall"]),
            number(v["f1"]),
            number(aucs.get(k)),
            v["support"],
        )
        for k, v in per.items()
    ]
    charts = []
    if "confusion_matrix" in m:
        labels = m["labels"]
        charts.append(
            svg.heatmap(
                m["confusion_matrix"],
                labels,
                labels,
                "Confusion matrix",
                row_label="true",
                col_label="predicted",
            )
        )
    if "calibration" in m:
        cal = m["calibration"]
        charts.append(
            svg.reliability_diagram(
                cal["bins"], f"Reliability (ECE {cal['ece']:.3f}, MCE {cal['mce']:.3f})"
            )
        )
    out.append(
        "<div class='row'>"
        + table(["class", "precision", "recall", "F1", "ROC-AUC", "support"], rows)
        + "".join(charts)
        + "</div>"
    )
    return out


def _ablation(a: Analysis) -> list[str]:
    ab = a.ablation
    if ab is None:
        return [_h2("ablation"), "<p>Not computed.</p>"]
    metric = ab["metric"]
    out = [
        _h2("ablation"),
        (
            "<p>Every non-empty subset of modalities shown to the model, the others masked as "
            "missing (encoders ran once). <i>Late-fusion reference</i>: the mean of the "
            "model's own unimodal heads over the same subset.</p>"
        ),
    ]
    rows = [
        (
            escape(k),
            number(v.get(metric)),
            _ci(v.get("confidence_intervals", {}).get(metric)),
            number(v.get("macro_f1")),
            number(ab["late_fusion_reference"][k]),
        )
        for k, v in sorted(ab["subsets"].items(), key=lambda kv: (-len(kv[1]["modalities"]), kv[0]))
    ]
    chart = svg.bar_chart(
        {k: v[metric] for k, v in ab["subsets"].items()},
        f"{metric} by modality subset",
        low=0.0 if metric == "accuracy" else None,
        high=1.0 if metric == "accuracy" else None,
    )
    removed = list(range(len(ab["curve"])))
    curve = svg.line_chart(
        {
            "model": (removed, ab["curve"]),
            "late-fusion reference": (removed, ab["reference_curve"]),
        },
        f"mean {metric} vs modalities removed",
        x_label="modalities removed",
    )
    out.append(
        "<div class='row'>"
        + table(["subset", metric, "95% interval", "macro F1", "late-fusion ref."], rows)
        + chart
        + curve
        + "</div>"
    )
    out.append(
        f"<p>Relative robustness (area under the curve, MultiBench): "
        f"<b>{ab['relative_robustness']:.3f}</b>; effective robustness (vs the late-fusion "
        f"reference shifted to the same full-modality score): "
        f"<b>{ab['effective_robustness']:+.3f}</b>.</p>"
    )
    return out


def _contributions(a: Analysis) -> list[str]:
    c = a.contributions
    if c is None:
        return [_h2("contributions"), "<p>Not computed.</p>"]
    out = [
        _h2("contributions"),
        (
            "<p>Exact Shapley values over modalities, per sample, with absent modalities "
            "masked the way the model handles missing input; the empty coalition is the "
            "model's prior. "
            "<i>Share</i>: each modality's part of the total |Shapley| mass.</p>"
        ),
    ]
    charts = []
    rows = []
    for vf, entry in c["value_functions"].items():
        charts.append(svg.bar_chart(entry["share"], f"Shapley share ({vf})", low=0.0, high=1.0))
        for mod in c["modalities"]:
            rows.append(
                (
                    escape(vf),
                    escape(mod),
                    number(entry["mean"][mod], 4),
                    number(entry["share"][mod]),
                )
            )
    fw = c.get("fusion_weights")
    if fw:
        charts.append(
            svg.bar_chart(fw["mean"], f"fusion's own {fw['kind']} (mean)", low=0.0, high=1.0)
        )
    perm = c["permutation_importance"]
    charts.append(
        svg.bar_chart(
            {m: v["mean"] for m, v in perm["drop"].items()},
            f"permutation importance ({perm['metric']} drop)",
            errors={m: v["std"] for m, v in perm["drop"].items()},
        )
    )
    out.append("<div class='row'>" + "".join(charts) + "</div>")
    out.append(table(["value function", "modality", "mean Shapley", "share"], rows))
    eff = ", ".join(
        f"{vf}: {e['efficiency_max_error']:.1e}" for vf, e in c["value_functions"].items()
    )
    out.append(f"<p>Efficiency check, max |sum phi - (v(all) - v(none))| per sample: {eff}.</p>")
    lp = c["value_functions"].get("log_prob")
    if lp and "per_class" in lp:
        groups = {k: v["mean"] for k, v in lp["per_class"].items()}
        out.append(
            svg.grouped_bars(
                groups,
                "mean Shapley value (log-probability) per true class",
                width=max(420, 46 * len(groups) + 60),
            )
        )
    return out


def _agreement(a: Analysis) -> list[str]:
    out = [_h2("agreement")]
    ag = a.agreement
    if not ag:
        return [*out, "<p>Agreement needs a multi-class model.</p>"]
    labels = a.metrics.get("labels", [])
    rows, charts = [], []
    for pair, v in ag["pairs"].items():
        x, y = pair.split("|")
        rows.append(
            (
                escape(f"{x} vs {y}"),
                v["n"],
                number(v["agreement"]),
                number(v["kappa"]),
                v["contradictions"],
                number(v["contradiction_rate"]),
            )
        )
        charts.append(
            svg.heatmap(
                v["confusion"],
                labels,
                labels,
                f"{x} (rows) vs {y} (columns)",
                row_label=x,
                col_label=y,
            )
        )
    out.append(table(["pair", "n", "agreement", "Cohen's kappa", "contradictions", "rate"], rows))
    if "fleiss_kappa" in ag:
        out.append(
            f"<p>Fleiss' kappa over all modalities: <b>{ag['fleiss_kappa']:.3f}</b> "
            f"(n = {ag['fleiss_n']}).</p>"
        )
    out.append("<div class='row'>" + "".join(charts) + "</div>")
    out.append(
        f"<p>Contradictions: both modalities at least {ag['confident_threshold']:.0%} confident "
        f"and disagreeing; rate {ag['contradiction_rate']:.3f}.</p>"
    )
    if ag["contradictions"]:
        mods = ag["contradictions"][0]["modalities"]
        crow = [
            (
                escape(r["id"]),
                r["row"],
                escape(r.get("true", "")),
                *(f"{escape(r[m]['label'])} ({r[m]['confidence']:.2f})" for m in r["modalities"]),
            )
            for r in ag["contradictions"][:50]
        ]
        out.append(
            "<details><summary>contradicting samples</summary>"
            + table(["id", "row", "true", *mods], crow)
            + "</details>"
        )
    return out


def _inputs(a: Analysis, row: int, overlay: Mapping[str, Any] | None = None) -> str:
    """Embedded inputs of manifest row ``row`` (1-based)."""
    ds = a.dataset
    if ds is None:
        return ""
    cells = []
    values = ds.rows[row - 1].values
    for m, contract in ds.contracts.items():
        if m not in values:
            cells.append(f"<div>{escape(m)}: <i>missing</i></div>")
            continue
        try:
            raw = ds.load(row - 1, m)
        except AbsentInputError as err:
            cells.append(f"<div>{escape(m)}: <i>missing</i> ({escape(err.reason)})</div>")
            continue
        except PolyfuseError as err:
            cells.append(f"<div>{escape(m)}: unreadable ({escape(err.message)})</div>")
            continue
        if contract.kind == "image":
            cells.append(f"<div>{media.image_tag(raw)}</div>")
        elif isinstance(contract, AudioContract):
            cells.append(f"<div>{media.audio_tag(raw, contract.sample_rate)}</div>")
        elif contract.kind == "text":
            cells.append(f"<div>{media.text_tag(raw)}</div>")
        elif isinstance(raw, VideoClip):
            cells.append(f"<div>{media.frames_tag(raw.frames, raw.timestamps)}</div>")
        else:
            cells.append(f"<div>{media.series_tag(raw)}</div>")
    return "".join(cells)


def _failures(a: Analysis, examples: int) -> list[str]:
    out = [_h2("failures")]
    f = a.failures
    if not f:
        return [*out, "<p>Failure analysis needs a multi-class model.</p>"]
    out.append(f"<p>{f['n_errors']} errors, categorised by which unimodal heads were right.</p>")
    if f["categories"]:
        out.append(svg.bar_chart(f["categories"], "errors by cause", width=560))
    if f["clusters"]:
        rows = [
            (
                c["cluster"],
                c["size"],
                escape(", ".join(f"{k} ({n})" for k, n in c["top_true"])),
                escape(", ".join(f"{k} ({n})" for k, n in c["top_predicted"])),
                escape(c["top_category"]),
            )
            for c in f["clusters"]
        ]
        out.append("<h3>Clusters of errors (k-means on fused embeddings)</h3>")
        out.append(table(["cluster", "size", "true labels", "predicted", "main cause"], rows))
    for cat in f["categories"]:
        shown = [e for e in f["errors"] if e["category"] == cat][:examples]
        out.append(f"<h3>{escape(cat)}</h3><div>")
        for e in shown:
            uni = ", ".join(f"{m}: {escape(v)}" for m, v in e["unimodal"].items())
            out.append(
                f"<div class='example'><b>{escape(e['id'])}</b> (row {e['row']})<br>true "
                f"<b>{escape(e['true'])}</b>, predicted <b>{escape(e['predicted'])}</b><br>{uni}"
                f"{_inputs(a, e['row'])}</div>"
            )
        out.append("</div>")
    return out


def _slices(a: Analysis) -> list[str]:
    out = [_h2("slices")]
    if not a.slices:
        return [*out, "<p>No metadata column to slice on (pass <code>--slices COL</code>).</p>"]
    for col, s in a.slices.items():
        metric = s["metric"]
        flag = (
            f"<span class='flag'>worst-slice gap {s['gap']:.3f} ({escape(s['worst'])})</span>"
            if s["flagged"]
            else f"<span class='ok'>worst-slice gap {s['gap']:.3f}</span>"
        )
        mods = a.info["modalities"]
        rows = [
            (
                escape(v),
                m["n"],
                number(m.get(metric)),
                number(m.get("macro_f1")),
                *(number(m["shapley"].get(x), 3) for x in mods),
            )
            for v, m in s["slices"].items()
        ]
        out.append(f"<h3>{escape(col)}: {flag}</h3>")
        out.append(table(["value", "n", metric, "macro F1", *(f"Shapley {x}" for x in mods)], rows))
    return out


def _sync(a: Analysis) -> list[str]:
    out = [_h2("sync")]
    s = a.sync
    if s is None:
        return [*out, "<p>The model has no video modality.</p>"]
    median = "-" if s.median_abs_offset_ms is None else f"{s.median_abs_offset_ms:.0f} ms"
    flag = (
        f"<span class='flag'>{s.out_of_sync} out of sync</span>"
        if s.out_of_sync
        else "<span class='ok'>all in sync</span>"
    )
    out.append(
        f"<p>{s.checked} videos checked ({escape(s.method)} estimate), {s.no_sound} without "
        f"sound; median offset {median}; threshold {s.threshold_ms:g} ms: {flag}.</p>"
    )
    groups = [("in sync", s.in_sync_metrics), ("out of sync", s.out_of_sync_metrics)]
    shown = [(g, m) for g, m in groups if m]
    if shown:
        keys = [k for k in shown[0][1] if isinstance(shown[0][1][k], int | float)][:4]
        out.append(
            table(["videos", *keys], [(g, *(number(m.get(k)) for k in keys)) for g, m in shown])
        )
    bad = [r for r in s.rows if r["desync"]][:20]
    if bad:
        out.append(
            table(
                ["id", "modality", "sound offset"],
                [
                    (escape(r["id"]), escape(r["modality"]), f"{r['av_offset_ms']:+.0f} ms")
                    for r in bad
                ],
            )
        )
    return out


def _robustness(a: Analysis) -> list[str]:
    out = [_h2("robustness")]
    r = a.robustness
    if not r:
        return [*out, "<p>Not computed (run with <code>--robustness</code>).</p>"]
    metric = r["metric"]
    by_mod: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    rows = []
    for name, c in r["curves"].items():
        by_mod.setdefault(c["modality"], {})[name.split("/")[-1]] = (c["severities"], c[metric])
        rows.append(
            (
                escape(name),
                escape(c["modality"]),
                *(number(v) for v in c[metric]),
                number(c["relative_robustness"]),
                number(c["effective_robustness"]),
            )
        )
    charts = [
        svg.line_chart(
            series,
            f"{metric} under {m} corruption",
            x_label="severity",
            low=0.0 if metric == "accuracy" else None,
            high=1.0 if metric == "accuracy" else None,
        )
        for m, series in by_mod.items()
    ]
    out.append("<div class='row'>" + "".join(charts) + "</div>")
    sev = next(iter(r["curves"].values()))["severities"] if r["curves"] else []
    out.append(
        table(
            [
                "corruption",
                "modality",
                *(f"sev {s}" for s in sev),
                "relative rob.",
                "effective rob.",
            ],
            rows,
        )
    )
    return out


def _saliency(a: Analysis) -> list[str]:
    out = [_h2("saliency")]
    if not a.saliency:
        return [*out, "<p>Not computed (run with <code>--saliency N</code>).</p>"]
    out.append(
        "<p>Integrated Gradients of the predicted (wrong) class for the first errors; "
        "red / dark marks what pushed the model to its answer.</p><div>"
    )
    ds = a.dataset
    for row, sal in a.saliency:
        heat = sal.heatmap().numpy()
        body = ""
        if ds is not None and ds.contracts[sal.modality].kind == "image":
            body = media.image_tag(ds.load(row - 1, sal.modality), 128, overlay=heat)
        else:
            x = ds.preprocessed(row - 1, sal.modality).numpy() if ds is not None else heat
            body = media.heatmap_tag(x) + "<br>" + media.heatmap_tag(heat)
        out.append(
            f"<div class='example'>row {row}, {escape(sal.modality)} (convergence delta "
            f"{sal.delta:.2g})<br>{body}</div>"
        )
    out.append("</div>")
    return out


def _bad_rows(a: Analysis) -> list[str]:
    out = [_h2("bad-rows")]
    if not a.bad_rows:
        return [*out, "<p>None.</p>"]
    rows = [(b.index + 1, escape(b.id), escape(b.error.message)) for b in a.bad_rows[:200]]
    return [*out, table(["row", "id", "reason"], rows)]


def _ci(ci: dict[str, float] | None) -> str:
    """``low - high`` of a bootstrap interval, or a dash when none was computed."""
    return "-" if not ci else f"{ci['low']:.3f} - {ci['high']:.3f}"
