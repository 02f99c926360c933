"""The fair queue in front of django-q2 (issue 17, docs/queue.md): every run kind submits its tasks here.

A run's task is stored as a queued Job and handed to django-q2 (as `apps.jobs.tasks.job_run(job_id)`) only while
fewer than JOBS_MAX_RUNNING jobs run in all and fewer than JOBS_TEAM_MAX_RUNNING of its team's; among teams with
room, the one with the fewest jobs running goes first, then the one served least recently, then the one whose next
job has waited longest. One team's
burst therefore waits in its own line while other teams' runs start. Each finished job dispatches again, and so
does an every-minute schedule (migration 0002), so nothing waits forever.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.tasks import async_task
from opentelemetry import trace

from apps.jobs.models import DispatchLock, Job
from llmbench.models import TaskWorker
from llmbench.workers import WORKER_LIVE_S, process_space

logger = logging.getLogger(__name__)

# A job handed out longer ago than the task time limit plus this margin, and not finished, is lost: the sentinel
# has killed its worker (or the broker dropped it). Its run's own recovery queues the work again.
LOST_MARGIN = timedelta(seconds=30)
# Finished and lost jobs are kept this long (the admin lists them), then deleted by the every-minute tick.
KEEP = timedelta(days=7)
RUN_TASK = "apps.jobs.tasks.job_run"


def job_submit(*, team_id: int | None, func: str, args: tuple = (), group: str = "", label: str = "") -> None:
    """Queue `func(*args)` for `team_id`'s run; it starts when the team's turn comes (docs/queue.md).

    Inside a transaction the job is stored with it (and dropped if it rolls back) and dispatched once it commits.
    A job equal to one still waiting (same team, function and arguments) is not queued twice: that one will do it.
    """
    import_string(func)  # a wrong path fails here, in the caller, not later in a worker
    args = list(args)
    key = hashlib.sha256(orjson.dumps([team_id, func, args])).hexdigest()
    if not Job.objects.filter(key=key, state=Job.State.QUEUED).exists():
        Job.objects.create(
            team_id=team_id, func=func, args=args, group=group[:100], key=key,
            label=(label or f"{func.rsplit('.', 1)[-1]}({', '.join(map(str, args))})")[:200],
        )  # fmt: skip
    # robust: the submit is stored whatever happens to this dispatch; the next one (or the tick) hands it out.
    transaction.on_commit(jobs_dispatch, robust=True)


@dataclass
class _Line:
    """One team's waiting jobs, oldest first, as far as the dispatcher may take them."""

    running: int
    served: tuple  # (0,) never handed a job out, else (1, when it last was): the team served least recently first
    jobs: list[tuple[int, str, datetime]]  # (id, group, queued_at)

    def turn(self) -> tuple:
        """Fewest running first, then the team served least recently, then the longest-waiting job."""
        return (self.running, self.served, self.jobs[0][2], self.jobs[0][0])


def _lock() -> None:
    """Serialise dispatchers: a row lock on PostgreSQL; SQLite's IMMEDIATE transactions already hold the write lock."""
    if DispatchLock.objects.select_for_update().filter(pk=1).first() is None:
        DispatchLock.objects.get_or_create(pk=1)  # a flushed table (tests): made again, then locked
        DispatchLock.objects.select_for_update().get(pk=1)


def _running_by_team() -> dict[int | None, int]:
    return dict(Job.objects.filter(state=Job.State.RUNNING).values_list("team_id").annotate(n=Count("id")).order_by())


def jobs_dispatch() -> int:
    """Hand waiting jobs to django-q2 while there is room, teams taken fairly; returns how many were handed out."""
    team_cap, total_cap = settings.JOBS_TEAM_MAX_RUNNING, settings.JOBS_MAX_RUNNING
    with transaction.atomic():
        _lock()
        running = _running_by_team()
        room = total_cap - sum(running.values())
        if room <= 0 and _mark_orphans_lost(timezone.now()):  # full: a killed worker's job must not hold a slot
            running = _running_by_team()
            room = total_cap - sum(running.values())
        if room <= 0:
            return 0
        waiting = Job.objects.filter(state=Job.State.QUEUED).values_list("team_id").annotate(n=Count("id")).order_by()
        lines: dict[int | None, _Line] = {}
        for team_id, _ in waiting:
            take = min(room, team_cap - running.get(team_id, 0))
            if take <= 0:
                continue
            own = Q(team_id=team_id) if team_id is not None else Q(team_id__isnull=True)
            jobs = list(
                Job.objects.filter(own, state=Job.State.QUEUED)
                .order_by("queued_at", "id")
                .values_list("id", "group", "queued_at")[:take]
            )
            last = (
                Job.objects.filter(own, dispatched_at__isnull=False)
                .order_by("-dispatched_at")
                .values_list("dispatched_at", flat=True)
                .first()
            )
            served = (0,) if last is None else (1, last)
            lines[team_id] = _Line(running=running.get(team_id, 0), served=served, jobs=jobs)
        chosen: list[tuple[int, str]] = []
        now = timezone.now()
        while room > 0:
            ready = [line for line in lines.values() if line.jobs]
            if not ready:
                break
            line = min(ready, key=_Line.turn)
            job_id, group, _ = line.jobs.pop(0)
            chosen.append((job_id, group))
            line.running, line.served = line.running + 1, (1, now)
            if line.running >= team_cap:
                line.jobs.clear()
            room -= 1
        if not chosen:
            return 0
        Job.objects.filter(pk__in=[job_id for job_id, _ in chosen]).update(
            state=Job.State.RUNNING, dispatched_at=now, started_at=None, worker=""
        )
        transaction.on_commit(lambda: _hand_over(chosen))
    return len(chosen)


