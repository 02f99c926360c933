"""Gate criteria: parsed strictly, judged on a run's figures.

Two forms (docs/gates.md):

* a threshold on a figure: ``pass_rate >= 0.9``, ``p95_ttft_ms <= 400 ms``, ``error_rate < 2%``,
  ``p95_ttft_ms@8 <= 400`` (a load sweep's level 8). Operators ``>=  <=  >  <`` (and ``≥  ≤``). A threshold passes
  when the figure itself meets it; the figure's interval is reported with it (and whether all of the interval does).
* no regression against the pinned baseline run: ``no significant regression at p < 0.05``, optionally limited to
  figures: ``no significant regression in p95_ttft_ms, throughput_rps at p < 0.01``. It passes when
  runkinds.run_compare calls no figure a regression (Holm-adjusted p below alpha and worse).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError

MAX_CRITERIA = 20
MAX_LENGTH = 200

# The figures of each kind (runkinds.run_figures; docs/schedules.md "Figures"), for a template run that has none to
# show yet. A load sweep's figures may carry a level suffix ("p95_ttft_ms@8").
KIND_FIGURES: dict[str, tuple[str, ...]] = {
    "experiment": ("pass_rate", "mean_score", "mean_quality", "error_rate", "p50_ttft_ms", "p95_ttft_ms",
                   "p50_e2e_ms", "p95_e2e_ms", "cost_usd"),
    "parameter_sweep": ("pass_rate", "mean_score", "mean_quality", "error_rate", "p50_ttft_ms", "p95_ttft_ms",
                        "p50_e2e_ms", "p95_e2e_ms", "cost_usd"),
    "load_sweep": ("p95_ttft_ms", "p50_ttft_ms", "p99_ttft_ms", "p50_itl_ms", "p95_itl_ms", "p50_e2e_ms",
                   "p95_e2e_ms", "throughput_rps", "output_tps", "error_rate"),
    "benchmark_run": ("accuracy", "no_answer_rate", "error_rate", "p50_e2e_ms", "p95_e2e_ms", "cost_usd"),
    "capacity_search": ("capacity", "capacity_rps", "goodput_rps", "output_tps", "cost_per_1m_output_usd"),
}  # fmt: skip
# Figures that are shares (0..1): a threshold in % is divided by 100 for them.
SHARES = ("pass_rate", "mean_score", "error_rate", "no_answer_rate", "accuracy")
LEVELLED_KINDS = ("load_sweep",)

OPERATORS = {">=": ">=", "≥": ">=", "<=": "<=", "≤": "<=", ">": ">", "<": "<"}
OPERATOR_TEXT = {">=": "≥", "<=": "≤", ">": ">", "<": "<"}
UNITS = ("ms", "%", "rps", "req/s", "s")

_IDENT = r"[a-z][a-z0-9_]*(?:@[0-9][0-9.e+-]*)?"
_THRESHOLD = re.compile(r"^(?P<figure>[^\s<>=!≤≥]+)\s*(?P<op>[<>=!≤≥]+)\s*(?P<rest>.*)$")
_NUMBER = re.compile(r"^(?P<number>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>\S+)?$")
_REGRESSION = re.compile(
    r"^no\s+(?:significant\s+)?regressions?"
    r"(?:\s+(?:in|on|of)\s+(?P<figures>.+?))?"
    r"(?:\s+at\s+(?:p|alpha|α)\s*(?P<op><=|<|=|≤)\s*(?P<alpha>\S+))?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Criterion:
    text: str
    kind: str  # "threshold" | "regression"
    figure: str = ""  # threshold: the figure
    operator: str = ""  # >=, <=, >, <
    threshold: float = 0.0
    unit: str = ""  # as written after the number ("ms", "%", …) or ""
    figures: tuple[str, ...] = ()  # regression: the figures looked at (empty: all)
    alpha: float | None = None  # regression: None = the gate's alpha


def _known(kind: str, available: set[str] | None) -> set[str]:
    return set(available) if available else set(KIND_FIGURES.get(kind, ()))


def _check_figure(name: str, text: str, kind: str, available: set[str] | None) -> str | None:
    """An error message when `name` is not a figure the run has, else None."""
    if not re.fullmatch(_IDENT, name):
        return f"“{text}”: “{name}” is not a figure name (lower-case letters, digits and _, e.g. pass_rate)."
    known = _known(kind, available)
    base = name.split("@", 1)[0]
    if name in known or (not available and kind in LEVELLED_KINDS and "@" in name and base in known):
        return None
    if "@" in name and kind not in LEVELLED_KINDS:
        return f"“{text}”: only a load sweep's figures have levels (“{name}”)."
    return f"“{text}”: unknown figure “{name}”; the run has: {', '.join(sorted(known)) or 'no figures'}."


def _unit_error(text: str, figure: str, unit: str) -> str | None:
    if not unit:
        return None
    base = figure.split("@", 1)[0]
    if unit not in UNITS:
        return f"“{text}”: unknown unit “{unit}” (use ms, %, req/s or none)."
    fits = {"ms": base.endswith("_ms"), "s": base.endswith("_ms"), "rps": base.endswith("_rps"),
            "req/s": base.endswith("_rps"), "%": base in SHARES}  # fmt: skip
    if not fits[unit]:
        return f"“{text}”: the unit “{unit}” does not fit the figure “{figure}”."
    return None


def parse_one(text: str, *, kind: str, available: set[str] | None = None) -> Criterion:
    """One criterion, or ValidationError with a message naming what is wrong (the figure, the operator …)."""
    if not isinstance(text, str):
        raise ValidationError("Each criterion is a text, e.g. “pass_rate >= 0.9”.")
    text = " ".join(text.split())
    if not text:
        raise ValidationError("A criterion is empty.")
    if len(text) > MAX_LENGTH:
        raise ValidationError(f"A criterion has at most {MAX_LENGTH} characters.")
    if text.lower().startswith("no "):
        return _parse_regression(text, kind=kind, available=available)
    match = _THRESHOLD.match(text)
    if not match:
        raise ValidationError(
            f"“{text}”: no comparison operator; write “figure >= number” (>=, <=, > or <) or “no significant "
            "regression at p < 0.05”."
        )
    figure, op, rest = match["figure"].lower(), match["op"], match["rest"].strip()
    if op not in OPERATORS:
        raise ValidationError(f"“{text}”: unknown operator “{op}”; use >=, <=, > or <.")
    problem = _check_figure(figure, text, kind, available)
    if problem:
        raise ValidationError(problem)
    number = _NUMBER.match(rest)
    if not number:
        raise ValidationError(f"“{text}”: “{rest or '(nothing)'}” is not a number.")
    value, unit = float(number["number"]), (number["unit"] or "").lower()
    if not math.isfinite(value):
        raise ValidationError(f"“{text}”: the threshold must be a finite number.")
    problem = _unit_error(text, figure, unit)
    if problem:
        raise ValidationError(problem)
    if unit == "s":
        value, unit = value * 1000.0, "ms"
    return Criterion(text=text, kind="threshold", figure=figure, operator=OPERATORS[op], threshold=value, unit=unit)


def _parse_regression(text: str, *, kind: str, available: set[str] | None) -> Criterion:
    match = _REGRESSION.match(text)
    if not match:
        raise ValidationError(
            f"“{text}”: not understood; write “no significant regression at p < 0.05” (optionally “in "
            "p95_ttft_ms, throughput_rps”)."
        )
    figures: tuple[str, ...] = ()
    if match["figures"]:
        names = [n.strip().lower() for n in re.split(r",|\s+and\s+", match["figures"]) if n.strip()]
        for name in names:
            problem = _check_figure(name, text, kind, available)
            if problem:
                raise ValidationError(problem)
        figures = tuple(dict.fromkeys(names))
    alpha = None
    if match["alpha"] is not None:
        try:
            alpha = float(match["alpha"])
        except ValueError:
            raise ValidationError(f"“{text}”: “{match['alpha']}” is not a number.") from None
        if not 0 < alpha < 1:
            raise ValidationError(f"“{text}”: the significance level must be between 0 and 1 (e.g. 0.05).")
    return Criterion(text=text, kind="regression", figures=figures, alpha=alpha)


def parse_criteria(texts, *, kind: str, available: set[str] | None = None) -> list[Criterion]:
    """A gate's criteria: a non-empty list of texts. ValidationError({"criteria": [each problem]})."""
    if isinstance(texts, str):
        texts = [line for line in texts.splitlines() if line.strip()]
    if not isinstance(texts, list | tuple) or not texts:
        raise ValidationError({"criteria": ["Give at least one criterion, e.g. “pass_rate >= 0.9”."]})
    if len(texts) > MAX_CRITERIA:
        raise ValidationError({"criteria": [f"At most {MAX_CRITERIA} criteria."]})
    parsed, problems = [], []
    for text in texts:
        try:
            parsed.append(parse_one(text, kind=kind, available=available))
        except ValidationError as exc:
            problems.extend(exc.messages)
    if problems:
        raise ValidationError({"criteria": problems})
    return parsed


