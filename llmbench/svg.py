"""Server-side SVG charts for PDF reports: WeasyPrint runs no JavaScript, so the ECharts charts are redrawn here."""

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from xml.sax.saxutils import escape, quoteattr

# The first four are the web pages' palette, so a chart reads the same on screen and on paper.
PALETTE = ("#3b6fd8", "#e07b39", "#2f9e6e", "#b2458f", "#6b6b6b", "#8c564b", "#17a2b8", "#9a8a1f")
FONT = "DejaVu Sans, sans-serif"  # fonts-dejavu-core is what WeasyPrint finds on Debian
TEXT = "#222222"
AXIS = "#555555"
GRID = "#e2e2e2"
HEAT_LOW, HEAT_MID, HEAT_HIGH = "#c23b3b", "#f2c14e", "#2f9e6e"
FRONT_COLOUR, OFF_FRONT_COLOUR = "#3b6fd8", "#93a9db"
FONT_SIZE = 11
CHAR_WIDTH = 0.6  # DejaVu Sans averages about 0.6 em per character; close enough to size margins
MAX_CELL_TEXT = 150  # beyond this a heatmap's numbers overlap more than they help

Scale = Callable[[float], float]  # data value to pixel


@dataclass(frozen=True)
class Series:
    """One line of a line chart; a None y is a gap."""

    name: str
    points: list[tuple[float | date, float | None]]


@dataclass(frozen=True)
class Bar:
    """One bar of a bar chart, with an optional error bar from low to high."""

    label: str
    value: float | None
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Point:
    """One labelled point of a scatter plot."""

    label: str
    x: float
    y: float


def _clean(value: float | None) -> float | None:
    """The value as a float, or None for None, NaN and infinities (which would wreck the scale)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _number(value: float) -> str:
    """A compact label for a number: 0.3 rather than 0.30000000000000004, 0 rather than -0."""
    text = f"{value:.6g}"
    return "0" if text == "-0" else text


def _coord(value: float) -> str:
    """A coordinate with two decimals at most, so output is short and identical from run to run."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _truncate(text: str, max_chars: int) -> str:
    """The text cut to max_chars characters, ending in an ellipsis when cut."""
    max_chars = max(max_chars, 1)
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def _text_width(text: str, font_size: float = FONT_SIZE) -> float:
    """An estimate of the rendered width of the text, for margins and fitting."""
    return len(text) * font_size * CHAR_WIDTH


def _tag(name: str, attrs: dict[str, object], text: str | None = None) -> str:
    """One element; every attribute is quoted and the text escaped, so no label can become markup."""
    parts = [name]
    for key, value in attrs.items():
        shown = _coord(value) if isinstance(value, float) else str(value)
        parts.append(f"{key}={quoteattr(shown)}")
    opening = " ".join(parts)
    return f"<{opening}/>" if text is None else f"<{opening}>{escape(text)}</{name}>"


def _text(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "middle",
    size: float = FONT_SIZE,
    fill: str = TEXT,
    css: str = "",
) -> str:
    """A text element with y as its baseline; css names what it is, so tests can find it."""
    attrs: dict[str, object] = {"x": float(x), "y": float(y), "font-size": float(size), "fill": fill}
    attrs["text-anchor"] = anchor
    if css:
        attrs["class"] = css
    return _tag("text", attrs, text)


def _line(x1: float, y1: float, x2: float, y2: float, colour: str = AXIS, width: float = 1, css: str = "") -> str:
    """A straight line segment."""
    attrs: dict[str, object] = {"x1": float(x1), "y1": float(y1), "x2": float(x2), "y2": float(y2), "stroke": colour}
    attrs["stroke-width"] = float(width)
    if css:
        attrs["class"] = css
    return _tag("line", attrs)


def _svg(width: int, height: int, body: list[str]) -> str:
    """The standalone svg document around the body elements."""
    head = f'xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
    return f"<svg {head} font-family={quoteattr(FONT)}>" + "".join(body) + "</svg>"


def _no_data(width: int) -> str:
    """The small placeholder drawn instead of a chart when there is nothing to plot."""
    return _svg(width, 40, [_text(width / 2, 24, "No data", size=12, fill="#777777")])


def _nice_ticks(low: float, high: float, max_ticks: int = 6) -> list[float]:
    """Tick values at a 1, 2, 2.5 or 5 × 10^k step that cover low..high in about max_ticks ticks."""
    if low == high:  # one value: widen around it so it sits inside the axis, not on an edge
        pad = abs(low) * 0.5 or 1.0
        low, high = low - pad, high + pad
    raw_step = (high - low) / max(max_ticks - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw_step * (1 - 1e-9))
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    # Multiplying an integer by the step (not adding steps) keeps float error from accumulating.
    return [k * step for k in range(first, last + 1)]


