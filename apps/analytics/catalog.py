"""Every analytics view once: how it is computed from a query string, its sections (tables), summary, charts
and methods. The page, the API, the CSV / JSON / Excel exports and the PDF report all read these, so they show
the same figures: each figure is rounded here, once, to the precision the page shows
(apps.analytics.presentation); files keep it a number, the page and the PDF write it in words."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from apps.accounts.simulated import PARAM as SIMULATED_PARAM
from apps.accounts.simulated import include_simulated
from apps.analytics import selectors
from apps.analytics.filters import FilterError, parse_filters, parse_include_simulated
from apps.analytics.presentation import SIMULATED, Column, Fact, Plot, Section, interval, words
from apps.batches.selectors import QUALITY_METRICS, TEXT_METRICS, ObjectiveError, objective_from
from llmbench import svg
from llmbench.exports import Table


class ParameterError(ValueError):
    """A bad query parameter of a view; `field` names it (filters, objective and weights alike)."""

    def __init__(self, field_name: str, problem: str):
        super().__init__(f"{field_name}: {problem}")
        self.field, self.problem = field_name, problem


@dataclass
class Result:
    """A computed view: the raw figures (the API's answer) and what the other formats show."""

    view: "View"
    data: dict
    filters: list[tuple[str, str]]
    sections: list[Section] = field(default_factory=list)
    summary: list[Fact] = field(default_factory=list)
    charts: list[tuple[str, str]] = field(default_factory=list)  # (caption, SVG): the PDF's charts
    plots: list[Plot] = field(default_factory=list)  # the page's interactive charts

    @property
    def tables(self) -> list[Table]:
        """The sections as the files write them (column keys, rounded numbers, a `simulated` column)."""
        return [section.file_table() for section in self.sections]

    @property
    def summary_pairs(self) -> list[tuple[str, Any]]:
        """The summary as the files write it: (label, rounded figure)."""
        return [(fact.label, fact.stored) for fact in self.summary]

    @property
    def simulated(self) -> bool:
        """Whether any row of the view includes simulated data."""
        return any(row.get(SIMULATED) for section in self.sections for row in section.rows)


@dataclass(frozen=True)
class View:
    slug: str
    title: str
    description: str
    compute: Callable[[Any, Any], tuple[dict, list[tuple[str, str]]]]  # (team, params) → (data, filters shown)
    present: Callable[[Result], None]  # fills sections, summary and charts
    methods: tuple[tuple[str, str], ...]

    def run(self, team, params) -> Result:
        try:
            data, shown = self.compute(team, params)
        except (FilterError, ObjectiveError) as exc:
            raise ParameterError(exc.field, exc.problem) from None
        result = Result(self, data, shown)
        self.present(result)
        return result


def params_for(request):
    """The request's query string with the "include simulated" choice made explicit when it has none (the team's
    default, `include_simulated=1|0`), so that the page's switch, its download links, the files and the API all
    read the same choice. A value it has is kept as given: the filters check it (a bad one is a 400)."""
    params = (getattr(request, "query_params", None) or request.GET).copy()
    if not params.get(SIMULATED_PARAM):
        params[SIMULATED_PARAM] = "1" if include_simulated(request) else "0"
    return params


def _unit(metric: str) -> str:
    """Quality figures are points on 0–100, the pass rate a percentage."""
    return "%" if metric == "pass_rate" else "points"


def _mean_label(metric: str) -> str:
    return "Pass rate (%)" if metric == "pass_rate" else f"Mean {words(metric)} (points)"


def _sim(item: dict) -> dict:
    return {SIMULATED: bool(item.get(SIMULATED))}


def _bars(section: Section, label: str, value: str, low: str = "", high: str = "", *, axis: str,
          limit: int = 20) -> dict:  # fmt: skip
    """A horizontal bar chart's data (rounded like the table) for static/js/analytics.js."""
    rows = section.rows[:limit]
    return {"labels": [str(r[label]) for r in rows], "values": [r.get(value) for r in rows],
            "low": [r.get(low) if low else None for r in rows], "high": [r.get(high) if high else None for r in rows],
            "simulated": [bool(r.get(SIMULATED)) for r in rows], "axis": axis}  # fmt: skip


# --- methods (the PDF's last section; the same text as docs/metrics.md "Analytics") ------------------

SCALE = ("Quality scale", "Text-quality metrics 0–100 as stored; evaluator score × 100; pass rate in percent "
         "(pass = 100, fail = 0). Failed requests are counted apart and never averaged in.")  # fmt: skip
T_INTERVAL = ("95% interval of a mean", "Quality figures (0–100): a Wilson score interval on the effective sample "
              "size (Korn & Graubard), so both bounds stay inside 0–100; positive figures (latency, cost): a "
              "log-scale interval of the mean, which never reaches 0. Fewer than 3 values: \"not enough data\", "
              "no interval.")  # fmt: skip
WILSON = ("95% interval of a pass rate", "Wilson score interval (scipy.stats.binomtest(…).proportion_ci).")
HOLM = ("Multiple comparisons", "p-values are Holm-Bonferroni adjusted over every comparison shown; "
        "significant means adjusted p < 0.05.")  # fmt: skip
SAMPLE = ("Sample", "Parameter analytics read at most 10,000 successful responses: every k-th by id when the "
          "filter holds more, so the same filter reads the same rows; the answer says which.")  # fmt: skip


# --- quality trends -------------------------------------------------------------------------------


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _filters_only(team, params):
    filters = parse_filters(params, team=team)
    return filters, filters.describe()


def _trends_compute(team, params):
    filters, shown = _filters_only(team, params)
    return selectors.quality_trends(team, filters), shown


def _trends_present(result: Result) -> None:
    data = result.data
    metric, unit = data["metric"], _unit(data["metric"])
    period = "Day" if data["granularity"] == "day" else "Week starting"
    others = [m for m in QUALITY_METRICS if m != metric]
    columns = [
        Column("period", period, "date"),
        Column(f"mean_{metric}", _mean_label(metric), digits=1),
        interval(low="ci_low", high="ci_high", digits=1, unit="%" if unit == "%" else ""),
        Column("n", f"{words(metric).capitalize()}: responses", "count"),
        Column("responses", "Responses", "count", secondary=True),
        Column("errors", "Failed requests", "count", secondary=True),
        Column("sd", f"Standard deviation ({unit})", digits=1, secondary=True),
        Column("ci_low", "95% interval, low", digits=1, page=False),
        Column("ci_high", "95% interval, high", digits=1, page=False),
        *(Column(f"mean_{m}", _mean_label(m), digits=1, secondary=True) for m in others),
    ]
    rows = [{"period": str(p["period"]), "responses": p["responses"], "errors": p["errors"], "n": p["n"],
             f"mean_{metric}": p["mean"], "sd": p["sd"], "ci_low": p["ci_low"], "ci_high": p["ci_high"],
             **{f"mean_{m}": p["metrics"].get(m) for m in others}, **_sim(p)} for p in data["points"]]  # fmt: skip
    per = data["granularity"]
    section = Section("points", f"{words(metric).capitalize()} per {per}",
                      f"How did the {words(metric)} move from one {per} to the next, and how sure is each figure?",
                      columns, rows)  # fmt: skip
    result.sections = [section]
    fit, best = data["trend"], data["best_period"] or {}
    result.summary = [
        Fact("Responses", data["responses"], "count"), Fact(f"{words(metric).capitalize()}: responses", data["n"], "count"),
        Fact(_mean_label(metric), data["mean"], digits=1),
        Fact("Direction", fit["direction"], "text"),
        Fact(f"Change per day ({unit})", fit["slope_per_day"]), Fact("p-value of the trend", fit["p_value"], "p"),
        Fact(f"Change per week ({unit})", fit["improvement_per_week"]),
        Fact(f"Best {per}", str(best["period"]) if best else None, "date"),
        Fact(f"Best {per}: mean ({unit})", best.get("mean"), digits=1), Fact(f"Best {per}: responses", best.get("n"), "count"),
    ]  # fmt: skip
    if fit.get("note"):
        result.summary.append(Fact("Note", fit["note"], "text"))
    points = [(_as_date(p["period"]), p["mean"]) for p in data["points"]]
    caption = f"{_mean_label(metric)} per {per}, with its 95% interval"
    result.charts = [(caption, svg.line_chart([svg.Series(words(metric), points)], y_label=unit))]
    key = f"mean_{metric}"
    result.plots = [Plot("trend", caption, "line", {
        "x": [r["period"] for r in section.rows], "x_axis": period, "axis": _mean_label(metric),
        "series": [{"name": words(metric), "values": [r.get(key) for r in section.rows],
                    "low": [r.get("ci_low") for r in section.rows], "high": [r.get("ci_high") for r in section.rows],
                    "simulated": [bool(r.get(SIMULATED)) for r in section.rows]}],
    }, simulated=any(r.get(SIMULATED) for r in section.rows))]  # fmt: skip


TRENDS = View(
    "quality-trends", "Quality trends",
    "Mean quality per day or week, with the direction of a linear fit through the period means.",
    _trends_compute, _trends_present,
    (SCALE, T_INTERVAL, ("Direction", "scipy.stats.linregress of the period means on the day; improving or "
     "declining only when the slope's p < 0.05, otherwise stable. Improvement per week = slope × 7.")),
)  # fmt: skip


# --- breakdown ------------------------------------------------------------------------------------

BREAKDOWN_METRICS = (*TEXT_METRICS, "score")


def _breakdown_compute(team, params):
    filters, shown = _filters_only(team, params)
    dimension = (params.get("dimension") or "model").strip()
    if dimension not in selectors.DIMENSIONS:
        raise ParameterError("dimension", f"one of {', '.join(selectors.DIMENSIONS)}, not {dimension!r}")
    return selectors.breakdown(team, filters, dimension), [("Breakdown by", dimension), *shown]


def _breakdown_present(result: Result) -> None:
    data = result.data
    metric, dimension = data["metric"], data["dimension"]
    by = words(dimension)
    columns = [
        Column("group", by.capitalize(), "text"),
        Column("responses", "Responses", "count"),
        Column("errors", "Failed requests", "count", secondary=True),
        Column("evaluated", "Evaluated", "count", secondary=True),
        Column("passed", "Passed", "count", secondary=True),
        Column("pass_rate_pct", "Pass rate", "pct", 1),
        interval(low="pass_rate_ci_low", high="pass_rate_ci_high", digits=1, unit="%"),
        Column("pass_rate_ci_low", "", digits=1, page=False), Column("pass_rate_ci_high", "", digits=1, page=False),
    ]  # fmt: skip
    for m in BREAKDOWN_METRICS:
        key = m == metric
        columns += [
            Column(f"{m}_n", f"{words(m).capitalize()}: responses", "count", secondary=True),
            Column(f"{m}_mean", _mean_label(m), digits=1, secondary=not key),
            interval(f"{words(m).capitalize()}: 95% interval" if not key else "95% interval", low=f"{m}_ci_low",
                     high=f"{m}_ci_high", digits=1, secondary=not key),
            Column(f"{m}_ci_low", "", digits=1, page=False), Column(f"{m}_ci_high", "", digits=1, page=False),
        ]  # fmt: skip
    rows = []
    for g in data["groups"]:
        low, high = g["pass_rate_ci"] or (None, None)
        row = {"group": g["group"], "responses": g["responses"], "errors": g["errors"], "evaluated": g["evaluated"],
               "passed": g["passed"], "pass_rate_pct": g["pass_rate"], "pass_rate_ci_low": low,
               "pass_rate_ci_high": high, **_sim(g)}  # fmt: skip
        for m in BREAKDOWN_METRICS:
            s = g["metrics"][m]
            row |= {f"{m}_n": s["n"], f"{m}_mean": s["mean"], f"{m}_ci_low": s["ci_low"], f"{m}_ci_high": s["ci_high"]}
        rows.append(row)
    question = f"Which {by} passes most often and scores highest, and how sure is each figure?"
    groups = Section("groups", f"Quality per {by}", question, columns, rows)
    width = 100 // data["histogram_bins"]
    bins = [(i * width, (i + 1) * width) for i in range(data["histogram_bins"])]
    histogram = Section(
        f"histogram_{metric}", f"Distribution of the {words(metric)}",
        f"How many responses of each {by} fall in each {width}-point band of the {words(metric)}?",
        [Column("group", by.capitalize(), "text"),
         *(Column(f"{lo}-{hi}", f"{lo}–{hi}", "count") for lo, hi in bins)],
        [{"group": g["group"], **dict(zip((f"{lo}-{hi}" for lo, hi in bins), g["histogram"], strict=True)), **_sim(g)}
         for g in data["groups"]],
    )  # fmt: skip
    result.sections = [groups, histogram]
    result.summary = [Fact("Groups", len(rows), "count"), Fact("Note", data["note"] or None, "text")]
    shown = metric if metric in BREAKDOWN_METRICS else "score"
    bars = [svg.Bar(g["group"], g["metrics"][shown]["mean"], g["metrics"][shown]["ci_low"],
                    g["metrics"][shown]["ci_high"]) for g in data["groups"][:20]]  # fmt: skip
    rates = [svg.Bar(g["group"], g["pass_rate"], *(g["pass_rate_ci"] or (None, None))) for g in data["groups"][:20]]
    mean_caption = f"{_mean_label(shown)} per {by}, with its 95% interval"
    rate_caption = f"Pass rate per {by} (%), with its Wilson 95% interval"
    result.charts = [(mean_caption, svg.bar_chart(bars, horizontal=True)),
                     (rate_caption, svg.bar_chart(rates, horizontal=True))]  # fmt: skip
    result.plots = [
        Plot("means", mean_caption, "bars", _bars(groups, "group", f"{shown}_mean", f"{shown}_ci_low",
                                                   f"{shown}_ci_high", axis=_mean_label(shown))),
        Plot("pass-rates", rate_caption, "bars", _bars(groups, "group", "pass_rate_pct", "pass_rate_ci_low",
                                                        "pass_rate_ci_high", axis="Pass rate (%)")),
    ]  # fmt: skip
    for plot in result.plots:
        plot.simulated = any(plot.data["simulated"])


BREAKDOWN = View(
    "quality-breakdown", "Quality breakdown",
    "Each quality metric and the pass rate per model, test case, tag or evaluator, with the distribution.",
    _breakdown_compute, _breakdown_present,
    (SCALE, T_INTERVAL, WILSON, ("Histogram", "Counts of the chosen metric in bins of 10 points (100 in the last)."),
     ("Tags", "A test case with several tags counts in each; prompt-only responses have no test case.")),
)  # fmt: skip


# --- model comparison -----------------------------------------------------------------------------


def _models_compute(team, params):
    filters, shown = _filters_only(team, params)
    return selectors.model_comparison(team, filters), shown


def _models_present(result: Result) -> None:
    data = result.data
    metric = data["metric"]
    targets = Section(
        "targets", "Targets side by side",
        f"Which endpoint and model scores highest on the {words(metric)}, passes most often, answers fastest and "
        "costs least?",
        [Column("target", "Target (endpoint · model)", "text"), Column("responses", "Responses", "count"),
         Column("errors", "Failed requests", "count", secondary=True),
         Column(f"{metric}_n", f"{words(metric).capitalize()}: responses", "count", secondary=True),
         Column(f"{metric}_mean", _mean_label(metric), digits=1),
         interval(low="ci_low", high="ci_high", digits=1, unit="%" if metric == "pass_rate" else ""),
         Column("ci_low", "", digits=1, page=False), Column("ci_high", "", digits=1, page=False),
         Column("evaluated", "Evaluated", "count", secondary=True), Column("passed", "Passed", "count", secondary=True),
         Column("pass_rate_pct", "Pass rate", "pct", 1),
         interval("Pass rate: 95% interval", low="pass_rate_ci_low", high="pass_rate_ci_high", digits=1, unit="%"),
         Column("pass_rate_ci_low", "", digits=1, page=False), Column("pass_rate_ci_high", "", digits=1, page=False),
         Column("mean_latency_ms", "Mean latency (ms)", digits=1), Column("mean_ttft_ms", "Mean TTFT (ms)", digits=1),
         Column("cost_usd", "Total cost (USD)", secondary=True),
         Column("cost_per_response_usd", "Cost per response (USD)")],
        [{"target": t["target"], "responses": t["responses"], "errors": t["errors"], f"{metric}_n": t["n"],
          f"{metric}_mean": t["mean"], "ci_low": t["ci_low"], "ci_high": t["ci_high"], "evaluated": t["evaluated"],
          "passed": t["passed"], "pass_rate_pct": t["pass_rate"],
          "pass_rate_ci_low": (t["pass_rate_ci"] or (None, None))[0],
          "pass_rate_ci_high": (t["pass_rate_ci"] or (None, None))[1], "mean_latency_ms": t["mean_latency_ms"],
          "mean_ttft_ms": t["mean_ttft_ms"], "cost_usd": t["cost_usd"],
          "cost_per_response_usd": t["cost_per_response_usd"], **_sim(t)} for t in data["targets"]],
    )  # fmt: skip
    pairs = Section(
        "pairs", "Pairwise differences",
        "Does one target really score differently from another, once every comparison on the page is accounted for?",
        [Column("a", "Target A", "text"), Column("b", "Target B", "text"),
         Column("test", "Test", "words", secondary=True),
         Column("shared_test_cases", "Shared test cases", "count", secondary=True),
         Column("n", "Values tested", "count", secondary=True),
         Column("difference", f"Difference A − B ({_unit(metric)})", digits=1),
         Column("statistic", "Test statistic", secondary=True), Column("p_value", "p-value", "p", secondary=True),
         Column("p_holm", "p-value, Holm-adjusted", "p"), Column("significant", "Verdict", "significant"),
         Column("note", "Note", "text", secondary=True, long=True)],
        [{"a": p["a"], "b": p["b"], "test": p["test"], "shared_test_cases": p["shared_test_cases"], "n": p["n"],
          "difference": p["difference"], "statistic": p["statistic"], "p_value": p["p_value"], "p_holm": p["p_holm"],
          "significant": p["significant"], "note": p["note"] or None, **_sim(p)} for p in data["pairs"]],
        empty="Fewer than two targets in this filter: nothing to compare.",
    )  # fmt: skip
    result.sections = [targets, pairs]
    result.summary = [Fact("Targets", len(targets.rows), "count"), Fact("Pairs compared", len(pairs.rows), "count"),
                      Fact("Significant differences", sum(bool(p["significant"]) for p in data["pairs"]), "count"),
                      Fact("Note", data["note"] or None, "text")]  # fmt: skip
    bars = [svg.Bar(t["target"], t["mean"], t["ci_low"], t["ci_high"]) for t in data["targets"]]
    caption = f"{_mean_label(metric)} per target, with its 95% interval"
    result.charts = [(caption, svg.bar_chart(bars, horizontal=True))]
    plot = _bars(targets, "target", f"{metric}_mean", "ci_low", "ci_high", axis=_mean_label(metric))
    result.plots = [Plot("targets", caption, "bars", plot, simulated=any(plot["simulated"]))]


MODELS = View(
    "model-comparison", "Model comparison",
    "Per target: the chosen metric, pass rate, latency and cost; every pair tested.",
    _models_compute, _models_present,
    (SCALE, T_INTERVAL, WILSON, ("Pairwise test", "Wilcoxon signed-rank on per-test-case means where two targets "
     "share 2 or more test cases (paired), otherwise two-sided Mann-Whitney U on the responses."), HOLM),
)  # fmt: skip


# --- parameters -----------------------------------------------------------------------------------


def _objective_compute(selector):
    def compute(team, params):
        filters, shown = _filters_only(team, params)
        objective = objective_from(params, filters.metric)
        return selector(team, filters, objective), [("Objective", objective.describe()), *shown]

    return compute


def _optimization_present(result: Result) -> None:
    data = result.data
    unit = data["unit"]
    section = Section(
        "optimal_values", "Best value of each parameter",
        f"Which value of each sampling parameter gives the best {data['description']}, and by how much?",
        [Column("parameter", "Parameter", "words"), Column("best_value", "Best value", "setting"),
         Column("mean", f"Mean at the best value ({unit})", digits=1),
         interval(low="ci_low", high="ci_high", digits=1), Column("ci_low", "", digits=1, page=False),
         Column("ci_high", "", digits=1, page=False), Column("n", "Responses", "count"),
         Column("confidence", "Confidence over the runner-up", digits=3),
         Column("runner_up", "Runner-up value", "setting", secondary=True),
         Column("effect", f"Effect against the overall mean ({unit})", digits=1, secondary=True),
         Column("effect_pct", "Effect (%)", "pct", 1, secondary=True),
         Column("recommended", "Recommended range", "range", page=True, file=False, low="recommended_low",
                high="recommended_high"),
         Column("recommended_low", "", "setting", page=False), Column("recommended_high", "", "setting", page=False),
         Column("reasoning", "Why", "text", long=True)],
        [{"parameter": o["parameter"], "best_value": o["value"], "mean": o["mean"], "ci_low": o["ci_low"],
          "ci_high": o["ci_high"], "n": o["n"], "confidence": o["confidence"], "runner_up": o["runner_up"],
          "effect": o["effect_points"], "effect_pct": o["effect_pct"], "recommended_low": o["recommended_range"][0],
          "recommended_high": o["recommended_range"][1], "reasoning": o["reasoning"], **_sim(o)}
         for o in data["optimal"]],
        empty="No parameter takes two or more values in this filter.",
    )  # fmt: skip
    result.sections = [section]
    best = data.get("best_combination") or {}
    combination = ", ".join(f"{words(k)} {v:g}" for k, v in (best.get("parameters") or {}).items())
    result.summary = [Fact("Objective", data["description"], "text"), Fact("Sample", data["sample"], "text"),
                      Fact("Responses", data["n"], "count"), Fact(f"Mean ({unit})", data["batch_mean"], digits=1),
                      Fact("Best combination", combination or None, "text"),
                      Fact(f"Best combination: mean ({unit})", best.get("mean"), digits=1),
                      Fact("Best combination: responses", best.get("n"), "count")]  # fmt: skip
    for note in data.get("notes") or []:
        result.summary.append(Fact("Note", note, "text"))
    bars = [svg.Bar(f"{o['parameter']} {o['value']:g}", o["effect_points"]) for o in data["optimal"]]
    caption = f"Effect of each best value against the overall mean ({unit})"
    result.charts = [(caption, svg.bar_chart(bars, horizontal=True))]
    labelled = [{**row, "label": f"{words(row['parameter'])} {row['best_value']:g}"} for row in section.rows]
    plot = _bars(Section("plot", "", "", [], labelled), "label", "effect",
                 axis=f"Effect against the overall mean ({unit})")  # fmt: skip
    result.plots = [Plot("effects", caption, "bars", plot, simulated=any(plot["simulated"]))]


OPTIMIZATION = View(
    "parameter-optimization", "Parameter optimization",
    "The best value of each sampling parameter for an objective, over every experiment and sweep in the filter.",
    _objective_compute(selectors.parameter_optimization), _optimization_present,
    (SCALE, SAMPLE, ("Confidence", "1 − the one-sided Welch t test p-value of the best value against the runner-up."),
     ("Recommended range", "Values whose mean stays within the best value's 95% interval bound."), T_INTERVAL),
)  # fmt: skip


def _correlation_compute(team, params):
    filters, shown = _filters_only(team, params)
    return selectors.parameter_correlation(team, filters), shown


def _correlation_present(result: Result) -> None:
    data = result.data
    correlations = Section(
        "correlations", "Correlations",
        "Does a higher value of a parameter go with a higher or lower figure, and is that more than chance?",
        [Column("parameter", "Parameter", "words"), Column("metric", "Figure", "words"),
         Column("n", "Responses", "count"), Column("pearson_r", "Pearson r", digits=3, secondary=True),
         Column("pearson_p", "Pearson p-value", "p", secondary=True), Column("spearman_rho", "Spearman ρ", digits=3),
         Column("spearman_p", "p-value", "p"), Column("significant", "Verdict", "significant"),
         Column("strength", "Strength", "text")],
        [{**{k: c[k] for k in ("parameter", "metric", "n", "pearson_r", "pearson_p", "spearman_rho", "spearman_p",
                                "significant", "strength")}, **_sim(c)} for c in data["correlations"]],
        empty="No parameter takes two or more values in this filter.",
    )  # fmt: skip
    effects = Section(
        "effects", "Mean at each value",
        "What is the mean figure at each value of a parameter, and do the values differ (Kruskal-Wallis)?",
        [Column("parameter", "Parameter", "words"), Column("metric", "Figure", "words"), Column("value", "Value", "setting"),
         Column("n", "Responses", "count"), Column("mean", "Mean", digits=1),
         interval(low="ci_low", high="ci_high", digits=1), Column("ci_low", "", digits=1, page=False),
         Column("ci_high", "", digits=1, page=False), Column("kruskal_p", "Kruskal-Wallis p-value", "p"),
         Column("significant", "Verdict", "significant")],
        [{"parameter": e["parameter"], "metric": e["metric"], "value": v["value"], "n": v["n"], "mean": v["mean"],
          "ci_low": v["ci_low"], "ci_high": v["ci_high"], "kruskal_p": e["kruskal_p"], "significant": e["significant"],
          **_sim(v), **({SIMULATED: True} if e.get(SIMULATED) else {})} for e in data["effects"] for v in e["values"]],
        empty="No parameter takes two or more values in this filter.",
    )  # fmt: skip
    result.sections = [correlations, effects]
    result.summary = [Fact("Sample", data["sample"], "text"), Fact("Responses", data["n"], "count"),
                      Fact("Parameters", ", ".join(words(p) for p in data["parameters"]) or None, "text"),
                      Fact("Significant correlations", sum(bool(c["significant"]) for c in data["correlations"]),
                           "count")]  # fmt: skip
    caption = "Spearman ρ of each parameter with the overall quality"
    overall = [row for row in correlations.rows if row["metric"] == "overall"]
    result.charts = [(caption, svg.bar_chart([svg.Bar(c["parameter"], c["spearman_rho"]) for c in overall],
                                             horizontal=True))]  # fmt: skip
    plot = _bars(Section("plot", "", "", [], [{**c, "label": words(c["parameter"])} for c in overall]), "label",
                 "spearman_rho", axis="Spearman ρ (−1 to 1)")  # fmt: skip
    result.plots = [Plot("correlations", caption, "bars", plot | {"min": -1, "max": 1},
                         simulated=any(plot["simulated"]))]  # fmt: skip


CORRELATION = View(
    "parameter-correlation", "Parameter correlation",
    "Pearson and Spearman correlation of each sampling parameter with each figure, and the mean at each value.",
    _correlation_compute, _correlation_present,
    (SCALE, SAMPLE, ("Correlation", "scipy.stats.pearsonr and spearmanr with two-sided p-values; significant = "
     "Spearman p < 0.05; strength of |ρ|: strong ≥ 0.5, moderate ≥ 0.3, weak ≥ 0.1."),
     ("Effect", "Mean of the chosen metric per value with its 95% interval; Kruskal-Wallis across the values "
      "decides significance.")),
)  # fmt: skip


def _insights_present(result: Result) -> None:
    data = result.data
    section = Section(
        "insights", "Findings", "What do the statistics support saying about the parameters, in a sentence each?",
        [Column("kind", "Kind", "words"), Column("parameter", "Parameter", "words"), Column("metric", "Figure", "words"),
         Column("text", "Finding", "text", long=True)],
        [{"kind": i["kind"], "parameter": i["parameter"], "metric": i["metric"], "text": i["text"], **_sim(i)}
         for i in data["insights"]],
        empty="Nothing the tests support in this filter.",
    )  # fmt: skip
    result.sections = [section]
    result.summary = [Fact("Objective", words(data["objective"]), "text"), Fact("Sample", data["sample"], "text"),
                      Fact("Responses", data["n"], "count"), Fact("Findings", len(section.rows), "count")]  # fmt: skip


INSIGHTS = View(
    "parameter-insights", "Parameter insights",
    "Sentences from the statistics, each claiming only what its test supports.",
    _objective_compute(selectors.parameter_insights), _insights_present,
    (SCALE, SAMPLE, ("Thresholds", "A split of a parameter's values survives a Bonferroni-corrected two-sided "
     "Mann-Whitney test."), ("No effect", "Kruskal-Wallis p ≥ 0.05 across the values.")),
)  # fmt: skip


# --- regressions ----------------------------------------------------------------------------------


def _regressions_compute(team, params):
    include = parse_include_simulated(params, team)
    shown = [("Scope", "every model and deployment of the team"),
             ("Simulated results", "included" if include else "left out")]  # fmt: skip
    return selectors.regressions(team, include_simulated=include), shown


def _regressions_present(result: Result) -> None:
    data = result.data
    section = Section(
        "comparisons", "Latest against previous",
        "Did a model's or deployment's latest run get significantly better or worse than its previous one?",
        [Column("subject", "Subject", "text"), Column("status", "Verdict", "text"), Column("metric", "Figure", "words"),
         Column("latest_value", "Latest", "amount", 1, unit_key="unit"),
         Column("previous_value", "Previous", "amount", 1, unit_key="unit"),
         Column("change", "Change", "amount", 1, unit_key="change_unit"),
         Column("change_pct", "Relative change (%)", "pct", 1),
         Column("p_holm", "p-value, Holm-adjusted", "p"), Column("kind", "Kind", "text", secondary=True),
         Column("unit", "Unit", "text", secondary=True), Column("n", "Values, latest", "count", secondary=True),
         Column("previous_n", "Values, previous", "count", secondary=True),
         Column("test", "Test", "words", secondary=True), Column("p_value", "p-value", "p", secondary=True),
         Column("latest", "Latest run", "text", secondary=True),
         Column("previous", "Previous run", "text", secondary=True)],
        [{"status": c["status"], "kind": c["kind"], "subject": c["subject"], "metric": c["metric"], "unit": c["unit"],
          "latest_value": c["value"], "previous_value": c["previous_value"], "change": c["change"],
          "change_pct": c["change_pct"], "n": c["n"], "previous_n": c["previous_n"], "test": c["test"],
          "p_value": c["p_value"], "p_holm": c["p_holm"], "latest": c["latest"], "previous": c["previous"],
          # A change of a percentage is in percentage points, not percent.
          "change_unit": "percentage points" if c["unit"] == "%" else c["unit"], **_sim(c)}
         for c in data["comparisons"]],
        empty="No model or deployment has two comparable runs yet.",
    )  # fmt: skip
    result.sections = [section]
    result.summary = [Fact("Comparisons", len(section.rows), "count"),
                      Fact("Regressions", data["regressions"], "count"),
                      Fact("Improvements", data["improvements"], "count")]  # fmt: skip


REGRESSIONS = View(
    "regressions", "Regressions",
    "Each model's and deployment's latest run against its previous comparable one; flagged only when significant.",
    _regressions_compute, _regressions_present,
    (("Comparable", "Quality: the same endpoint and model in the two latest finished experiments. Performance: the "
      "same model variant, hardware, deployment, concurrency, request rate, token targets and dataset."),
     ("Tests", "Pass rate: Fisher exact; mean score: Welch t; TTFT p95, TPOT and throughput: Welch t on the "
      "per-request means the run summaries store."), HOLM),
)  # fmt: skip


# --- leaderboard ----------------------------------------------------------------------------------


def _leaderboard_compute(team, params):
    filters, shown = _filters_only(team, params)
    try:
        weights = selectors.parse_weights(params.get("weights"))
    except ValueError as exc:
        raise ParameterError("weights", str(exc)) from None
    shown = [("Weights", ", ".join(f"{k} {v:g}" for k, v in weights.items())), *shown]
    return selectors.leaderboard(team, filters, weights), shown


def _leaderboard_present(result: Result) -> None:
    data = result.data
    section = Section(
        "leaderboard", "Ranking",
        "Which model variant and deployment gives the best mix of quality, speed and cost for your weights?",
        [Column("variant", "Model variant", "text"), Column("rank", "Rank", "count"),
         Column("deployment", "Deployment", "text"), Column("composite", "Composite (0–100)", digits=1),
         Column("quality", "Quality (%)", digits=1),
         Column("benchmark_score_pct", "Benchmark score (%)", digits=1, secondary=True),
         Column("benchmarks", "Benchmarks", "count", secondary=True),
         Column("own_quality", "Own test-case quality (points)", digits=1, secondary=True),
         Column("own_quality_n", "Own test-case responses", "count", secondary=True),
         Column("output_tps", "Output (tokens/s)", digits=1), Column("ttft_p50_ms", "TTFT p50 (ms)", digits=1),
         Column("cost_per_1m_output_usd", "Cost per 1M output tokens (USD)", digits=2),
         Column("runs", "Runs", "count", secondary=True), Column("pareto", "On the Pareto front", "bool")],
        [{**{k: x.get(k) for k in ("rank", "variant", "deployment", "composite", "quality", "benchmark_score_pct",
                                   "benchmarks", "own_quality", "own_quality_n", "ttft_p50_ms", "output_tps",
                                   "cost_per_1m_output_usd", "runs", "pareto")}, **_sim(x)} for x in data["rows"]],
        empty="No model variant yet: import scores or add performance runs.",
    )  # fmt: skip
    result.sections = [section]
    result.summary = [Fact("Rows", len(section.rows), "count"),
                      Fact("On the Pareto front", sum(bool(x["pareto"]) for x in data["rows"]), "count"),
                      Fact("Note", data["note"], "text")]  # fmt: skip
    plotted = [(x, row) for x, row in zip(data["rows"], section.rows, strict=True)
               if x["quality"] is not None and x["cost_per_1m_output_usd"] is not None]  # fmt: skip
    points = [svg.Point(f"{x['model'].split('/')[-1]} {x['quantization']}", x["cost_per_1m_output_usd"], x["quality"])
              for x, _ in plotted]  # fmt: skip
    front = {i for i, (x, _) in enumerate(plotted) if x["pareto"]}
    caption = "Quality against cost per 1M output tokens (the Pareto front highlighted)"
    result.charts = [(caption, svg.scatter(points, front=front, x_label="USD per 1M output tokens",
                                           y_label="quality (%)"))]  # fmt: skip
    result.plots = [Plot("pareto", caption, "scatter", {
        "points": [{"label": f"{x['model'].split('/')[-1]} {x['quantization']}"
                             + (f" · {x['deployment']}" if x["deployment"] else ""),
                    "x": row["cost_per_1m_output_usd"], "y": row["quality"], "front": bool(x["pareto"]),
                    "simulated": bool(row.get(SIMULATED))} for x, row in plotted],
        "x_axis": "Cost per 1M output tokens (USD)", "axis": "Quality (%)",
    }, simulated=any(row.get(SIMULATED) for _, row in plotted))]  # fmt: skip


LEADERBOARD = View(
    "leaderboard", "Leaderboard: quality × speed × cost",
    "Per model variant and deployment, one composite of quality, throughput and cost with the weights you set.",
    _leaderboard_compute, _leaderboard_present,
    (("Quality", "The mean of the variant's benchmark scores (percent; measured here where present, else imported), "
      "else its own test-case quality "
      "(mean evaluator score × 100 of responses from a model of that name)."),
     ("Speed", "Median output token throughput over the variant's performance runs on that deployment; TTFT p50 "
      "likewise."), ("Cost", "Median over runs of hourly hardware cost ÷ (throughput × 3600) × 10⁶."),
     ("Composite", "Each axis min-max scaled to 0–1 over the rows (1 = best), weighted mean × 100; a row missing "
      "a weighted axis is not ranked."), ("Pareto front", "Rows no other row beats or equals on quality, "
      "throughput and cost at once (better on one).")),
)  # fmt: skip


VIEWS = {v.slug: v for v in (TRENDS, BREAKDOWN, MODELS, OPTIMIZATION, CORRELATION, INSIGHTS, REGRESSIONS, LEADERBOARD)}
