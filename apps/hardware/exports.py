"""Performance runs as downloads: one run as CSV (its samples), JSON or Excel (summary and samples), and the
comparison of runs as a PDF report.

Tables: "summary" (one row per metric of RunSummary.metrics: count, mean, stdev, min, p50, p90, p95, p99, max;
over the steady window for a workload run) and "samples" (the columns of the samples CSV, ITL gaps
space-separated, with the workload columns: session, turn, requested lengths, cached and reasoning tokens, time to
first output token and phase).
"""

from collections.abc import Iterator

from django.http import HttpResponse
from django.utils import timezone
from django.utils.safestring import mark_safe

from apps.hardware.models import PerformanceRun, RequestSample
from apps.hardware.selectors import Comparison
from apps.hardware.services import itl_from_bytes
from apps.hardware.stats import ALL_METRICS, WORKLOAD_SUMMARY_KEYS
from llmbench import svg
from llmbench.exports import Table, export_response
from llmbench.humanize import number_text, p_value_text
from llmbench.reports import pdf_response

FORMATS = ("csv", "json", "xlsx")
STATISTICS = ("count", "mean", "stdev", "min", "p50", "p90", "p95", "p99", "max")
SUMMARY_COLUMNS = ["metric", *STATISTICS, "simulated"]
STORED_SAMPLE_COLUMNS = [
    "index", "error_code", "error_message", "ttft_ms", "e2e_ms", "input_tokens", "output_tokens", "mean_itl_ms",
    "itl_ms", "start_offset_ms", "session_index", "turn_index", "requested_input_tokens", "requested_output_tokens",
    "cached_tokens", "reasoning_tokens", "ttfot_ms", "phase",
]  # fmt: skip
# Every line says whether it was simulated (the `sim` provider or demo data), so a file never mixes
# simulated lines with measured ones unmarked.
SAMPLE_COLUMNS = [*STORED_SAMPLE_COLUMNS, "simulated"]


def sample_rows(run: PerformanceRun) -> Iterator[list]:
    """The run's samples in order as SAMPLE_COLUMNS, the ITL gaps as space-separated text."""
    rows = RequestSample.objects.filter(run=run).order_by("index").values_list(*STORED_SAMPLE_COLUMNS)
    simulated = run.is_simulated
    for row in rows.iterator(chunk_size=5000):
        gaps = itl_from_bytes(row[8])
        yield [*row[:8], None if gaps is None else " ".join(f"{g:.6g}" for g in gaps), *row[9:], simulated]


def samples_table(run: PerformanceRun) -> Table:
    return Table("samples", SAMPLE_COLUMNS, sample_rows(run))


def summary_table(run: PerformanceRun) -> Table:
    summary = getattr(run, "summary", None)
    metrics = summary.metrics if summary is not None else {}
    # One row per metric; a workload run's whole-step metrics follow as "whole_step.<metric>". Its other figures
    # (per turn, sessions, reasoning, cached tokens) have other shapes and are in the API's summary.
    whole = metrics.get("whole_step") or {}
    named = [
        *((metric, stats) for metric, stats in metrics.items() if metric not in WORKLOAD_SUMMARY_KEYS),
        *((f"whole_step.{metric}", whole[metric]) for metric in ALL_METRICS if metric in whole),
    ]
    rows = [[metric, *[(stats or {}).get(key) for key in STATISTICS], run.is_simulated] for metric, stats in named]
    return Table("summary", SUMMARY_COLUMNS, rows)


def _run_summary(run: PerformanceRun) -> list[tuple[str, object]]:
    summary = getattr(run, "summary", None)
    simulated = ("Simulated", "yes: the built-in simulator or demo data" if run.is_simulated else "no: measured")
    if summary is None:
        return [simulated, ("Summary", "none stored")]
    return [
        simulated, ("Source", summary.get_source_display()), ("Requests", summary.request_count),
        ("Errors", summary.error_count), ("Error rate", summary.error_rate), ("Duration (s)", summary.duration_s),
        ("Request throughput (req/s)", summary.request_throughput_rps),
        ("Output token throughput (tok/s)", summary.output_token_throughput_tps),
        ("Total token throughput (tok/s)", summary.total_token_throughput_tps),
        ("Goodput (req/s)", summary.goodput_rps), ("ITL source", summary.itl_source),
    ]  # fmt: skip


def _run_meta(run: PerformanceRun) -> dict:
    return {
        "run": str(run), "id": run.pk, "team": run.team.name, "model": str(run.variant),
        "hardware": str(run.hardware) if run.hardware_id else None,
        "deployment": str(run.deployment) if run.deployment_id else None, "concurrency": run.concurrency,
        "request_rate_rps": run.request_rate_rps, "tool": run.tool, "simulated": run.is_simulated, "started_at": run.started_at,
        "generated_at": timezone.now(),
    }  # fmt: skip


