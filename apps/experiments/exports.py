"""An experiment as a download: CSV (the responses), JSON, Excel (responses and targets) or a PDF report.

The tables are `llmbench.exports.Table`s: "responses" (every response with its evaluation, target, test case,
parameters, tokens, timings, cost, errors and text-quality metrics; the batches app reuses it for a sweep's
results) and "targets" (the per-target figures of the experiment page, from `experiment_summary`). Rows are
read with `.values_list()` over named columns, so nothing of an endpoint but its name and kind is ever loaded
(its encrypted key never enters an export).
"""

from collections.abc import Iterator

from django.http import HttpResponse
from django.utils import timezone
from django.utils.safestring import mark_safe

from apps.experiments.models import PARAMETER_COLUMNS, QUALITY_COLUMNS, Experiment, Response
from apps.experiments.selectors import TargetSummary, experiment_summary
from llmbench import svg
from llmbench.exports import Table, export_response
from llmbench.humanize import number_text
from llmbench.reports import pdf_response

FORMATS = ("csv", "json", "xlsx", "pdf")
REPORT_RESPONSES = 100  # responses shown in the PDF; every one is in the CSV / Excel export
REPORT_EXCERPT_CHARS = 300

# (column, field read from the database)
_RESPONSE_FIELDS = [
    ("response_id", "id"), ("target_id", "target_id"), ("target", "target__endpoint__name"),
    ("endpoint_kind", "target__endpoint__kind"), ("model", "target__model"), ("test_case_id", "test_case_id"),
    ("test_case", "test_case__title"), ("test_case_version", "test_case__version"), ("item", "item_key"),
    ("combination", "combination"), ("repetition", "repetition"),
    *[(name, name) for name in PARAMETER_COLUMNS],
    ("content", "content"), ("input_tokens", "input_tokens"), ("output_tokens", "output_tokens"),
    ("ttft_ms", "ttft_ms"), ("latency_ms", "latency_ms"), ("cost_usd", "cost_usd"), ("error_code", "error_code"),
    ("error_message", "error_message"), ("passed", "passed"), ("score", "score"),
    ("evaluation_error", "evaluation_error"),
    *[(f"quality_{metric}", f"quality_{metric}") for metric in QUALITY_COLUMNS],
    ("created_at", "created_at"), ("is_simulated", "is_simulated"),
]  # fmt: skip
RESPONSE_COLUMNS = [column for column, _ in _RESPONSE_FIELDS]

TARGET_COLUMNS = [
    "target_id", "target", "responses", "errors", "evaluated", "passed", "pass_rate", "pass_rate_ci_low",
    "pass_rate_ci_high", "mean_score", "mean_score_ci_low", "mean_score_ci_high",
    *[f"quality_{metric}" for metric in QUALITY_COLUMNS], "mean_latency_ms", "mean_ttft_ms", "cost_usd",
    "is_simulated",
]  # fmt: skip


def response_rows(experiment_id: int) -> Iterator[tuple]:
    """Every response of the experiment in id order, as RESPONSE_COLUMNS, read in chunks."""
    rows = Response.objects.filter(experiment_id=experiment_id).order_by("id")
    return rows.values_list(*[field for _, field in _RESPONSE_FIELDS]).iterator(chunk_size=2000)


def responses_table(experiment_id: int, name: str = "responses") -> Table:
    return Table(name, RESPONSE_COLUMNS, response_rows(experiment_id))


def _target_row(t: TargetSummary) -> list:
    pass_ci, score_ci = t.pass_rate_ci or (None, None), t.mean_score_ci or (None, None)
    return [
        t.target_id, t.label, t.responses, t.errors, t.evaluated, t.passed, t.pass_rate, *pass_ci, t.mean_score,
        *score_ci, *[t.quality.get(metric) for metric in QUALITY_COLUMNS], t.mean_latency_ms, t.mean_ttft_ms,
        t.cost_usd, t.is_simulated,
    ]  # fmt: skip


def _meta(experiment: Experiment) -> dict:
    return {
        "experiment": experiment.name, "id": experiment.pk, "kind": experiment.kind, "team": experiment.team.name,
        "status": experiment.status, "parameters": experiment.parameters or {},
        "responses_per_item": experiment.responses_per_item, "generated_at": timezone.now(),
    }  # fmt: skip


def _summary(summaries: list[TargetSummary]) -> list[tuple[str, object]]:
    responses, errors = sum(t.responses for t in summaries), sum(t.errors for t in summaries)
    evaluated, passed = sum(t.evaluated for t in summaries), sum(t.passed for t in summaries)
    return [
        ("Targets", len(summaries)), ("Responses", responses), ("Errors", errors), ("Evaluated", evaluated),
        ("Passed", passed), ("Pass rate", passed / evaluated if evaluated else None),
        ("Cost (USD)", sum(t.cost_usd for t in summaries)),
    ]  # fmt: skip


def experiment_export(*, experiment: Experiment, kind: str) -> HttpResponse:
    """The experiment as `kind` (csv: the responses table; json and xlsx: responses and targets; pdf: the
    report). `kind` is one of FORMATS (the caller rejects anything else)."""
    filename = f"experiment-{experiment.pk}.{kind}"
    summaries = experiment_summary(experiment) if kind != "csv" else []
    if kind == "pdf":
        return pdf_response("experiments/report.html", report_context(experiment, summaries), filename=filename)
    tables = [responses_table(experiment.pk), Table("targets", TARGET_COLUMNS, map(_target_row, summaries))]
    return export_response(kind, filename=filename, title=f"Experiment {experiment.name}", meta=_meta(experiment),
                           summary=_summary(summaries), tables=tables)  # fmt: skip


