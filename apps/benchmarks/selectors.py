"""Read queries over benchmark runs that the pages, the API, the exports and the worker share: the live progress,
the results per target (accuracy with its intervals, per subject, tokens, cost), the per-item outcomes in the
encoding of measured scores (apps.scores.Score.outcomes / answer_digests) and the answers list.

Pure reads: the operations are in apps.benchmarks.services, the worker in apps.benchmarks.runner.
"""

import zlib
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from apps.benchmarks.engine import stats
from apps.benchmarks.models import BenchmarkAnswer, BenchmarkItem, BenchmarkRun, BenchmarkTarget, Status
from apps.scores.models import Score

# A running run's worker renews its heartbeat twice a second; one silent this long lost its worker, and the
# scheduled recovery (services.runs_recover_stalled) picks it up again.
STALL_AFTER = timedelta(seconds=30)
RATE_WINDOW_S = 30.0  # the ETA uses the pace of the answers stored in the last RATE_WINDOW_S seconds
OUTCOMES = ("correct", "wrong", "no_answer", "failed")

STATUS_LABELS = {
    Status.PENDING: "not started", Status.QUEUED: "queued", Status.RUNNING: "running",
    Status.COMPLETED: "completed", Status.FAILED: "failed", Status.CANCELLED: "cancelled",
}  # fmt: skip


def run_actions(status: str) -> dict[str, bool]:
    """What a member may do with a run in `status`; the page, its script and the API agree on it."""
    return {
        "start": status == Status.PENDING,
        "resume": status in (Status.FAILED, Status.CANCELLED),
        "cancel": status in (Status.PENDING, Status.QUEUED, Status.RUNNING),
        "delete": status not in (Status.QUEUED, Status.RUNNING),
    }


def status_label(run: BenchmarkRun) -> str:
    if run.status == Status.RUNNING and run.cancel_requested:
        return "cancelling"
    return STATUS_LABELS.get(run.status, run.status)


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def progress_payload(run: BenchmarkRun) -> dict:
    """What the live page, the SSE stream and the status endpoint show, read from the database (the truth: a page
    opened late or reconnecting shows the same). `completed` counts stored answers, failed requests included;
    accuracy so far is over the answers scored (failed requests are not scored); `eta_s` comes from the pace of
    the last RATE_WINDOW_S seconds. Two queries."""
    targets = list(run.targets.select_related("endpoint", "variant"))
    now = timezone.now()
    recent_since = now - timedelta(seconds=RATE_WINDOW_S)
    if run.started_at is not None and run.started_at > recent_since:
        recent_since = run.started_at
    rows = {
        row["target_id"]: row
        for row in BenchmarkAnswer.objects.filter(run=run)
        .values("target_id")
        .annotate(
            stored=Count("id"),
            failed=Count("id", filter=~Q(error_code="")),
            correct=Count("id", filter=Q(correct=True)),
            no_answer=Count("id", filter=Q(error_code="", extracted="")),
            recent=Count("id", filter=Q(created_at__gte=recent_since)),
        )
    }
    total = run.item_count * len(targets)
    per_target, recent = [], 0
    for target in targets:
        row = rows.get(target.pk, {})
        stored, failed = row.get("stored", 0), row.get("failed", 0)
        scored = stored - failed
        recent += row.get("recent", 0)
        per_target.append({
            "id": target.pk, "label": str(target), "endpoint": target.endpoint.name, "model": target.model,
            "variant": str(target.variant) if target.variant else None, "answered": stored, "failed": failed,
            "correct": row.get("correct", 0), "no_answer": row.get("no_answer", 0), "scored": scored,
            "accuracy_pct": _pct(row.get("correct", 0), scored),
        })  # fmt: skip
    eta_s = None
    window_s = (now - recent_since).total_seconds()
    if run.status == Status.RUNNING and recent and window_s > 0:
        eta_s = round(max(0, total - run.completed_answers) / (recent / window_s), 1)
    stalled = run.status == Status.RUNNING and run.heartbeat_at is not None and now - run.heartbeat_at > STALL_AFTER
    return {
        "id": run.pk,
        "name": run.name,
        "status": run.status,
        "status_label": status_label(run),
        "actions": run_actions(run.status),
        "error": run.error,
        "cancel_requested": run.cancel_requested,
        "stalled": stalled,
        "completed": run.completed_answers,
        "failed": run.failed_answers,
        "total": total,
        "progress_pct": round(100.0 * run.completed_answers / total, 1) if total else 0.0,
        "items": run.item_count,
        "subset": run.subset_size is not None,
        "eta_s": eta_s,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "targets": per_target,
    }