def run_export(*, run: PerformanceRun, kind: str) -> HttpResponse:
    """The run as `kind`: csv (the samples), json or xlsx (summary and samples). `kind` is one of FORMATS."""
    tables = [samples_table(run)] if kind == "csv" else [summary_table(run), samples_table(run)]
    filename = f"run-{run.pk}-samples.csv" if kind == "csv" else f"run-{run.pk}.{kind}"
    return export_response(kind, filename=filename, title=f"Performance run {run}", meta=_run_meta(run),
                           summary=_run_summary(run), tables=tables)  # fmt: skip


# --- the comparison as a PDF -----------------------------------------------------------------------------------

CHART_FIGURES = ("ttft_ms.p50", "e2e_ms.p95", "output_token_throughput_tps")


def _cell(key: str, value: float | None) -> str | None:
    if value is None:
        return None
    return f"{number_text(value * 100, 1)}%" if key == "error_rate" else number_text(value, 2)


def _signed(value: float, digits: int) -> str:
    return ("+" if value > 0 else "") + number_text(value, digits)


def _difference(key: str, difference: float | None, pct: float | None) -> str:
    if difference is None:
        return ""
    text = f"{_signed(difference * 100, 1)}%" if key == "error_rate" else _signed(difference, 2)
    return text + (f" ({_signed(pct, 1)}%)" if pct is not None else "")


def _run_name(run: PerformanceRun) -> str:
    return f"#{run.pk} (simulated)" if run.is_simulated else f"#{run.pk}"


def compare_report_context(*, comparison: Comparison, team_name: str, query: str) -> dict:
    """The compare page's figures, differences, significance tests and bar charts, for reports/base.html."""
    runs = comparison.runs
    rows = []
    for row in comparison.rows:
        cells = [f"{row['label']} {row['unit']}".strip()]
        for i, value in enumerate(row["values"]):
            shown = _cell(row["key"], value)
            if i and shown is not None:
                difference = _difference(row["key"], row["differences"][i], row["differences_pct"][i])
                shown = f"{shown} {difference}".strip()
            cells.append(shown)
        rows.append(cells)
    significance = []
    for run in runs[1:]:
        for test in comparison.significance.get(run.pk, []):
            verdict = test.note or ("significant" if test.significant else "not significant")
            n = f"{number_text(test.n_first)} / {number_text(test.n_other)}" if test.p_value is not None else None
            significance.append([f"#{run.pk}", test.label, n, p_value_text(test.p_value), verdict])
    charts = []
    for key in CHART_FIGURES:
        row = next(r for r in comparison.rows if r["key"] == key)
        bars = [svg.Bar(_run_name(run), value) for run, value in zip(runs, row["values"], strict=True)]
        title = f"{row['label']} ({row['unit']})" if row["unit"] else row["label"]
        charts.append({"title": title, "svg": mark_safe(svg.bar_chart(bars, height=220, y_label=title))})
    return {
        "title": "Comparison of performance runs",
        "subtitle": " vs ".join(f"#{run.pk}" for run in runs),
        "team": team_name,
        "generated_at": timezone.now(),
        "filters": [("Runs", query), *[(_run_name(run), f"{run} · {run.label}") for run in runs]],
        "figures": {"columns": ["Figure", *[_run_name(run) for run in runs]], "rows": rows},
        "significance": {
            "columns": ["Run", "Metric", "Requests (first / this run)", "p-value", "Verdict"],
            "rows": significance,
        },
        "charts": charts,
        "methods": COMPARE_METHODS,
    }


def compare_pdf(*, comparison: Comparison, team_name: str, query: str) -> HttpResponse:
    context = compare_report_context(comparison=comparison, team_name=team_name, query=query)
    filename = "compare-" + "-".join(str(run.pk) for run in comparison.runs) + ".pdf"
    return pdf_response("hardware/compare_report.html", context, filename=filename)


# docs/metrics.md, "Serving performance".
COMPARE_METHODS = [
    ("Figures", "From each run's stored summary: count, mean, stdev, min, p50, p90, p95, p99, max over the "
     "successful requests (numpy.mean, numpy.std(ddof=1), numpy.percentile with its default linear method); "
     "failed requests are counted, never part of a latency statistic."),
    ("Differences", "Against the first run chosen, in the figure's unit and in percent of the first run's value."),
    ("Significance", "A two-sided Mann-Whitney U test (scipy.stats.mannwhitneyu) on one value per successful "
     "request of both runs (for ITL the mean of that request's gaps: the gaps of one request are not independent); "
     "significant when p < 0.05; \"summary only\" when a run has no samples."),
    ("Simulated runs", "Runs of the built-in simulator or generated demo data are marked \"(simulated)\"."),
]  # fmt: skip
