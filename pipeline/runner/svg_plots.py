"""Small inline SVG plots for report.html: stacked score histograms and the LSH S-curve.

Written by hand rather than with matplotlib so that a run's report costs milliseconds (drawing
two dozen matplotlib panels took seconds of CPU, more than a small run's stages) and stays sharp
at any zoom. The x axis is symmetric-log: linear on [-1, 1], logarithmic beyond, which is how the
fixed bins of runner.histograms are laid out.
"""

from __future__ import annotations

import math
from html import escape

import numpy as np

from pipeline.runner.histograms import dense_counts, threshold_text

KEPT_COLOR, REJECTED_COLOR, LINE_COLOR = "#4c9f70", "#d1495b", "#222"
WIDTH, HEIGHT = 330, 200
LEFT, RIGHT, TOP, BOTTOM = 42, 320, 38, 176  # the plot area, in pixels


def symlog(x: np.ndarray | float) -> np.ndarray:
    """Linear on [-1, 1], sign(x) * (1 + log10|x|) beyond: continuous and monotonic."""
    x = np.asarray(x, dtype=np.float64)
    mag = np.abs(x)
    return np.where(mag <= 1, x, np.sign(x) * (1 + np.log10(np.maximum(mag, 1))))


class _Frame:
    """Maps data to pixels for one panel: x through `symlog`, y linearly from 0."""

    def __init__(self, x_lo: float, x_hi: float, y_max: float) -> None:
        self.a, self.b = float(symlog(x_lo)), float(symlog(x_hi))
        if self.b <= self.a:
            self.b = self.a + 1e-9
        self.y_max = y_max if y_max > 0 else 1.0

    def x(self, v: np.ndarray | float) -> np.ndarray:
        return LEFT + (symlog(v) - self.a) / (self.b - self.a) * (RIGHT - LEFT)

    def y(self, v: np.ndarray | float) -> np.ndarray:
        return BOTTOM - np.asarray(v, dtype=np.float64) / self.y_max * (BOTTOM - TOP)


def _fmt(v: float) -> str:
    if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-3):
        return f"1e{round(math.log10(abs(v)))}" if v > 0 else f"-1e{round(math.log10(-v))}"
    return f"{v:g}"


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About `n` round values in [lo, hi] (steps of 1, 2 or 5 times a power of ten)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def x_ticks(lo: float, hi: float) -> list[float]:
    """Round values across a symmetric-log range: linear ticks inside [-1, 1] when the range
    stays there, else 0 and powers of ten (every other one when there are many)."""
    if lo >= -1 and hi <= 1:
        return _nice_ticks(lo, hi)
    ticks = [0.0] if lo <= 0 <= hi else []
    for sign in (1, -1):
        a, b = (max(lo, 1), hi) if sign > 0 else (max(-hi, 1), -lo)
        if b >= a:
            powers = range(math.ceil(math.log10(a) - 1e-9), math.floor(math.log10(b) + 1e-9) + 1)
            step = 1 if len(powers) <= 6 else 2
            ticks += [sign * 10.0**k for k in powers[::step]]
    return sorted(ticks)


def _axes(frame: _Frame, xs: list[float], title: str, subtitle: str) -> list[str]:
    out = [
        f'<text x="4" y="13" font-size="12" font-weight="600">{escape(title)}</text>',
        f'<text x="4" y="27" font-size="10" fill="#555">{escape(subtitle)}</text>',
        f'<line x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}" stroke="#888"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}" stroke="#888"/>',
    ]
    for v in xs:
        px = float(frame.x(v))
        out.append(
            f'<line x1="{px:.1f}" y1="{BOTTOM}" x2="{px:.1f}" y2="{BOTTOM + 4}" stroke="#888"/>'
        )
        out.append(
            f'<text x="{px:.1f}" y="{BOTTOM + 15}" font-size="9" text-anchor="middle">'
            f"{_fmt(v)}</text>"
        )
    for v in _nice_ticks(0, frame.y_max, 3):
        py = float(frame.y(v))
        out.append(f'<line x1="{LEFT - 4}" y1="{py:.1f}" x2="{LEFT}" y2="{py:.1f}" stroke="#888"/>')
        out.append(
            f'<text x="{LEFT - 6}" y="{py + 3:.1f}" font-size="9" text-anchor="end">{_fmt(v)}</text>'
        )
    return out


