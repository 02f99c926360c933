"""Batch operations: load sweeps and parameter sweeps: create, start, cancel, resume, recover, and
the progress every client sees."""

from dataclasses import asdict, dataclass
from datetime import timedelta

import numpy as np
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.accounts.models import Team
from apps.batches.models import FINISHED, Batch, LoadSweep, LoadSweepStep, Status
from apps.batches.parameters import Values, combination_count, expand_all, normalized
from apps.batches.trials import level_trials
from apps.experiments.models import Experiment, Response, Suite, TestCase
from apps.experiments.runner import experiment_items
from apps.experiments.services import TransitionRefused, experiment_create
from apps.jobs.services import job_submit
from apps.providers.budget import budget_check
from apps.providers.engine.sim import MODELS as SIM_MODELS
from apps.providers.engine.sim import NATURAL_TOKENS, SimProfile
from apps.providers.engine.types import Kind
from apps.providers.models import ProviderEndpoint
from llmbench.humanize import duration_text

# A running sweep writes a heartbeat at least this often; one silent for STALL_AFTER lost its worker.
HEARTBEAT_S = 1.0
STALL_AFTER = timedelta(seconds=60)


@transaction.atomic
def sweep_create(*, team: Team, user: AbstractBaseUser | None, **fields) -> LoadSweep:
    """A pending sweep with `trials` steps per level, in the order given: each level's trials one after the other
    (level 1 trial 0, level 1 trial 1, level 2 trial 0 …)."""
    sweep = LoadSweep.objects.create(team=team, created_by=user, **fields)
    runs = ((float(level), trial) for level in sweep.levels for trial in range(sweep.trials))
    LoadSweepStep.objects.bulk_create(
        LoadSweepStep(sweep=sweep, index=i, level=level, trial=trial) for i, (level, trial) in enumerate(runs)
    )
    return sweep


def _enqueue(sweep: LoadSweep) -> None:
    # Only the primary key travels through the queue (never the endpoint or its key).
    transaction.on_commit(
        lambda: job_submit(
            team_id=sweep.team_id, func="apps.batches.tasks.load_sweep_run", args=(sweep.pk,), group="load-sweeps"
        )
    )


@transaction.atomic
def sweep_start(*, sweep: LoadSweep) -> LoadSweep:
    """Queue a pending (or failed, resumable) sweep; its finished steps are kept and not rerun."""
    sweep = LoadSweep.objects.select_for_update().get(pk=sweep.pk)
    if sweep.status == Status.RUNNING or sweep.status in (Status.COMPLETED, Status.CANCELLED):
        raise ValueError(f"The sweep is {sweep.status}; only a pending or failed sweep can start.")
    # A load sweep meters no cost: refused (BudgetExceeded) only when nothing of a hard budget is left.
    simulated = ProviderEndpoint.objects.filter(pk=sweep.endpoint_id, kind=Kind.SIM).exists()
    budget_check(team_id=sweep.team_id, estimate_usd=0.0 if simulated else None, what="This load sweep")
    sweep.status, sweep.error, sweep.cancel_requested = Status.PENDING, "", False
    sweep.save(update_fields=["status", "error", "cancel_requested"])
    _enqueue(sweep)
    return sweep


@transaction.atomic
def sweep_cancel(*, sweep: LoadSweep) -> LoadSweep:
    """Ask a running sweep to stop (its worker checks within half a second); a pending one stops now."""
    sweep = LoadSweep.objects.select_for_update().get(pk=sweep.pk)
    if sweep.status in FINISHED:
        return sweep
    sweep.cancel_requested = True
    fields = ["cancel_requested"]
    if sweep.status == Status.PENDING:
        sweep.status, sweep.finished_at = Status.CANCELLED, timezone.now()
        fields += ["status", "finished_at"]
    sweep.save(update_fields=fields)
    transaction.on_commit(lambda: progress_publish(sweep_id=sweep.pk))
    return sweep


def sweeps_recover_stalled() -> int:
    """Mark running sweeps whose worker went silent as failed (resumable); run every minute."""
    stalled = LoadSweep.objects.filter(
        status=Status.RUNNING, heartbeat_at__lt=timezone.now() - STALL_AFTER, managed_by=""
    )  # a capacity search recovers its own
    count = 0
    for sweep in stalled:
        LoadSweepStep.objects.filter(sweep=sweep, status=Status.RUNNING).update(status=Status.PENDING)
        sweep.status = Status.FAILED
        sweep.error = "The worker running this sweep stopped; finished steps are stored. Resume to run the rest."
        sweep.finished_at = timezone.now()
        sweep.save(update_fields=["status", "error", "finished_at"])
        progress_publish(sweep_id=sweep.pk)
        count += 1
    return count


