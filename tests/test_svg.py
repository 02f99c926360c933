"""Server-side SVG charts for PDF reports: structure, scales, escaping, empty input, and WeasyPrint rendering."""

import math
import re
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from itertools import pairwise

import pytest

from llmbench.svg import Bar, Point, Series, bar_chart, heatmap, line_chart, scatter

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert(1)</script> & "x"'


def parse(svg: str) -> ET.Element:
    """The chart as an element tree (raises if it is not well-formed XML)."""
    return ET.fromstring(svg)


def with_class(root: ET.Element, name: str) -> list[ET.Element]:
    """Every element whose class list includes name."""
    return [element for element in root.iter() if name in element.get("class", "").split()]


def texts(root: ET.Element, name: str) -> list[str]:
    """The text content of every element of the given class."""
    return [element.text or "" for element in with_class(root, name)]


def all_text(root: ET.Element) -> list[str]:
    """The text content of every text element."""
    return [element.text or "" for element in root.iter(f"{SVG}text")]


def path_points(d: str) -> list[tuple[float, float]]:
    """The (x, y) pairs of an M/L path."""
    numbers = [float(n) for n in re.findall(r"-?[\d.]+", d)]
    return list(zip(numbers[::2], numbers[1::2], strict=True))


def is_nice_step(step: float) -> bool:
    """Whether step is 1, 2, 2.5 or 5 times a power of ten."""
    mantissa = step / 10 ** math.floor(math.log10(step))
    return any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5, 10))


def sample_charts() -> list[str]:
    """One of each chart with ordinary data, for the checks every chart must pass."""
    return [
        line_chart([Series("a", [(1, 2.0), (2, 3.0)]), Series("b", [(1, 1.0), (3, 4.0)])]),
        bar_chart([Bar("a", 1.0, 0.5, 1.5), Bar("b", -2.0)]),
        bar_chart([Bar("a", 1.0), Bar("b", 2.0)], horizontal=True),
        heatmap(["x1", "x2"], ["y1"], [(0, 0, 1.0, 3), (1, 0, 2.0, 4)]),
        scatter([Point("a", 1, 2), Point("b", 2, 1)], front={0, 1}),
    ]


