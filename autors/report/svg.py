"""Inline SVG charts: scatter plots with log or linear axes, a confusion matrix, a
reliability diagram. Each mark carries its details in `data-tip` (the page's hover box) and an
SVG `<title>` (the browser's own tooltip, also without script).

Axis ticks are few and labelled in plain numbers with SI suffixes (1k, 20M, 0.2 ms), so labels
never overlap as matplotlib's `2x10^-1 3x10^-1` minor labels did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from autors.report.page import esc

W, H = 460, 300  # one chart
LEFT, RIGHT, TOP, BOTTOM = 62, 14, 14, 58  # plot margins (BOTTOM holds the no-value strip)
STRIP = 16  # height of the strip under the x axis for trials without a value


@dataclass(frozen=True)
class Point:
    """One trial in a scatter plot. `y` None: drawn in the strip under the axis (a failed,
    timed-out or never-trained trial has no metric)."""

    x: float | None
    y: float | None
    status: str  # ok | infeasible | failed | timeout | over_limit | stopped
    tip: str
    front: bool = False


# status -> (fill, stroke, shape, legend text)
STYLES = {
    "ok": ("#4e79a7", "#2b4a6f", "circle", "trained, feasible"),
    "infeasible": ("#ffffff", "#f28e2b", "circle", "over a constraint (infeasible)"),
    "over_limit": ("#9e9e9e", "#616161", "cross", "over a params/FLOPs limit, not trained"),
    "failed": ("#e15759", "#b71c1c", "cross", "failed"),
    "timeout": ("#e15759", "#b71c1c", "triangle", "timed out / stopped"),
    "stopped": ("#bdbdbd", "#757575", "triangle", "stopped by the scheduler below the top rung"),
}
FRONT = "#e15759"


def si(value: float) -> str:
    """Short plain label: 1.2k, 20M, 0.05, 3."""
    a = abs(value)
    if a == 0:
        return "0"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if a >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def linear_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if raw <= m * step)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def log_ticks(lo: float, hi: float, most: int = 6) -> list[float]:
    """Decades inside [lo, hi] (every second one when there are many); 1-2-5 steps when the
    range spans less than two decades."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    decades = [10.0 ** k for k in range(a, b + 1) if lo <= 10.0 ** k <= hi]
    if len(decades) >= 2:
        step = math.ceil(len(decades) / most)
        return decades[::step]
    ticks = [m * 10.0 ** k for k in range(a, b + 1) for m in (1, 2, 5) if lo <= m * 10.0 ** k <= hi]
    if len(ticks) > most:
        ticks = ticks[:: math.ceil(len(ticks) / most)]
    if len(ticks) < 2:  # a narrow range: plain steps inside it
        ticks = [t for t in linear_ticks(lo, hi, 5) if lo <= t <= hi]
    return ticks


class Axis:
    """Maps data values to pixels on [p0, p1], linear or log10."""

    def __init__(self, values: Sequence[float], p0: float, p1: float, log: bool,
                 pad: float = 0.05, bounds: tuple[float, float] | None = None) -> None:
        vals = [v for v in values if v is not None and math.isfinite(v) and (v > 0 or not log)]
        self.log = log and bool(vals)
        lo, hi = bounds if bounds else ((min(vals), max(vals)) if vals else (0.0, 1.0))
        if self.log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi - lo < 1e-12:
            lo, hi = lo - (0.5 if self.log else max(abs(lo) * 0.05, 0.05)), hi + (
                0.5 if self.log else max(abs(hi) * 0.05, 0.05))
        span = hi - lo
        self.lo, self.hi = (lo, hi) if bounds else (lo - pad * span, hi + pad * span)
        self.p0, self.p1 = p0, p1

    def __call__(self, v: float) -> float:
        t = math.log10(v) if self.log else v
        return self.p0 + (t - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)

    def ticks(self) -> list[float]:
        if self.log:
            return log_ticks(10 ** self.lo, 10 ** self.hi)
        return [t for t in linear_ticks(self.lo, self.hi) if self.lo <= t <= self.hi]


def _mark(x: float, y: float, status: str, front: bool, tip: str) -> str:
    fill, stroke, shape, _ = STYLES.get(status, STYLES["failed"])
    if front:
        stroke = FRONT
    t = f'<title>{esc(tip)}</title>'
    width = 2.2 if shape == "cross" else (2 if front else 1.2)
    attrs = f'data-tip="{esc(tip)}" stroke="{stroke}" stroke-width="{width}"'
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{5 if front else 4}" fill="{fill}" {attrs}>{t}</circle>'
    if shape == "triangle":
        return (f'<path d="M{x:.1f},{y - 5:.1f} L{x + 5:.1f},{y + 4:.1f} L{x - 5:.1f},{y + 4:.1f} Z"'
                f' fill="{fill}" {attrs}>{t}</path>')
    return (f'<path d="M{x - 4:.1f},{y - 4:.1f} L{x + 4:.1f},{y + 4:.1f} M{x - 4:.1f},{y + 4:.1f} '
            f'L{x + 4:.1f},{y - 4:.1f}" fill="none" {attrs}>{t}</path>')


