"""How an analytics figure is rounded once, labelled and shown: the columns, sections, facts and charts the
catalog describes each view with.

One rule for every format: a figure is rounded here, once, to the precision the page shows (the shared
`llmbench.humanize` rule: 1,234 · 72.6 · 3.14 · 0.0123, or a column's own number of decimals). CSV, Excel and
JSON write that rounded number as a number, under a stable snake_case column key; the page and the PDF write
the same number in words (thousands separators, "< 0.001", "yes"/"no", "72.6%", "65.1–79.2%"), under the
column's label. The API answers the unrounded figures.
"""

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from apps.batches.selectors import METRIC_LABELS
from llmbench.exports import Table
from llmbench.humanize import number_text, p_value_text, yes_no_text

NOT_ENOUGH_DATA = "not enough data"
SIMULATED = "simulated"  # the column every export table carries, and the key a result row may have

# Words for the codes a cell may hold (metrics, parameters, figures of a run); anything else shows as it is.
WORDS = {
    **{k: v if v[:2].isupper() else v[0].lower() + v[1:] for k, v in METRIC_LABELS.items()},  # "TTFT" stays
    "overall": "overall quality",
    "mean_score": "mean evaluator score",
    "ttft_p95_ms": "TTFT p95 (ms)",
    "tpot_mean_ms": "mean TPOT (ms)",
    "output_tps_mean": "mean output throughput (tokens/s)",
    "temperature": "temperature",
    "top_p": "top_p",
    "max_tokens": "max_tokens",
    "frequency_penalty": "frequency penalty",
    "presence_penalty": "presence penalty",
    "weighted": "weighted objective",
    "test_case": "test case",
    "wilcoxon": "Wilcoxon signed-rank",
    "mann_whitney": "Mann-Whitney U",
    "welch": "Welch t",
    "fisher": "Fisher exact",
    "none": "no test",
}


def words(code: Any) -> str:
    """A code (`pass_rate`, `latency_ms`) as the words a page shows ("pass rate", "latency (ms)")."""
    if code is None or code == "":
        return "–"
    return WORDS.get(str(code), str(code).replace("_", " "))


def size_digits(value: float) -> int:
    """Decimals that suit a figure's size, as `llmbench.humanize.number_text` picks them."""
    size = abs(value)
    return 0 if size >= 1000 else 1 if size >= 100 else 2 if size >= 1 else 3 if size >= 0.01 else 4


def rounded(value: Any, digits: int | None = None, kind: str = "number") -> Any:
    """A figure as every format holds it: floats rounded to `digits` (else to the size rule), p-values to three
    decimals (three significant digits below 0.001, so a small p never becomes 0), NaN and ±inf to None."""
    if isinstance(value, bool) or not isinstance(value, float):
        return value
    if not math.isfinite(value):
        return None
    if kind == "p":
        return round(value, 3) if value >= 0.001 else float(f"{value:.3g}")
    if kind == "setting":
        return value  # as it was set
    result = round(value, size_digits(value) if digits is None else digits)
    return 0.0 if result == 0 else result  # never "-0"


@dataclass(frozen=True)
class Column:
    """One column of a section. `key` heads it in the files (stable, snake_case, with its unit); `label` on the
    page and in the PDF. Kinds: text, words (a code shown in words), number, count, pct (a percentage),
    p (a p-value), bool (yes / no), significant, setting (a parameter's value as set: 0.1, 200), date, amount (a number with the row's unit from `unit_key`),
    and two page-only kinds that join two figures of the row: interval (`low`–`high`, "not enough data"
    when a bound is missing) and range (of settings)."""

    key: str
    label: str
    kind: str = "number"
    digits: int | None = None
    secondary: bool = False  # hidden on the page until "Show all columns" is ticked
    page: bool = True
    file: bool = True
    low: str = ""
    high: str = ""
    unit: str = ""  # after the number on the page: "%" for percentages and intervals of them
    unit_key: str = ""
    long: bool = False  # a sentence: wraps instead of widening the table

    @property
    def css(self) -> str:
        classes = ["text"] if self.kind in ("text", "words", "date", "significant") else []
        if self.long:
            classes.append("long")
        if self.secondary:
            classes.append("secondary")
        return " ".join(classes)


def interval(label: str = "95% interval", *, low: str, high: str, digits: int | None = None, unit: str = "",
             secondary: bool = False) -> Column:  # fmt: skip
    """A page column "65.1–79.2%" from the row's two (file) bounds."""
    return Column(f"{low}..{high}", label, "interval", digits, secondary, file=False, low=low, high=high, unit=unit)


def _with_unit(text: str, unit: str) -> str:
    if text == "–" or not unit:
        return text
    return f"{text}{unit}" if unit == "%" else f"{text} {unit}"


def _number(value, digits, unit: str = "") -> str:
    return _with_unit(number_text(value, digits), unit)


