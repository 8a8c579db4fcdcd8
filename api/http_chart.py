"""A KPI's history as an SVG line chart over its health bands (green, amber, red).

Each period of thresholds gets its own bands, so a threshold change shows where it
took effect. Pure function of the history: no I/O, no third-party plotting library.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from xml.sax.saxutils import escape

from goalledger.projections.history import KpiHistory, ThresholdPeriod

WIDTH, HEIGHT = 800, 320
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 32, 40
COLOURS = {"green": "#c8ecd0", "amber": "#fbe7b5", "red": "#f6c9c5"}
DOTS = {"green": "#1e8e3e", "amber": "#b06000", "red": "#c5221f"}


class _Frame:
    """Maps (time, value) into the plot area."""

    def __init__(self, x0: datetime, x1: datetime, y0: float, y1: float) -> None:
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1
        self.span = max((x1 - x0).total_seconds(), 1.0)

    def x(self, moment: datetime) -> float:
        share = (min(max(moment, self.x0), self.x1) - self.x0).total_seconds() / self.span
        return round(LEFT + share * (WIDTH - LEFT - RIGHT), 2)

    def y(self, value: float) -> float:
        share = (min(max(value, self.y0), self.y1) - self.y0) / (self.y1 - self.y0)
        return round(HEIGHT - BOTTOM - share * (HEIGHT - TOP - BOTTOM), 2)


def render_chart(
    history: KpiHistory, start: datetime | None = None, end: datetime | None = None
) -> str:
    """The SVG document for a KPI history (readings only; buckets are not charted)."""
    items = history.items
    times = [item.observed_at for item in items]
    x0 = start or (min(times) if times else history.at - timedelta(days=30))
    x1 = end or (max(times) if times else history.at)
    if x1 <= x0:
        x0, x1 = x0 - timedelta(hours=12), x1 + timedelta(hours=12)
    values = [float(item.value) for item in items] + _bounds(history.thresholds)
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (high - low) * 0.08 or abs(high) * 0.1 or 1.0
    frame = _Frame(x0, x1, low - pad, high + pad)
    title = f"{history.name} ({history.unit})" if history.unit else history.name
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}"'
        f' viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title, _QUOTE)}">',
        f"<title>{escape(title)}</title>",
        '<rect x="0" y="0" width="100%" height="100%" fill="#ffffff"/>',
        *_bands(history, frame),
        *_axes(frame),
        f'<text x="{LEFT}" y="20" font-family="sans-serif" font-size="14"'
        f' font-weight="bold">{escape(title)}</text>',
    ]
    if items:
        points = " ".join(f"{frame.x(i.observed_at)},{frame.y(float(i.value))}" for i in items)
        parts.append(
            f'<polyline class="series" fill="none" stroke="#1a73e8" stroke-width="1.5"'
            f' points="{points}"/>'
        )
        parts += [
            f'<circle class="reading" cx="{frame.x(i.observed_at)}" cy="{frame.y(float(i.value))}"'
            f' r="2.5" fill="{DOTS[i.health]}"><title>{escape(i.reading_id)}: {i.value}'
            f" ({i.health})</title></circle>"
            for i in items
        ]
    else:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle"'
            ' font-family="sans-serif" font-size="13" fill="#5f6368">no readings</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


_QUOTE = {'"': "&quot;"}


def _bounds(periods: list[ThresholdPeriod]) -> list[float]:
    found = []
    for period in periods:
        t = period.thresholds
        found += [
            float(b)
            for b in (t.green_low, t.green_high, t.amber_low, t.amber_high)
            if b is not None
        ]
    return found


def _bands(history: KpiHistory, frame: _Frame) -> list[str]:
    """Per thresholds period: red behind, amber over it, green on top (green ⊂ amber)."""
    rects = []
    periods = history.thresholds
    for index, period in enumerate(periods):
        begins = max(period.effective_from, frame.x0)
        ends = periods[index + 1].effective_from if index + 1 < len(periods) else frame.x1
        ends = min(ends, frame.x1)
        if ends <= begins and not (index == len(periods) - 1 and begins == frame.x1):
            continue
        left, right = frame.x(begins), frame.x(ends)
        t = period.thresholds
        for health, low, high in (
            ("red", None, None),
            ("amber", t.amber_low, t.amber_high),
            ("green", t.green_low, t.green_high),
        ):
            top = frame.y(frame.y1 if high is None else float(high))
            bottom = frame.y(frame.y0 if low is None else float(low))
            rects.append(
                f'<rect class="band {health}" x="{left}" y="{top}" width="{round(right - left, 2)}"'
                f' height="{round(bottom - top, 2)}" fill="{COLOURS[health]}"/>'
            )
    return rects


def _axes(frame: _Frame) -> list[str]:
    lines = [
        f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}"'
        ' stroke="#5f6368"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="#5f6368"/>',
    ]
    for step in range(5):
        value = frame.y0 + (frame.y1 - frame.y0) * step / 4
        y = frame.y(value)
        label = _number(value)
        lines.append(
            f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end" font-family="sans-serif"'
            f' font-size="11">{label}</text>'
        )
    for moment, anchor in ((frame.x0, "start"), (frame.x1, "end")):
        lines.append(
            f'<text x="{frame.x(moment)}" y="{HEIGHT - BOTTOM + 18}" text-anchor="{anchor}"'
            f' font-family="sans-serif" font-size="11">{moment.date().isoformat()}</text>'
        )
    return lines


def _number(value: float) -> str:
    return f"{Decimal(repr(round(value, 4))).normalize():f}"