def scatter(points: Sequence[Point], x_label: str, y_label: str, *, x_log: bool = False,
            line: Sequence[tuple[float, float]] = (), line_label: str = "",
            title: str = "", x_unit: str = "") -> str:
    """A scatter plot; `line` (data coordinates) is drawn as steps (best so far, a front)."""
    ax = Axis([p.x for p in points if p.x is not None], LEFT, W - RIGHT, x_log)
    ay = Axis([p.y for p in points if p.y is not None] + [y for _, y in line],
              H - BOTTOM, TOP, False)
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" role="img" aria-label="{esc(title or y_label)}">'),
           (f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" '
           'fill="#fff" stroke="#bbb"/>')]
    for t in ax.ticks():
        x = ax(t)
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{H - BOTTOM}" stroke="#eee"/>'
                   f'<text x="{x:.1f}" y="{H - BOTTOM + STRIP + 14}" font-size="11" '
                   f'text-anchor="middle">{esc(si(t) + x_unit)}</text>')
    for t in ay.ticks():
        y = ay(t)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" '
                   f'text-anchor="end">{esc(si(t))}</text>')
    out.append(f'<text x="{(LEFT + W - RIGHT) / 2:.0f}" y="{H - 6}" font-size="12" '
               f'text-anchor="middle">{esc(x_label)}{" (log)" if ax.log else ""}</text>'
               f'<text transform="translate(14,{(TOP + H - BOTTOM) / 2:.0f}) rotate(-90)" '
               f'font-size="12" text-anchor="middle">{esc(y_label)}</text>')
    if any(p.y is None for p in points):
        y0 = H - BOTTOM + 3
        out.append(f'<rect x="{LEFT}" y="{y0}" width="{W - LEFT - RIGHT}" height="{STRIP - 4}" '
                   'fill="#fbe9e7"><title>trials without a value (failed, timed out, not '
                   'trained)</title></rect>')
    if line:
        pts = []
        for i, (x, y) in enumerate(line):
            if i:
                pts.append(f"{ax(x):.1f},{ay(line[i - 1][1]):.1f}")
            pts.append(f"{ax(x):.1f},{ay(y):.1f}")
        out.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{FRONT}" '
                   f'stroke-width="1.5" opacity="0.8"><title>{esc(line_label)}</title></polyline>')
    for p in sorted(points, key=lambda p: p.front):  # front marks on top
        if p.x is None:
            continue
        y = ay(p.y) if p.y is not None else H - BOTTOM + 3 + (STRIP - 4) / 2
        out.append(_mark(ax(p.x), y, p.status, p.front, p.tip))
    out.append("</svg>")
    return "".join(out)


def legend(statuses: Sequence[str], front_label: str = "") -> str:
    """HTML legend of the marks used."""
    items = []
    for s in statuses:
        if s not in STYLES:
            continue
        svg = ('<svg width="14" height="14" viewBox="0 0 14 14">'
               + _mark(7, 7, s, False, STYLES[s][3]) + "</svg>")
        items.append(f"<span>{svg} {esc(STYLES[s][3])}</span>")
    if front_label:
        items.append(f'<span><svg width="14" height="14"><circle cx="7" cy="7" r="5" '
                     f'fill="{STYLES["ok"][0]}" stroke="{FRONT}" stroke-width="2"/></svg> '
                     f"{esc(front_label)}</span>")
    return '<p class="row" style="gap:16px;font-size:12px">' + "".join(items) + "</p>"