def setting_text(value) -> str:
    """A parameter's value as it was set: 0.1, 1.1, 200, 4,096 (never "0.100" or "200.0")."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return number_text(value)
    return f"{value:,g}" if abs(value) < 1e6 else number_text(value)


def _date_text(value) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return "–" if value is None else str(value)[:10]


def cell_text(column: Column, row: dict) -> str:
    """The words a page or the PDF shows for one cell."""
    if column.kind == "range":
        low, high = row.get(column.low), row.get(column.high)
        if low is None or high is None:
            return "–"
        return setting_text(low) if low == high else f"{setting_text(low)}–{setting_text(high)}"
    if column.kind == "interval":
        low, high = row.get(column.low), row.get(column.high)
        if low is None or high is None:
            return NOT_ENOUGH_DATA
        return _with_unit(f"{number_text(low, column.digits)}–{number_text(high, column.digits)}", column.unit)
    value = row.get(column.key)
    if column.kind == "text":
        return "–" if value in (None, "") else str(value)
    if column.kind == "words":
        return words(value)
    if column.kind == "date":
        return _date_text(value)
    if column.kind == "p":
        return p_value_text(value)
    if column.kind == "setting":
        return setting_text(value)
    if column.kind == "bool":
        return yes_no_text(value)
    if column.kind == "significant":
        return "–" if value is None else "significant" if value else "not significant"
    if column.kind == "pct":
        return _number(value, column.digits, "%")
    if column.kind == "amount":
        return _number(value, column.digits, unit_text(row.get(column.unit_key)))
    return _number(value, column.digits, column.unit)


def unit_text(unit: Any) -> str:
    return {"points": "points", "%": "%", "ms": "ms", "tokens/s": "tokens/s", "USD": "USD"}.get(unit, unit or "")


@dataclass
class Section:
    """A table of a view: its file name (sheet, JSON key, CSV), a title and the one question it answers on the
    page, its columns and its rows (dicts by column key; `simulated` marks a row that includes simulated data).
    The rows' figures are rounded when the section is made, once."""

    name: str
    title: str
    question: str
    columns: list[Column]
    rows: list[dict]
    empty: str = "Nothing in this filter."

    def __post_init__(self):
        keys = [c for c in self.columns if c.file]
        self.rows = [{**row, **{c.key: rounded(row.get(c.key), c.digits, c.kind) for c in keys}} for row in self.rows]

    @property
    def slug(self) -> str:
        return self.name.replace("_", "-")

    def file_table(self) -> Table:
        """The section as CSV / Excel / JSON write it: column keys, rounded numbers, a `simulated` column."""
        keys = [c.key for c in self.columns if c.file]
        return Table(self.name, [*keys, SIMULATED],
                     [[row.get(k) for k in keys] + [bool(row.get(SIMULATED))] for row in self.rows])  # fmt: skip

    def page_columns(self) -> list[Column]:
        """The columns a page shows: key columns first, then the secondary ones (each keeps its order)."""
        shown = [c for c in self.columns if c.page]
        return [c for c in shown if not c.secondary] + [c for c in shown if c.secondary]

    @property
    def has_secondary(self) -> bool:
        return any(c.secondary for c in self.page_columns())

    def page_rows(self) -> list[dict]:
        columns = self.page_columns()
        return [{"cells": [(cell_text(c, row), c.css) for c in columns], "simulated": bool(row.get(SIMULATED))}
                for row in self.rows]  # fmt: skip

    def text_table(self) -> Table:
        """The section in words (the PDF's table): labels, formatted cells, "(simulated)" after a row's name."""
        columns = self.page_columns()
        rows = []
        for row in self.rows:
            cells = [cell_text(c, row) for c in columns]
            if row.get(SIMULATED) and cells:
                cells[0] += " (simulated)"
            rows.append(cells)
        return Table(self.title, [c.label for c in columns], rows)


@dataclass(frozen=True)
class Fact:
    """One line of a view's summary: a label and a figure, shown in words on the page and rounded in files."""

    label: str
    value: Any
    kind: str = "number"
    digits: int | None = None
    unit: str = ""

    @property
    def stored(self) -> Any:
        return rounded(self.value, self.digits, self.kind)

    @property
    def text(self) -> str:
        column = Column("value", self.label, self.kind, self.digits, unit=self.unit)
        return cell_text(column, {"value": self.stored})


@dataclass
class Plot:
    """An interactive chart of the page (ECharts, drawn by static/js/analytics.js from `data` passed with
    json_script). Kinds: bars (horizontal, with interval whiskers), line (with an interval band), scatter."""

    slug: str
    caption: str
    kind: str
    data: dict = field(default_factory=dict)
    simulated: bool = False

    @property
    def payload(self) -> dict:
        return {"kind": self.kind, **self.data}
