"""A parameter sweep as a download: CSV, JSON, Excel or a PDF report; and a load sweep as CSV, JSON or Excel
(its figures per level across repeated trials, and every step: see "load sweeps" below).

Tables: "combinations" (every combination with results: its parameters, counts, mean of the objective and of
every other quality figure, latency and cost, from `combination_figures`) and "results" (every response with
its parameters, the experiment export's responses table). The CSV is the combinations table alone (a CSV holds
one table; the results are in the JSON and Excel exports, or the experiment's CSV). The summary: status,
counts, the best combination and its figures. The PDF report shows the best combinations (at most
REPORT_COMBINATIONS), the heatmap of the objective, the effects of each parameter and the methods; it reads
the batch a few times with aggregate queries and never renders more than a page or two of rows, so that a
sweep of 10,000 combinations renders in about a second.
"""

import math

from django.http import HttpResponse
from django.utils import timezone
from django.utils.safestring import mark_safe

from apps.batches import analysis
from apps.batches.models import Batch, LoadSweep
from apps.batches.selectors import (
    METRIC_LABELS,
    QUALITY_METRICS,
    CombinationFigures,
    batch_analysis,
    combination_aggregates,
    combination_figures,
    default_axes,
    heatmap,
    objective_summary,
    parameter_label,
    sweep_trials,
)
from apps.batches.services import STATUS_LABELS, batch_state
from apps.batches.trials import CONFIDENCE, FIGURES
from apps.experiments.exports import responses_table
from llmbench import svg
from llmbench.exports import Table, export_response
from llmbench.humanize import number_text
from llmbench.reports import pdf_response

FORMATS = ("csv", "json", "xlsx", "pdf")
SWEEP_FORMATS = ("csv", "json", "xlsx")
REPORT_COMBINATIONS = 25
REPORT_HEATMAP_BINS = 20  # ranges per heatmap axis at most
REPORT_FIGURES = ("latency_ms", "cost_usd")  # the effects table: the objective, then these
# The insights are left out of the report: finding the thresholds is a Mann-Whitney test per cut, parameter and
# figure, 0.7 s of the 3 s a 10,000-combination report may take; the analysis page and API have them.


def best_combination(figures: list[CombinationFigures]) -> CombinationFigures | None:
    """The combination with the highest mean of the objective; ties: the one with more results (as the
    status preview chooses)."""
    scored = [f for f in figures if f.mean is not None]
    return max(scored, key=lambda f: (f.mean, f.results, -f.index)) if scored else None


def ranked(figures: list[CombinationFigures]) -> list[CombinationFigures]:
    """Combinations with a mean, best first (ties: more results, then the lower index)."""
    return sorted((f for f in figures if f.mean is not None), key=lambda f: (-f.mean, -f.results, f.index))


def _other_means(batch: Batch) -> dict[str, dict[int, float | None]]:
    """Per quality figure other than the objective: combination → mean."""
    means = {}
    for metric in QUALITY_METRICS:
        if metric != batch.objective:
            means[metric] = {
                row["combination"]: row["total"] / row["n"] if row["n"] else None
                for row in combination_aggregates(batch, metric)
            }
    return means


def combinations_table(batch: Batch, figures: list[CombinationFigures]) -> Table:
    names = list(batch.parameter_values)
    others = _other_means(batch)
    columns = [
        "combination", *names, "results", "errors", f"n_{batch.objective}", f"mean_{batch.objective}",
        *[f"mean_{metric}" for metric in others], "mean_latency_ms", "cost_usd",
    ]  # fmt: skip
    rows = (
        [f.index, *[f.parameters[name] for name in names], f.results, f.errors, f.n, f.mean,
         *[means.get(f.index) for means in others.values()], f.mean_latency_ms, f.cost_usd]
        for f in figures
    )  # fmt: skip
    return Table("combinations", columns, rows)


def _summary(batch: Batch, figures: list[CombinationFigures]) -> list[tuple[str, object]]:
    state = batch_state(batch)
    overall = objective_summary(batch)
    objective = METRIC_LABELS.get(batch.objective, batch.objective)
    rows: list[tuple[str, object]] = [
        ("Status", state["status"]), ("Objective", objective),
        ("Combinations", batch.combination_count), ("Combinations with results", len(figures)),
        ("Completed combinations", batch.completed_combinations), ("Requests", batch.result_count),
        ("Stored results", batch.completed_results), ("Failed results", batch.failed_results),
        (f"Mean {objective}", overall["mean"]), (f"n ({objective})", overall["n"]),
    ]  # fmt: skip
    best = best_combination(figures)
    if best is not None:
        rows.append(("Best combination", best.index))
        rows += [(f"Best {parameter_label(name)}", value) for name, value in best.parameters.items()]
        rows += [(f"Best combination: mean {objective}", best.mean), ("Best combination: n", best.n),
                 ("Best combination: results", best.results), ("Best combination: errors", best.errors),
                 ("Best combination: mean latency (ms)", best.mean_latency_ms),
                 ("Best combination: cost (USD)", best.cost_usd)]  # fmt: skip
    return rows