def confusion(matrix: Sequence[Sequence[float]], names: Sequence[str], colours: Sequence[str],
              caption: str = "") -> str:
    """Confusion matrix (rows = reference, columns = prediction), cells shaded by the row
    share, the count written in each cell."""
    k = len(names)
    cellpx = max(22, min(44, 360 // max(k, 1)))
    left, top = 120, 110
    w, h = left + k * cellpx + 10, top + k * cellpx + 10
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'viewBox="0 0 {w} {h}" role="img" aria-label="confusion matrix">')]
    out.append(f'<text x="{left + k * cellpx / 2:.0f}" y="14" font-size="12" '
               'text-anchor="middle">predicted</text>'
               f'<text transform="translate(12,{top + k * cellpx / 2:.0f}) rotate(-90)" '
               'font-size="12" text-anchor="middle">reference</text>')
    for j, name in enumerate(names):
        x = left + j * cellpx + cellpx / 2
        out.append(f'<text transform="translate({x + 4:.0f},{top - 6}) rotate(-55)" '
                   f'font-size="11">{esc(name)}</text>'
                   f'<rect x="{left + j * cellpx + 2}" y="{top - 5}" width="{cellpx - 4}" '
                   f'height="3" fill="{colours[j]}"/>')
    for i, name in enumerate(names):
        row = [float(v) for v in matrix[i]]
        total = sum(row)
        y = top + i * cellpx
        out.append(f'<text x="{left - 10}" y="{y + cellpx / 2 + 4:.0f}" font-size="11" '
                   f'text-anchor="end">{esc(name)}</text>'
                   f'<rect x="{left - 7}" y="{y + 2}" width="3" height="{cellpx - 4}" '
                   f'fill="{colours[i]}"/>')
        for j, v in enumerate(row):
            share = v / total if total else 0.0
            shade = int(255 - 200 * share)
            colour = f"rgb({shade},{shade + (255 - shade) // 3},255)" if i != j else \
                f"rgb({shade},255,{shade})"
            tip = (f"reference {name}, predicted {names[j]}: {v:,.0f} pixels "
                   f"({100 * share:.1f} % of the reference class)")
            out.append(f'<rect x="{left + j * cellpx}" y="{y}" width="{cellpx}" '
                       f'height="{cellpx}" fill="{colour}" stroke="#ddd" '
                       f'data-tip="{esc(tip)}"><title>{esc(tip)}</title></rect>')
            if k <= 12:
                out.append(f'<text x="{left + j * cellpx + cellpx / 2:.0f}" '
                           f'y="{y + cellpx / 2 + 4:.0f}" font-size="10" text-anchor="middle" '
                           f'pointer-events="none">{esc(si(v))}</text>')
    out.append("</svg>")
    svg = "".join(out)
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>" if caption else svg


def reliability(curves: dict[str, dict], colours: dict[str, str], caption: str = "") -> str:
    """Reliability diagram: accuracy against confidence per bin, one curve per entry of
    `curves` ({label: {count, confidence, accuracy}} with None in empty bins), the diagonal
    = perfect calibration; a mark's size follows its bin's pixel count."""
    size = 280
    left, top, bottom = 48, 12, 40
    w, h = left + size + 12, top + size + bottom
    ax = Axis([], left, left + size, False, bounds=(0.0, 1.0))
    ay = Axis([], top + size, top, False, bounds=(0.0, 1.0))
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 18 * len(curves)}" '
           f'viewBox="0 0 {w} {h + 18 * len(curves)}" role="img" aria-label="reliability">'),
           f'<rect x="{left}" y="{top}" width="{size}" height="{size}" fill="#fff" stroke="#bbb"/>',
           (f'<line x1="{ax(0):.1f}" y1="{ay(0):.1f}" x2="{ax(1):.1f}" y2="{ay(1):.1f}" '
           'stroke="#999" stroke-dasharray="4 3"><title>perfect calibration</title></line>')]
    for t in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        out.append(f'<text x="{ax(t):.1f}" y="{top + size + 14}" font-size="11" '
                   f'text-anchor="middle">{t:g}</text><text x="{left - 5}" y="{ay(t) + 4:.1f}" '
                   f'font-size="11" text-anchor="end">{t:g}</text>')
    out.append(f'<text x="{left + size / 2:.0f}" y="{top + size + 30}" font-size="12" '
               'text-anchor="middle">confidence</text>'
               f'<text transform="translate(12,{top + size / 2:.0f}) rotate(-90)" '
               'font-size="12" text-anchor="middle">accuracy</text>')
    for n, (label, c) in enumerate(curves.items()):
        colour = colours.get(label, "#4e79a7")
        counts = [int(v or 0) for v in c.get("count", [])]
        total = sum(counts) or 1
        pts = []
        for cnt, conf, acc in zip(counts, c.get("confidence", []), c.get("accuracy", [])):
            if not cnt or conf is None or acc is None:
                continue
            x, y = ax(float(conf)), ay(float(acc))
            pts.append(f"{x:.1f},{y:.1f}")
            tip = (f"{label}: {cnt:,} pixels, mean confidence {float(conf):.3f}, "
                   f"accuracy {float(acc):.3f}")
            r = 2.5 + 6 * math.sqrt(cnt / total)
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{colour}" '
                       f'fill-opacity="0.6" data-tip="{esc(tip)}"><title>{esc(tip)}</title>'
                       "</circle>")
        if len(pts) > 1:
            out.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{colour}" '
                       'stroke-width="1.5"/>')
        ly = h + 4 + 18 * n
        out.append(f'<rect x="{left}" y="{ly}" width="12" height="12" fill="{colour}"/>'
                   f'<text x="{left + 18}" y="{ly + 10}" font-size="12">{esc(label)}</text>')
    out.append("</svg>")
    svg = "".join(out)
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>" if caption else svg
