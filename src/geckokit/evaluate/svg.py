"""Small inline-SVG charts for the HTML report: grouped bars, horizontal bars, lines, histograms.

Pure string building, no plotting library: the report stays one self-contained file that
opens offline. Every chart returns an ``<svg>`` element sized by ``viewBox`` (it scales with
the page); every mark carries a ``<title>`` so hovering shows its value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', sans-serif\""


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        raise ValueError(f"tick range must be finite, got [{lo}, {hi}]")
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start = math.floor(lo / step + 1e-9) * step
    ticks = [round(start, 10)]
    while ticks[-1] < hi - step * 1e-9:
        ticks.append(round(start + len(ticks) * step, 10))
    return ticks


def _fmt(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"


def _frame(width: int, height: int, title: str, body: list[str]) -> str:
    head = (
        f'<svg viewBox="0 0 {width} {height}" style="max-width:{width}px" '
        f'role="img" aria-label="{escape(title)}" class="chart" {FONT}>'
    )
    heading = (
        f'<text x="{width / 2:.1f}" y="20" text-anchor="middle" font-size="14" '
        f'font-weight="600" fill="#222">{escape(title)}</text>'
    )
    return "\n".join([head, heading, *body, "</svg>"])


def _legend(names: Sequence[str], x: float, y: float) -> list[str]:
    out = []
    for i, name in enumerate(names):
        yy = y + i * 16
        out.append(f'<rect x="{x:.1f}" y="{yy - 9:.1f}" width="10" height="10" fill="{color(i)}"/>')
        out.append(
            f'<text x="{x + 14:.1f}" y="{yy:.1f}" font-size="11" fill="#333">{escape(name)}</text>'
        )
    return out


def _y_axis(ticks: list[float], x0: float, x1: float, scale: object, label: str) -> list[str]:
    out = []
    for t in ticks:
        y = scale(t)  # type: ignore[operator]
        out.append(
            f'<line x1="{x0:.1f}" x2="{x1:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
        )
        out.append(
            f'<text x="{x0 - 6:.1f}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#555">{_fmt(t)}</text>'
        )
    mid = (scale(ticks[0]) + scale(ticks[-1])) / 2  # type: ignore[operator]
    out.append(
        f'<text transform="translate({x0 - 40:.1f},{mid:.1f}) rotate(-90)" text-anchor="middle" '
        f'font-size="12" fill="#333">{escape(label)}</text>'
    )
    return out


def bar_chart(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    y_label: str,
    width: int = 760,
    height: int = 340,
) -> str:
    """Grouped vertical bars: one group per category, one bar per series (None: no bar)."""
    names = list(series)
    values = [v for vs in series.values() for v in vs if v is not None]
    ticks = nice_ticks(min(0.0, *values) if values else 0.0, max(values) if values else 1.0)
    legend_w = 16 + 7 * max((len(n) for n in names), default=0)
    longest = max((len(c) for c in categories), default=0)
    left, right, top, bottom = 60, min(legend_w + 24, width // 2), 34, min(30 + 5 * longest, 130)
    plot_w, plot_h = width - left - right, height - top - bottom
    lo, hi = ticks[0], ticks[-1]

    def scale(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    body = _y_axis(ticks, left, left + plot_w, scale, y_label)
    group = plot_w / max(len(categories), 1)
    bar = group * 0.8 / max(len(names), 1)
    for c, category in enumerate(categories):
        gx = left + c * group + group * 0.1
        for s, name in enumerate(names):
            v = series[name][c]
            if v is None:
                continue
            y = scale(max(v, lo))
            body.append(
                f'<rect x="{gx + s * bar:.1f}" y="{y:.1f}" width="{max(bar - 1, 1):.1f}" '
                f'height="{scale(lo) - y:.1f}" fill="{color(s)}"><title>{escape(name)} — '
                f"{escape(category)}: {v:.2f}</title></rect>"
            )
            if bar >= 18:
                body.append(
                    f'<text x="{gx + s * bar + bar / 2:.1f}" y="{y - 3:.1f}" font-size="9" '
                    f'text-anchor="middle" fill="#333">{v:.1f}</text>'
                )
        cx = left + c * group + group / 2
        body.append(
            f'<text transform="translate({cx:.1f},{top + plot_h + 14:.1f}) rotate(-30)" '
            f'text-anchor="end" font-size="11" fill="#333">{escape(category)}</text>'
        )
    body.append(
        f'<line x1="{left}" x2="{left + plot_w:.1f}" y1="{scale(lo):.1f}" y2="{scale(lo):.1f}" '
        'stroke="#888"/>'
    )
    body += _legend(names, left + plot_w + 16, top + 12)
    return _frame(width, height, title, body)


def hbar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    x_label: str,
    width: int = 760,
    value_format: str = "{:.0f}",
) -> str:
    """Horizontal bars, one per label, in the order given."""
    row = 22
    left = min(16 + 7 * max((len(label) for label in labels), default=4), width // 2)
    top, right, bottom = 34, 60, 40
    height = top + bottom + row * max(len(labels), 1)
    ticks = nice_ticks(0.0, max(values) if values else 1.0)
    hi = ticks[-1]
    plot_w = width - left - right

    def scale(v: float) -> float:
        return left + plot_w * v / hi

    body = []
    for t in ticks:
        x = scale(t)
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - bottom}" stroke="#e5e5e5"/>'
        )
        body.append(
            f'<text x="{x:.1f}" y="{height - bottom + 14}" text-anchor="middle" font-size="11" '
            f'fill="#555">{_fmt(t)}</text>'
        )
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        y = top + i * row
        body.append(
            f'<text x="{left - 6}" y="{y + row * 0.65:.1f}" text-anchor="end" font-size="11" '
            f'fill="#333">{escape(label)}</text>'
        )
        body.append(
            f'<rect x="{left}" y="{y + 3}" width="{scale(v) - left:.1f}" height="{row - 6}" '
            f'fill="{color(0)}"><title>{escape(label)}: {value_format.format(v)}</title></rect>'
        )
        body.append(
            f'<text x="{scale(v) + 4:.1f}" y="{y + row * 0.65:.1f}" font-size="10" '
            f'fill="#333">{value_format.format(v)}</text>'
        )
    body.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle" font-size="12" '
        f'fill="#333">{escape(x_label)}</text>'
    )
    return _frame(width, height, title, body)


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_ticks: Sequence[float] | None = None,
    log_x: bool = False,
    width: int = 760,
    height: int = 320,
    legend: bool = True,
) -> str:
    """Lines with point markers, one per series of (x, y) points (sorted by x here);
    ``log_x`` spaces x by its logarithm (for dimensions that halve)."""
    names = list(series)
    xs = [x for pts in series.values() for x, _ in pts]
    if log_x and any(x <= 0 for x in xs):
        raise ValueError(f"line chart {title!r}: log_x needs positive x values")
    ys = [y for pts in series.values() for _, y in pts]
    if not xs:
        raise ValueError(f"line chart {title!r} has no points")
    y_ticks = nice_ticks(min(ys), max(ys))
    x_lo, x_hi = min(xs), max(xs)
    if x_hi == x_lo:
        x_lo, x_hi = (x_lo / 2, x_hi * 2) if log_x else (x_lo - 1, x_hi + 1)
    legend_w = 16 + 7 * max((len(n) for n in names), default=0) if legend else 10
    left, right, top, bottom = 60, min(legend_w + 24, width // 2), 34, 48
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(v: float) -> float:
        if log_x:
            return left + plot_w * math.log(v / x_lo) / math.log(x_hi / x_lo)
        return left + plot_w * (v - x_lo) / (x_hi - x_lo)

    def sy(v: float) -> float:
        return top + plot_h * (1 - (v - y_ticks[0]) / (y_ticks[-1] - y_ticks[0]))

    body = _y_axis(y_ticks, left, left + plot_w, sy, y_label)
    for t in x_ticks if x_ticks is not None else nice_ticks(x_lo, x_hi):
        if x_lo <= t <= x_hi:
            body.append(
                f'<text x="{sx(t):.1f}" y="{top + plot_h + 16:.1f}" text-anchor="middle" '
                f'font-size="11" fill="#555">{_fmt(t)}</text>'
            )
            body.append(
                f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top + plot_h:.1f}" '
                f'y2="{top + plot_h + 4:.1f}" stroke="#888"/>'
            )
    body.append(
        f'<line x1="{left}" x2="{left + plot_w:.1f}" y1="{top + plot_h:.1f}" '
        f'y2="{top + plot_h:.1f}" stroke="#888"/>'
    )
    body.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle" font-size="12" '
        f'fill="#333">{escape(x_label)}</text>'
    )
    for i, name in enumerate(names):
        pts = sorted(series[name])
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        body.append(f'<polyline points="{path}" fill="none" stroke="{color(i)}" stroke-width="2"/>')
        for x, y in pts:
            body.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{color(i)}">'
                f"<title>{escape(name)}: {_fmt(x)} -> {y:.3g}</title></circle>"
            )
    if legend:
        body += _legend(names, left + plot_w + 16, top + 12)
    return _frame(width, height, title, body)


def histogram(
    values: Sequence[float],
    *,
    title: str,
    x_label: str,
    bins: int = 24,
    width: int = 370,
    height: int = 260,
    fill: str = PALETTE[0],
) -> str:
    """Counts of ``values`` in ``bins`` equal-width bins."""
    if not values:
        raise ValueError(f"histogram {title!r} has no values")
    lo, hi = min(values), max(values)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts = [0] * bins
    for v in values:
        counts[min(int((v - lo) / (hi - lo) * bins), bins - 1)] += 1
    left, right, top, bottom = 52, 14, 34, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    y_ticks = nice_ticks(0.0, max(counts))

    def sy(v: float) -> float:
        return top + plot_h * (1 - v / y_ticks[-1])

    body = _y_axis(y_ticks, left, left + plot_w, sy, "count")
    step = plot_w / bins
    for i, n in enumerate(counts):
        a = lo + (hi - lo) * i / bins
        b = lo + (hi - lo) * (i + 1) / bins
        body.append(
            f'<rect x="{left + i * step:.1f}" y="{sy(n):.1f}" width="{max(step - 1, 1):.1f}" '
            f'height="{sy(0) - sy(n):.1f}" fill="{fill}"><title>[{a:.3g}, {b:.3g}): {n}</title></rect>'
        )
    for t in nice_ticks(lo, hi, 4):
        if lo <= t <= hi:
            x = left + plot_w * (t - lo) / (hi - lo)
            body.append(
                f'<text x="{x:.1f}" y="{top + plot_h + 15:.1f}" text-anchor="middle" '
                f'font-size="10" fill="#555">{_fmt(t)}</text>'
            )
    body.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" text-anchor="middle" font-size="12" '
        f'fill="#333">{escape(x_label)}</text>'
    )
    return _frame(width, height, title, body)
