"""Benchmark run operations: create (validated, with an estimate), start, cancel, resume, delete, recover, publish
the measured scores, and the progress pushed to the live page. The run itself goes in apps.benchmarks.runner.

`started_at` is when the run last started: a resume starts it again (the pace, the ETA and which failed requests
were already asked again in this start are counted from it).
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from apps.accounts.models import Team
from apps.benchmarks.engine import stats, taskdefs
from apps.benchmarks.models import (
    FINISHED,
    BenchmarkItem,
    BenchmarkRun,
    BenchmarkSuite,
    BenchmarkTarget,
    Kind,
    Status,
)
from apps.benchmarks.selectors import STALL_AFTER, mean_latency_ms, progress_payload, run_results, target_outcomes
from apps.jobs.services import job_submit
from apps.providers.budget import budget_check
from apps.providers.models import ProviderEndpoint
from apps.scores.models import ModelVariant, Score, ServedVariant

# A chunk renews its lease with every heartbeat (twice a second); a lease older than LEASE_TTL belonged to a worker
# that is gone and the next chunk may take it. A running run silent for STALL_AFTER (selectors) is picked up by
# the scheduled recovery, and a queued chunk no worker took within QUEUE_GRACE is queued again. `recoveries`
# counts chunks that ran and were lost: after MAX_RECOVERIES in a row without an answer stored the run fails.
LEASE_TTL = timedelta(seconds=10)
QUEUE_GRACE = timedelta(minutes=2)
MAX_RECOVERIES = 5
MAX_TARGETS = 16
MAX_MAX_TOKENS = 32_768
# Estimates: a typical answer's length per kind (chain of thought for GSM8K and MMLU-Pro, a short answer for the
# letter tasks), capped by max_tokens; an endpoint without earlier answers is assumed to take 0.5 s + 20 ms per
# output token.
TYPICAL_OUTPUT_TOKENS = {Kind.GSM8K: 200, Kind.MMLU_PRO: 400, Kind.MMLU: 40, Kind.ARC: 40, Kind.HELLASWAG: 40,
                         Kind.TRUTHFULQA_MC1: 40}  # fmt: skip
ASSUMED_LATENCY_MS, ASSUMED_MS_PER_TOKEN = 500.0, 20.0
CHARS_PER_TOKEN = 4


class BenchmarkRefused(ValueError):
    """The run cannot do this now; the message says why."""


@dataclass
class TargetSpec:
    """An endpoint, the model asked there, and the catalog variant it serves (None: the one linked before)."""

    endpoint: ProviderEndpoint
    model: str
    variant: ModelVariant | None = None


def fewshot_available(suite: BenchmarkSuite) -> tuple[int, str]:
    """(the fewest few-shot examples any test subject has, that subject): examples of the same subject when the
    few-shot split names subjects, else all of them."""
    pool = dict(
        suite.items.filter(split=BenchmarkItem.Split.FEWSHOT).values_list("subject").annotate(n=Count("id"))
    )  # fmt: skip
    if not pool:
        return 0, ""
    if set(pool) == {""}:
        return pool[""], ""
    subjects = [s for s in (suite.subjects or {}) if s] or list(pool)
    fewest = min(subjects, key=lambda s: pool.get(s, 0))
    return pool.get(fewest, 0), fewest


def _validate(team: Team, suite: BenchmarkSuite, targets: list[TargetSpec], fields: dict[str, Any]) -> None:
    """Every problem at once, by field (targets by position: "targets[1].model"). Another team's suite, endpoint
    or variant reads as missing, never as someone else's."""
    errors: dict[str, str] = {}
    if suite.team_id != team.pk:
        raise ValidationError({"suite": "No such suite in this team."})
    if suite.item_count < 1:
        errors["suite"] = "The suite has no test items."
    if not targets:
        errors["targets"] = "Choose at least one endpoint and model."
    elif len(targets) > MAX_TARGETS:
        errors["targets"] = f"At most {MAX_TARGETS} targets in one run."
    seen: set[tuple[int, str]] = set()
    for i, spec in enumerate(targets):
        model = (spec.model or "").strip()
        if spec.endpoint.team_id != team.pk:
            errors[f"targets[{i}].endpoint"] = "No such endpoint in this team."
            continue
        if not model:
            errors[f"targets[{i}].model"] = "The model name sent to the endpoint is required."
        elif spec.endpoint.model_names and model not in spec.endpoint.model_names:
            served = ", ".join(spec.endpoint.model_names)
            errors[f"targets[{i}].model"] = f"{spec.endpoint.name} does not serve “{model}” (it serves: {served})."
        elif (spec.endpoint.pk, model) in seen:
            errors[f"targets[{i}].model"] = f"{spec.endpoint.name} · {model} is already a target of this run."
        seen.add((spec.endpoint.pk, model))
        if spec.variant is not None and spec.variant.team_id != team.pk:
            errors[f"targets[{i}].variant"] = "No such model variant in this team."
    shots = fields["shots"]
    if isinstance(shots, bool) or not isinstance(shots, int) or not 0 <= shots <= 25:
        errors["shots"] = "Must be a whole number from 0 to 25."
    elif shots:
        available, subject = fewshot_available(suite)
        if available == 0:
            errors["shots"] = "The suite has no few-shot examples: import them with the suite, or ask zero-shot."
        elif shots > available:
            where = f" (“{subject}” has {available})" if subject else ""
            errors["shots"] = f"At most {available} few-shot examples are available per subject{where}."
    temperature = fields["temperature"]
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        errors["temperature"] = "Must be between 0 and 2."
    max_tokens = fields["max_tokens"]
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_MAX_TOKENS
    ):
        errors["max_tokens"] = f"Must be a whole number from 1 to {MAX_MAX_TOKENS:,}."
    concurrency = fields["concurrency"]
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 256:
        errors["concurrency"] = "Must be a whole number from 1 to 256."
    size = fields["subset_size"]
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            errors["subset_size"] = "Must be a whole number of at least 1 (leave it empty to ask every item)."
        elif size >= suite.item_count:
            errors["subset_size"] = (
                f"Must be below the suite's {suite.item_count:,} items (leave it empty to ask every item)."
            )
    seed = fields["subset_seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        errors["subset_seed"] = "Must be a whole number of at least 0."
    if len(fields["name"]) > 200:
        errors["name"] = "At most 200 characters."
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def benchmark_run_create(
    *,
    team: Team,
    user: AbstractBaseUser | None,
    suite: BenchmarkSuite,
    targets: list[TargetSpec],
    name: str = "",
    shots: int = 0,
    temperature: float = 0.0,
    max_tokens: int | None = None,
    concurrency: int = 8,
    subset_size: int | None = None,
    subset_seed: int = 0,
) -> BenchmarkRun:
    """A pending run with its targets, its item count and its estimate; ValidationError naming each bad field.
    A target's variant is remembered for its endpoint and model (ServedVariant); without one, the variant linked
    before is used."""
    fields = {"shots": shots, "temperature": temperature, "max_tokens": max_tokens, "concurrency": concurrency,
              "subset_size": subset_size, "subset_seed": subset_seed, "name": name.strip()}  # fmt: skip
    _validate(team, suite, targets, fields)
    run = BenchmarkRun.objects.create(
        team=team, created_by=user, suite=suite, shots=shots, temperature=float(temperature),
        max_tokens=max_tokens or taskdefs.default_max_tokens(suite.kind), concurrency=concurrency,
        subset_size=subset_size, subset_seed=subset_seed,
        name=fields["name"] or f"{suite} · {timezone.localtime():%Y-%m-%d %H:%M}",
    )  # fmt: skip
    for spec in targets:
        model = spec.model.strip()
        variant = spec.variant
        if variant is not None:
            ServedVariant.objects.update_or_create(
                endpoint=spec.endpoint, model=model, defaults={"team": team, "variant": variant}
            )
        else:
            link = ServedVariant.objects.filter(team=team, endpoint=spec.endpoint, model=model).first()
            variant = link.variant if link else None
        BenchmarkTarget.objects.create(run=run, endpoint=spec.endpoint, model=model, variant=variant)
    run.item_count = len(run_item_indices(run))
    run.estimate = benchmark_run_estimate(run)
    run.save(update_fields=["item_count", "estimate"])
    return run


def run_item_indices(run: BenchmarkRun) -> list[int]:
    """The test-split indices the run asks, sorted: every one, or the seeded stratified subset."""
    rows = list(
        BenchmarkItem.objects.filter(suite_id=run.suite_id, split=BenchmarkItem.Split.TEST)
        .order_by("index")
        .values_list("index", "subject")
    )
    if run.subset_size is None:
        return [index for index, _ in rows]
    chosen = stats.stratified_subset([subject for _, subject in rows], run.subset_size, run.subset_seed)
    return sorted(rows[i][0] for i in chosen)


def benchmark_run_estimate(run: BenchmarkRun) -> dict:
    """Requests, tokens, cost and duration before start. Input tokens ≈ the prompts' characters / 4; output tokens
    ≈ a typical answer of the kind, capped by max_tokens; latency from the endpoint's earlier answers for the model
    (else 0.5 s + 20 ms per output token); cost from the endpoints' prices (None when no target has prices)."""
    from apps.benchmarks.runner import prompt_chars

    targets = list(run.targets.select_related("endpoint"))
    items = run.item_count or len(run_item_indices(run))
    chars = prompt_chars(run)
    input_per_item = chars / CHARS_PER_TOKEN / max(1, items)
    output_per_item = float(min(TYPICAL_OUTPUT_TOKENS.get(run.suite.kind, 100), run.max_tokens))
    per_target, work_s, cost, priced, floor_s = [], 0.0, 0.0, False, 0.0
    for target in targets:
        endpoint = target.endpoint
        latency, seen = mean_latency_ms(endpoint.pk, target.model)
        basis = f"mean of its last {seen} benchmark answers"
        if latency is None:
            latency = ASSUMED_LATENCY_MS + ASSUMED_MS_PER_TOKEN * output_per_item
            basis = "no earlier answers: assumed 0.5 s + 20 ms per output token"
        work_s += items * latency / 1000
        if endpoint.requests_per_minute:  # the endpoint's own limit caps the pace
            floor_s = max(floor_s, items / endpoint.requests_per_minute * 60)
        target_cost = None
        if endpoint.price_input_per_1m_usd is not None or endpoint.price_output_per_1m_usd is not None:
            priced = True
            target_cost = items * (input_per_item * (endpoint.price_input_per_1m_usd or 0.0)
                                   + output_per_item * (endpoint.price_output_per_1m_usd or 0.0)) / 1_000_000  # fmt: skip
            cost += target_cost
        per_target.append({"target": str(target), "requests": items, "latency_ms": round(latency, 1), "basis": basis,
                           "cost_usd": None if target_cost is None else round(target_cost, 6)})  # fmt: skip
    requests = items * len(targets)
    return {
        "requests": requests,
        "input_tokens": round(input_per_item * requests),
        "output_tokens": round(output_per_item * requests),
        "cost_usd": round(cost, 6) if priced else None,
        "duration_s": round(max(work_s / max(1, run.concurrency), floor_s), 1),
        "per_target": per_target,
        "assumptions": [
            "input tokens ≈ prompt characters / 4",
            f"output tokens ≈ {output_per_item:g} per answer (typical for {run.suite.get_kind_display()}, "
            f"at most max tokens {run.max_tokens})",
            f"{run.concurrency} requests in flight",
        ],
    }


def _enqueue(run_id: int, lease: str = "", team_id: int | None = None) -> None:
    # Only the primary key (and the lease handed to the next chunk) travels through the team's fair queue.
    if team_id is None:
        team_id = BenchmarkRun.objects.filter(pk=run_id).values_list("team_id", flat=True).first()
    job_submit(
        team_id=team_id, func="apps.benchmarks.tasks.benchmark_run_chunk", args=(run_id, lease), group="benchmarks"
    )


def _run_cost_left(run: BenchmarkRun) -> float | None:
    """The estimated cost of the answers a run still has to ask for (a resumed one keeps what it stored): 0.0 when
    every target is simulated, None when no target has prices."""
    if all(target.endpoint.is_simulated for target in run.targets.select_related("endpoint")):
        return 0.0
    cost = run.estimate.get("cost_usd") if run.estimate else None
    if cost is None:
        return None
    requests = run.estimate.get("requests") or 0
    if not requests:
        return cost
    return cost * max(0, requests - run.completed_answers + run.failed_answers) / requests


@transaction.atomic
def benchmark_run_start(*, run: BenchmarkRun) -> BenchmarkRun:
    """Queue a pending run, or resume a failed or cancelled one: stored answers are kept and not asked again,
    failed requests are asked again."""
    run = BenchmarkRun.objects.select_for_update().get(pk=run.pk)
    if run.status not in (Status.PENDING, Status.FAILED, Status.CANCELLED):
        raise BenchmarkRefused(f"The run is {run.status}; only a pending, failed or cancelled run can start.")
    budget_check(team_id=run.team_id, estimate_usd=_run_cost_left(run), what="This benchmark run")
    run.status, run.error, run.cancel_requested, run.finished_at = Status.QUEUED, "", False, None
    run.lease, run.recoveries, run.queued_at = "", 0, timezone.now()
    run.save(update_fields=["status", "error", "cancel_requested", "finished_at", "lease", "recoveries", "queued_at"])
    run_id, team_id = run.pk, run.team_id
    transaction.on_commit(lambda: (_enqueue(run_id, team_id=team_id), progress_publish(run_id)))
    return run


@transaction.atomic
def benchmark_run_cancel(*, run: BenchmarkRun) -> BenchmarkRun:
    """Stop a run: its worker sends nothing more within half a second, and what was answered stays. A run that no
    live worker holds (not started yet, or its worker is gone) stops now."""
    run = BenchmarkRun.objects.select_for_update().get(pk=run.pk)
    if run.status in FINISHED:
        return run
    now = timezone.now()
    run.cancel_requested = True
    fields = ["cancel_requested"]
    held = run.lease and run.heartbeat_at is not None and now - run.heartbeat_at <= LEASE_TTL
    if run.status in (Status.PENDING, Status.QUEUED) or not held:
        run.status, run.finished_at, run.lease, run.queued_at = Status.CANCELLED, now, "", None
        fields += ["status", "finished_at", "lease", "queued_at"]
    run.save(update_fields=fields)
    run_id = run.pk
    transaction.on_commit(lambda: progress_publish(run_id))
    return run


def benchmark_run_delete(*, run: BenchmarkRun) -> None:
    """Delete a run that is not queued or running, with its answers and the measured scores it published."""
    if run.status in (Status.QUEUED, Status.RUNNING):
        raise BenchmarkRefused("The run is in progress: cancel it first.")
    with transaction.atomic():
        Score.objects.filter(team_id=run.team_id, origin=Score.Origin.MEASURED, provenance__run_id=run.pk).delete()
        run.delete()


def chunk_lost(run: BenchmarkRun, now) -> bool:
    """Count a chunk that held the run's lease and went silent, and take the lease from it; the MAX_RECOVERIES-th
    such loss in a row without an answer stored fails the run. Conditional on the lease and heartbeat the caller
    saw, so of several callers that saw the same loss one counts it: True for that one (`run` then holds what was
    written)."""
    lost = run.recoveries + 1
    failed = lost >= MAX_RECOVERIES
    fields: dict[str, Any] = {"lease": "", "recoveries": lost, "queued_at": None if failed else now}
    if failed:
        fields |= {"status": Status.FAILED, "finished_at": now,
                   "error": f"The worker stopped {lost} times while running this benchmark without storing an "
                   "answer; what was answered is stored. Resume to try again."}  # fmt: skip
    seen = BenchmarkRun.objects.filter(pk=run.pk, lease=run.lease, heartbeat_at=run.heartbeat_at)
    if not seen.update(**fields):
        return False
    for name, value in fields.items():
        setattr(run, name, value)
    return True


def runs_recover_stalled() -> int:
    """Pick up the runs whose work was lost (run every minute): a chunk that held the lease and went silent for
    STALL_AFTER (its worker died; counted, see chunk_lost) and a queued chunk no worker took within QUEUE_GRACE
    (the Redis broker keeps no receipts): queued again. Every pick-up is a conditional update on what was seen,
    so recoveries that run together act once."""
    now, count = timezone.now(), 0
    lost_chunks = BenchmarkRun.objects.filter(
        status=Status.RUNNING, queued_at__isnull=True, heartbeat_at__lt=now - STALL_AFTER
    ).exclude(lease="")
    for run in lost_chunks:
        with transaction.atomic():
            counted = chunk_lost(run, now)
        if counted:
            if run.status != Status.FAILED:
                _enqueue(run.pk, team_id=run.team_id)
            progress_publish(run.pk)
            count += 1
    lost_tasks = BenchmarkRun.objects.filter(
        status__in=(Status.QUEUED, Status.RUNNING), queued_at__lt=now - QUEUE_GRACE
    )
    for run in lost_tasks:
        if BenchmarkRun.objects.filter(pk=run.pk, lease=run.lease, queued_at=run.queued_at).update(queued_at=now):
            _enqueue(run.pk, run.lease, team_id=run.team_id)
            count += 1
    return count


def publish_scores(run: BenchmarkRun) -> list[Score]:
    """The measured score of each target with a variant, when the run answered every item of the suite (no subset,
    no failed request): inside the transaction that completes the run."""
    if run.subset_size is not None:
        return []
    results = {r.target.pk: r for r in run_results(run, alternates=False)}
    suite = run.suite
    published = []
    for target_id, result in results.items():
        target = result.target
        overall = result.overall
        if target.variant_id is None or result.failed or overall.n != run.item_count or overall.accuracy is None:
            continue
        outcomes, digests, n = target_outcomes(target)
        finished = run.finished_at or timezone.now()
        score, _ = Score.objects.update_or_create(
            variant_id=target.variant_id, benchmark_id=suite.benchmark_id, origin=Score.Origin.MEASURED,
            defaults={
                "team_id": run.team_id, "value_pct": 100 * overall.accuracy,
                "stderr_pct": None if overall.stderr is None else 100 * overall.stderr,
                "ci_low_pct": None if overall.ci_low is None else 100 * overall.ci_low,
                "ci_high_pct": None if overall.ci_high is None else 100 * overall.ci_high,
                "n_items": n, "n_shot": run.shots, "source": f"Measured: {run.name}"[:200],
                "evaluated_at": timezone.localdate(finished), "is_simulated": target.endpoint.is_simulated,
                "outcomes": outcomes, "answer_digests": digests,
                "provenance": {
                    "run_id": run.pk, "target_id": target_id,
                    "suite": {"id": suite.pk, "name": suite.name, "version": suite.version, "sha256": suite.sha256},
                    "endpoint": {"id": target.endpoint_id, "name": target.endpoint.name}, "model": target.model,
                    "settings": {"shots": run.shots, "temperature": run.temperature, "max_tokens": run.max_tokens},
                    "no_answer": overall.no_answer, "finished_at": finished.isoformat(),
                },
            },
        )  # fmt: skip
        published.append(score)
    return published


def progress_publish(run_id: int) -> None:
    """Push the run's progress to its websocket group (best effort: the database is the truth)."""
    run = BenchmarkRun.objects.filter(pk=run_id).first()
    layer = get_channel_layer()
    if run is None or layer is None:
        return
    async_to_sync(layer.group_send)(run.group_name, {"type": "benchmark.progress", "payload": progress_payload(run)})