def _meta(batch: Batch) -> dict:
    experiment = batch.experiment
    return {
        "batch": experiment.name, "id": batch.pk, "team": experiment.team.name, "status": experiment.status,
        "objective": batch.objective, "parameters": dict(batch.parameter_values),
        "targets": ", ".join(str(t) for t in experiment.targets.select_related("endpoint")),
        "responses_per_combination": experiment.responses_per_item, "generated_at": timezone.now(),
    }  # fmt: skip


def batch_export(*, batch: Batch, kind: str) -> HttpResponse:
    """The batch as `kind`, one of FORMATS (the caller rejects anything else)."""
    filename = f"batch-{batch.pk}.{kind}"
    figures = combination_figures(batch, batch.objective)
    if kind == "pdf":
        return pdf_response("batches/report.html", report_context(batch, figures), filename=filename)
    tables = [combinations_table(batch, figures)]
    if kind != "csv":
        tables.append(responses_table(batch.pk, name="results"))
    return export_response(kind, filename=filename, title=f"Parameter sweep {batch.experiment.name}",
                           meta=_meta(batch), summary=_summary(batch, figures), tables=tables)  # fmt: skip


# --- load sweeps ------------------------------------------------------------------------------------------------
# Tables: "levels" (per level and headline figure: the trials, their mean and sd and the 95% t interval, from
# apps.batches.trials, the numbers the sweep page and the API show) and "steps" (every step, one per trial, with
# its run's figures). The CSV is the levels table.

CI_PERCENT = round(CONFIDENCE * 100)


def sweep_levels_table(trials: dict) -> Table:
    columns = ["level", "figure", "unit", "trials_planned", "trials", "mean", "sd", f"ci{CI_PERCENT}_low",
               f"ci{CI_PERCENT}_high", "clipped_at_0", "note"]  # fmt: skip
    units = {f["key"]: f["unit"] for f in trials["figures"]}
    rows = (
        [entry["level"], key, units[key], entry["trials_planned"], figures["k"], figures["mean"], figures["sd"],
         figures["low"], figures["high"], figures["clipped"], figures["note"]]
        for entry in trials["levels"] for key, figures in entry["figures"].items()
    )  # fmt: skip
    return Table("levels", columns, rows)


def sweep_steps_table(sweep: LoadSweep, keys: list[str]) -> Table:
    read = {f.key: f.read for f in FIGURES if f.key in keys}
    steps = sweep.steps.select_related("run__summary").order_by("index")

    def row(step) -> list:
        summary = getattr(step.run, "summary", None) if step.run_id else None
        values = [None if summary is None else read[key](summary) for key in keys]
        return [step.index + 1, step.level, step.trial + 1, STATUS_LABELS.get(step.status, step.status), step.run_id,
                *values]  # fmt: skip

    columns = ["step", "level", "trial", "status", "run", *keys]
    return Table("steps", columns, (row(step) for step in steps))


def sweep_export(*, sweep: LoadSweep, kind: str) -> HttpResponse:
    """The load sweep as `kind`, one of SWEEP_FORMATS (the caller rejects anything else)."""
    trials = sweep_trials(sweep)
    keys = [f["key"] for f in trials["figures"]]
    level_name = "Concurrency" if sweep.mode == LoadSweep.Mode.CLOSED else "Request rate (req/s)"
    meta = {
        "sweep": sweep.name, "id": sweep.pk, "team": sweep.team.name, "endpoint": str(sweep.endpoint),
        "model": sweep.model, "mode": sweep.get_mode_display(), "levels": sweep.levels,
        "trials_per_level": sweep.trials, "generated_at": timezone.now(),
    }  # fmt: skip
    summary = [
        ("Status", STATUS_LABELS.get(sweep.status, sweep.status)), ("Levels", level_name),
        ("Trials per level", sweep.trials),
        ("Interval", f"{CI_PERCENT}% Student t interval of the mean of the trials (k − 1 degrees of freedom), "
                     "cut at 0; none with one trial"),
    ]  # fmt: skip
    tables = [sweep_levels_table(trials)]
    if kind != "csv":
        tables.append(sweep_steps_table(sweep, keys))
    return export_response(kind, filename=f"sweep-{sweep.pk}.{kind}", title=f"Load sweep {sweep.name}", meta=meta,
                           summary=summary, tables=tables)  # fmt: skip


