"""Capacity search operations: validate, create, start, cancel, resume, recover, and the progress every
client (page, SSE stream, API) sees. The search itself runs in apps.capacity.runner."""

import math
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import Team
from apps.batches.models import LoadSweep, LoadSweepStep
from apps.capacity.engine.slo import SloInvalid, describe_slo, validate_slo
from apps.capacity.models import FINISHED, CapacityProbe, CapacitySearch, Status
from apps.jobs.services import job_submit
from apps.providers.budget import budget_check

# The runner writes the sweep's heartbeat at least every second while a probe runs, and the search's between
# probes; a running search silent for CAPACITY_STALL_S lost its worker and is picked up again by the scheduled
# recovery, at most MAX_RECOVERIES times in a row without a probe stored (then it fails, resumable).
MAX_RECOVERIES = 3


def stall_after() -> timedelta:
    """CAPACITY_STALL_S, as a time span."""
    return timedelta(seconds=settings.CAPACITY_STALL_S)


MAX_LEVEL = 100_000.0
LIMITS = {
    "tolerance": (0.005, 0.5),
    "probe_duration_s": (1.0, 3600.0),  # and with the warm-up at most max_probe_s()
    "warmup_s": (0.0, 600.0),
    "repetitions": (1, 10),
    "max_extra_trials": (0, 10),
    "max_probes": (2, 100),
    "shards": (1, 16),
}


class CapacityInvalid(ValueError):
    """The search cannot be made as asked; `errors` maps each field (or "slo.objectives[0].max_ms") to why."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


class CapacityRefused(ValueError):
    """The search cannot do this now; the message says why."""


def max_probe_s() -> float:
    """The longest probe (warm-up included): it must end, drained and stored, inside one task's time limit."""
    return settings.Q_CLUSTER["timeout"] * 0.4