def _date_ticks(low: int, high: int, max_ticks: int) -> list[int]:
    """Tick days (ordinals) from the first date at a whole-day, week, month-ish or year-ish step."""
    span = max(high - low, 1)
    decade = 3652 * math.ceil(span / (3652 * (max_ticks - 1)))  # only for spans past the named steps
    step = next((s for s in (1, 2, 7, 14, 30, 61, 91, 182, 365, 730, 1826, 3652) if span / s <= max_ticks - 1), decade)
    # The last tick is the first on or after the last date, so the ticks cover every date.
    return list(range(low, high + step, step))


def _scale(low: float, high: float, start: float, end: float) -> Scale:
    """A linear map from data values low..high to pixels start..end (the middle when low equals high)."""
    span = high - low
    return lambda value: start + (value - low) / span * (end - start) if span else (start + end) / 2


def _mix(colour_a: str, colour_b: str, t: float) -> str:
    """The colour a fraction t of the way from colour_a to colour_b."""
    pairs = [(int(colour_a[i : i + 2], 16), int(colour_b[i : i + 2], 16)) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in pairs)


def _heat_colour(t: float) -> str:
    """Red at 0, yellow at 0.5, green at 1: the heatmap's colour scale."""
    t = min(max(t, 0.0), 1.0)
    return _mix(HEAT_LOW, HEAT_MID, t * 2) if t <= 0.5 else _mix(HEAT_MID, HEAT_HIGH, (t - 0.5) * 2)


def _ink_for(fill: str) -> str:
    """Dark or white text, whichever reads better on the fill colour."""
    red, green, blue = (int(fill[i : i + 2], 16) for i in (1, 3, 5))
    return TEXT if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else "#ffffff"


def _y_axis(scale: Scale, ticks: list[float], left: float, right: float) -> list[str]:
    """Grid lines and tick labels for a vertical value axis."""
    out = []
    for tick in ticks:
        y = scale(tick)
        out.append(_line(left, y, right, y, GRID))
        out.append(_text(left - 6, y + FONT_SIZE * 0.35, _number(tick), anchor="end", css="tick-y"))
    return out


def _x_axis(scale: Scale, ticks: list[float], labels: list[str], top: float, bottom: float) -> list[str]:
    """Grid lines, tick marks and tick labels for a horizontal axis."""
    out = []
    for tick, label in zip(ticks, labels, strict=True):
        x = scale(tick)
        out.append(_line(x, top, x, bottom, GRID))
        out.append(_line(x, bottom, x, bottom + 4))
        out.append(_text(x, bottom + 6 + FONT_SIZE, label, css="tick-x"))
    return out


def _axis_titles(width: int, height: int, x_label: str, y_label: str, plot_mid: tuple[float, float]) -> list[str]:
    """The x axis title under the plot and the y axis title turned up its left side."""
    out = []
    if x_label:
        out.append(_text(plot_mid[0], height - 6, x_label, css="axis-label"))
    if y_label:
        x, y = 14.0, plot_mid[1]
        attrs = {"x": x, "y": y, "font-size": float(FONT_SIZE), "fill": TEXT, "text-anchor": "middle"}
        attrs |= {"transform": f"rotate(-90 {_coord(x)} {_coord(y)})", "class": "axis-label"}
        out.append(_tag("text", attrs, y_label))
    return out


def _legend(names: list[str], colours: list[str], width: int, left: float) -> tuple[list[str], float]:
    """A swatch and name per series in rows across the top; returns the elements and the height used."""
    out, x, y = [], left, 14.0
    for name, colour in zip(names, colours, strict=True):
        label = _truncate(name, 32)
        item_width = 18 + _text_width(label) + 14
        if x + item_width > width and x > left:
            x, y = left, y + 16
        out.append(_tag("rect", {"x": float(x), "y": y - 8, "width": 12, "height": 8, "fill": colour}))
        out.append(_text(x + 16, y, label, anchor="start", css="legend"))
        x += item_width
    return out, y + 8


def _frame(left: float, top: float, right: float, bottom: float) -> list[str]:
    """The two axis lines along the left and bottom of the plot area."""
    return [_line(left, top, left, bottom), _line(left, bottom, right, bottom)]