def _hand_over(chosen: list[tuple[int, str]]) -> None:
    """Queue the wrapper of each chosen job; a job the broker refused waits in the queue again."""
    for job_id, group in chosen:
        try:
            async_task(RUN_TASK, job_id, group=group or None)
        except Exception:
            logger.exception("job %s could not be handed to the task broker; it waits for the next dispatch", job_id)
            Job.objects.filter(pk=job_id, state=Job.State.RUNNING, started_at__isnull=True).update(
                state=Job.State.QUEUED, dispatched_at=None
            )


def job_execute(*, job_id: int):
    """Run a handed-out job: mark it running, call its function, mark it done (also when it raises), dispatch.

    A job already done does nothing (a broker may deliver a task twice). A lost job delivered late runs: it
    was never finished (its function is safe to run again, as every run task is)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.state == Job.State.DONE:
            return "already done" if job is not None else "no such job"
        now = timezone.now()
        job.state, job.started_at, job.attempts = Job.State.RUNNING, now, job.attempts + 1
        job.dispatched_at = job.dispatched_at or now
        job.worker = f"{process_space()}:{os.getpid()}"[:300]
        job.save(update_fields=["state", "started_at", "attempts", "dispatched_at", "worker"])
    # The worker's task span (llmbench/task_context.py) is named after the function the job runs, not the wrapper.
    span = trace.get_current_span()
    if span.is_recording():
        span.update_name(f"task {job.func}")
        span.set_attribute("llmbench.job_id", job.pk)
    try:
        result = import_string(job.func)(*job.args)
    except Exception as exc:
        _finish(job.pk, f"{type(exc).__name__}: {exc}")
        raise  # django-q2 records the failure as before; a re-delivery finds the job done
    _finish(job.pk, "")
    return result


def _finish(job_id: int, error: str) -> None:
    Job.objects.filter(pk=job_id).update(state=Job.State.DONE, finished_at=timezone.now(), error=error[:2000])
    try:
        jobs_dispatch()
    except Exception:  # the every-minute tick dispatches again
        logger.exception("dispatching after job %s failed", job_id)


def jobs_mark_lost(*, now: datetime | None = None) -> int:
    """Mark lost the running jobs whose worker is gone or that overran the task time limit; returns how many.

    Their slots go to waiting jobs; the runs' own recovery queues their work again."""
    now = now or timezone.now()
    limit = now - timedelta(seconds=settings.Q_CLUSTER["timeout"]) - LOST_MARGIN
    overran = Job.objects.filter(state=Job.State.RUNNING).filter(
        Q(started_at__lt=limit) | Q(started_at__isnull=True, dispatched_at__lt=limit)
    )
    lost = overran.update(state=Job.State.LOST, finished_at=now, error="Lost: it ran past the task time limit.")
    return lost + _mark_orphans_lost(now)


def _mark_orphans_lost(now: datetime) -> int:
    """Running jobs whose worker process is gone: not alive on this machine, or its beat (llmbench.workers) stale."""
    begun = dict(
        Job.objects.filter(state=Job.State.RUNNING, started_at__isnull=False)
        .exclude(worker="")
        .values_list("pk", "worker")
    )
    if not begun:
        return 0
    here, stale = process_space(), now - timedelta(seconds=WORKER_LIVE_S)
    silent = {f"{h}:{p}" for h, p in TaskWorker.objects.filter(beat_at__lt=stale).values_list("host", "pid")}
    dead = [pk for pk, worker in begun.items() if worker in silent or _gone(here, worker)]
    if not dead:
        return 0
    return Job.objects.filter(pk__in=dead, state=Job.State.RUNNING).update(
        state=Job.State.LOST, finished_at=now, error="Lost: its worker stopped."
    )


def _gone(here: str, worker: str) -> bool:
    """A worker of this machine (and PID namespace) whose process no longer exists."""
    host, _, pid = worker.rpartition(":")
    if host != here or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: it exists
        return False
    return False


def jobs_tick() -> int:
    """Every minute: mark lost jobs, forget old ones, dispatch. Returns how many were handed out."""
    now = timezone.now()
    if lost := jobs_mark_lost(now=now):
        logger.warning("%s job(s) lost: their worker stopped or they overran the task time limit", lost)
    Job.objects.filter(state__in=(Job.State.DONE, Job.State.LOST), queued_at__lt=now - KEEP).delete()
    return jobs_dispatch()
