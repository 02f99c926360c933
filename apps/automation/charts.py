"""The timeline chart of a schedule, drawn server-side with the house chart kit (llmbench.svg): one figure per
completed run in firing order, its interval as a whisker, and the runs with a regression marked in red."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from xml.sax.saxutils import quoteattr

from llmbench import svg

WIDTH, HEIGHT = 720, 300
REGRESSION = "#c23b3b"
LINE = svg.PALETTE[0]
MAX_X_LABELS = 6


@dataclass(frozen=True)
class TimelinePoint:
    when: datetime  # already on the schedule's clock
    value: float | None
    low: float | None
    high: float | None
    regression: bool
    run_id: int | None


def timeline_chart(points: list[TimelinePoint], *, label: str, unit: str) -> str:
    """The figure per run (x: the runs in order, labelled with their time), whiskers for the intervals, a red ring
    and a legend entry for each regression."""
    drawn = [p for p in points if svg._clean(p.value) is not None]
    if not drawn:
        return svg._no_data(WIDTH)
    values = [float(p.value) for p in drawn]
    values += [float(v) for p in drawn for v in (p.low, p.high) if svg._clean(v) is not None]
    y_ticks = svg._nice_ticks(min(values), max(values))
    y_label = f"{label} ({unit})" if unit else label
    left = 16 + max(svg._text_width(svg._number(t)) for t in y_ticks) + 18
    right, bottom = WIDTH - 40.0, HEIGHT - 26 - 18
    names, colours = [label], [LINE]
    if any(p.regression for p in drawn):
        names.append("Worse than the run before")
        colours.append(REGRESSION)
    legend, top = svg._legend(names, colours, WIDTH, left)
    top += 6
    count = len(drawn)
    x_scale = svg._scale(0.0, float(max(count - 1, 1)), left + 12, right - 12)
    if count == 1:
        x_scale = svg._scale(0.0, 0.0, left, right)
    y_scale = svg._scale(y_ticks[0], y_ticks[-1], bottom, top)
    step = max(1, -(-count // MAX_X_LABELS))
    ticks = [float(i) for i in range(0, count, step)]
    x_labels = [drawn[int(i)].when.strftime("%m-%d %H:%M") for i in ticks]
    body = svg._y_axis(y_scale, y_ticks, left, right)
    body += svg._x_axis(x_scale, ticks, x_labels, top, bottom)
    body += svg._frame(left, top, right, bottom)
    pixels = [(x_scale(float(i)), y_scale(float(p.value))) for i, p in enumerate(drawn)]
    if len(pixels) > 1:
        path = "M" + " L".join(f"{svg._coord(x)} {svg._coord(y)}" for x, y in pixels)
        attrs = {"d": path, "fill": "none", "stroke": LINE, "stroke-width": 2, "stroke-linejoin": "round"}
        body.append(svg._tag("path", attrs | {"class": "line"}))
    for (x, y), point in zip(pixels, drawn, strict=True):
        low, high = svg._clean(point.low), svg._clean(point.high)
        if low is not None and high is not None:
            body.append(svg._line(x, y_scale(low), x, y_scale(high), LINE, 1.5, css="interval"))
            for end in (low, high):
                body.append(svg._line(x - 4, y_scale(end), x + 4, y_scale(end), LINE, 1.5, css="interval"))
        title = f"Run #{point.run_id}: {svg._number(float(point.value))}{(' ' + unit) if unit else ''}"
        if point.regression:
            ring = {"cx": x, "cy": y, "r": 7.0, "fill": "#ffffff", "stroke": REGRESSION, "stroke-width": 2.5}
            body.append(svg._tag("circle", ring | {"class": "regression"}))
            title += ", a regression"
        dot = {"cx": x, "cy": y, "r": 3.5, "fill": REGRESSION if point.regression else LINE, "class": "point"}
        body.append(f"<g>{svg._tag('circle', dot)}{svg._tag('title', {}, title)}</g>")
    body += legend + svg._axis_titles(WIDTH, HEIGHT, "Run (time on the schedule's clock)", y_label,
                                      ((left + right) / 2, (top + bottom) / 2))  # fmt: skip
    drawn_svg = svg._svg(WIDTH, HEIGHT, body)
    aria = quoteattr(f"{y_label} per scheduled run")
    return drawn_svg.replace("<svg ", f'<svg class="chart-timeline" role="img" aria-label={aria} ', 1)