# --- judging ----------------------------------------------------------------------------------------------------


def _meets(value: float, op: str, threshold: float) -> bool:
    return {">=": value >= threshold, "<=": value <= threshold, ">": value > threshold, "<": value < threshold}[op]


def _threshold_for(criterion: Criterion, figure) -> float:
    """The threshold in the figure's unit: "90%" is 0.9 for a share, 90 for a figure in percent."""
    if criterion.unit == "%" and (getattr(figure, "unit", "") or "") != "%":
        return criterion.threshold / 100.0
    return criterion.threshold


def _number(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def judge_threshold(criterion: Criterion, figures: dict) -> dict:
    figure = figures.get(criterion.figure)
    result = {"text": criterion.text, "kind": "threshold", "figure": criterion.figure, "operator": criterion.operator,
              "label": getattr(figure, "label", criterion.figure), "unit": getattr(figure, "unit", ""),
              "threshold": _threshold_for(criterion, figure) if figure else criterion.threshold,
              "value": None, "interval": None, "n": getattr(figure, "n", 0), "test": "threshold", "p_value": None,
              "interval_clears": None}  # fmt: skip
    value = _number(getattr(figure, "value", None))
    if figure is None or value is None:
        why = "the run has no such figure" if figure is None else "the run has no data for it"
        return {**result, "passed": False, "detail": f"No figure: {why}."}
    low, high = _number(figure.ci_low), _number(figure.ci_high)
    threshold = result["threshold"]
    passed = _meets(value, criterion.operator, threshold)
    interval = [low, high] if low is not None or high is not None else None
    clears = None
    if low is not None and high is not None:
        clears = all(_meets(v, criterion.operator, threshold) for v in (low, high))
    wanted = f"{OPERATOR_TEXT[criterion.operator]} {_fmt(threshold)}"
    detail = f"met: {_fmt(value)} {wanted}" if passed else f"not met: {_fmt(value)} is not {wanted}"
    if clears is not None:
        detail += f"; interval {_fmt(low)} to {_fmt(high)} {'clears' if clears else 'does not clear'} the threshold"
    return {**result, "value": value, "interval": interval, "interval_clears": clears, "passed": passed,
            "detail": detail + "."}  # fmt: skip


def judge_regression(criterion: Criterion, comparisons: list, *, alpha: float) -> dict:
    rows = [c for c in comparisons if not criterion.figures or c.name in criterion.figures]
    compared = [
        {"figure": c.name, "label": c.label, "unit": c.unit, "baseline": _number(c.baseline),
         "current": _number(c.current), "test": c.test, "p_value": _number(c.p_value), "verdict": c.verdict}
        for c in rows
    ]  # fmt: skip
    regressions = [c for c in compared if c["verdict"] == "regression"]
    missing = [name for name in criterion.figures if name not in {c["figure"] for c in compared}]
    tested = [c for c in compared if c["verdict"] != "no data"]
    passed = not regressions and not missing and bool(tested)
    worst = min(regressions or tested or compared or [{}], key=lambda c: (c.get("p_value") is None, c.get("p_value")))
    if regressions:
        detail = "Regressed: " + "; ".join(
            f"{c['label']} {_fmt(c['baseline'])} → {_fmt(c['current'])}{(' ' + c['unit']) if c['unit'] else ''} "
            f"({c['test']}, p = {_fmt_p(c['p_value'])})"
            for c in regressions
        )
    elif missing:
        detail = f"Not compared (no data in one of the runs): {', '.join(missing)}."
    elif not tested:
        detail = "Nothing could be compared: the runs have no figures in common with data."
    else:
        detail = f"No significant regression in {len(tested)} figure{'s' if len(tested) != 1 else ''} compared."
    return {"text": criterion.text, "kind": "regression", "figure": ", ".join(criterion.figures) or "all figures",
            "label": worst.get("label", ""), "unit": worst.get("unit", ""), "value": worst.get("current"),
            "baseline": worst.get("baseline"), "interval": None, "operator": "", "threshold": alpha,
            "test": worst.get("test", ""), "p_value": worst.get("p_value"), "alpha": alpha, "passed": passed,
            "detail": detail, "comparisons": compared}  # fmt: skip


def _fmt(value) -> str:
    if value is None:
        return "–"
    if value == 0 or 0.01 <= abs(value) < 10000:
        return f"{value:.4g}"
    return f"{value:.3g}"


def _fmt_p(value) -> str:
    if value is None:
        return "–"
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"