def _svg(body: list[str], label: str) -> str:
    """An <svg> element; with its namespace, so that it is a valid .svg file on its own too."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}" '
        'font-family="sans-serif">' + "".join(body) + "</svg>"
    )


def _legend() -> list[str]:
    """'kept' and 'rejected' swatches at the top right (a figure seen outside report.html)."""
    out = []
    for i, (name, color) in enumerate((("kept", KEPT_COLOR), ("rejected", REJECTED_COLOR))):
        x = RIGHT - 118 + 52 * i
        out.append(f'<rect x="{x}" y="19" width="8" height="8" fill="{color}"/>')
        out.append(f'<text x="{x + 11}" y="27" font-size="10">{name}</text>')
    return out


def histogram_svg(column: str, h: dict, title: str | None = None, legend: bool = False) -> str:
    """One column's histogram: kept and rejected stacked per bin, thresholds dashed. `title`
    replaces the column's name at the top; `legend` adds the colours' names."""
    title = title or column
    extra = _legend() if legend else []
    dense = dense_counts(h)
    if dense is None:
        return _svg(_axes(_Frame(0, 1, 1), [], title, "no score") + extra, column)
    edges, kept, rejected = dense
    frame = _Frame(edges[0], edges[-1], float((kept + rejected).max()))
    body = _axes(frame, x_ticks(edges[0], edges[-1]), title, threshold_text(h)) + extra
    xs = frame.x(edges)
    for i in np.flatnonzero(kept + rejected):
        x0, w = float(xs[i]), max(float(xs[i + 1] - xs[i]), 0.8)
        for base, count, color in (
            (0, kept[i], KEPT_COLOR),
            (kept[i], rejected[i], REJECTED_COLOR),
        ):
            if count:
                top, bottom = float(frame.y(base + count)), float(frame.y(base))
                body.append(
                    f'<rect x="{x0:.1f}" y="{top:.1f}" width="{w:.1f}" '
                    f'height="{bottom - top:.1f}" fill="{color}"/>'
                )
    for v in h["thresholds"].values():
        px = float(frame.x(v))
        body.append(
            f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{BOTTOM}" stroke="{LINE_COLOR}" '
            'stroke-dasharray="4 3"/>'
        )
    return _svg(body, f"histogram of {column}")


def s_curve_svg(label: str, summary: dict) -> str:
    """P(candidate | Jaccard s) = 1 - (1 - s^r)^b (smooth when b and r are known), the points
    stats.json lists, the 50% point dashed."""
    frame = _Frame(0, 1, 1)
    b, r = summary.get("num_bands"), summary.get("rows_per_band")
    sub = f"b = {b}, r = {r}" if b and r else ""
    if summary.get("s_half") is not None:
        sub += f"; 50% at s = {summary['s_half']:g}"
    body = _axes(frame, _nice_ticks(0, 1), f"{label}: P(candidate pair) vs Jaccard s", sub)
    if b and r:
        s = np.linspace(0, 1, 101)
        pts = " ".join(
            f"{x:.1f},{y:.1f}"
            for x, y in zip(frame.x(s), frame.y(1 - (1 - s**r) ** b), strict=True)
        )
        body.append(f'<polyline points="{pts}" fill="none" stroke="#3366aa" stroke-width="1.5"/>')
    for k, v in summary["s_curve"].items():
        body.append(
            f'<circle cx="{float(frame.x(float(k))):.1f}" cy="{float(frame.y(v)):.1f}" r="2.5" '
            'fill="#3366aa"/>'
        )
    if summary.get("s_half") is not None:
        px = float(frame.x(summary["s_half"]))
        body.append(
            f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{BOTTOM}" stroke="{LINE_COLOR}" '
            'stroke-dasharray="4 3"/>'
        )
    return _svg(body, f"S-curve of {label}")