STATUS_LABELS = {
    Status.PENDING: "pending", Status.RUNNING: "running", Status.COMPLETED: "completed",
    Status.FAILED: "failed", Status.CANCELLED: "cancelled",
}  # fmt: skip


def sweep_actions(status: str) -> dict[str, bool]:
    """What a member may do with a sweep in `status`; the page, its script and the API agree on it.
    Cancel only while pending or running; start while pending; resume after a failure."""
    return {
        "start": status == Status.PENDING,
        "resume": status == Status.FAILED,
        "cancel": status in (Status.PENDING, Status.RUNNING),
    }


def _step_status(sweep_status: str, step_status: str) -> str:
    """A step's status as the page shows it: once the sweep has finished, a step that never ran is
    "not run" and one cut short is "interrupted", so a finished sweep never lists "pending" steps."""
    if sweep_status in FINISHED and step_status == Status.PENDING:
        return "not run"
    if sweep_status in FINISHED and step_status == Status.RUNNING:
        return "interrupted"
    return step_status


def _step_figures(step: LoadSweepStep) -> dict:
    """The stored run's figures of a finished step, in the live figures' names."""
    summary = getattr(step.run, "summary", None) if step.run_id else None
    if summary is None:
        return {}
    # Counts and time are the whole step's (what was sent); latencies and throughput the steady window's.
    whole = summary.metrics.get("whole_step") or {}
    return {
        "requests_done": whole.get("request_count", summary.request_count),
        "requests_failed": whole.get("error_count", summary.error_count) or 0,
        "ttft_p50_ms": summary.stat("ttft_ms", "p50"), "ttft_p95_ms": summary.stat("ttft_ms", "p95"),
        "itl_p50_ms": summary.stat("itl_ms", "p50"), "output_tokens_per_s": summary.output_token_throughput_tps,
        "elapsed_s": whole.get("duration_s", summary.duration_s),
    }  # fmt: skip


def progress_payload(sweep: LoadSweep) -> dict:
    """What the live page, the SSE stream and the status endpoint show: read from the database,
    so a page opened late or reconnecting shows the truth. While a step runs, `live` holds its
    figures so far; once the sweep has finished (the worker clears them), `live` holds the final
    figures of the last step that ran, read from its stored run, and `live_step` says which."""
    steps = list(sweep.steps.select_related("run__summary"))
    stalled = (
        sweep.status == Status.RUNNING
        and sweep.heartbeat_at is not None
        and timezone.now() - sweep.heartbeat_at > STALL_AFTER
    )
    live, live_step, live_final = sweep.progress or {}, sweep.current_step, False
    if sweep.status in FINISHED or (not live and sweep.status != Status.RUNNING):
        ran = [s for s in steps if s.run_id]
        if ran:
            live, live_step, live_final = _step_figures(ran[-1]), ran[-1].index, True
        elif sweep.status in FINISHED:
            live = {}
    return {
        "id": sweep.pk,
        "status": sweep.status,
        "status_label": STATUS_LABELS.get(sweep.status, sweep.status),
        "actions": sweep_actions(sweep.status),
        "stalled": stalled,
        "error": sweep.error,
        "cancel_requested": sweep.cancel_requested,
        "current_step": sweep.current_step,
        "steps_done": sum(s.status == Status.COMPLETED for s in steps),
        "steps_total": len(steps),
        "live": live,
        "live_step": live_step,
        "live_final": live_final,
        "trials": level_trials(steps),
        "steps": [
            {
                "index": s.index,
                "level": s.level,
                "status": _step_status(sweep.status, s.status),
                "run_id": s.run_id,
                "achieved_concurrency": s.achieved_concurrency,
                "achieved_rate_rps": s.achieved_rate_rps,
                "dispatch_delay_p99_ms": s.dispatch_delay_p99_ms,
                "client_kept_up": s.client_kept_up,
                "client_note": s.client_note,
                "ttft_p50_ms": s.run.summary.stat("ttft_ms", "p50") if s.run_id and hasattr(s.run, "summary") else None,
                "output_tps": s.run.summary.output_token_throughput_tps
                if s.run_id and hasattr(s.run, "summary")
                else None,
            }
            for s in steps
        ],
    }


