"""A benchmark run as a download: CSV (every answer), JSON or Excel (the results per target and subject, then
every answer), from the page (/benchmarks/runs/<pk>/export.<fmt>) and the API (?format=).

Tables (`llmbench.exports.Table`):
* "answers": one row per (target, item) answered so far, in target then item order: the item's index, subject
  and correct answer, the extracted answer, correct yes/no, no answer yes/no (both empty for a failed request,
  which is not scored), the error of a failed request, tokens, latency, cost and the response. Read with `.values_list()` in chunks, so a 12,000-item run against two
  targets streams (CSV and JSON) without holding its 24,000 rows (Excel is built in memory by the shared writer).
* "results": per target an overall row, a row per subject and a row per alternate extraction of the same
  responses (GSM8K's flexible extract): n, correct, no answer, accuracy with its Wilson 95% interval and lm-eval's
  standard error, in percent, from `selectors.run_results` through
  `accuracy_figures`, the same function the API's run detail uses, so the file and the API say the same.
The CSV is the answers table alone (a CSV holds one table).
"""

from collections.abc import Iterator
from typing import Any

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.accounts.permissions import team_view
from apps.benchmarks.engine.stats import Accuracy
from apps.benchmarks.models import BenchmarkAnswer, BenchmarkRun
from apps.benchmarks.selectors import run_results
from llmbench.exports import Table, export_response
from llmbench.throttling import page_throttle

FORMATS = ("csv", "json", "xlsx")
CONFIDENCE_PCT = 95

ANSWER_COLUMNS = [
    "run_id", "target_id", "endpoint", "model", "variant", "item_index", "subject", "correct_answer",
    "extracted_answer", "correct", "no_answer", "error", "error_message", "input_tokens", "output_tokens",
    "latency_ms", "cost_usd", "response",
]  # fmt: skip
ACCURACY_COLUMNS = [
    "n", "correct", "no_answer", "accuracy_pct", "ci_low_pct", "ci_high_pct", "stderr_pct", "no_answer_pct",
]  # fmt: skip
RESULT_COLUMNS = [
    "target_id", "endpoint", "model", "variant", "scope", "subject", *ACCURACY_COLUMNS, "failed", "input_tokens",
    "output_tokens", "cost_usd", "mean_latency_ms", "measured_score_id",
]  # fmt: skip
# What an answer row reads from the database, in the order answer_rows unpacks it.
_ANSWER_FIELDS = (
    "target_id", "item__index", "item__subject", "item__answer", "extracted", "correct", "error_code", "error_message",
    "input_tokens", "output_tokens", "latency_ms", "cost_usd", "content",
)  # fmt: skip
TARGET_FIGURES = ["failed", "input_tokens", "output_tokens", "cost_usd", "mean_latency_ms", "measured_score_id"]


def _pct(fraction: float | None) -> float | None:
    return None if fraction is None else fraction * 100


def accuracy_figures(accuracy: Accuracy) -> dict[str, Any]:
    """An accuracy in percent (0–100) as the API and the exports give it; None where nothing was scored."""
    return {
        "n": accuracy.n, "correct": accuracy.correct, "no_answer": accuracy.no_answer,
        "accuracy_pct": _pct(accuracy.accuracy), "ci_low_pct": _pct(accuracy.ci_low),
        "ci_high_pct": _pct(accuracy.ci_high), "stderr_pct": _pct(accuracy.stderr),
        "no_answer_pct": accuracy.no_answer / accuracy.n * 100 if accuracy.n else None,
    }  # fmt: skip


def target_figures(result) -> dict[str, Any]:
    """One `selectors.TargetResult` as plain values: the target, its overall accuracy, per subject, tokens,
    cost, failed requests and the measured score it published (if any)."""
    target = result.target
    return {
        "target_id": target.pk, "endpoint_id": target.endpoint_id, "endpoint": target.endpoint.name,
        "model": target.model, "variant_id": target.variant_id,
        "variant": str(target.variant) if target.variant_id else None,
        "overall": accuracy_figures(result.overall),
        "by_subject": [{"subject": subject, **accuracy_figures(acc)} for subject, acc in result.by_subject],
        "alternates": {name: accuracy_figures(acc) for name, acc in getattr(result, "alternates", {}).items()},
        "failed": result.failed, "input_tokens": result.input_tokens, "output_tokens": result.output_tokens,
        "cost_usd": result.cost_usd, "mean_latency_ms": result.mean_latency_ms,
        "measured_score_id": result.measured_score.pk if result.measured_score is not None else None,
    }  # fmt: skip


