"""Every analytics view once: how it is computed from a query string, its tables, summary, charts and
methods. The page, the API, the CSV / JSON / Excel exports and the PDF report all read these, so they show
the same figures: table cells are rounded here, once (4 decimals), and nowhere else."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from apps.analytics import selectors
from apps.analytics.filters import FilterError, parse_filters
from apps.batches.selectors import QUALITY_METRICS, TEXT_METRICS, ObjectiveError, objective_from
from llmbench import svg
from llmbench.exports import Table

DECIMALS = 4


class ParameterError(ValueError):
    """A bad query parameter of a view; `field` names it (filters, objective and weights alike)."""

    def __init__(self, field_name: str, problem: str):
        super().__init__(f"{field_name}: {problem}")
        self.field, self.problem = field_name, problem


def r(value: Any) -> Any:
    """A figure as every format shows it: floats rounded to DECIMALS, the rest unchanged."""
    return round(value, DECIMALS) if isinstance(value, float) else value


def _ci(pair) -> tuple[Any, Any]:
    return (r(pair[0]), r(pair[1])) if pair else (None, None)


@dataclass
class Result:
    """A computed view: the raw figures (the API's answer) and what the other formats show."""

    view: "View"
    data: dict
    filters: list[tuple[str, str]]
    tables: list[Table] = field(default_factory=list)
    summary: list[tuple[str, Any]] = field(default_factory=list)
    charts: list[tuple[str, str]] = field(default_factory=list)  # (caption, SVG)


@dataclass(frozen=True)
class View:
    slug: str
    title: str
    description: str
    compute: Callable[[Any, Any], tuple[dict, list[tuple[str, str]]]]  # (team, params) → (data, filters shown)
    present: Callable[[Result], None]  # fills tables, summary and charts
    methods: tuple[tuple[str, str], ...]

    def run(self, team, params) -> Result:
        try:
            data, shown = self.compute(team, params)
        except (FilterError, ObjectiveError) as exc:
            raise ParameterError(exc.field, exc.problem) from None
        result = Result(self, data, shown)
        self.present(result)
        return result


# --- methods (the PDF's last section; the same text as docs/metrics.md "Analytics") ------------------

SCALE = ("Quality scale", "Text-quality metrics 0–100 as stored; evaluator score × 100; pass rate in percent "
         "(pass = 100, fail = 0). Failed requests are counted apart and never averaged in.")  # fmt: skip
T_INTERVAL = ("95% interval of a mean", "Student t: mean ± t(0.975, n − 1) · sd / √n, sd the sample standard "
              "deviation (ddof = 1), from the database's count, sum and sum of squares.")  # fmt: skip
WILSON = ("95% interval of a pass rate", "Wilson score interval (scipy.stats.binomtest(…).proportion_ci).")
HOLM = ("Multiple comparisons", "p-values are Holm-Bonferroni adjusted over every comparison shown; "
        "significant means adjusted p < 0.05.")  # fmt: skip
SAMPLE = ("Sample", "Parameter analytics read at most 10,000 successful responses: every k-th by id when the "
          "filter holds more, so the same filter reads the same rows; the answer says which.")  # fmt: skip


# --- quality trends -------------------------------------------------------------------------------


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _filters_only(team, params):
    filters = parse_filters(params)
    return filters, filters.describe()


def _trends_compute(team, params):
    filters, shown = _filters_only(team, params)
    return selectors.quality_trends(team, filters), shown


def _trends_present(result: Result) -> None:
    data = result.data
    metric = data["metric"]
    columns = ["period", "responses", "errors", "n", f"mean_{metric}", "sd", "ci_low", "ci_high",
               *(f"mean_{m}" for m in QUALITY_METRICS if m != metric)]  # fmt: skip
    rows = [[str(p["period"]), p["responses"], p["errors"], p["n"], r(p["mean"]), r(p["sd"]), r(p["ci_low"]),
             r(p["ci_high"]), *(r(p["metrics"][m]) for m in QUALITY_METRICS if m != metric)]
            for p in data["points"]]  # fmt: skip
    result.tables = [Table("points", columns, rows)]
    fit, best = data["trend"], data["best_period"] or {}
    result.summary = [
        ("Responses", data["responses"]), (f"n ({metric})", data["n"]), (f"Mean {metric}", r(data["mean"])),
        ("Direction", fit["direction"]), ("Slope per day", r(fit["slope_per_day"])), ("p-value", r(fit["p_value"])),
        ("Improvement per week", r(fit["improvement_per_week"])), ("Best period", str(best["period"]) if best else None),
        ("Best period mean", r(best.get("mean"))), ("Best period n", best.get("n")),
    ]  # fmt: skip
    points = [(_as_date(p["period"]), p["mean"]) for p in data["points"]]
    result.charts = [(f"Mean {metric} per {data['granularity']} (points)",
                      svg.line_chart([svg.Series(metric, points)], y_label="points"))]  # fmt: skip


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
    columns = ["group", "responses", "errors", "evaluated", "passed", "pass_rate_pct", "pass_rate_ci_low",
               "pass_rate_ci_high"]  # fmt: skip
    for m in BREAKDOWN_METRICS:
        columns += [f"{m}_n", f"{m}_mean", f"{m}_ci_low", f"{m}_ci_high"]
    rows = []
    for g in data["groups"]:
        row = [g["group"], g["responses"], g["errors"], g["evaluated"], g["passed"], r(g["pass_rate"]),
               *_ci(g["pass_rate_ci"])]  # fmt: skip
        for m in BREAKDOWN_METRICS:
            s = g["metrics"][m]
            row += [s["n"], r(s["mean"]), r(s["ci_low"]), r(s["ci_high"])]
        rows.append(row)
    width = 100 // data["histogram_bins"]
    bins = [f"{i * width}-{(i + 1) * width}" for i in range(data["histogram_bins"])]
    histogram = [[g["group"], *g["histogram"]] for g in data["groups"]]
    result.tables = [Table("groups", columns, rows), Table(f"histogram_{data['metric']}", ["group", *bins], histogram)]
    result.summary = [("Groups", len(rows)), ("Note", data["note"] or "–")]
    metric = data["metric"] if data["metric"] in BREAKDOWN_METRICS else "score"
    bars = [svg.Bar(g["group"], g["metrics"][metric]["mean"], g["metrics"][metric]["ci_low"],
                    g["metrics"][metric]["ci_high"]) for g in data["groups"][:20]]  # fmt: skip
    rates = [svg.Bar(g["group"], g["pass_rate"], *(g["pass_rate_ci"] or (None, None))) for g in data["groups"][:20]]
    result.charts = [(f"Mean {metric} per {data['dimension']} (95% CI)", svg.bar_chart(bars, horizontal=True)),
                     (f"Pass rate per {data['dimension']} (%, Wilson 95% CI)", svg.bar_chart(rates, horizontal=True))]  # fmt: skip


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
    targets = [[t["target"], t["responses"], t["errors"], t["n"], r(t["mean"]), r(t["ci_low"]), r(t["ci_high"]),
                t["evaluated"], t["passed"], r(t["pass_rate"]), *_ci(t["pass_rate_ci"]), r(t["mean_latency_ms"]),
                r(t["mean_ttft_ms"]), r(t["cost_usd"]), r(t["cost_per_response_usd"])] for t in data["targets"]]  # fmt: skip
    pairs = [[p["a"], p["b"], p["test"], p["shared_test_cases"], p["n"], r(p["difference"]), r(p["statistic"]),
              r(p["p_value"]), r(p["p_holm"]), p["significant"], p["note"]] for p in data["pairs"]]  # fmt: skip
    result.tables = [
        Table("targets", ["target", "responses", "errors", f"{metric}_n", f"{metric}_mean", "ci_low", "ci_high",
                          "evaluated", "passed", "pass_rate_pct", "pass_rate_ci_low", "pass_rate_ci_high",
                          "mean_latency_ms", "mean_ttft_ms", "cost_usd", "cost_per_response_usd"], targets),
        Table("pairs", ["a", "b", "test", "shared_test_cases", "n", "difference", "statistic", "p_value", "p_holm",
                        "significant", "note"], pairs),
    ]  # fmt: skip
    result.summary = [("Targets", len(targets)), ("Pairs compared", len(pairs)),
                      ("Significant pairs", sum(p["significant"] for p in data["pairs"])), ("Note", data["note"] or "–")]  # fmt: skip
    bars = [svg.Bar(t["target"], t["mean"], t["ci_low"], t["ci_high"]) for t in data["targets"]]
    result.charts = [(f"Mean {metric} per target (points, 95% CI)", svg.bar_chart(bars, horizontal=True))]


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
    rows = [[o["parameter"], r(o["value"]), r(o["mean"]), r(o["ci_low"]), r(o["ci_high"]), o["n"], r(o["confidence"]),
             r(o["runner_up"]), r(o["effect_points"]), r(o["effect_pct"]), r(o["recommended_range"][0]),
             r(o["recommended_range"][1]), o["reasoning"]] for o in data["optimal"]]  # fmt: skip
    result.tables = [Table("optimal_values", ["parameter", "best_value", "mean", "ci_low", "ci_high", "n", "confidence",
                                              "runner_up", "effect", "effect_pct", "recommended_low",
                                              "recommended_high", "reasoning"], rows)]  # fmt: skip
    best = data.get("best_combination") or {}
    result.summary = [("Objective", data["description"]), ("Sample", data["sample"]), ("n", data["n"]),
                      ("Mean", r(data["batch_mean"])),
                      ("Best combination", ", ".join(f"{k} {v:g}" for k, v in (best.get("parameters") or {}).items()) or "–"),
                      ("Best combination mean", r(best.get("mean"))), ("Best combination n", best.get("n"))]  # fmt: skip
    bars = [svg.Bar(f"{o['parameter']} {o['value']:g}", o["effect_points"]) for o in data["optimal"]]
    result.charts = [
        (f"Effect of each best value on the objective ({data['unit']})", svg.bar_chart(bars, horizontal=True))
    ]


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
    rows = [[c["parameter"], c["metric"], c["n"], r(c["pearson_r"]), r(c["pearson_p"]), r(c["spearman_rho"]),
             r(c["spearman_p"]), c["significant"], c["strength"]] for c in data["correlations"]]  # fmt: skip
    effects = [[e["parameter"], e["metric"], v["value"], v["n"], r(v["mean"]), r(v["ci_low"]), r(v["ci_high"]),
                r(e["kruskal_p"]), e["significant"]] for e in data["effects"] for v in e["values"]]  # fmt: skip
    result.tables = [
        Table("correlations", ["parameter", "metric", "n", "pearson_r", "pearson_p", "spearman_rho", "spearman_p",
                               "significant", "strength"], rows),
        Table("effects", ["parameter", "metric", "value", "n", "mean", "ci_low", "ci_high", "kruskal_p",
                          "significant"], effects),
    ]  # fmt: skip
    result.summary = [("Sample", data["sample"]), ("n", data["n"]), ("Parameters", ", ".join(data["parameters"]) or "–"),
                      ("Significant correlations", sum(c["significant"] for c in data["correlations"]))]  # fmt: skip
    overall = [c for c in data["correlations"] if c["metric"] == "overall"]
    result.charts = [("Spearman ρ of each parameter with overall quality",
                      svg.bar_chart([svg.Bar(c["parameter"], c["spearman_rho"]) for c in overall], horizontal=True))]  # fmt: skip


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
    result.tables = [Table("insights", ["kind", "parameter", "metric", "text"],
                           [[i["kind"], i["parameter"], i["metric"], i["text"]] for i in data["insights"]])]  # fmt: skip
    result.summary = [("Objective", data["objective"]), ("Sample", data["sample"]), ("n", data["n"]),
                      ("Insights", len(data["insights"]))]  # fmt: skip


INSIGHTS = View(
    "parameter-insights", "Parameter insights",
    "Sentences from the statistics, each claiming only what its test supports.",
    _objective_compute(selectors.parameter_insights), _insights_present,
    (SCALE, SAMPLE, ("Thresholds", "A split of a parameter's values survives a Bonferroni-corrected two-sided "
     "Mann-Whitney test."), ("No effect", "Kruskal-Wallis p ≥ 0.05 across the values.")),
)  # fmt: skip


# --- regressions ----------------------------------------------------------------------------------


def _regressions_compute(team, params):
    return selectors.regressions(team), [("Scope", "every model and deployment of the team")]


def _regressions_present(result: Result) -> None:
    data = result.data
    rows = [[c["status"], c["kind"], c["subject"], c["metric"], c["unit"], r(c["value"]), r(c["previous_value"]),
             r(c["change"]), r(c["change_pct"]), c["n"], c["previous_n"], c["test"], r(c["p_value"]), r(c["p_holm"]),
             c["latest"], c["previous"]] for c in data["comparisons"]]  # fmt: skip
    result.tables = [Table("comparisons", ["status", "kind", "subject", "metric", "unit", "latest_value",
                                           "previous_value", "change", "change_pct", "n", "previous_n", "test",
                                           "p_value", "p_holm", "latest", "previous"], rows)]  # fmt: skip
    result.summary = [("Comparisons", len(rows)), ("Regressions", data["regressions"]),
                      ("Improvements", data["improvements"])]  # fmt: skip


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
    rows = [[x["rank"], x["variant"], x["deployment"], r(x["composite"]), r(x["quality"]), r(x["benchmark_score_pct"]),
             r(x["own_quality"]), x["own_quality_n"], r(x["ttft_p50_ms"]), r(x["output_tps"]),
             r(x["cost_per_1m_output_usd"]), x["runs"], x["pareto"]] for x in data["rows"]]  # fmt: skip
    result.tables = [Table("leaderboard", ["rank", "variant", "deployment", "composite", "quality",
                                           "benchmark_score_pct", "own_quality", "own_quality_n", "ttft_p50_ms",
                                           "output_tps", "cost_per_1m_output_usd", "runs", "pareto"], rows)]  # fmt: skip
    result.summary = [("Rows", len(rows)), ("On the Pareto front", sum(x["pareto"] for x in data["rows"])),
                      ("Note", data["note"])]  # fmt: skip
    plotted = [x for x in data["rows"] if x["quality"] is not None and x["cost_per_1m_output_usd"] is not None]
    points = [svg.Point(f"{x['model'].split('/')[-1]} {x['quantization']}", x["cost_per_1m_output_usd"], x["quality"])
              for x in plotted]  # fmt: skip
    front = {i for i, x in enumerate(plotted) if x["pareto"]}
    result.charts = [("Quality against cost per 1M output tokens (Pareto front highlighted)",
                      svg.scatter(points, front=front, x_label="USD per 1M output tokens", y_label="quality"))]  # fmt: skip


LEADERBOARD = View(
    "leaderboard", "Leaderboard: quality × speed × cost",
    "Per model variant and deployment, one composite of quality, throughput and cost with the weights you set.",
    _leaderboard_compute, _leaderboard_present,
    (("Quality", "The mean of the variant's imported benchmark scores (percent), else its own test-case quality "
      "(mean evaluator score × 100 of responses from a model of that name)."),
     ("Speed", "Median output token throughput over the variant's performance runs on that deployment; TTFT p50 "
      "likewise."), ("Cost", "Median over runs of hourly hardware cost ÷ (throughput × 3600) × 10⁶."),
     ("Composite", "Each axis min-max scaled to 0–1 over the rows (1 = best), weighted mean × 100; a row missing "
      "a weighted axis is not ranked."), ("Pareto front", "Rows no other row beats or equals on quality, "
      "throughput and cost at once (better on one).")),
)  # fmt: skip


VIEWS = {v.slug: v for v in (TRENDS, BREAKDOWN, MODELS, OPTIMIZATION, CORRELATION, INSIGHTS, REGRESSIONS, LEADERBOARD)}