def progress_publish(*, sweep_id: int) -> None:
    """Push the current state to the sweep's websocket group (best effort: the database is the truth)."""
    sweep = LoadSweep.objects.filter(pk=sweep_id).first()
    layer = get_channel_layer()
    if sweep is None or layer is None:
        return
    async_to_sync(layer.group_send)(sweep.group_name, {"type": "sweep.progress", "payload": progress_payload(sweep)})


# --- parameter sweeps ---------------------------------------------------------------------------

# A chunk renews its lease with every heartbeat; a lease older than LEASE_TTL belonged to a worker
# that is gone, and the next chunk may take it. A running batch silent for BATCH_STALL_AFTER is
# picked up again by the scheduled recovery, and a queued chunk no worker took within QUEUE_GRACE
# is queued again. `recoveries` counts chunks that ran and were lost, never pick-ups: after
# MAX_RECOVERIES of them in a row without one stored result the batch is failed instead
# (something kills the worker every time).
LEASE_TTL = timedelta(seconds=10)
BATCH_STALL_AFTER = timedelta(seconds=30)
QUEUE_GRACE = timedelta(minutes=2)
MAX_RECOVERIES = 5
PROCESSING_S_PER_RESULT = 0.004  # the worker's own time per result (text metrics, storing), for estimates


class BatchRefused(ValueError):
    """The batch cannot do this now; the message says why."""


class ConfirmationRequired(BatchRefused):
    """The batch is over the team's limit and was not confirmed."""


@dataclass(frozen=True)
class TargetEstimate:
    label: str
    results: int
    latency_ms: float
    input_tokens: float
    output_tokens: float
    basis: str


@dataclass(frozen=True)
class Estimate:
    """What a sweep will take, before it starts."""

    combinations: int
    targets: int
    items: int
    repetitions: int
    results: int
    duration_s: float
    cost_usd: float | None
    per_target: list[TargetEstimate]
    over_limit: bool
    limit_reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def _target_estimate(team: Team, endpoint: ProviderEndpoint, model: str, results_count: int, prompt_chars: float,
                     max_tokens: float | None) -> TargetEstimate:  # fmt: skip
    """Latency and tokens per request from this model's last 500 successful responses in the team,
    else from the simulator's profile, else an assumption the page states."""
    history = list(
        Response.objects.filter(experiment__team=team, target__endpoint=endpoint, target__model=model, error_code="")
        .order_by("-id").values_list("latency_ms", "input_tokens", "output_tokens")[:500]
    )  # fmt: skip
    label = f"{endpoint.name} · {model}"
    input_guess = max(1.0, prompt_chars / 4)
    output_guess = float(max_tokens) if max_tokens else 256.0
    if history:
        latency = float(np.mean([h[0] for h in history if h[0] is not None] or [0.0]))
        inputs = [h[1] for h in history if h[1] is not None]
        outputs = [h[2] for h in history if h[2] is not None]
        output_tokens = float(np.mean(outputs)) if outputs else output_guess
        if max_tokens:
            output_tokens = min(output_tokens, float(max_tokens))
        return TargetEstimate(label, results_count, latency, float(np.mean(inputs)) if inputs else input_guess,
                              output_tokens, f"mean of its last {len(history)} responses")  # fmt: skip
    if endpoint.kind == Kind.SIM:
        profile = SimProfile.from_url(endpoint.base_url or "sim://local")
        tokens = min(output_guess, float(sum(NATURAL_TOKENS) / 2))
        factor = SIM_MODELS.get(model, 1.0)
        latency = 0.0 if profile.zero_latency else (
            (profile.ttft_ms + profile.per_token_ms * prompt_chars / 6) + profile.itl_ms * max(0.0, tokens - 1)
        ) * factor  # fmt: skip
        return TargetEstimate(label, results_count, latency, input_guess, tokens, "the simulator's latency profile")
    latency = 500.0 + 20.0 * output_guess
    return TargetEstimate(label, results_count, latency, input_guess, output_guess,
                          "no earlier responses: assumed 0.5 s + 20 ms per output token")  # fmt: skip