@dataclass
class TargetResult:
    """One target's result: accuracy (Wilson 95% interval, lm-eval's standard error), per subject, no-answer
    rate (in `overall.no_answer`), tokens, cost, failed requests, mean latency, and the measured score it
    published (None for a subset, an unfinished run, a target without a variant, or one replaced since).
    `alternates` holds other extractions of the same responses (GSM8K flexible-extract), by name."""

    target: BenchmarkTarget
    overall: stats.Accuracy
    by_subject: list[tuple[str, stats.Accuracy]]
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    failed: int
    mean_latency_ms: float | None
    measured_score: Score | None
    alternates: dict[str, stats.Accuracy] = field(default_factory=dict)


def _alternates(run: BenchmarkRun, target: BenchmarkTarget) -> dict[str, stats.Accuracy]:
    """Accuracy under each alternate extraction the task defines (GSM8K flexible-extract), computed from the
    stored responses (failed requests are not scored)."""
    from apps.benchmarks.engine import taskdefs
    from apps.benchmarks.imports import item_data

    kind = run.suite.kind
    extractions = taskdefs.alternate_extractions(kind)
    if not extractions:
        return {}
    tallies = {name: [0, 0, 0] for name in extractions}  # name -> [correct, n, no_answer]
    answers = BenchmarkAnswer.objects.filter(target=target, error_code="").select_related("item")
    for answer in answers.iterator(chunk_size=2000):
        item = item_data(answer.item)
        for name, extract in extractions.items():
            extracted, tally = extract(answer.content, item), tallies[name]
            tally[1] += 1
            if not extracted:
                tally[2] += 1
            elif taskdefs.is_correct(kind, extracted, item):
                tally[0] += 1
    return {name: stats.accuracy(c, n, none) for name, (c, n, none) in tallies.items()}


def run_results(run: BenchmarkRun, *, alternates: bool = True) -> list[TargetResult]:
    """Every target's result, from one grouped query (plus the alternate extractions when asked)."""
    targets = list(run.targets.select_related("endpoint", "variant"))
    rows = (
        BenchmarkAnswer.objects.filter(run=run)
        .values("target_id", "item__subject")
        .annotate(
            stored=Count("id"),
            failed=Count("id", filter=~Q(error_code="")),
            correct=Count("id", filter=Q(correct=True)),
            no_answer=Count("id", filter=Q(error_code="", extracted="")),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cost=Sum("cost_usd"),
            priced=Count("cost_usd"),
            latency_sum=Sum("latency_ms", filter=Q(error_code="")),
            latency_n=Count("latency_ms", filter=Q(error_code="")),
        )
        .order_by("target_id", "item__subject")
    )
    grouped: dict[int, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["target_id"], []).append(row)
    scores = _published_scores(run, targets)
    results = []
    for target in targets:
        subject_rows = grouped.get(target.pk, [])
        correct = sum(r["correct"] for r in subject_rows)
        scored = sum(r["stored"] - r["failed"] for r in subject_rows)
        no_answer = sum(r["no_answer"] for r in subject_rows)
        latency_n = sum(r["latency_n"] for r in subject_rows)
        priced = sum(r["priced"] for r in subject_rows)
        results.append(TargetResult(
            target=target,
            overall=stats.accuracy(correct, scored, no_answer),
            by_subject=[(r["item__subject"], stats.accuracy(r["correct"], r["stored"] - r["failed"], r["no_answer"]))
                        for r in subject_rows if r["item__subject"]],
            input_tokens=sum(r["input_tokens"] or 0 for r in subject_rows),
            output_tokens=sum(r["output_tokens"] or 0 for r in subject_rows),
            cost_usd=sum(r["cost"] or 0.0 for r in subject_rows) if priced else None,
            failed=sum(r["failed"] for r in subject_rows),
            mean_latency_ms=sum(r["latency_sum"] or 0.0 for r in subject_rows) / latency_n if latency_n else None,
            measured_score=scores.get(target.pk),
            alternates=_alternates(run, target) if alternates and scored else {},
        ))  # fmt: skip
    return results