# --- the PDF report --------------------------------------------------------------------------------------------


def _number(value, digits: int | None = 1) -> str | None:
    return None if value is None else number_text(value, digits)


def _display(value) -> str | None:
    """A summary value as the page shows it (the shared formatter for numbers, words for the rest)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return number_text(value, None if isinstance(value, int) else 2)


def _values_text(values: list) -> str:
    shown = ", ".join(analysis.format_value(v) for v in values[:12])
    more = (
        f", … ({len(values)} values)"
        if len(values) > 12
        else f" ({len(values)} value{'s' if len(values) != 1 else ''})"
    )
    return shown + more


def _best_table(batch: Batch, figures: list[CombinationFigures]) -> dict:
    names = list(batch.parameter_values)
    objective = METRIC_LABELS.get(batch.objective, batch.objective)
    return {
        "columns": ["Rank", "Combination", *[parameter_label(n) for n in names], "n", f"Mean {objective}",
                    "Errors", "Latency (ms)", "Cost (USD)"],
        "rows": [
            [rank, f.index, *[analysis.format_value(f.parameters[n]) for n in names], f.n, _number(f.mean, 2), f.errors,
             _number(f.mean_latency_ms, 0), _number(f.cost_usd, 6)]
            for rank, f in enumerate(ranked(figures)[:REPORT_COMBINATIONS], 1)
        ],
    }  # fmt: skip


def _effects_table(batch: Batch, report: dict) -> dict:
    """Per swept parameter, what it did to the objective, latency and cost: the value with the best mean,
    ANOVA and Kruskal-Wallis."""
    figures = (batch.objective, *REPORT_FIGURES)
    rows = []
    for figure in figures:
        for effect in report["effects"]:
            if effect["metric"] != figure:
                continue
            with_mean = [v for v in effect["values"] if v["mean"] is not None]
            lower_is_better = figure in analysis.LOWER_IS_BETTER
            best = (min if lower_is_better else max)(with_mean, key=lambda v: v["mean"]) if with_mean else None
            best_text = (
                None
                if best is None
                else f"{analysis.format_value(best['value'])} ({analysis.format_amount(figure, best['mean'])})"
            )
            rows.append([
                parameter_label(effect["parameter"]), analysis.label(figure), effect["n"], best_text,
                _number(effect["anova_f"], 2), analysis.format_p(effect["anova_p"]) if effect["anova_p"] is not None
                else None, _number(effect["kruskal_h"], 2),
                analysis.format_p(effect["kruskal_p"]) if effect["kruskal_p"] is not None else None,
                "yes" if effect["significant"] else (effect["note"] or "no"),
            ])  # fmt: skip
    return {
        "columns": ["Parameter", "Figure", "n", "Best value (mean)", "ANOVA F", "ANOVA p", "Kruskal-Wallis H",
                    "Kruskal-Wallis p", "Significant"],
        "rows": rows,
    }  # fmt: skip


def _label(value) -> str:
    return analysis.format_value(value) if isinstance(value, int | float) else str(value)


def _coarse_axis(values: list, bins: int) -> tuple[list[str], list[int]]:
    """At most `bins` labels for an axis and, per value index, its bin: consecutive values grouped evenly."""
    size = max(1, math.ceil(len(values) / bins))
    groups = [values[i : i + size] for i in range(0, len(values), size)]
    labels = [_label(g[0]) if len(g) == 1 else f"{_label(g[0])}–{_label(g[-1])}" for g in groups]
    return labels, [i // size for i in range(len(values))]


def _heatmap_svg(batch: Batch) -> tuple[str, str, str | None, bool]:
    """The heatmap of the objective; an axis with more than REPORT_HEATMAP_BINS values is grouped into that
    many ranges (each cell the n-weighted mean of the combinations in it), since a PDF renderer draws ten
    thousand cells slowly and nobody reads them on A4."""
    x, y = default_axes(batch.parameter_values)
    cells = heatmap(batch, x=x, y=y, metric=batch.objective)
    x_labels, x_bin = _coarse_axis(cells["x_values"], REPORT_HEATMAP_BINS)
    y_labels, y_bin = _coarse_axis(cells["y_values"], REPORT_HEATMAP_BINS)
    pooled: dict[tuple[int, int], list[float]] = {}
    for xi, yi, mean, n in cells["cells"]:
        cell = pooled.setdefault((x_bin[xi], y_bin[yi]), [0.0, 0])
        cell[0] += mean * n
        cell[1] += n
    grouped = len(x_labels) < len(cells["x_values"]) or len(y_labels) < len(cells["y_values"])
    chart = svg.heatmap(
        x_labels, y_labels, [(xi, yi, total / n, n) for (xi, yi), (total, n) in sorted(pooled.items())],
        x_label=parameter_label(x), y_label=parameter_label(y) if y else "",
    )  # fmt: skip
    return chart, x, y, grouped


def report_context(batch: Batch, figures: list[CombinationFigures]) -> dict:
    """Everything reports/base.html and batches/report.html show."""
    experiment = batch.experiment
    objective = METRIC_LABELS.get(batch.objective, batch.objective)
    chart, x, y, grouped = _heatmap_svg(batch)
    effects = batch_analysis(batch)
    cases = [str(case) for case in experiment.test_cases.all()]
    prompt = experiment.prompt if len(experiment.prompt) <= 300 else experiment.prompt[:299] + "…"
    best = best_combination(figures)
    return {
        "title": experiment.name,
        "subtitle": f"Parameter sweep of {batch.combination_count:,} combinations · objective: {objective}",
        "team": experiment.team.name,
        "generated_at": timezone.now(),
        "filters": [
            *[(parameter_label(name), _values_text(values)) for name, values in batch.parameter_values.items()],
            ("Targets", ", ".join(str(t) for t in experiment.targets.select_related("endpoint"))),
            ("Test cases", ", ".join(cases)) if cases else ("Prompt", prompt or "–"),
            ("Responses per combination", experiment.responses_per_item),
        ],
        "batch": batch,
        "summary": [
            (label, _display(value)) for label, value in _summary(batch, figures) if not label.startswith("Best")
        ],
        "best": best,
        "best_parameters": [(parameter_label(n), analysis.format_value(v)) for n, v in best.parameters.items()]
        if best
        else [],
        "objective_label": objective,
        "best_table": _best_table(batch, figures),
        "ranked_count": sum(1 for f in figures if f.mean is not None),
        "heatmap": mark_safe(chart),  # llmbench.svg escapes every label and value
        "heatmap_axes": (parameter_label(x), parameter_label(y) if y else None),
        "heatmap_grouped": grouped,
        "heatmap_bins": REPORT_HEATMAP_BINS,
        "effects": _effects_table(batch, effects),
        "methods": METHODS,
    }


# Copied from docs/metrics.md, "Parameter sweeps (batches)".
METHODS = [
    ("Objective", "The batch's quality figure: the heatmap, the best combinations and the status preview use it. "
     "Quality figures are 0–100 points: the text-quality metrics as stored; the evaluator's 0–1 score × 100; "
     "pass/fail as 100/0, so a mean is the pass rate in percent. Undecided evaluations have none. Failed "
     "requests are counted, never part of a quality or latency figure."),
    ("Best combination", "The combination with the highest mean of the batch's objective over its results (ties: "
     "the one with more results)."),
    ("Heatmap cell", "The mean of the figure over the successful results whose two parameters have the cell's "
     "values (pooled over the other parameters and the targets), with its count."),
    ("Mean and 95% interval per value", "numpy.mean, and a 95% interval that stays inside what the figure can be: "
     "Wilson's score interval (as scipy.stats.binomtest(...).proportion_ci) for pass rates and for scores that "
     "are all 0 or 100; Wilson's interval on the Korn-Graubard effective sample size p(1 − p)/Var(p̂)·(z/t)² for "
     "other 0–100 quality figures; mean ×/÷ exp(t(0.975, n − 1)·s/(mean·√n)) (log scale) for latency, cost and "
     "tokens. Fewer than 3 results: not enough data, no interval; results that are all equal inside the range: "
     "no spread, no interval."),
    ("Does it matter", "One-way ANOVA (scipy.stats.f_oneway) and Kruskal-Wallis (scipy.stats.kruskal) across the "
     "values, with their p-values; significant means Kruskal-Wallis p < 0.05 (quality scores are bounded and "
     "latency is skewed, so the rank test decides). Not tested when only one value has results or every result "
     "has the same value."),
    ("Correlation", "Pearson (scipy.stats.pearsonr) and Spearman (scipy.stats.spearmanr) between the parameter and "
     "the figure over the results, with p-values; significant when Spearman p < 0.05."),
    ("p-values", "Printed as \"p < 0.001\" below 0.001, else with three decimals."),
]  # fmt: skip