def batch_estimate(*, team: Team, targets: list[tuple[ProviderEndpoint, str]], prompts: list[str],
                   values: Values, repetitions: int, concurrency: int) -> Estimate:  # fmt: skip
    """Combinations, requests, duration and cost of a sweep, and whether it is over the team's limit."""
    combinations = combination_count(values)
    per_target_results = combinations * len(prompts) * repetitions
    max_tokens = float(np.mean(values["max_tokens"])) if "max_tokens" in values else None
    prompt_chars = float(np.mean([len(p) for p in prompts])) if prompts else 0.0
    estimates = [_target_estimate(team, e, m, per_target_results, prompt_chars, max_tokens) for e, m in targets]
    total = per_target_results * len(targets)
    work_s = sum(t.results * t.latency_ms / 1000 for t in estimates)
    duration = work_s / max(1, concurrency) + total * PROCESSING_S_PER_RESULT
    for (endpoint, _), t in zip(targets, estimates, strict=True):
        if endpoint.requests_per_minute:  # the endpoint's own limit caps the pace
            duration = max(duration, t.results / endpoint.requests_per_minute * 60)
    priced = [(e, t) for (e, _), t in zip(targets, estimates, strict=True)
              if e.price_input_per_1m_usd is not None or e.price_output_per_1m_usd is not None]  # fmt: skip
    cost = (
        sum(t.results * (t.input_tokens * (e.price_input_per_1m_usd or 0) + t.output_tokens * (e.price_output_per_1m_usd or 0))
            for e, t in priced) / 1_000_000
        if priced else None
    )  # fmt: skip
    reasons = []
    if total > team.batch_confirm_requests:
        reasons.append(f"{total:,} requests is over the team's limit of {team.batch_confirm_requests:,}")
    if team.batch_confirm_cost_usd is not None and cost is not None and cost > team.batch_confirm_cost_usd:
        reasons.append(f"an estimated ${cost:,.2f} is over the team's limit of ${team.batch_confirm_cost_usd:,.2f}")
    return Estimate(combinations, len(targets), len(prompts), repetitions, total, round(duration, 1),
                    None if cost is None else round(cost, 6), estimates, bool(reasons), "; ".join(reasons))  # fmt: skip


@transaction.atomic
def batch_create(
    *,
    team: Team,
    user: AbstractBaseUser | None,
    name: str,
    targets: list[tuple[ProviderEndpoint, str]],
    parameter_ranges: dict,
    prompt: str = "",
    system_prompt: str = "",
    test_cases: list[TestCase] | None = None,
    suite: Suite | None = None,
    description: str = "",
    repetitions: int = 1,
    concurrency: int = 4,
    objective: str = Batch.Objective.OVERALL,
    tags: list[str] | None = None,
    request_options: dict | None = None,
) -> Batch:
    """A pending sweep over the team's approved test cases (or a prompt) and endpoints; refused
    (TransitionRefused, RangeError) for another team's test case, suite or endpoint or a bad range."""
    values = expand_all(parameter_ranges)
    if not targets:
        raise TransitionRefused("A batch needs at least one target.")
    experiment = experiment_create(
        team=team, user=user, name=name, targets=targets, test_cases=test_cases, suite=suite, prompt=prompt,
        system_prompt=system_prompt, description=description, responses_per_item=repetitions, tags=tags or [],
        kind=Experiment.Kind.BATCH, parameters=dict(request_options or {}),  # fixed options, sent with every combination
    )  # fmt: skip
    items = experiment_items(experiment)
    estimate = batch_estimate(
        team=team, targets=targets, prompts=[i.messages[-1]["content"] for i in items], values=values,
        repetitions=repetitions, concurrency=concurrency,
    )  # fmt: skip
    return Batch.objects.create(
        experiment=experiment, parameter_ranges=normalized(parameter_ranges), parameter_values=values,
        combination_count=estimate.combinations, result_count=estimate.results, concurrency=concurrency,
        objective=objective, estimate=estimate.as_dict(),
    )  # fmt: skip


def _enqueue_chunk(batch_id: int, team_id: int | None = None) -> None:
    # Through the team's fair queue; the runner, which knows only the batch, has its team read here.
    if team_id is None:
        team_id = Experiment.objects.filter(pk=batch_id).values_list("team_id", flat=True).first()
    job_submit(team_id=team_id, func="apps.batches.tasks.batch_run_chunk", args=(batch_id,), group="batches")


def _batch_cost_left(batch: Batch) -> float | None:
    """The estimated cost of the results a batch still has to ask for (a resumed one keeps what it stored): 0.0 when
    every target is simulated, None when no target has prices."""
    if not batch.experiment.targets.exclude(endpoint__kind=Kind.SIM).exists():
        return 0.0
    cost = batch.estimate.get("cost_usd")
    if cost is None:
        return None
    return cost * max(0, batch.result_count - batch.completed_results) / max(1, batch.result_count)