@pytest.mark.parametrize("svg", sample_charts())
def test_each_chart_is_a_standalone_svg(svg):
    """Every chart is one svg root with its size, a matching viewBox, and nothing that loads or runs."""
    root = parse(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    assert "DejaVu Sans" in root.get("font-family")
    tags = {element.tag.removeprefix(SVG) for element in root.iter()}
    assert not tags & {"script", "foreignObject", "image", "style", "a"}
    assert "var(" not in svg and "href" not in svg


def test_y_ticks_use_nice_steps_and_span_the_data():
    """The y tick labels step by 1, 2, 2.5 or 5 × 10^k and run from at or below the minimum to at or above the maximum."""
    root = parse(line_chart([Series("s", [(0, 0.13), (1, 0.91), (2, 0.47)])]))
    ticks = [float(t) for t in texts(root, "tick-y")]
    steps = {round(b - a, 12) for a, b in pairwise(ticks)}
    assert len(steps) == 1 and is_nice_step(steps.pop())
    assert ticks[0] <= 0.13 and ticks[-1] >= 0.91


def test_tick_labels_are_compact_numbers():
    """Tick labels read 0.3, not 0.30000000000000004."""
    root = parse(line_chart([Series("s", [(0.1, 0.1), (0.7, 0.7)])]))
    labels = texts(root, "tick-x") + texts(root, "tick-y")
    assert "0.3" in labels
    assert all(len(label) <= 4 for label in labels), labels


def test_numeric_x_ticks_span_the_data():
    """The x tick labels of a numeric line chart cover the smallest and largest x."""
    root = parse(line_chart([Series("s", [(3, 1.0), (47, 2.0)])]))
    ticks = [float(t) for t in texts(root, "tick-x")]
    assert ticks[0] <= 3 and ticks[-1] >= 47


def test_dates_on_the_x_axis_are_iso_ticks_that_span_the_data():
    """A line over dates has YYYY-MM-DD tick labels from the first date to at least the last."""
    start = date(2025, 1, 30)
    points = [(start + timedelta(days=i), float(i)) for i in range(45)]
    labels = texts(parse(line_chart([Series("s", points)])), "tick-x")
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", label) for label in labels)
    assert labels[0] == "2025-01-30" and date.fromisoformat(labels[-1]) >= points[-1][0]
    assert 2 <= len(labels) <= 8


def test_a_single_value_still_gets_an_axis_around_it():
    """One point gives a line chart whose ticks surround its value instead of failing."""
    root = parse(line_chart([Series("s", [(5, 7.0), (5, 7.0)])]))
    ticks = [float(t) for t in texts(root, "tick-y")]
    assert ticks[0] < 7 < ticks[-1]


def test_each_series_is_one_path_and_several_get_a_legend():
    """Two series give two line paths in different colours and a legend naming both."""
    root = parse(line_chart([Series("ttft", [(1, 2.0), (2, 3.0)]), Series("e2e", [(1, 5.0), (2, 6.0)])]))
    lines = with_class(root, "line")
    assert len(lines) == 2 and lines[0].get("stroke") != lines[1].get("stroke")
    assert texts(root, "legend") == ["ttft", "e2e"]


def test_a_single_series_has_no_legend():
    """One series needs no legend."""
    root = parse(line_chart([Series("ttft", [(1, 2.0), (2, 3.0)])]))
    assert with_class(root, "legend") == []


def test_gaps_break_the_line_into_separate_paths():
    """None and NaN in a series split its line, so no segment is drawn across the gap."""
    points = [(1, 1.0), (2, 2.0), (3, None), (4, 3.0), (5, 4.0), (6, math.nan), (7, 5.0), (8, 6.0)]
    lines = with_class(parse(line_chart([Series("s", points)])), "line")
    assert [len(path_points(line.get("d"))) for line in lines] == [2, 2, 2]


def test_a_lone_point_between_gaps_is_marked():
    """A point with gaps on both sides has no segment, so it is drawn as a dot."""
    root = parse(line_chart([Series("s", [(1, 1.0), (2, 2.0), (3, None), (4, 3.0), (5, None)])]))
    assert len(with_class(root, "line")) == 1 and len(with_class(root, "lone")) == 1


def test_mixing_dates_and_numbers_is_refused():
    """x values that are partly dates and partly numbers are a caller bug, reported as such."""
    with pytest.raises(ValueError, match="dates"):
        line_chart([Series("s", [(date(2025, 1, 1), 1.0), (2, 2.0)])])


@pytest.mark.parametrize(
    "svg",
    [
        line_chart([Series(HOSTILE, [(1, 1.0)]), Series("b", [(1, 2.0)])], x_label=HOSTILE, y_label=HOSTILE),
        bar_chart([Bar(HOSTILE, 1.0)], y_label=HOSTILE),
        bar_chart([Bar(HOSTILE, 1.0)], y_label=HOSTILE, horizontal=True),
        heatmap([HOSTILE], [""], [(0, 0, 1.0, 2)], x_label=HOSTILE, y_label=HOSTILE),
        scatter([Point(HOSTILE, 1, 1)], x_label=HOSTILE, y_label=HOSTILE),
    ],
)
def test_a_hostile_label_is_text(svg):
    """A label full of markup parses as plain text content and never becomes an element."""
    root = parse(svg)
    assert not [element for element in root.iter() if element.tag.removeprefix(SVG) == "script"]
    assert HOSTILE in all_text(root)
    assert "<script>" not in svg and "&lt;script&gt;" in svg


@pytest.mark.parametrize(
    "svg",
    [
        line_chart([]),
        line_chart([Series("a", []), Series("b", [(1, None), (2, math.nan)])]),
        bar_chart([]),
        bar_chart([Bar("a", None), Bar("b", math.nan)]),
        heatmap([], [], []),
        heatmap(["a"], [""], [(0, 0, math.nan, 3)]),
        scatter([]),
        scatter([Point("a", math.nan, 1.0)]),
    ],
)
def test_empty_input_says_no_data(svg):
    """Nothing to plot gives a small, valid SVG that says so."""
    root = parse(svg)
    assert all_text(root) == ["No data"]
    assert int(root.get("height")) < 100


def test_output_is_deterministic():
    """The same input gives the same string every time."""
    assert sample_charts() == sample_charts()


def test_each_bar_with_a_value_is_drawn_and_every_label_shown():
    """A bar without a value draws nothing, but its label is still on the axis."""
    root = parse(bar_chart([Bar("a", 1.0), Bar("b", None), Bar("c", 3.0), Bar("d", math.nan)]))
    assert len(with_class(root, "bar")) == 2
    assert texts(root, "category") == ["a", "b", "c", "d"]


def test_negative_bars_hang_below_the_zero_line():
    """A positive bar ends at the zero line from above, a negative one starts there and goes down."""
    root = parse(bar_chart([Bar("up", 2.0), Bar("down", -1.0)]))
    (zero,) = with_class(root, "zero")
    zero_y = float(zero.get("y1"))
    up, down = with_class(root, "bar")
    assert math.isclose(float(up.get("y")) + float(up.get("height")), zero_y, abs_tol=0.02)
    assert math.isclose(float(down.get("y")), zero_y, abs_tol=0.02)
    ticks = [float(t) for t in texts(root, "tick-y")]
    assert ticks[0] <= -1 and ticks[-1] >= 2 and 0.0 in ticks


def test_error_bars_are_whiskers_inside_the_axis():
    """A bar with low and high gets a whisker and two caps, and the axis reaches the high end."""
    root = parse(bar_chart([Bar("a", 0.5, 0.4, 1.3), Bar("b", 0.7)]))
    assert len(with_class(root, "whisker")) == 3
    assert float(texts(root, "tick-y")[-1]) >= 1.3


def test_horizontal_bars_grow_along_the_x_axis():
    """Horizontal bars share a height and differ in width, with the values on the x ticks."""
    root = parse(bar_chart([Bar("a", 1.0), Bar("b", 3.0)], horizontal=True, y_label="tokens/s"))
    a, b = with_class(root, "bar")
    assert a.get("height") == b.get("height") and float(b.get("width")) > float(a.get("width"))
    assert float(texts(root, "tick-x")[-1]) >= 3
    assert texts(root, "axis-label") == ["tokens/s"]


@pytest.mark.parametrize("horizontal", [False, True])
def test_long_category_labels_are_truncated(horizontal):
    """A category label too long for its place ends in an ellipsis."""
    bars = [Bar("a-very-long-model-name-that-never-ends-" * 3, 1.0)] + [Bar(f"m{i}", 1.0) for i in range(9)]
    label = texts(parse(bar_chart(bars, horizontal=horizontal)), "category")[0]
    assert label.endswith("…") and len(label) < 40


def grid(means: list[list[float]]) -> list[tuple[int, int, float, int]]:
    """Heatmap cells for a row-major table of means, each with n=5."""
    return [(x, y, mean, 5) for y, row in enumerate(means) for x, mean in enumerate(row)]


def test_a_heatmap_draws_one_cell_per_mean_with_labels_on_both_axes():
    """Each cell with a mean is a rectangle; NaN means are left empty; both axes name their categories."""
    cells = grid([[1.0, 2.0, 3.0], [4.0, math.nan, 6.0]])
    root = parse(heatmap(["0.1", "0.5", "0.9"], ["128", "256"], cells, x_label="temperature", y_label="max_tokens"))
    assert len(with_class(root, "cell")) == 5
    assert texts(root, "category-x") == ["0.1", "0.5", "0.9"] and texts(root, "category-y") == ["128", "256"]
    assert texts(root, "axis-label") == ["temperature", "max_tokens"]


def test_heatmap_colours_run_from_red_at_the_minimum_to_green_at_the_maximum():
    """The lowest mean is red, the middle one yellow, the highest green."""
    root = parse(heatmap(["a", "b", "c"], [""], grid([[0.2, 0.5, 0.8]])))
    assert [cell.get("fill") for cell in with_class(root, "cell")] == ["#c23b3b", "#f2c14e", "#2f9e6e"]


def test_equal_means_give_a_flat_middle_colour():
    """When every mean is the same there is no scale, so every cell is the middle colour."""
    root = parse(heatmap(["a", "b"], [""], grid([[0.7, 0.7]])))
    assert {cell.get("fill") for cell in with_class(root, "cell")} == {"#f2c14e"}


def test_heatmap_means_are_printed_with_one_decimal_and_the_legend_shows_the_range():
    """Each cell shows its mean to one decimal; the legend shows the lowest and highest means."""
    root = parse(heatmap(["a", "b"], ["x", "y"], grid([[0.25, 1.0], [3.14159, 12.0]])))
    assert sorted(texts(root, "mean")) == ["0.2", "1.0", "12.0", "3.1"]
    assert texts(root, "legend-low") == ["0.25"] and texts(root, "legend-high") == ["12"]


def test_means_are_not_printed_on_more_than_150_cells():
    """A map of 156 cells is coloured but not numbered, which would be unreadable."""
    root = parse(heatmap([str(i) for i in range(13)], [str(i) for i in range(12)], grid([[1.0] * 13] * 12)))
    assert len(with_class(root, "cell")) == 156 and with_class(root, "mean") == []


def test_a_one_parameter_map_has_a_blank_y_category():
    """A map over one parameter has a single row with an empty y label."""
    root = parse(heatmap(["1", "2", "4"], [""], grid([[1.0, 2.0, 3.0]])))
    assert texts(root, "category-y") == [""] and len(with_class(root, "cell")) == 3


def test_a_cell_outside_the_grid_is_refused():
    """A cell index past the categories is a caller bug, reported rather than drawn off the map."""
    with pytest.raises(ValueError, match="outside"):
        heatmap(["a"], [""], [(1, 0, 1.0, 3)])


def test_scatter_draws_a_labelled_circle_per_point():
    """Every point with finite coordinates is a circle with its label; NaN points are left out."""
    points = [Point("a", 1, 2), Point("b", 2, 3), Point("c", 3, 1), Point("d", math.nan, 1)]
    root = parse(scatter(points, x_label="cost", y_label="quality"))
    assert len(root.findall(f"{SVG}circle")) == 3
    assert sorted(texts(root, "point-label")) == ["a", "b", "c"]
    x_ticks, y_ticks = [float(t) for t in texts(root, "tick-x")], [float(t) for t in texts(root, "tick-y")]
    assert x_ticks[0] <= 1 and x_ticks[-1] >= 3 and y_ticks[0] <= 1 and y_ticks[-1] >= 3


def test_front_points_are_stronger_and_joined_in_x_order():
    """Points on the front are drawn larger in the strong colour and one line joins them left to right."""
    points = [Point("far", 9, 9), Point("mid", 5, 6), Point("off", 6, 2), Point("near", 1, 3)]
    root = parse(scatter(points, front={0, 1, 3}))
    front, others = (
        with_class(root, "front-point"),
        [c for c in with_class(root, "point") if "front-point" not in c.get("class")],
    )
    assert len(front) == 3 and len(others) == 1
    assert {c.get("fill") for c in front} == {"#3b6fd8"} and others[0].get("fill") != "#3b6fd8"
    (line,) = with_class(root, "front")
    xs = [x for x, _ in path_points(line.get("d"))]
    assert xs == sorted(xs) and len(xs) == 3
    assert sorted(round(x, 1) for x in xs) == sorted(round(float(c.get("cx")), 1) for c in front)


def test_without_a_front_no_line_is_drawn():
    """With no front given, the scatter has points only."""
    root = parse(scatter([Point("a", 1, 2), Point("b", 2, 3)]))
    assert with_class(root, "front") == [] and with_class(root, "front-point") == []


def test_long_point_labels_end_in_an_ellipsis():
    """A long point label is cut short with an ellipsis."""
    root = parse(scatter([Point("meta-llama/Llama-3.3-70B-Instruct-Turbo", 1, 1), Point("b", 2, 2)]))
    label = texts(root, "point-label")[0]
    assert label.endswith("…") and label.startswith("meta-llama") and len(label) <= 20


def test_weasyprint_renders_every_chart_into_a_pdf():
    """An HTML page embedding each chart, the empty one included, becomes a PDF without error."""
    import weasyprint

    charts = [*sample_charts(), line_chart([]), bar_chart([Bar(HOSTILE, 1.0)])]
    html = "<html><body>" + "".join(f"<div>{chart}</div>" for chart in charts) + "</body></html>"
    assert weasyprint.HTML(string=html).write_pdf().startswith(b"%PDF")