def _published_scores(run: BenchmarkRun, targets: list[BenchmarkTarget]) -> dict[int, Score]:
    """target id -> the measured score this run published for it and that still stands."""
    variants = {t.variant_id for t in targets if t.variant_id}
    if not variants:
        return {}
    found = {}
    for score in Score.objects.filter(
        team_id=run.team_id, origin=Score.Origin.MEASURED, benchmark_id=run.suite.benchmark_id, variant_id__in=variants
    ):
        provenance = score.provenance or {}
        if provenance.get("run_id") == run.pk:
            found[provenance.get("target_id")] = score
    return found


def run_items(run: BenchmarkRun) -> QuerySet[BenchmarkItem]:
    """The test items the run asks, in index order (every test item, or the run's stratified subset)."""
    from apps.benchmarks.services import run_item_indices

    items = BenchmarkItem.objects.filter(suite_id=run.suite_id, split=BenchmarkItem.Split.TEST)
    if run.subset_size is not None:
        items = items.filter(index__in=run_item_indices(run))
    return items.order_by("index")


def answer_digest(extracted: str) -> int:
    """zlib.crc32 of the extracted answer (UTF-8); 0 for no answer."""
    return zlib.crc32(extracted.encode()) if extracted else 0


def target_outcomes(target: BenchmarkTarget) -> tuple[bytes, bytes, int]:
    """(numpy.packbits of correct per item, little-endian uint32 CRC-32 of each extracted answer, n) over the run's
    items in index order: the encoding of Score.outcomes / answer_digests. An item not answered (or whose request
    failed) counts as not correct, digest 0."""
    run = target.run
    indices = list(run_items(run).values_list("pk", flat=True))
    stored = {
        item_id: (correct, extracted)
        for item_id, correct, extracted in BenchmarkAnswer.objects.filter(target=target, error_code="").values_list(
            "item_id", "correct", "extracted"
        )
    }
    correct = np.zeros(len(indices), dtype=bool)
    digests = np.zeros(len(indices), dtype="<u4")
    for position, item_id in enumerate(indices):
        answer = stored.get(item_id)
        if answer is not None:
            correct[position] = bool(answer[0])
            digests[position] = answer_digest(answer[1])
    return np.packbits(correct).tobytes(), digests.tobytes(), len(indices)


def answers_for(
    run: BenchmarkRun, *, target_id: int | None = None, subject: str | None = None, outcome: str | None = None
) -> QuerySet[BenchmarkAnswer]:
    """The run's answers with their items and targets, filtered. Outcomes: "correct"; "wrong" (an answer was
    extracted and it is wrong); "no_answer" (none could be extracted: counted wrong, shown apart); "failed" (the
    request failed after retries: not scored)."""
    answers = BenchmarkAnswer.objects.filter(run=run).select_related("item", "target__endpoint")
    if target_id is not None:
        answers = answers.filter(target_id=target_id)
    if subject:
        answers = answers.filter(item__subject=subject)
    if outcome == "correct":
        answers = answers.filter(correct=True)
    elif outcome == "wrong":
        answers = answers.filter(correct=False, error_code="").exclude(extracted="")
    elif outcome == "no_answer":
        answers = answers.filter(error_code="", extracted="")
    elif outcome == "failed":
        answers = answers.exclude(error_code="")
    return answers.order_by("item__index", "target_id")


def mean_latency_ms(endpoint_id: int, model: str, limit: int = 500) -> tuple[float | None, int]:
    """The mean latency of this endpoint's last `limit` successful benchmark answers for `model` (for estimates)."""
    latencies = list(
        BenchmarkAnswer.objects.filter(target__endpoint_id=endpoint_id, target__model=model, error_code="")
        .exclude(latency_ms=None)
        .order_by("-id")
        .values_list("latency_ms", flat=True)[:limit]
    )
    return (float(np.mean(latencies)) if latencies else None), len(latencies)
