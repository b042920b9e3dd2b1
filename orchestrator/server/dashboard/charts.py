"""Charts of the dashboard, drawn on the server as SVG (no chart library, no JavaScript).

Owns turning a few series of numbers into one small ``<svg>`` line chart: a nice rounded
scale, grid lines with their values, labels under the first, middle and last point, a
legend, and a ``<title>`` per point so hovering shows the value. Colours come from CSS
classes (``series-0``, ``series-1``, ...) so light and dark themes restyle them; no inline
style, so the dashboard's Content-Security-Policy needs no ``unsafe-inline``. Every text is
escaped. Pure: no I/O, no knowledge of queues (``pages`` picks the numbers).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 420  # the viewBox: drawn at about this size in a third of a 1280 px page, full width on a phone
HEIGHT = 200
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 10, 42  # margins: y values on the left, labels and legend below


@dataclass(frozen=True)
class Line:
    """One series of a chart: its name (legend) and one value per label (None: no value)."""

    name: str
    values: Sequence[float | None]


def nice_max(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^n at or above ``value`` (1 for nothing to show)."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10.0 * power  # pragma: no cover - the loop always ends at 10


def grid_lines(scale: float) -> int:
    """How many steps up to ``scale`` keep round values: 5 for 2.5 or 5 x 10^n (steps of 0.5
    or 1 x 10^n), else 4 (a quarter of 1 or 2 x 10^n)."""
    lead = scale / 10.0 ** math.floor(math.log10(scale)) if scale > 0 and math.isfinite(scale) else 1.0
    return 5 if round(lead, 6) in (2.5, 5.0) else 4


def short(value: float, unit: str = "") -> str:
    """A grid value in a few characters: 0, 2.5, 40, 1.2k, 3M (``%`` for ratios shown as percent)."""
    if unit == "%":
        return f"{value * 100:.0f}%"
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}{unit}"
    return f"{value:.3g}{unit}"


def _finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def line_chart(
    lines: Sequence[Line],
    labels: Sequence[str],
    *,
    title: str,
    unit: str = "",
    top: float | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """An ``<svg>`` element: each line over ``labels`` (x), the y scale from 0 to ``top``
    (default: a nice value above the largest point). ``unit`` "%" shows ratios (0-1) as percent."""
    points = len(labels)
    found = [v for line in lines for v in _finite(line.values)]
    scale = top if top is not None and top > 0 else nice_max(max(found, default=0.0))
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    steps = grid_lines(scale)
    for i in range(steps + 1):
        value = scale * i / steps
        y = TOP + plot_h - plot_h * i / steps
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">'
                     f"{escape(short(value, unit))}</text>")

    def x_of(i: int) -> float:
        return LEFT + (plot_w * i / (points - 1) if points > 1 else plot_w / 2)

    for i in sorted({0, (points - 1) // 2, points - 1} if points else set()):
        anchor = "start" if i == 0 and points > 1 else "end" if i == points - 1 and points > 1 else "middle"
        parts.append(f'<text class="axis" x="{x_of(i):.1f}" y="{TOP + plot_h + 14}" '
                     f'text-anchor="{anchor}">{escape(labels[i])}</text>')
    if not found:
        parts.append(f'<text class="empty" x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h / 2:.1f}" '
                     'text-anchor="middle">no data yet</text>')
    for n, line in enumerate(lines):
        parts.extend(_polyline(n, line, labels, x_of, lambda v: TOP + plot_h - plot_h * min(v, scale) / scale, unit))
        lx = LEFT + n * 110
        parts.append(f'<rect class="swatch series-{n}" x="{lx}" y="{height - 12}" width="10" height="10"/>')
        parts.append(f'<text class="legend" x="{lx + 14}" y="{height - 3}">{escape(line.name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _polyline(
    n: int, line: Line, labels: Sequence[str], x_of: Callable[[int], float], y_of: Callable[[float], float], unit: str
) -> list[str]:
    """One series: a polyline per run of values (a None breaks it) and a hover title per point."""
    parts: list[str] = []
    run: list[str] = []
    dots: list[str] = []
    for i, value in enumerate(line.values[: len(labels)]):
        if value is None or not math.isfinite(value):
            if run:
                parts.append(_polyline_of(n, run))
            run = []
            continue
        x, y = x_of(i), y_of(max(value, 0.0))
        run.append(f"{x:.1f},{y:.1f}")
        shown = short(value, unit)
        dots.append(f'<circle class="dot series-{n}" cx="{x:.1f}" cy="{y:.1f}" r="1.8">'
                    f"<title>{escape(labels[i])} {escape(line.name)}: {escape(shown)}</title></circle>")
    if run:
        parts.append(_polyline_of(n, run))
    return parts + dots


def _polyline_of(n: int, run: list[str]) -> str:
    return f'<polyline class="line series-{n}" fill="none" points="{" ".join(run)}"/>'
