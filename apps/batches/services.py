"""Load sweep operations: create, start, cancel, resume, and the progress every client sees."""

from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from apps.accounts.models import Team
from apps.batches.models import FINISHED, LoadSweep, LoadSweepStep, Status

# A running sweep writes a heartbeat at least this often; one silent for STALL_AFTER lost its worker.
HEARTBEAT_S = 1.0
STALL_AFTER = timedelta(seconds=60)


@transaction.atomic
def sweep_create(*, team: Team, user: AbstractBaseUser | None, **fields) -> LoadSweep:
    """A pending sweep with one step per level, in the order given."""
    sweep = LoadSweep.objects.create(team=team, created_by=user, **fields)
    LoadSweepStep.objects.bulk_create(
        LoadSweepStep(sweep=sweep, index=i, level=float(level)) for i, level in enumerate(sweep.levels)
    )
    return sweep


def _enqueue(sweep: LoadSweep) -> None:
    # Only the primary key travels through the queue (never the endpoint or its key).
    transaction.on_commit(lambda: async_task("apps.batches.tasks.load_sweep_run", sweep.pk, group="load-sweeps"))


@transaction.atomic
def sweep_start(*, sweep: LoadSweep) -> LoadSweep:
    """Queue a pending (or failed, resumable) sweep; its finished steps are kept and not rerun."""
    sweep = LoadSweep.objects.select_for_update().get(pk=sweep.pk)
    if sweep.status == Status.RUNNING or sweep.status in (Status.COMPLETED, Status.CANCELLED):
        raise ValueError(f"The sweep is {sweep.status}; only a pending or failed sweep can start.")
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
    stalled = LoadSweep.objects.filter(status=Status.RUNNING, heartbeat_at__lt=timezone.now() - STALL_AFTER)
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


def progress_payload(sweep: LoadSweep) -> dict:
    """What the live page, the SSE stream and the status endpoint show: read from the database,
    so a page opened late or reconnecting shows the truth."""
    steps = list(sweep.steps.select_related("run__summary"))
    stalled = (
        sweep.status == Status.RUNNING
        and sweep.heartbeat_at is not None
        and timezone.now() - sweep.heartbeat_at > STALL_AFTER
    )
    return {
        "id": sweep.pk,
        "status": sweep.status,
        "stalled": stalled,
        "error": sweep.error,
        "cancel_requested": sweep.cancel_requested,
        "current_step": sweep.current_step,
        "steps_done": sum(s.status == Status.COMPLETED for s in steps),
        "steps_total": len(steps),
        "live": sweep.progress,
        "steps": [
            {
                "index": s.index,
                "level": s.level,
                "status": s.status,
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