@transaction.atomic
def batch_start(*, batch: Batch, confirm: bool = False) -> Batch:
    """Queue a pending batch, or resume a failed or cancelled one (stored results are kept and not
    asked again). Over the team's limit it needs `confirm` once."""
    batch = Batch.objects.select_for_update().select_related("experiment").get(pk=batch.pk)
    experiment = batch.experiment
    if experiment.status in (Status.RUNNING, Status.COMPLETED):
        raise BatchRefused(f"The batch is {experiment.status}; only a pending, failed or cancelled batch can start.")
    if experiment.status == Status.PENDING and batch.queued_at is not None:
        raise BatchRefused("The batch is already queued.")
    budget_check(team_id=experiment.team_id, estimate_usd=_batch_cost_left(batch), what="This parameter sweep")
    if batch.estimate.get("over_limit") and not (confirm or batch.confirmed):
        raise ConfirmationRequired(
            f"Confirm to start: {batch.estimate['limit_reason']} (estimated {duration_text(batch.estimate['duration_s'])})."
        )
    Experiment.objects.filter(pk=experiment.pk).update(
        status=Status.PENDING, cancel_requested=False, error="", finished_at=None
    )
    batch.confirmed = batch.confirmed or confirm
    batch.queued_at = timezone.now()
    batch.recoveries = 0
    batch.save(update_fields=["confirmed", "queued_at", "recoveries"])
    transaction.on_commit(lambda: (_enqueue_chunk(batch.pk, experiment.team_id), batch_publish(batch_id=batch.pk)))
    batch.experiment.refresh_from_db()
    return batch


@transaction.atomic
def batch_cancel(*, batch: Batch) -> Batch:
    """Stop a batch: the worker sends nothing more within half a second and what finished stays;
    a batch no worker has picked up stops now."""
    batch = Batch.objects.select_for_update().select_related("experiment").get(pk=batch.pk)
    experiment = batch.experiment
    if experiment.status in FINISHED:
        return batch
    fields = {"cancel_requested": True}
    if experiment.status == Status.PENDING:
        fields |= {"status": Status.CANCELLED, "finished_at": timezone.now()}
        Batch.objects.filter(pk=batch.pk).update(queued_at=None)
    Experiment.objects.filter(pk=experiment.pk).update(**fields)
    transaction.on_commit(lambda: batch_publish(batch_id=batch.pk))
    batch.refresh_from_db()
    batch.experiment.refresh_from_db()
    return batch


def batch_delete(*, batch: Batch) -> None:
    """Delete a batch that is not running, with its results."""
    if batch.experiment.status == Status.RUNNING:
        raise BatchRefused("The batch is running: cancel it first (what finished is kept until you delete it).")
    batch.experiment.delete()


def batch_chunk_lost(*, batch: Batch, now) -> bool:
    """Count a chunk that took the batch's lease and was lost (its heartbeat went stale) and take
    the lease from it; the MAX_RECOVERIES-th such loss in a row without a stored result fails the
    batch. Conditional on the lease and heartbeat the caller saw, so of several callers that saw
    the same loss one counts it: True for that one (`batch` then holds what was written)."""
    lost = batch.recoveries + 1
    failed = lost >= MAX_RECOVERIES
    fields = {"lease": "", "recoveries": lost, "queued_at": None if failed else now}
    if failed:
        fields["current_parameters"] = {}
    seen = Batch.objects.filter(pk=batch.pk, lease=batch.lease, heartbeat_at=batch.heartbeat_at)
    if not seen.update(**fields):
        return False
    if failed:
        Experiment.objects.filter(pk=batch.pk).update(
            status=Status.FAILED, finished_at=now,
            error=f"The worker stopped {lost} times while running this batch without storing a result; "
            "what finished is stored. Resume to try again.",
        )  # fmt: skip
    batch.lease, batch.recoveries, batch.queued_at = "", lost, fields["queued_at"]
    return True