def report_context(experiment: Experiment, summaries: list[TargetSummary]) -> dict:
    """The PDF report: per-target figures, pass rates as a chart, the first responses, methods."""
    responses = list(
        Response.objects.filter(experiment=experiment).order_by("id")
        .values_list("id", "target__endpoint__name", "target__model", "test_case__title", "passed", "score",
                     "latency_ms", "error_code", "content", "is_simulated")[:REPORT_RESPONSES]
    )  # fmt: skip
    bars = [
        svg.Bar(t.label, t.pass_rate * 100, *(100 * v for v in t.pass_rate_ci))
        if t.pass_rate is not None and t.pass_rate_ci
        else svg.Bar(t.label, None)
        for t in summaries
    ]
    parameters = experiment.parameters or {}
    return {
        "title": experiment.name,
        "subtitle": "Experiment" + (" (parameter sweep)" if experiment.kind == Experiment.Kind.BATCH else ""),
        "team": experiment.team.name,
        "generated_at": timezone.now(),
        "filters": [
            ("Status", experiment.status),
            _asked(experiment),
            ("Responses per item", experiment.responses_per_item),
            *[(name, parameters[name]) for name in PARAMETER_COLUMNS if name in parameters],
        ],
        "experiment": experiment,
        "targets": {
            "columns": [
                "Target",
                "Responses",
                "Errors",
                "Pass rate (95% Wilson)",
                "Mean score (95% bootstrap)",
                "Overall quality",
                "Latency ms",
                "TTFT ms",
                "Cost USD",
            ],
            "rows": [_target_cells(t) for t in summaries],
        },
        "chart": mark_safe(svg.bar_chart(bars, y_label="Pass rate (%)")),  # llmbench.svg escapes every label
        "responses": {
            "columns": ["#", "Target", "Test case", "Result", "Score", "Latency ms", "Output"],
            "rows": [_response_cells(row) for row in responses],
        },
        "response_count": sum(t.responses for t in summaries),
        "methods": METHODS,
    }


def _asked(experiment: Experiment) -> tuple[str, str]:
    """What the experiment asks: its test cases, or its prompt (cut to a line or two)."""
    cases = [str(case) for case in experiment.test_cases.all()]
    if cases:
        return "Test cases", ", ".join(cases)
    prompt = experiment.prompt or "–"
    return "Prompt", prompt if len(prompt) <= 300 else prompt[:299] + "…"


def _fmt(value: float | None, digits: int) -> str | None:
    return None if value is None else number_text(value, digits)


def _interval(ci, digits: int, note: str, scale: float = 1.0, unit: str = "") -> str:
    if ci:
        return f" ({number_text(ci[0] * scale, digits)}–{number_text(ci[1] * scale, digits)}{unit})"
    return f"; {note}" if note else ""


def _target_cells(t: TargetSummary) -> list:
    pass_rate = None
    if t.pass_rate is not None:
        interval = _interval(t.pass_rate_ci, 1, t.pass_rate_ci_note, 100, "%")
        pass_rate = f"{number_text(t.pass_rate * 100, 1)}%{interval}" + (
            f", n = {t.evaluated}" if t.pass_rate_ci else ""
        )
    score = None
    if t.mean_score is not None:
        score = f"{number_text(t.mean_score, 3)}{_interval(t.mean_score_ci, 3, t.mean_score_ci_note)}"
    return [t.label, t.responses, t.errors, pass_rate, score, _fmt(t.quality.get("overall"), 1),
            _fmt(t.mean_latency_ms, 0), _fmt(t.mean_ttft_ms, 0), _fmt(t.cost_usd, 6)]  # fmt: skip


def _response_cells(row: tuple) -> list:
    pk, endpoint, model, case, passed, score, latency_ms, error_code, content, simulated = row
    result = f"error {error_code}" if error_code else {True: "pass", False: "fail", None: "–"}[passed]
    text = content if len(content) <= REPORT_EXCERPT_CHARS else content[: REPORT_EXCERPT_CHARS - 1] + "…"
    return [
        pk,
        f"{endpoint} · {model}" + (" (simulated)" if simulated else ""),
        case,
        result,
        _fmt(score, 3),
        _fmt(latency_ms, 0),
        text,
    ]


# docs/metrics.md, "Experiments (output quality)".
METHODS = [
    ("Responses, errors", "Every response; one with an error code (the request failed) is counted apart and never "
     "evaluated."),
    ("Evaluated, passed", "Responses whose evaluator decided (an undecided evaluation, e.g. an unparsable judge "
     "answer, is neither a pass nor a fail)."),
    ("Pass rate", "Passed / evaluated, with the Wilson score 95% interval "
     "(scipy.stats.binomtest(...).proportion_ci(method=\"wilson\")); fewer than 3 evaluated: no interval."),
    ("Mean score", "Mean of the evaluators' 0–1 scores, with a bootstrap 95% interval (scipy.stats.bootstrap, BCa, "
     "2,000 resamples, fixed seed; percentile above 1,000 scores): inside 0–1 by construction. All scores on 0 or "
     "on 1: the Wilson interval of n out of n. Fewer than 3 scores, or all equal in between: no interval."),
    ("Quality metrics", "Mean of each text-quality metric (0–100) over the successful responses."),
    ("Latency, TTFT", "Means over the successful responses, ms."),
    ("Cost", "Sum over responses of input tokens × input price + output tokens × output price (per 1M tokens, the "
     "endpoint's prices)."),
]  # fmt: skip