def _runs(points: list[tuple[float | date, float | None]]) -> list[list[tuple[float, float]]]:
    """The points, dates as day numbers, split into unbroken runs at each missing (None or NaN) y."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if (y := _clean(y)) is None:
            runs.append([])
        else:
            runs[-1].append((float(x.toordinal()) if isinstance(x, date) else float(x), y))
    return [run for run in runs if run]


def _line_x_ticks(low: float, high: float, is_date: bool, plot_width: float) -> tuple[list[float], list[str]]:
    """Tick positions and labels for a line chart's x axis: YYYY-MM-DD for dates, nice numbers otherwise."""
    if is_date:
        days = _date_ticks(int(low), int(high), max(2, int(plot_width // 80)))
        return [float(d) for d in days], [date.fromordinal(d).isoformat() for d in days]
    ticks = _nice_ticks(low, high, max(2, int(plot_width // 60)))
    return ticks, [_number(t) for t in ticks]


def line_chart(
    series: list[Series], *, width: int = 640, height: int = 280, x_label: str = "", y_label: str = ""
) -> str:
    """Lines over numbers or dates, broken where a y is missing, with a legend when there are several."""
    runs_by_series = [_runs(one.points) for one in series]
    xs = [x for runs in runs_by_series for run in runs for x, _ in run]
    ys = [y for runs in runs_by_series for run in runs for _, y in run]
    if not xs:
        return _no_data(width)
    kinds = {isinstance(x, date) for one in series for x, _ in one.points}
    if len(kinds) > 1:
        raise ValueError("a line chart's x values must be all dates or all numbers")
    y_ticks = _nice_ticks(min(ys), max(ys))
    # Colours follow the position in the input, so a series keeps its colour when another one is empty.
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(series))]
    drawn = [i for i, runs in enumerate(runs_by_series) if runs]

    left = 16 + max(_text_width(_number(t)) for t in y_ticks) + (18 if y_label else 0)
    right = width - 32.0  # room for half of the last x tick label
    bottom = height - 26 - (18 if x_label else 0)
    legend, top = [], 12.0
    if len(drawn) > 1:
        legend, top = _legend([series[i].name for i in drawn], [colours[i] for i in drawn], width, left)
    x_ticks, x_texts = _line_x_ticks(min(xs), max(xs), kinds == {True}, right - left)
    x_scale = _scale(x_ticks[0], x_ticks[-1], left, right)
    y_scale = _scale(y_ticks[0], y_ticks[-1], bottom, top)

    body = _y_axis(y_scale, y_ticks, left, right) + _x_axis(x_scale, x_ticks, x_texts, top, bottom)
    body += _frame(left, top, right, bottom)
    for i in drawn:
        for run in runs_by_series[i]:
            pixels = [(x_scale(x), y_scale(y)) for x, y in run]
            if len(pixels) == 1:  # a lone point between gaps has no segment to draw, so mark it
                px, py = pixels[0]
                body.append(_tag("circle", {"cx": px, "cy": py, "r": 2.5, "fill": colours[i], "class": "lone"}))
                continue
            path = "M" + " L".join(f"{_coord(px)} {_coord(py)}" for px, py in pixels)
            attrs = {"d": path, "fill": "none", "stroke": colours[i], "stroke-width": 2, "stroke-linejoin": "round"}
            body.append(_tag("path", attrs | {"class": "line"}))
    body += legend + _axis_titles(width, height, x_label, y_label, ((left + right) / 2, (top + bottom) / 2))
    return _svg(width, height, body)


def bar_chart(
    bars: list[Bar], *, width: int = 640, height: int = 280, y_label: str = "", horizontal: bool = False
) -> str:
    """Bars from a zero line, negative ones going the other way, with optional whiskers from low to high."""
    values = [_clean(bar.value) for bar in bars]
    if all(value is None for value in values):
        return _no_data(width)
    extent = [0.0]
    for bar, value in zip(bars, values, strict=True):
        if value is not None:
            extent += [v for v in (value, _clean(bar.low), _clean(bar.high)) if v is not None]
    ticks = _nice_ticks(min(extent), max(extent))
    tick_width = max(_text_width(_number(t)) for t in ticks)

    if horizontal:
        labels = [_truncate(bar.label, 24) for bar in bars]
        left = 14 + max(tick_width / 2, max(_text_width(label) for label in labels))
        top, right, bottom = 12.0, width - 16 - tick_width / 2, height - 26 - (18 if y_label else 0)
        band = (bottom - top) / len(bars)
        scale = _scale(ticks[0], ticks[-1], left, right)
        body = _x_axis(scale, ticks, [_number(t) for t in ticks], top, bottom)
        body.append(_line(left, bottom, right, bottom))
    else:
        left = 16 + tick_width + (18 if y_label else 0)
        top, right, bottom = 12.0, width - 12.0, height - 26.0
        band = (right - left) / len(bars)
        max_chars = int(band / (FONT_SIZE * CHAR_WIDTH))
        labels = [_truncate(bar.label, max_chars) for bar in bars]
        scale = _scale(ticks[0], ticks[-1], bottom, top)
        body = _y_axis(scale, ticks, left, right)
        body.append(_line(left, top, left, bottom))

    zero = scale(0.0)
    for i, (bar, value, label) in enumerate(zip(bars, values, labels, strict=True)):
        centre = (top if horizontal else left) + band * (i + 0.5)
        thickness = band * 0.6
        if horizontal:
            body.append(_text(left - 6, centre + FONT_SIZE * 0.35, label, anchor="end", css="category"))
        else:
            body.append(_text(centre, bottom + 6 + FONT_SIZE, label, css="category"))
        if value is None:
            continue
        end = scale(value)
        if horizontal:
            rect = {"x": min(zero, end), "y": centre - thickness / 2, "width": abs(end - zero), "height": thickness}
        else:
            rect = {"x": centre - thickness / 2, "y": min(zero, end), "width": thickness, "height": abs(end - zero)}
        body.append(_tag("rect", rect | {"fill": PALETTE[0], "class": "bar"}))
        body += _whisker(bar, value, scale, centre, thickness / 4, horizontal)

    if horizontal:
        body.append(_line(zero, top, zero, bottom, TEXT, css="zero"))
        if y_label:
            body.append(_text((left + right) / 2, height - 6, y_label, css="axis-label"))
    else:
        body.append(_line(left, zero, right, zero, TEXT, css="zero"))
        body += _axis_titles(width, height, "", y_label, ((left + right) / 2, (top + bottom) / 2))
    return _svg(width, height, body)


def _whisker(bar: Bar, value: float, scale: Scale, centre: float, cap: float, horizontal: bool) -> list[str]:
    """The error bar of one bar, from low to high (either end defaults to the value), with caps."""
    low, high = _clean(bar.low), _clean(bar.high)
    if low is None and high is None:
        return []
    start, end = scale(value if low is None else low), scale(value if high is None else high)
    if horizontal:
        parts = [(start, centre, end, centre), (start, centre - cap, start, centre + cap)]
        parts.append((end, centre - cap, end, centre + cap))
    else:
        parts = [(centre, start, centre, end), (centre - cap, start, centre + cap, start)]
        parts.append((centre - cap, end, centre + cap, end))
    return [_line(*part, TEXT, 1.2, css="whisker") for part in parts]


def heatmap(
    x_values: list[str],
    y_values: list[str],
    cells: list[tuple[int, int, float, int]],
    *,
    width: int = 640,
    height: int = 320,
    x_label: str = "",
    y_label: str = "",
) -> str:
    """A grid of cells coloured red (lowest mean) through yellow to green (highest), with the means printed."""
    shown = [(x, y, mean, n) for x, y, mean, n in cells if _clean(mean) is not None]
    if not shown or not x_values or not y_values:
        return _no_data(width)
    for x, y, _, _ in shown:
        if not (0 <= x < len(x_values) and 0 <= y < len(y_values)):
            raise ValueError(f"heatmap cell ({x}, {y}) is outside the {len(x_values)} × {len(y_values)} grid")
    low, high = min(c[2] for c in shown), max(c[2] for c in shown)

    y_texts = [_truncate(v, 20) for v in y_values]
    left = 14 + max(_text_width(v) for v in y_texts) + (18 if y_label else 0)
    top, right, bottom = 30.0, width - 12.0, height - 26 - (18 if x_label else 0)
    cell_w, cell_h = (right - left) / len(x_values), (bottom - top) / len(y_values)
    x_texts = [_truncate(v, int(cell_w / (FONT_SIZE * CHAR_WIDTH))) for v in x_values]

    body = [_tag("rect", {"x": left, "y": top, "width": right - left, "height": bottom - top, "fill": "#f2f2f2"})]
    print_means = len(shown) <= MAX_CELL_TEXT
    for x, y, mean, n in shown:
        fill = _heat_colour(0.5 if high == low else (mean - low) / (high - low))
        cell_x, cell_y = left + x * cell_w, top + y * cell_h
        rect = {"x": cell_x, "y": cell_y, "width": cell_w, "height": cell_h, "fill": fill, "stroke": "#ffffff"}
        body.append(_tag("rect", rect | {"class": "cell"}))
        if print_means:
            size = min(FONT_SIZE, cell_h * 0.45, cell_w / 4)
            with_n = cell_h >= 34 and cell_w >= 40  # n only where there is room for a second line
            mid_y = cell_y + cell_h / 2 + size * 0.35 - (size * 0.55 if with_n else 0)
            body.append(_text(cell_x + cell_w / 2, mid_y, f"{mean:.1f}", size=size, fill=_ink_for(fill), css="mean"))
            if with_n:
                body.append(
                    _text(cell_x + cell_w / 2, mid_y + size * 1.1, f"n={n}", size=size * 0.8, fill=_ink_for(fill))
                )
    for i, text in enumerate(x_texts):
        body.append(_text(left + (i + 0.5) * cell_w, bottom + 6 + FONT_SIZE, text, css="category-x"))
    for i, text in enumerate(y_texts):
        y = top + (i + 0.5) * cell_h + FONT_SIZE * 0.35
        body.append(_text(left - 6, y, text, anchor="end", css="category-y"))
    body += _heat_legend(low, high, right)
    body += _axis_titles(width, height, x_label, y_label, ((left + right) / 2, (top + bottom) / 2))
    return _svg(width, height, body)


def _heat_legend(low: float, high: float, right: float) -> list[str]:
    """The low value, a strip of the colour scale, and the high value, top right."""
    steps, step_w = 10, 8
    low_text, high_text = _number(round(low, 3)), _number(round(high, 3))
    strip_right = right - _text_width(high_text) - 6
    strip_left = strip_right - steps * step_w
    out = [_text(strip_left - 6, 18, low_text, anchor="end", css="legend-low")]
    for i in range(steps):
        fill = _heat_colour(i / (steps - 1))
        swatch = {"x": float(strip_left + i * step_w), "y": 9, "width": step_w, "height": 10, "fill": fill}
        out.append(_tag("rect", swatch))
    out.append(_text(strip_right + 6, 18, high_text, anchor="start", css="legend-high"))
    return out


def scatter(
    points: list[Point],
    *,
    front: set[int] | None = None,
    width: int = 640,
    height: int = 320,
    x_label: str = "",
    y_label: str = "",
) -> str:
    """Labelled points; those on the caller's Pareto front are stronger and joined in x order."""
    front = front or set()
    cleaned = [(i, p, _clean(p.x), _clean(p.y)) for i, p in enumerate(points)]
    kept = [(i, p, x, y) for i, p, x, y in cleaned if x is not None and y is not None]
    if not kept:
        return _no_data(width)
    x_ticks = _nice_ticks(min(k[2] for k in kept), max(k[2] for k in kept))
    y_ticks = _nice_ticks(min(k[3] for k in kept), max(k[3] for k in kept))
    left = 16 + max(_text_width(_number(t)) for t in y_ticks) + (18 if y_label else 0)
    top, right, bottom = 12.0, width - 24.0, height - 26 - (18 if x_label else 0)
    x_scale, y_scale = _scale(x_ticks[0], x_ticks[-1], left, right), _scale(y_ticks[0], y_ticks[-1], bottom, top)

    body = _y_axis(y_scale, y_ticks, left, right)
    body += _x_axis(x_scale, x_ticks, [_number(t) for t in x_ticks], top, bottom) + _frame(left, top, right, bottom)
    on_front = sorted((x, y) for i, _, x, y in kept if i in front)
    if len(on_front) > 1:
        path = "M" + " L".join(f"{_coord(x_scale(x))} {_coord(y_scale(y))}" for x, y in on_front)
        attrs = {"d": path, "fill": "none", "stroke": FRONT_COLOUR, "stroke-width": 1.5, "class": "front"}
        body.append(_tag("path", attrs))
    # Off-front points first so the front's points are drawn on top of any they overlap.
    for i, point, x, y in sorted(kept, key=lambda k: k[0] in front):
        px, py, on = x_scale(x), y_scale(y), i in front
        circle = {"cx": px, "cy": py, "r": 4.5 if on else 3.5, "fill": FRONT_COLOUR if on else OFF_FRONT_COLOUR}
        body.append(_tag("circle", circle | {"stroke": "#ffffff", "class": "point front-point" if on else "point"}))
        # Labels near the right edge run leftwards so they stay inside the chart.
        flip = px > left + (right - left) * 0.75
        label, anchor = _truncate(point.label, 20), "end" if flip else "start"
        body.append(_text(px - 7 if flip else px + 7, py - 5, label, anchor=anchor, size=9, css="point-label"))
    body += _axis_titles(width, height, x_label, y_label, ((left + right) / 2, (top + bottom) / 2))
    return _svg(width, height, body)