def capacity_validate(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields with the SLO in normal form, or CapacityInvalid naming every problem. The form, the API
    serializer and capacity_create all call this: one set of rules."""
    errors: dict[str, str] = {}
    cleaned = dict(fields)
    try:
        cleaned["slo"] = validate_slo(fields.get("slo"))
    except SloInvalid as exc:
        errors |= {f"slo.{path}" if path != "slo" else "slo": message for path, message in exc.errors.items()}
    space = fields.get("space", CapacitySearch.Space.RATE)
    if space not in CapacitySearch.Space.values:
        errors["space"] = "must be rate (open loop) or concurrency (closed loop)"
    start, top = fields.get("start_level", 1.0), fields.get("max_level", 1024.0)
    for name, value in (("start_level", start), ("max_level", top)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_LEVEL:
            errors[name] = f"must be a number above 0 and at most {MAX_LEVEL:g}"
        elif space == CapacitySearch.Space.CONCURRENCY and (value < 1 or value != int(value)):
            errors[name] = "a concurrency must be a whole number of at least 1"
    if "start_level" not in errors and "max_level" not in errors and top < start:
        errors["max_level"] = "must be at least the start level"
    for name, (low, high) in LIMITS.items():
        if name not in fields:
            continue
        value = fields[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            errors[name] = f"must be between {low:g} and {high:g}"
        elif isinstance(low, int) and value != int(value):
            errors[name] = "must be a whole number"
    if "probe_duration_s" not in errors and "warmup_s" not in errors:
        longest = max_probe_s()
        if fields.get("probe_duration_s", 30.0) + fields.get("warmup_s", 0.0) > longest:
            errors["probe_duration_s"] = (
                f"with the warm-up, a probe must fit in {longest:g} s (the task time limit, Q_TIMEOUT_S, allows it)"
            )
    closed = space == CapacitySearch.Space.CONCURRENCY
    if closed and "shards" not in errors and "start_level" not in errors and fields.get("shards", 1) > start:
        errors["shards"] = "a closed-loop probe cannot have more shards than its concurrency (the start level)"
    endpoint, team = fields.get("endpoint"), fields.get("team")
    if endpoint is not None and team is not None and endpoint.team_id != team.pk:
        errors["endpoint"] = "no such endpoint in this team"
    version = fields.get("workload_version")
    if version is not None and team is not None and version.workload.team_id != team.pk:
        errors["workload_version"] = "no such workload in this team"
    if not str(fields.get("model", "")).strip():
        errors["model"] = "the model name sent to the endpoint is required"
    if errors:
        raise CapacityInvalid(errors)
    return cleaned


@transaction.atomic
def capacity_create(*, team: Team, user: AbstractBaseUser | None, **fields) -> CapacitySearch:
    """A pending search and the (managed) load sweep its probes will be steps of."""
    fields = capacity_validate({**fields, "team": team})
    fields.pop("team")
    search = CapacitySearch(team=team, created_by=user, **fields)
    search.is_simulated = search.endpoint.is_simulated
    closed = search.space == CapacitySearch.Space.CONCURRENCY
    search.sweep = LoadSweep.objects.create(
        team=team, name=search.name[:200], endpoint=search.endpoint, model=search.model,
        variant=search.variant, hardware=search.hardware, deployment=search.deployment,
        mode=LoadSweep.Mode.CLOSED if closed else LoadSweep.Mode.OPEN, arrivals=search.arrivals, levels=[],
        step_duration_s=search.probe_duration_s, prompt_tokens=search.prompt_tokens,
        output_tokens=search.output_tokens, ignore_eos=True, seed=search.seed,
        workload_version=search.workload_version, warmup_s=search.warmup_s, shards=search.shards,
        managed_by="capacity", created_by=user,
    )  # fmt: skip
    search.save()
    return search


def _enqueue(search: CapacitySearch) -> None:
    # Only the primary key travels through the queue (never the endpoint or its key).
    transaction.on_commit(
        lambda: job_submit(
            team_id=search.team_id, func="apps.capacity.tasks.capacity_run", args=(search.pk,), group="capacity"
        )
    )


@transaction.atomic
def capacity_start(*, search: CapacitySearch) -> CapacitySearch:
    """Queue a pending search, or resume a failed or cancelled one at the probe it lost (judged probes are
    kept and not run again)."""
    search = CapacitySearch.objects.select_for_update().get(pk=search.pk)
    if search.status in (Status.RUNNING, Status.COMPLETED):
        raise CapacityRefused(f"The search is {search.status}; only a pending, failed or cancelled search can start.")
    # A capacity search meters no cost: refused (BudgetExceeded) only when nothing of a hard budget is left.
    budget_check(team_id=search.team_id, estimate_usd=0.0 if search.is_simulated else None, what="This capacity search")
    search.status, search.error, search.cancel_requested, search.finished_at = Status.PENDING, "", False, None
    search.lease, search.recoveries = "", 0
    search.save(update_fields=["status", "error", "cancel_requested", "finished_at", "lease", "recoveries"])
    LoadSweep.objects.filter(pk=search.sweep_id).update(cancel_requested=False, status=Status.PENDING, error="")
    _enqueue(search)
    return search


@transaction.atomic
def capacity_cancel(*, search: CapacitySearch) -> CapacitySearch:
    """Ask a running search to stop (the probe running stops within half a second and is kept); a pending one
    stops now."""
    search = CapacitySearch.objects.select_for_update().get(pk=search.pk)
    if search.status in FINISHED:
        return search
    search.cancel_requested = True
    fields = ["cancel_requested"]
    if search.status == Status.PENDING:
        search.status, search.finished_at = Status.CANCELLED, timezone.now()
        fields += ["status", "finished_at"]
    search.save(update_fields=fields)
    # The probe in flight watches its sweep's flag.
    LoadSweep.objects.filter(pk=search.sweep_id).update(cancel_requested=True)
    return search


def capacity_delete(*, search: CapacitySearch) -> None:
    """Delete a finished search with its probes; their performance runs stay (they are runs like any other)."""
    if search.status == Status.RUNNING:
        raise CapacityRefused("Cancel the search before deleting it.")
    with transaction.atomic():
        sweep_id = search.sweep_id
        CapacityProbe.objects.filter(search=search).delete()
        search.delete()
        if sweep_id is not None:
            LoadSweepStep.objects.filter(sweep_id=sweep_id).update(run=None)
            LoadSweep.objects.filter(pk=sweep_id).delete()


def searches_recover_stalled() -> int:
    """Pick up running searches whose worker went silent (run every minute): the next task resumes at the probe
    that was lost. After MAX_RECOVERIES pick-ups in a row without a probe stored, the search fails (resumable)."""
    now, count = timezone.now(), 0
    for search in CapacitySearch.objects.filter(status=Status.RUNNING).select_related("sweep"):
        beats = [t for t in (search.heartbeat_at, search.sweep.heartbeat_at if search.sweep else None) if t]
        if beats and now - max(beats) < stall_after():
            continue
        running = CapacitySearch.objects.filter(pk=search.pk, status=Status.RUNNING, lease=search.lease)
        if search.recoveries >= MAX_RECOVERIES:
            running.update(
                status=Status.FAILED, finished_at=now, lease="",
                error=f"The worker running this search stopped {search.recoveries + 1} times in a row; judged probes "
                "are kept. Resume to go on.",
            )  # fmt: skip
        elif running.update(lease="", heartbeat_at=now, recoveries=search.recoveries + 1):
            job_submit(
                team_id=search.team_id, func="apps.capacity.tasks.capacity_run", args=(search.pk, ""), group="capacity"
            )
        LoadSweepStep.objects.filter(sweep_id=search.sweep_id, status=Status.RUNNING).update(status=Status.PENDING)
        count += 1
    return count


def search_actions(status: str) -> dict[str, bool]:
    """What a member may do with a search in `status`; the page and the API agree on it."""
    return {
        "start": status == Status.PENDING,
        "resume": status in (Status.FAILED, Status.CANCELLED),
        "cancel": status in (Status.PENDING, Status.RUNNING),
        "delete": status != Status.RUNNING,
    }


STATUS_LABELS = {
    Status.PENDING: "waiting to start", Status.RUNNING: "searching", Status.COMPLETED: "found",
    Status.FAILED: "failed", Status.CANCELLED: "cancelled",
}  # fmt: skip


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def probe_payload(probe: CapacityProbe) -> dict:
    """One probe as the page's table and chart and the API show it."""
    return {
        "index": probe.index,
        "level": probe.level,
        "trial": probe.trial,
        "phase": probe.phase,
        "verdict": probe.verdict,
        "verdict_label": CapacityProbe.Verdict(probe.verdict).label,
        "run_id": probe.step.run_id,
        "figures": {k: _finite(v) for k, v in probe.figures.items()},
        "judgement": probe.judgement,
    }


def progress_payload(search: CapacitySearch) -> dict:
    """What the live page, the SSE stream and the detail API show, read from the database: the probes judged
    so far, the probe running now with its live figures, the bracket so far and, once found, the answer."""
    probes = list(search.probes.select_related("step").order_by("index"))
    sweep = search.sweep
    running = None
    if search.status == Status.RUNNING and sweep is not None:
        step = sweep.steps.filter(status=Status.RUNNING).order_by("-index").first()
        if step is not None:
            running = {"level": step.level, "trial": step.trial, "live": sweep.progress or {}}
    passed = [p.level for p in probes if p.verdict == CapacityProbe.Verdict.PASS]
    failed = [p.level for p in probes if p.verdict in (CapacityProbe.Verdict.FAIL, CapacityProbe.Verdict.SATURATED,
                                                       CapacityProbe.Verdict.UNDECIDED)]  # fmt: skip
    high = min(failed) if failed else None
    below = [level for level in passed if high is None or level < high]
    return {
        "id": search.pk,
        "status": search.status,
        "status_label": STATUS_LABELS.get(search.status, search.status),
        "phase": search.phase,
        "actions": search_actions(search.status),
        "error": search.error,
        "cancel_requested": search.cancel_requested,
        "unit": search.unit,
        "slo": search.slo,
        "slo_text": describe_slo(search.slo),
        "bracket": {"low": max(below) if below else None, "high": high},
        "probes_used": len(probes),
        "max_probes": search.max_probes,
        "running": running,
        "probes": [probe_payload(p) for p in probes],
        "result": search.result,
    }
