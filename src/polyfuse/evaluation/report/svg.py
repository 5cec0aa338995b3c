"""Small inline-SVG charts for self-contained HTML reports (no plotting library, no JS).

Every function returns an ``<svg>`` string sized in CSS pixels; text is real text,
so reports stay searchable and crisp at any zoom.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence

PALETTE = ("#3366cc", "#dc7633", "#2e8b57", "#a04fbf", "#c0392b", "#16a085", "#7f8c8d", "#d4ac0d")
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _fmt(v: float) -> str:
    """Three significant digits; scientific notation only for tiny or huge values."""
    return f"{v:.3g}" if v == 0 or 0.001 <= abs(v) < 1e5 else f"{v:.2e}"


def _open(width: int, height: int, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(title)}" {FONT}>',
        f"<title>{_esc(title)}</title>",
    ]


def bar_chart(
    values: Mapping[str, float],
    title: str,
    *,
    width: int = 420,
    bar_height: int = 18,
    low: float | None = None,
    high: float | None = None,
    errors: Mapping[str, float] | None = None,
) -> str:
    """Horizontal bars, one per key (negative values extend left of zero)."""
    labels = list(values)
    vals = [float(values[k]) for k in labels]
    lo = min([0.0, *vals]) if low is None else low
    hi = max([0.0, *vals]) if high is None else high
    hi = hi if hi > lo else lo + 1
    left = int(min(260, 14 + 6.5 * max((len(str(k)) for k in labels), default=4)))
    right, top = 50, 22
    height = top + len(labels) * (bar_height + 6) + 10
    plot = width - left - right

    def x(v: float) -> float:
        return left + (min(max(v, lo), hi) - lo) / (hi - lo) * plot

    out = _open(width, height, title)
    out.append(f'<text x="4" y="14" font-weight="bold">{_esc(title)}</text>')
    zero = x(0.0)
    out.append(
        f'<line x1="{zero:.1f}" y1="{top}" x2="{zero:.1f}" y2="{height - 8}" stroke="#999"/>'
    )
    for i, (label, v) in enumerate(zip(labels, vals, strict=True)):
        y = top + i * (bar_height + 6)
        x0, x1 = sorted((zero, x(v)))
        colour = PALETTE[i % len(PALETTE)]
        out.append(
            f'<text x="{left - 6}" y="{y + bar_height - 5}" text-anchor="end">{_esc(label)}</text>'
        )
        out.append(
            f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 0.5):.1f}" height="{bar_height}" '
            f'fill="{colour}"><title>{_esc(label)}: {_fmt(v)}</title></rect>'
        )
        if errors and label in errors:
            e = errors[label]
            out.append(
                f'<line x1="{x(v - e):.1f}" y1="{y + bar_height / 2}" x2="{x(v + e):.1f}" '
                f'y2="{y + bar_height / 2}" stroke="#222"/>'
            )
        out.append(f'<text x="{max(x1, zero) + 4:.1f}" y="{y + bar_height - 5}">{_fmt(v)}</text>')
    out.append("</svg>")
    return "".join(out)


def grouped_bars(
    groups: Mapping[str, Mapping[str, float]],
    title: str,
    *,
    width: int = 560,
    height: int = 240,
    low: float | None = None,
    high: float | None = None,
) -> str:
    """Vertical bars: one cluster per group, one bar per series (shared legend)."""
    names = list(groups)
    series = sorted({s for g in groups.values() for s in g})
    vals = [float(v) for g in groups.values() for v in g.values()]
    lo = min([0.0, *vals]) if low is None else low
    hi = max([0.0, *vals]) if high is None else high
    hi = hi if hi > lo else lo + 1
    left, bottom, top, right = 44, 40, 34, 10
    plot_w, plot_h = width - left - right, height - top - bottom

    def y(v: float) -> float:
        return top + (1 - (min(max(v, lo), hi) - lo) / (hi - lo)) * plot_h

    out = _open(width, height, title)
    out.append(f'<text x="4" y="14" font-weight="bold">{_esc(title)}</text>')
    out += _legend(series, left, 28)
    out += _y_axis(lo, hi, y, left, width - right)
    slot = plot_w / max(1, len(names))
    bw = slot * 0.8 / max(1, len(series))
    for i, g in enumerate(names):
        x0 = left + i * slot + slot * 0.1
        for j, s in enumerate(series):
            if s not in groups[g]:
                continue
            v = float(groups[g][s])
            y0, y1 = sorted((y(0.0), y(v)))
            out.append(
                f'<rect x="{x0 + j * bw:.1f}" y="{y0:.1f}" width="{bw * 0.95:.1f}" '
                f'height="{max(y1 - y0, 0.5):.1f}" fill="{PALETTE[j % len(PALETTE)]}">'
                f"<title>{_esc(g)} / {_esc(s)}: {_fmt(v)}</title></rect>"
            )
        out.append(
            f'<text x="{left + (i + 0.5) * slot:.1f}" y="{height - bottom + 14}" '
            f'text-anchor="middle">{_esc(g)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def line_chart(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    *,
    x_label: str = "",
    y_label: str = "",
    width: int = 420,
    height: int = 240,
    low: float | None = None,
    high: float | None = None,
) -> str:
    """Lines with markers; ``series`` maps name -> (xs, ys)."""
    xs = [float(v) for s in series.values() for v in s[0]]
    ys = [float(v) for s in series.values() for v in s[1]]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    x_hi = x_hi if x_hi > x_lo else x_lo + 1
    lo = min(ys, default=0.0) if low is None else low
    hi = max(ys, default=1.0) if high is None else high
    hi = hi if hi > lo else lo + 1
    left, bottom, right = 44, 34, 10
    top = 30 + 14 * math.ceil(len(series) / 3)
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(v: float) -> float:
        return left + (v - x_lo) / (x_hi - x_lo) * plot_w

    def py(v: float) -> float:
        return top + (1 - (min(max(v, lo), hi) - lo) / (hi - lo)) * plot_h

    out = _open(width, height, title)
    out.append(f'<text x="4" y="14" font-weight="bold">{_esc(title)}</text>')
    out += _legend(list(series), left, 28)
    out += _y_axis(lo, hi, py, left, width - right)
    for v in sorted(set(xs)):
        out.append(
            f'<text x="{px(v):.1f}" y="{height - bottom + 14}" text-anchor="middle">'
            f"{_fmt(v)}</text>"
        )
    if x_label:
        out.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">'
            f"{_esc(x_label)}</text>"
        )
    if y_label:
        out.append(
            f'<text x="10" y="{top + plot_h / 2:.1f}" transform="rotate(-90 10 '
            f'{top + plot_h / 2:.1f})" text-anchor="middle">{_esc(y_label)}</text>'
        )
    for j, (name, (sx, sy)) in enumerate(series.items()):
        colour = PALETTE[j % len(PALETTE)]
        pts = " ".join(
            f"{px(float(a)):.1f},{py(float(b)):.1f}" for a, b in zip(sx, sy, strict=True)
        )
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for a, b in zip(sx, sy, strict=True):
            out.append(
                f'<circle cx="{px(float(a)):.1f}" cy="{py(float(b)):.1f}" r="3" fill="{colour}">'
                f"<title>{_esc(name)} @ {_fmt(float(a))}: {_fmt(float(b))}</title></circle>"
            )
    out.append("</svg>")
    return "".join(out)


def heatmap(
    matrix: Sequence[Sequence[float]],
    rows: Sequence[str],
    cols: Sequence[str],
    title: str,
    *,
    row_label: str = "",
    col_label: str = "",
    cell: int = 26,
) -> str:
    """Matrix as coloured cells with counts (e.g. a confusion matrix)."""
    peak = max((float(v) for r in matrix for v in r), default=1.0) or 1.0
    left, top = 70, 44
    width = left + cell * len(cols) + 20
    height = top + cell * len(rows) + 30
    out = _open(width, height, title)
    out.append(f'<text x="4" y="14" font-weight="bold">{_esc(title)}</text>')
    if col_label:
        out.append(
            f'<text x="{left + cell * len(cols) / 2:.1f}" y="28" text-anchor="middle">'
            f"{_esc(col_label)}</text>"
        )
    if row_label:
        out.append(f'<text x="4" y="{height - 8}">{_esc(row_label)} (rows)</text>')
    for j, c in enumerate(cols):
        out.append(
            f'<text x="{left + j * cell + cell / 2:.1f}" y="{top - 4}" text-anchor="middle">'
            f"{_esc(c)}</text>"
        )
    for i, r in enumerate(rows):
        y = top + i * cell
        out.append(
            f'<text x="{left - 4}" y="{y + cell / 2 + 4:.1f}" text-anchor="end">{_esc(r)}</text>'
        )
        for j, _ in enumerate(cols):
            v = float(matrix[i][j])
            shade = v / peak
            fill = f"rgb({int(255 - 200 * shade)},{int(255 - 150 * shade)},255)"
            ink = "#fff" if shade > 0.6 else "#222"
            out.append(
                f'<rect x="{left + j * cell}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" '
                f'stroke="#fff"><title>{_esc(r)} / {_esc(cols[j])}: {_fmt(v)}</title></rect>'
            )
            if v:
                text = f"{int(v)}" if v == int(v) else f"{v:.2f}"
                out.append(
                    f'<text x="{left + j * cell + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" '
                    f'text-anchor="middle" fill="{ink}" font-size="10">{text}</text>'
                )
    out.append("</svg>")
    return "".join(out)


def reliability_diagram(bins: Sequence[Mapping[str, float]], title: str, size: int = 260) -> str:
    """Accuracy per confidence bin against the diagonal of perfect calibration."""
    left, top, bottom = 40, 24, 30
    plot = size - left - 10
    height = top + plot + bottom
    out = _open(size, height, title)
    out.append(f'<text x="4" y="14" font-weight="bold">{_esc(title)}</text>')
    out.append(
        f'<rect x="{left}" y="{top}" width="{plot}" height="{plot}" fill="none" stroke="#999"/>'
    )
    out.append(
        f'<line x1="{left}" y1="{top + plot}" x2="{left + plot}" y2="{top}" stroke="#999" '
        f'stroke-dasharray="4 3"/>'
    )
    for b in bins:
        if not b["n"]:
            continue
        x0 = left + float(b["lo"]) * plot
        w = (float(b["hi"]) - float(b["lo"])) * plot
        h = float(b["accuracy"]) * plot
        out.append(
            f'<rect x="{x0:.1f}" y="{top + plot - h:.1f}" width="{w * 0.95:.1f}" height="{h:.1f}" '
            f'fill="{PALETTE[0]}" opacity="0.8"><title>confidence {float(b["confidence"]):.2f}, '
            f"accuracy {float(b['accuracy']):.2f}, n {int(b['n'])}</title></rect>"
        )
    for t in (0.0, 0.5, 1.0):
        out.append(
            f'<text x="{left + t * plot:.1f}" y="{top + plot + 14}" '
            f'text-anchor="middle">{t:g}</text>'
        )
        out.append(
            f'<text x="{left - 4}" y="{top + (1 - t) * plot + 4:.1f}" '
            f'text-anchor="end">{t:g}</text>'
        )
    out.append(
        f'<text x="{left + plot / 2:.1f}" y="{height - 2}" text-anchor="middle">confidence</text>'
    )
    out.append("</svg>")
    return "".join(out)


def _legend(names: Sequence[str], x: float, y: float) -> list[str]:
    out = []
    for j, name in enumerate(names):
        cx = x + (j % 3) * 150
        cy = y + (j // 3) * 14 - 10
        out.append(
            f'<rect x="{cx:.1f}" y="{cy:.1f}" width="10" height="10" '
            f'fill="{PALETTE[j % len(PALETTE)]}"/>'
        )
        out.append(f'<text x="{cx + 14:.1f}" y="{cy + 9:.1f}">{_esc(name)}</text>')
    return out


def _y_axis(
    lo: float, hi: float, y: Callable[[float], float], left: float, right: float
) -> list[str]:
    out = []
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        yy = float(y(v))
        out.append(
            f'<line x1="{left}" y1="{yy:.1f}" x2="{right}" y2="{yy:.1f}" stroke="#eee"/>'
            f'<text x="{left - 4}" y="{yy + 4:.1f}" text-anchor="end">{_fmt(v)}</text>'
        )
    return out
