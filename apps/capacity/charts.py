"""The search's two charts, drawn server-side as SVG with the house chart kit (llmbench.svg): the SLO's first
latency figure per probe against the offered level (dots coloured by verdict, the threshold as a line, the
bracket shaded), and the achieved throughput against the offered level."""

from xml.sax.saxutils import quoteattr

from apps.capacity.models import CapacityProbe
from apps.capacity.selectors import VERDICT_COLOURS, _number, chart_metric
from llmbench import svg
from llmbench.humanize import number_text

WIDTH, HEIGHT = 480, 290
SMALL_HEIGHT = 230
BRACKET_FILL = "#f2c14e"


def _points(rows: list[dict], key: str) -> list[tuple[float, float, str]]:
    out = []
    for row in rows:
        value = _number((row.get("figures") or {}).get(key))
        if value is not None:
            out.append((float(row["level"]), value, row["verdict"]))
    return out


def _legend(verdicts: list[str], left: float, width: int) -> tuple[list[str], float]:
    names = [CapacityProbe.Verdict(v).label for v in verdicts]
    return svg._legend(names, [VERDICT_COLOURS[v] for v in verdicts], width, left)


def _chart(
    points: list[tuple[float, float, str]], *, x_label: str, y_label: str, levels: list[float],
    threshold: float | None = None, threshold_label: str = "", bracket: tuple | None = None,
    diagonal: bool = False, height: int = HEIGHT, css: str = "",
) -> str:  # fmt: skip
    """Dots per probe from 0 on both axes; optional SLO line, shaded bracket and the achieved = offered line."""
    if not points:
        return svg._no_data(WIDTH)
    xs = [p[0] for p in points] + [v for v in levels if v is not None]
    ys = [p[1] for p in points] + ([threshold * 1.15] if threshold else [])
    x_ticks, y_ticks = svg._nice_ticks(0.0, max(xs)), svg._nice_ticks(0.0, max(ys) or 1.0)
    verdicts = [v for v in VERDICT_COLOURS if any(p[2] == v for p in points)]
    left = 16 + max(svg._text_width(svg._number(t)) for t in y_ticks) + 18
    right, bottom = WIDTH - 16.0, height - 26 - 18
    legend, top = _legend(verdicts, left, WIDTH)
    top += 6
    x_scale = svg._scale(x_ticks[0], x_ticks[-1], left, right)
    y_scale = svg._scale(y_ticks[0], y_ticks[-1], bottom, top)
    body: list[str] = []
    if bracket is not None:
        low, high = (_number(v) for v in bracket)
        if low is not None or high is not None:
            x0 = x_scale(low if low is not None else 0.0)
            x1 = x_scale(high) if high is not None else right
            rect = {"x": x0, "y": top, "width": max(x1 - x0, 2.0), "height": bottom - top, "fill": BRACKET_FILL}
            body.append(svg._tag("rect", rect | {"fill-opacity": 0.3, "class": "bracket"}))
    body += svg._y_axis(y_scale, y_ticks, left, right)
    body += svg._x_axis(x_scale, x_ticks, [svg._number(t) for t in x_ticks], top, bottom)
    body += svg._frame(left, top, right, bottom)
    if threshold is not None:
        y = y_scale(threshold)
        line = {"x1": left, "y1": y, "x2": right, "y2": y, "stroke": "#c23b3b", "stroke-width": 1.5}
        body.append(svg._tag("line", line | {"stroke-dasharray": "6 4", "class": "threshold"}))
        body.append(svg._text(right - 4, y - 5, threshold_label, anchor="end", size=10, fill="#c23b3b",
                              css="threshold-label"))  # fmt: skip
    if diagonal:
        top_value = min(x_ticks[-1], y_ticks[-1])
        line = {"x1": x_scale(0), "y1": y_scale(0), "x2": x_scale(top_value), "y2": y_scale(top_value)}
        body.append(svg._tag("line", line | {"stroke": "#999999", "stroke-dasharray": "3 3", "class": "diagonal"}))
    for x, y, verdict in points:
        dot = {"cx": x_scale(x), "cy": y_scale(y), "r": 5.0, "fill": VERDICT_COLOURS[verdict], "stroke": "#ffffff"}
        body.append(svg._tag("circle", dot | {"class": f"point verdict-{verdict}"}))
    body += legend + svg._axis_titles(WIDTH, height, x_label, y_label, ((left + right) / 2, (top + bottom) / 2))
    drawn = svg._svg(WIDTH, height, body)
    label = quoteattr(f"{y_label} by {x_label}")
    return drawn.replace("<svg ", f'<svg class="{css}" role="img" aria-label={label} ', 1)


def latency_chart(state: dict, rows: list[dict]) -> str:
    """The SLO's first latency figure per probe against the offered level, the threshold and the bracket."""
    key, label, threshold = chart_metric(state["slo"])
    points = _points(rows, key)
    if not points and key != "ttft_p95_ms":  # the trial's figures hold p95s; fall back to p95 TTFT
        key, label, threshold = "ttft_p95_ms", "p95 TTFT (ms)", None
        points = _points(rows, key)
    bracket = state["bracket"]
    threshold_label = f"SLO {number_text(threshold)} ms" if threshold is not None else ""
    return _chart(points, x_label=f"Offered level ({state['unit']})", y_label=label, levels=[],
                  threshold=threshold, threshold_label=threshold_label,
                  bracket=(bracket["low"], bracket["high"]), css="chart-latency")  # fmt: skip


def throughput_chart(state: dict, rows: list[dict]) -> str:
    """Achieved request throughput (req/s) against the offered level; in rate space the dashed line is achieved =
    offered."""
    points = _points(rows, "request_throughput_rps") or _points(rows, "achieved_rate_rps")
    rate_space = state["unit"] == "req/s"
    return _chart(points, x_label=f"Offered level ({state['unit']})", y_label="Achieved (req/s)", levels=[],
                  diagonal=rate_space, height=SMALL_HEIGHT, css="chart-throughput")  # fmt: skip