def batches_recover_stalled() -> int:
    """Pick up the batches whose work was lost; run every minute. Two kinds: a chunk that took the
    lease and went silent (its worker died): counted in `recoveries` (batch_chunk_lost) and queued
    again; and a chunk task that no worker took within QUEUE_GRACE (the Redis broker keeps no
    receipts, and a stuck cluster's internal queue dies with it): queued again, not counted, since
    nothing ran. Every pick-up is a conditional update on what was seen, so recovery tasks that
    piled up behind a stuck cluster and run together act once: the others find the batch queued."""
    now = timezone.now()
    count = 0
    lost_chunks = Batch.objects.filter(
        experiment__status=Status.RUNNING, heartbeat_at__lt=now - BATCH_STALL_AFTER
    ).exclude(lease="")
    for batch in lost_chunks:
        with transaction.atomic():
            counted = batch_chunk_lost(batch=batch, now=now)
        if counted:
            if batch.queued_at is not None:  # else that loss failed the batch
                _enqueue_chunk(batch.pk)
            batch_publish(batch_id=batch.pk)
            count += 1
    lost_tasks = Batch.objects.filter(experiment__status__in=(Status.PENDING, Status.RUNNING), lease="").filter(
        Q(queued_at__lt=now - QUEUE_GRACE)
        # a running batch between chunks that never said its next chunk was queued (rows written
        # before queued_at was kept between chunks)
        | Q(queued_at__isnull=True, experiment__status=Status.RUNNING, heartbeat_at__lt=now - BATCH_STALL_AFTER)
    )
    for batch in lost_tasks:
        if Batch.objects.filter(pk=batch.pk, lease="", queued_at=batch.queued_at).update(queued_at=now):
            _enqueue_chunk(batch.pk)
            batch_publish(batch_id=batch.pk)
            count += 1
    return count


def batch_actions(status: str, *, queued: bool, over_limit: bool) -> dict[str, bool]:
    """What a member may do with a batch in `status`; the page, its script and the API agree on it.
    Cancel only while pending (queued or not) or running; start while pending and not queued; resume
    after a failure or a cancel; delete unless running."""
    return {
        "start": status == Status.PENDING and not queued,
        "resume": status in (Status.FAILED, Status.CANCELLED),
        "confirm": over_limit,
        "cancel": status in (Status.PENDING, Status.RUNNING),
        "delete": status != Status.RUNNING,
    }


def batch_status_label(status: str, *, queued: bool, cancel_requested: bool) -> str:
    """The status in words: a pending batch is "queued" or "not started", a running one being
    stopped is "cancelling"."""
    if status == Status.PENDING:
        return "queued" if queued else "not started"
    if status == Status.RUNNING and cancel_requested:
        return "cancelling"
    return status


def batch_state(batch: Batch) -> dict:
    """What the live page, the status endpoint and the SSE stream show, read from the database."""
    experiment = batch.experiment
    now = timezone.now()
    done, total = batch.completed_results, batch.result_count
    eta_s = None
    if experiment.status == Status.RUNNING and batch.run_started_at and done > batch.run_started_results:
        rate = (done - batch.run_started_results) / max(1e-6, (now - batch.run_started_at).total_seconds())
        eta_s = (total - done) / rate
    preview = batch.preview or {}
    best = preview.get("best") or {}
    stalled = experiment.status == Status.RUNNING and batch.heartbeat_at is not None and (
        now - batch.heartbeat_at > BATCH_STALL_AFTER
    )  # fmt: skip
    queued = experiment.status == Status.PENDING and batch.queued_at is not None
    over_limit = bool(batch.estimate.get("over_limit")) and not batch.confirmed
    return {
        "id": batch.pk,
        "name": experiment.name,
        "status": experiment.status,
        "status_label": batch_status_label(
            experiment.status, queued=queued, cancel_requested=experiment.cancel_requested
        ),
        "actions": batch_actions(experiment.status, queued=queued, over_limit=over_limit),
        "error": experiment.error,
        "cancel_requested": experiment.cancel_requested,
        "queued": queued,
        "stalled": stalled,
        "progress": round(100.0 * done / total, 1) if total else 0.0,
        "completed_results": done,
        "failed_results": batch.failed_results,
        "total_results": total,
        "completed_combinations": batch.completed_combinations,
        "total_combinations": batch.combination_count,
        "current_parameters": batch.current_parameters,
        "started_at": experiment.started_at.isoformat() if experiment.started_at else None,
        "completed_at": experiment.finished_at.isoformat() if experiment.finished_at else None,
        "eta_s": None if eta_s is None else round(eta_s, 1),
        "estimated_completion": (now + timedelta(seconds=eta_s)).isoformat() if eta_s is not None else None,
        "results_preview": {
            "metric": batch.objective,
            "best_quality_score": best.get("mean"),
            "best_n": best.get("n"),
            "average_quality_score": preview.get("average"),
            "optimal_parameters": best.get("parameters") or {},
        },
    }


def batch_publish(*, batch_id: int, through_id: int | None = None) -> None:
    """Tell the batch's websocket group that something changed (best effort: consumers read the
    database, which is the truth)."""
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(f"batch-{batch_id}", {"type": "batch.nudge", "through_id": through_id})
