"""Inline SVG charts (stacked bars, lines with reference lines) for the HTML report: no script and no
library, so the file opens anywhere. Every bar, point and line carries its figure in ``data-series``,
``data-x`` and ``data-value`` attributes and a ``<title>`` (the tooltip), so what a chart shows can be
checked against the ledger. Every name is escaped: agent and model names are client-provided text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 640, 250
LEFT, RIGHT, TOP, BOTTOM = 70, 36, 18, 30
GRID_LINES = 5
PALETTE = ("#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5")
OTHERS = "#9aa0a6"
REF_COLOURS = {"target": "#3ca951", "alert": "#efb118", "block": "#d62728", "budget": "#555555"}
MAX_X_LABELS = 7
MAX_DOTS = 60
"""A line with more points is drawn without dots (they are still there, for their figures)."""

Format = Callable[[float], str]


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float | None]
    colour: str = ""


@dataclass(frozen=True, slots=True)
class Ref:
    """A horizontal line: a target, a budget threshold."""

    name: str
    value: float
    kind: str = "target"
    """``target``, ``alert``, ``block`` or ``budget``: its colour."""


def coloured(series: Sequence[Series]) -> list[Series]:
    """Series given the palette's colours in order, unless they bring their own."""
    return [Series(s.name, s.values, s.colour or PALETTE[i % len(PALETTE)]) for i, s in enumerate(series)]


def nice_top(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (1 for nothing): a fifth of it
    is a round grid step."""
    if value <= 0:
        return 1.0
    power: float = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value * (1 - 1e-12))


def num(value: float) -> str:
    """A figure as an attribute: exact for integers, 10 significant digits otherwise."""
    return str(int(value)) if float(value).is_integer() else format(value, ".10g")


def bars(name: str, labels: Sequence[str], series: Sequence[Series], fmt: Format) -> str:
    """Stacked bars, one per label; ``series`` values line up with ``labels``."""
    series = coloured(series)
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    top = nice_top(max(totals, default=0))
    out = _open(name, top, fmt)
    plot_w = WIDTH - LEFT - RIGHT
    step = plot_w / max(len(labels), 1)
    width = max(step * 0.7, 1)
    for i, label in enumerate(labels):
        x = LEFT + i * step + (step - width) / 2
        base = 0.0
        for s in series:
            value = s.values[i] or 0
            if not value:
                continue
            y0, y1 = _y(base, top), _y(base + value, top)
            out.append(
                f'<rect x="{x:.1f}" y="{y1:.1f}" width="{width:.1f}" height="{y0 - y1:.1f}" '
                f'fill="{s.colour}" {_data(s.name, label, value)}>'
                f"<title>{escape(s.name)}, {escape(label)}: {escape(fmt(value))}</title></rect>"
            )
            base += value
    out.extend(_x_labels([(LEFT + (i + 0.5) * step, label) for i, label in enumerate(labels)]))
    return _close(out, series)


def lines(
    name: str,
    xs: Sequence[float],
    series: Sequence[Series],
    fmt_x: Callable[[float], str],
    fmt: Format,
    refs: Sequence[Ref] = (),
    top: float | None = None,
    span: tuple[float, float] | None = None,
) -> str:
    """Lines over numeric ``xs`` (times), gaps where a value is None, and horizontal reference lines.
    ``span``: the x range (default: the data's); then the x labels are evenly spaced over it."""
    series = coloured(series)
    values = [v for s in series for v in s.values if v is not None] + [r.value for r in refs]
    top = top if top is not None else nice_top(max(values, default=0))
    lo, hi = span or ((min(xs), max(xs)) if xs else (0.0, 1.0))
    plot_w = WIDTH - LEFT - RIGHT

    def x_of(x: float) -> float:
        return LEFT + (plot_w / 2 if hi == lo else (x - lo) / (hi - lo) * plot_w)

    out = _open(name, top, fmt)
    for ref in refs:
        y = _y(ref.value, top)
        colour = REF_COLOURS.get(ref.kind, REF_COLOURS["target"])
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" '
            f'stroke-dasharray="6 4" stroke-width="1.5" data-ref="{escape(ref.kind)}" '
            f'data-value="{num(ref.value)}"><title>{escape(ref.name)}: {escape(fmt(ref.value))}</title>'
            "</line>"
            f'<text x="{WIDTH - RIGHT - 4}" y="{y - 4:.1f}" text-anchor="end" fill="{colour}">'
            f"{escape(ref.name)}</text>"
        )
    for s in series:
        points = [(x_of(x), _y(v, top), x, v) for x, v in zip(xs, s.values, strict=True) if v is not None]
        for segment in _segments(xs, s.values, x_of, top):
            out.append(f'<polyline points="{segment}" fill="none" stroke="{s.colour}" stroke-width="2"/>')
        radius = 3 if len(points) <= MAX_DOTS else 0  # a dense line is drawn without its dots
        for px, py, x, v in points:
            out.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{radius}" fill="{s.colour}" '
                f"{_data(s.name, fmt_x(x), v)}><title>{escape(s.name)}, {escape(fmt_x(x))}: "
                f"{escape(fmt(v))}</title></circle>"
            )
    n = MAX_X_LABELS - 1
    ticks = [lo + (hi - lo) * i / n for i in range(n + 1)] if span else sorted(set(xs))
    out.extend(_x_labels([(x_of(x), fmt_x(x)) for x in ticks]))
    return _close(out, series, refs)


def _segments(
    xs: Sequence[float], values: Sequence[float | None], x_of: Callable[[float], float], top: float
) -> list[str]:
    segments: list[list[str]] = [[]]
    for x, v in zip(xs, values, strict=True):
        if v is None:
            segments.append([])
        else:
            segments[-1].append(f"{x_of(x):.1f},{_y(v, top):.1f}")
    return [" ".join(s) for s in segments if len(s) > 1]


def _y(value: float, top: float) -> float:
    plot_h = HEIGHT - TOP - BOTTOM
    return TOP + plot_h * (1 - max(0.0, min(value, top)) / top)


def _data(series: str, x: str, value: float) -> str:
    return f'data-series="{escape(series)}" data-x="{escape(x)}" data-value="{num(value)}"'


def _open(name: str, top: float, fmt: Format) -> list[str]:
    out = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(name)}" '
        f'data-chart="{escape(name)}">'
    ]
    for i in range(GRID_LINES + 1):
        value = top * i / GRID_LINES
        y = _y(value, top)
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(fmt(value))}</text>'
        )
    return out


def _x_labels(placed: Sequence[tuple[float, str]]) -> list[str]:
    every = max(1, math.ceil(len(placed) / MAX_X_LABELS))
    return [
        f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle">{escape(label)}</text>'
        for x, label in placed[::every]
    ]


def _close(out: list[str], series: Sequence[Series], refs: Sequence[Ref] = ()) -> str:
    out.append("</svg>")
    keys = [(s.colour, s.name, "") for s in series]
    keys += [(REF_COLOURS.get(r.kind, REF_COLOURS["target"]), r.name, " ref") for r in refs]
    legend = "".join(
        f'<li class="key{ref}"><span style="background:{colour}"></span>{escape(label)}</li>'
        for colour, label, ref in keys
    )
    return "".join(out) + f'<ul class="legend">{legend}</ul>'
