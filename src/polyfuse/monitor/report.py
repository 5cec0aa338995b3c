"""The drift report: one self-contained HTML file (inline SVG, embedded media, no scripts).

Per modality: the decision, the drift evidence over windows (``-log10 p`` against the
decision threshold), the statistics that moved most, and the most atypical current
samples (the domain classifier's pick) as thumbnails, players or text.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from polyfuse.evaluation.report import svg
from polyfuse.evaluation.report.html import CSS, escape, number, table
from polyfuse.monitor.run import MonitorReport

#: Renders sample ``id`` of modality ``name`` as HTML (thumbnail, player, text), or "".
SampleRenderer = Callable[[str, str], str]


def _f(x: Any, digits: int = 3) -> str:
    """A number for a cell: tiny p-values in scientific notation, ``-`` for None."""
    if isinstance(x, float) and x != 0 and abs(x) < 10 ** (-digits):
        return f"{x:.1e}"
    return number(x, digits)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    return table(header, [[_f(c) for c in r] for r in rows])


def _log_p(p: float) -> float:
    return -math.log10(max(p, 1e-12))


def render_report(
    report: MonitorReport, *, title: str = "Drift report", render: SampleRenderer | None = None
) -> str:
    """The report as one HTML string."""
    data = report.to_dict()
    drifted = [m for m, v in data["modalities"].items() if v["drift"]]
    missing = [m for m, v in data["missing_rate"].items() if v["drift"]]
    est = data["estimated_accuracy"]
    cards = [
        ("drift", "yes" if data["drift"] else "no"),
        ("samples", data["n"]),
        ("windows", f"{len(data['windows'])} x {data['window']}"),
        ("drifted modalities", ", ".join(drifted) or "none"),
        ("missing-rate change", ", ".join(missing) or "none"),
        (
            f"estimated {str(est.get('metric', 'accuracy')).replace('_', ' ')}",
            f"{_f(est['current'])} (reference {_f(est['reference'])})",
        ),
    ]
    if "observed" in est:
        cards.append(("observed accuracy", _f(est["observed"])))
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>",
        f"<p class='meta'>generated {_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC; "
        f"false-alarm budget per assessment split over {len(data['modalities']) * 2 + 1} "
        f"decisions (threshold p &lt; {_f(report.whole.threshold, 4)})</p>",
        "<div class='cards'>"
        + "".join(f"<div class='card'>{escape(k)}<b>{escape(v)}</b></div>" for k, v in cards)
        + "</div>",
    ]
    parts += _windows_chart(report)
    if data["harm"]:
        parts.append("<h2>Does it hurt?</h2>")
        parts.append(
            _table(
                ["modality", "estimated accuracy with it", "without it"],
                [[m, h["with"], h["without"]] for m, h in data["harm"].items()],
            )
        )
    for m, v in data["modalities"].items():
        status = (
            "<span class='flag'>drift</span>" if v["drift"] else "<span class='ok'>no drift</span>"
        )
        parts.append(f"<h2>{escape(m)}: {status}</h2>")
        parts.append(
            f"<p>p = {_f(v['p_value'])}, score {_f(v['score'])}, first drifted window "
            f"{escape(v['first_window'] if v['first_window'] is not None else '-')}"
            + (" (explained by the class-prior change)" if v["explained_by_labels"] else "")
            + "</p>"
        )
        rows = [[name, d.get("p_value"), d.get("score")] for name, d in v["statistics"].items()]
        parts.append(_table(["detector", "p-value", "score"], rows))
        moved = v["statistics"].get("input_statistics", {}).get("moved", [])
        if moved:
            parts.append("<h3>Input statistics that moved most</h3>")
            parts.append(
                _table(
                    [
                        "statistic",
                        "p-value (Holm)",
                        "KS distance",
                        "reference median",
                        "current median",
                    ],
                    [
                        [s["name"], s["p_value"], s["statistic"], s["reference"], s["current"]]
                        for s in moved
                    ],
                )
            )
        atypical = v["statistics"].get("domain_classifier", {}).get("atypical", [])
        if atypical:
            parts.append("<h3>Most atypical current samples</h3><div>")
            for sid in atypical:
                body = render(sid, m) if render is not None else ""
                parts.append(f"<div class='example'><b>{escape(sid)}</b>{body}</div>")
            parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _windows_chart(report: MonitorReport) -> list[str]:
    if not report.windows:
        return []
    xs = [float(i) for i in range(len(report.windows))]
    series: dict[str, tuple[list[float], list[float]]] = {}
    for m in report.whole.modalities:
        series[m] = (xs, [_log_p(w.assessment.modalities[m].p_value) for w in report.windows])
    series["prediction"] = (xs, [_log_p(w.assessment.prediction.p_value) for w in report.windows])
    threshold = _log_p(report.whole.threshold)
    series["threshold"] = (xs, [threshold] * len(xs))
    out = [
        "<h2>Over windows</h2><div class='row'>",
        svg.line_chart(
            series, "drift evidence per window", x_label="window", y_label="-log10 p", low=0.0
        ),
    ]
    est = [(i, w.estimate.value) for i, w in enumerate(report.windows) if w.estimate is not None]
    if est:
        acc: dict[str, tuple[list[float], list[float]]] = {
            "estimated": ([float(i) for i, _ in est], [v for _, v in est])
        }
        seen = [(i, w.accuracy) for i, w in enumerate(report.windows) if w.accuracy is not None]
        if seen:
            acc["observed"] = (
                [float(i) for i, _ in seen],
                [float(v) for _, v in seen if v is not None],
            )
        out.append(
            svg.line_chart(
                acc, "accuracy per window", x_label="window", y_label="accuracy", low=0.0, high=1.0
            )
        )
    out.append("</div>")
    return out


def write_report(
    report: MonitorReport, path: str | Path, *, render: SampleRenderer | None = None
) -> Path:
    """Write the HTML report to ``path``."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(report, render=render), encoding="utf-8")
    return out