def results_table(figures: list[dict]) -> Table:
    def rows() -> Iterator[list]:
        for target in figures:
            head = [target["target_id"], target["endpoint"], target["model"], target["variant"]]
            overall = target["overall"]
            yield [*head, "overall", "", *[overall[c] for c in ACCURACY_COLUMNS], *[target[c] for c in TARGET_FIGURES]]
            for subject in target["by_subject"]:
                yield [*head, "subject", subject["subject"], *[subject[c] for c in ACCURACY_COLUMNS],
                       *[None] * len(TARGET_FIGURES)]  # fmt: skip
            for name, alternate in target["alternates"].items():
                yield [*head, f"extraction: {name}", "", *[alternate[c] for c in ACCURACY_COLUMNS],
                       *[None] * len(TARGET_FIGURES)]  # fmt: skip

    return Table("results", RESULT_COLUMNS, rows())


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


def answer_rows(run: BenchmarkRun) -> Iterator[list]:
    """Every stored answer of the run as ANSWER_COLUMNS, by target then item index, read in chunks."""
    targets = {
        t.pk: (t.endpoint.name, t.model, str(t.variant) if t.variant_id else None)
        for t in run.targets.select_related("endpoint", "variant")
    }
    rows = (
        BenchmarkAnswer.objects.filter(run=run)
        .order_by("target_id", "item__index")
        .values_list(*_ANSWER_FIELDS)
        .iterator(chunk_size=2000)
    )
    for target_id, index, subject, answer, extracted, correct, error, message, inp, out, latency, cost, text in rows:
        failed = bool(error)
        yield [
            run.pk, target_id, *targets[target_id], index, subject, answer, extracted,
            "" if failed else _yes_no(correct), "" if failed else _yes_no(extracted == ""), error, message, inp, out,
            latency, cost, text,
        ]  # fmt: skip


def _meta(run: BenchmarkRun) -> dict:
    suite = run.suite
    return {
        "run": run.name, "id": run.pk, "team": run.team.name, "suite": str(suite), "suite_id": suite.pk,
        "benchmark": suite.get_kind_display(), "status": run.status, "shots": run.shots,
        "temperature": run.temperature, "max_tokens": run.max_tokens, "concurrency": run.concurrency,
        "subset_size": run.subset_size, "subset_seed": run.subset_seed, "items_per_target": run.item_count,
        "generated_at": timezone.now(),
    }  # fmt: skip


def _summary(run: BenchmarkRun, figures: list[dict]) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = [
        ("Status", run.get_status_display()), ("Items asked of each target", run.item_count),
        ("Answers stored", run.completed_answers), ("Failed requests", run.failed_answers),
        ("Interval", f"Wilson {CONFIDENCE_PCT}% score interval; standard error as lm-evaluation-harness "
                     "(sample standard deviation / √n). Failed requests are not scored; no answer counts as wrong."),
    ]  # fmt: skip
    for target in figures:
        label = f"{target['endpoint']} · {target['model']}"
        rows.append((f"{label}: accuracy (%)", target["overall"]["accuracy_pct"]))
        rows.append((f"{label}: n", target["overall"]["n"]))
    return rows


def benchmark_run_export(*, run: BenchmarkRun, kind: str) -> HttpResponse:
    """The run as `kind`, one of FORMATS (the caller rejects anything else)."""
    filename = f"benchmark-run-{run.pk}.{kind}"
    answers = Table("answers", ANSWER_COLUMNS, answer_rows(run))
    if kind == "csv":
        figures, tables = [], [answers]
    else:
        figures = [target_figures(result) for result in run_results(run)]
        tables = [results_table(figures), answers]
    return export_response(kind, filename=filename, title=f"Benchmark run {run.name}", meta=_meta(run),
                           summary=_summary(run, figures), tables=tables)  # fmt: skip


@team_view()
@require_GET
@page_throttle("exports")
def run_export(request, pk: int, fmt: str):
    """The page's download: the run as CSV (every answer), JSON or Excel (results per target and subject, and
    every answer)."""
    if fmt not in FORMATS:
        raise Http404(f"No {fmt} export; one of {', '.join(FORMATS)}.")
    runs = BenchmarkRun.objects.select_related("suite", "team")
    return benchmark_run_export(run=get_object_or_404(runs, pk=pk, team=request.team), kind=fmt)
