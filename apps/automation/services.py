"""Schedules: create, change, pause, resume and delete them; fire the due ones and settle the runs they started.

Firing (`schedules_fire_due`, each minute from the tick): a due schedule's row is locked (skip-locked on PostgreSQL)
and claimed by moving `next_run_at` on with a compare-and-set update, and the firing's slot is unique per schedule,
so two workers never fire one slot twice. When the schedule's previous run is still pending or running the firing
is recorded as skipped, not as a failure. A run the budget refuses is a failure with the budget's message.

Settling (`scheduled_runs_settle`): a finished run's figures are stored and compared with the previous completed run
of the same schedule (runkinds.run_compare); a regression notifies REGRESSION. A failed run counts towards the
schedule's `max_failures`, after which the schedule pauses itself, says why and notifies SCHEDULE_PAUSED; a completed
run resets the count; a cancelled run does neither.

Locks are always taken schedule first, then its runs, so a firing and a settling never wait on each other in a cycle.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from apps.automation import runkinds
from apps.automation.models import KIND_LABELS, MAX_INTERVAL_MINUTES, Schedule, ScheduledRun
from apps.automation.schedule_times import cron_check, next_fire, when_text, zone
from apps.notifications import events
from apps.notifications.services import notify
from apps.providers.budget import BudgetExceeded
from llmbench.humanize import number_text, p_value_text

logger = logging.getLogger(__name__)

ACTIVE_STATES = frozenset({"pending", "queued", "running"})  # a run in one of these is still going
FIRE_BATCH = 200  # schedules fired per tick at most (the rest are still due next minute)
SETTLE_BATCH = 500  # running scheduled runs looked at per tick at most


# --- create, change, pause, resume, delete ---------------------------------------------------------------------


def timing_clean(*, cron: str, interval_minutes: int | None, timezone_name: str) -> dict[str, Any]:
    """The timing fields checked and normalised; ValidationError naming each bad field (cron, interval_minutes,
    timezone). Exactly one of a cron expression and an interval."""
    errors: dict[str, list[str]] = {}
    cron = (cron or "").strip()
    try:
        zone(timezone_name)
    except ValidationError as exc:
        errors["timezone"] = exc.messages
    if cron and interval_minutes:
        errors["cron"] = ["Give a cron expression or an interval, not both."]
    elif not cron and not interval_minutes:
        errors["cron"] = ["Give a cron expression (e.g. “0 6 * * 1-5”) or an interval in minutes."]
    elif cron:
        try:
            cron = cron_check(cron)
        except ValidationError as exc:
            errors["cron"] = exc.messages
    elif not 1 <= interval_minutes <= MAX_INTERVAL_MINUTES:
        errors["interval_minutes"] = [f"Between 1 and {MAX_INTERVAL_MINUTES} minutes (a year and a day)."]
    if errors:
        raise ValidationError(errors)
    return {"cron": cron, "interval_minutes": None if cron else interval_minutes, "timezone": timezone_name}


def template_check(*, team, kind: str, run_id: int) -> Any:
    """The team's run that a schedule of `kind` repeats; ValidationError naming `run_id` when there is none."""
    if kind not in KIND_LABELS:
        raise ValidationError({"kind": [f"Choose one of: {', '.join(KIND_LABELS)}."]})
    try:
        return runkinds.template_get(team=team, kind=kind, run_id=run_id)
    except (ObjectDoesNotExist, Http404, ValueError, TypeError, OverflowError):
        raise ValidationError({"run_id": [f"No {KIND_LABELS[kind].lower()} #{run_id} in this team."]}) from None


@transaction.atomic
def schedule_create(
    *,
    team,
    user,
    kind: str,
    template_run_id: int,
    cron: str = "",
    interval_minutes: int | None = None,
    timezone_name: str = "UTC",
    name: str = "",
    max_failures: int | None = None,
    alpha: float = 0.05,
    now: datetime | None = None,
) -> Schedule:
    """A new schedule repeating the team's run `kind` #`template_run_id`; its first firing is the next cron time,
    or one interval from now."""
    template_check(team=team, kind=kind, run_id=template_run_id)
    timing = timing_clean(cron=cron, interval_minutes=interval_minutes, timezone_name=timezone_name)
    now = now or timezone.now()
    if not name.strip():
        name = f"{run_title_safe(kind, template_run_id)}, {when_text(**timing)}"[:200]
    schedule = Schedule(
        team=team, name=name.strip(), kind=kind, template_run_id=template_run_id, alpha=alpha, created_by=user,
        **timing,
    )  # fmt: skip
    if max_failures is not None:
        schedule.max_failures = max_failures
    schedule.next_run_at = next_fire(
        cron=schedule.cron, interval_minutes=schedule.interval_minutes, timezone=schedule.timezone, after=now
    )
    schedule.save()
    return schedule


TIMING_FIELDS = ("cron", "interval_minutes", "timezone")
EDITABLE_FIELDS = ("name", "max_failures", "alpha", *TIMING_FIELDS)


@transaction.atomic
def schedule_update(*, schedule: Schedule, now: datetime | None = None, **fields) -> Schedule:
    """Change a schedule's name, timing, failure limit or significance level. New timing moves the next firing."""
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
    if any(name in fields for name in TIMING_FIELDS):
        timing = timing_clean(
            cron=fields.get("cron", schedule.cron),
            interval_minutes=fields.get("interval_minutes", schedule.interval_minutes),
            timezone_name=fields.get("timezone", schedule.timezone),
        )
        changed = any(timing[name] != getattr(schedule, name) for name in TIMING_FIELDS)
        for name, value in timing.items():
            setattr(schedule, name, value)
        if changed:
            schedule.next_run_at = next_fire(
                cron=schedule.cron, interval_minutes=schedule.interval_minutes, timezone=schedule.timezone,
                after=now or timezone.now(),
            )  # fmt: skip
    if fields.get("name") is not None and fields["name"].strip():  # a blank name keeps the one it has
        schedule.name = fields["name"].strip()
    for name in ("max_failures", "alpha"):
        if fields.get(name) is not None:
            setattr(schedule, name, fields[name])
    schedule.save()
    return schedule


@transaction.atomic
def schedule_pause(*, schedule: Schedule, user=None, reason: str = "") -> Schedule:
    """Stop firing until resumed; a run already going finishes and is still compared."""
    schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
    if not schedule.paused:
        who = f" by {user.get_username()}" if user is not None else ""
        schedule.paused = True
        schedule.paused_reason = reason or f"Paused{who} on {timezone.now():%Y-%m-%d %H:%M} UTC."
        schedule.save(update_fields=["paused", "paused_reason", "updated_at"])
    return schedule


@transaction.atomic
def schedule_resume(*, schedule: Schedule, now: datetime | None = None) -> Schedule:
    """Fire again from the next slot after now (missed slots are not caught up); the failure count starts again."""
    schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
    if schedule.paused:
        now = now or timezone.now()
        schedule.paused, schedule.paused_reason, schedule.consecutive_failures = False, "", 0
        schedule.next_run_at = next_fire(
            cron=schedule.cron, interval_minutes=schedule.interval_minutes, timezone=schedule.timezone, after=now
        )
        schedule.save(update_fields=["paused", "paused_reason", "consecutive_failures", "next_run_at", "updated_at"])
    return schedule


@transaction.atomic
def schedule_delete(*, schedule: Schedule) -> None:
    """Delete the schedule and its timeline; the runs it started stay."""
    schedule.delete()


# --- firing ----------------------------------------------------------------------------------------------------


def schedules_fire_due(*, now: datetime | None = None, limit: int = FIRE_BATCH) -> int:
    """Fire every schedule that is due; the number of firings recorded (runs started, skipped or failed)."""
    now = now or timezone.now()
    due = Schedule.objects.filter(paused=False, next_run_at__lte=now).order_by("next_run_at", "id")
    fired = 0
    for schedule_id in list(due.values_list("pk", flat=True)[:limit]):
        try:
            fired += schedule_fire(schedule_id=schedule_id, now=now) is not None
        except Exception:  # one broken schedule must not stop the others; it stays due and is logged each minute
            logger.exception("automation: firing schedule %s failed", schedule_id)
    return fired


def schedule_fire(*, schedule_id: int, now: datetime | None = None) -> ScheduledRun | None:
    """Fire one due schedule: start its run, or record why not. None when it is not due or another worker has it."""
    now = now or timezone.now()
    with transaction.atomic():
        schedule = (
            Schedule.objects.select_for_update(skip_locked=True)
            .filter(pk=schedule_id, paused=False, next_run_at__lte=now)
            .first()
        )
        if schedule is None:
            return None
        due_at = schedule.next_run_at
        following = next_fire(
            cron=schedule.cron, interval_minutes=schedule.interval_minutes, timezone=schedule.timezone,
            after=now, anchor=due_at,
        )  # fmt: skip
        # Compare-and-set: on a database without row locks (SQLite) only one worker moves the slot on.
        claimed = Schedule.objects.filter(pk=schedule.pk, paused=False, next_run_at=due_at).update(
            next_run_at=following, last_fired_at=now
        )
        if not claimed:
            return None
        schedule.next_run_at, schedule.last_fired_at = following, now

        # The previous run may have finished since the last tick: settle it first, then see whether one still runs.
        going = None
        for previous in ScheduledRun.objects.select_for_update().filter(
            schedule=schedule, state=ScheduledRun.State.RUNNING
        ):
            _settle(previous, schedule)
            if previous.state == ScheduledRun.State.RUNNING:
                going = previous
        if schedule.paused:  # settling the previous run paused it (too many failures)
            return None
        if going is not None:
            return _record(
                schedule, due_at, now, state=ScheduledRun.State.SKIPPED,
                reason=f"Skipped: the previous run #{going.run_id} was still running.",
            )  # fmt: skip
        return _start(schedule, due_at, now)


def _start(schedule: Schedule, due_at: datetime, now: datetime) -> ScheduledRun | None:
    label = f"{schedule.kind_label.lower()} #{schedule.template_run_id}"
    try:
        with transaction.atomic():  # a savepoint: whatever a refused start wrote is undone, the record stays
            ref = runkinds.run_repeat(kind=schedule.kind, run_id=schedule.template_run_id, user=schedule.created_by)
    except (ObjectDoesNotExist, Http404):
        reason = f"The run this schedule repeats ({label}) no longer exists."
        run = _record(schedule, due_at, now, state=ScheduledRun.State.FAILED, reason=reason)
        _pause_itself(schedule, run, f"Paused itself: {reason} Create a schedule from another run.")
        return run
    except BudgetExceeded as exc:
        return _failed_to_start(schedule, due_at, now, " ".join(exc.messages))
    except (ValidationError, ValueError) as exc:  # the run kind's own refusals (e.g. a deleted endpoint)
        text = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        return _failed_to_start(schedule, due_at, now, text or "The run could not be started.")
    except Exception:
        logger.exception("automation: repeating %s for schedule %s failed", label, schedule.pk)
        return _failed_to_start(schedule, due_at, now, "The run could not be started (the server log has why).")
    return _record(
        schedule, due_at, now, state=ScheduledRun.State.RUNNING, run_kind=ref.kind, run_id=ref.run_id,
        run_title=run_title_safe(ref.kind, ref.run_id),
    )  # fmt: skip


def _failed_to_start(schedule: Schedule, due_at: datetime, now: datetime, reason: str) -> ScheduledRun | None:
    run = _record(schedule, due_at, now, state=ScheduledRun.State.FAILED, reason=reason)
    _count_failure(schedule, run)
    return run


def _record(schedule: Schedule, due_at: datetime, now: datetime, **fields) -> ScheduledRun | None:
    fields.setdefault("run_kind", schedule.kind)
    finished = fields["state"] != ScheduledRun.State.RUNNING
    try:
        with transaction.atomic():
            return ScheduledRun.objects.create(
                schedule=schedule, due_at=due_at, fired_at=now, settled_at=now if finished else None, **fields
            )
    except IntegrityError:  # this slot is already recorded (cannot happen with the claim above; belt and braces)
        logger.warning("automation: schedule %s slot %s recorded twice", schedule.pk, due_at)
        return None


# --- settling finished runs ------------------------------------------------------------------------------------


def scheduled_runs_settle(*, limit: int = SETTLE_BATCH) -> int:
    """Record the outcome of every scheduled run that finished; the number settled."""
    pending = ScheduledRun.objects.filter(state=ScheduledRun.State.RUNNING).order_by("fired_at", "id")
    settled = 0
    for run_id, schedule_id in list(pending.values_list("pk", "schedule_id")[:limit]):
        try:
            run = scheduled_run_settle(scheduled_run_id=run_id, schedule_id=schedule_id)
            settled += run is not None and run.state != ScheduledRun.State.RUNNING
        except Exception:
            logger.exception("automation: settling scheduled run %s failed", run_id)
    return settled


def scheduled_run_settle(*, scheduled_run_id: int, schedule_id: int) -> ScheduledRun | None:
    """Settle one scheduled run if its run finished. None when another worker holds the schedule."""
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update(skip_locked=True).filter(pk=schedule_id).first()
        if schedule is None:
            return None
        run = ScheduledRun.objects.select_for_update().filter(pk=scheduled_run_id, schedule=schedule).first()
        if run is None or run.state != ScheduledRun.State.RUNNING:
            return run
        _settle(run, schedule)
        return run


def _settle(run: ScheduledRun, schedule: Schedule) -> None:
    """With both rows locked: when the run finished, store its outcome (figures, comparison, failure count)."""
    ref = runkinds.RunRef(kind=run.run_kind, run_id=run.run_id)
    try:
        state = runkinds.run_state(ref)
    except (ObjectDoesNotExist, Http404):
        state, run.reason = "cancelled", f"The run #{run.run_id} was deleted."
    except Exception:  # cannot tell: treat it as still going (logged; the next tick asks again)
        logger.exception("automation: reading the state of %s #%s failed", run.run_kind, run.run_id)
        return
    if state in ACTIVE_STATES:
        return
    run.settled_at = timezone.now()
    if state == "completed":
        _completed(run, schedule, ref)
    elif state == "failed":
        run.state = ScheduledRun.State.FAILED
        run.reason = _safe(lambda: runkinds.run_error(ref), "") or "The run failed."
        run.save()
        _count_failure(schedule, run)
    else:
        run.state = ScheduledRun.State.CANCELLED
        run.reason = run.reason or "The run was cancelled."
        run.save()


def _completed(run: ScheduledRun, schedule: Schedule, ref) -> None:
    run.state = ScheduledRun.State.COMPLETED
    run.figures = _safe(lambda: {name: _plain(figure) for name, figure in runkinds.run_figures(ref).items()}, {})
    baseline = (
        ScheduledRun.objects.filter(schedule=schedule, state=ScheduledRun.State.COMPLETED, fired_at__lte=run.fired_at)
        .exclude(pk=run.pk)
        .exclude(run_id=None)
        .order_by("-fired_at", "-id")
        .first()
    )
    if baseline is not None:
        base_ref = runkinds.RunRef(kind=baseline.run_kind, run_id=baseline.run_id)
        try:
            comparisons = runkinds.run_compare(base_ref, ref, alpha=schedule.alpha)
        except (ObjectDoesNotExist, Http404):
            comparisons, run.reason = [], f"Not compared: the previous run #{baseline.run_id} no longer exists."
        except Exception:
            logger.exception("automation: comparing run %s with %s failed", run.run_id, baseline.run_id)
            comparisons, run.reason = [], "Not compared: the comparison failed (the server log has why)."
        run.baseline_run_id = baseline.run_id
        run.comparison = [_plain(one) for one in comparisons]
        run.regression = any(one.get("verdict") == "regression" for one in run.comparison)
    run.save()
    if schedule.consecutive_failures:
        schedule.consecutive_failures = 0
        schedule.save(update_fields=["consecutive_failures", "updated_at"])
    if run.regression:
        _notify_regression(schedule, run)


def _count_failure(schedule: Schedule, run: ScheduledRun | None) -> None:
    schedule.consecutive_failures += 1
    schedule.save(update_fields=["consecutive_failures", "updated_at"])
    if schedule.consecutive_failures >= schedule.max_failures and not schedule.paused:
        count = schedule.consecutive_failures
        last = run.reason if run is not None else ""
        words = "a failed run" if count == 1 else f"{count} failed runs in a row"
        _pause_itself(schedule, run, f"Paused itself after {words}. The last: {last}".strip())


def _pause_itself(schedule: Schedule, run: ScheduledRun | None, reason: str) -> None:
    schedule.paused, schedule.paused_reason = True, reason
    schedule.save(update_fields=["paused", "paused_reason", "updated_at"])
    facts = {"Schedule": schedule.name, "Failed runs in a row": str(schedule.consecutive_failures)}
    if run is not None and run.reason:
        facts["Last failure"] = run.reason
    moment = run.pk if run is not None else int(timezone.now().timestamp())
    _notify_on_commit(
        team_id=schedule.team_id, event=events.SCHEDULE_PAUSED, title=f"Schedule “{schedule.name}” paused itself",
        text=reason, url=timeline_url(schedule), facts=facts, dedupe_key=f"schedule-paused-{schedule.pk}-{moment}",
    )  # fmt: skip


def _notify_regression(schedule: Schedule, run: ScheduledRun) -> None:
    worse = [one for one in run.comparison if one.get("verdict") == "regression"]
    lines = [comparison_text(one) for one in worse]
    facts = {"Schedule": schedule.name, "Run": run.run_title or f"#{run.run_id}"}
    facts |= {one.get("label") or one.get("name", "figure"): comparison_text(one, label=False) for one in worse}
    _notify_on_commit(
        team_id=schedule.team_id, event=events.REGRESSION,
        title=f"Regression in “{schedule.name}”: {', '.join(one.get('label') or one.get('name', '') for one in worse)}",
        text=f"{run.run_title or 'The run'} is worse than the previous run #{run.baseline_run_id}: " + "; ".join(lines),
        url=timeline_url(schedule), facts=facts, dedupe_key=f"regression-scheduled-run-{run.pk}",
    )  # fmt: skip


def _notify_on_commit(**kwargs) -> None:
    def send() -> None:
        try:
            notify(**kwargs)
        except Exception:  # a notification never undoes what the tick recorded
            logger.exception("automation: notify(%s) failed", kwargs.get("event"))

    transaction.on_commit(send)


# --- words and helpers -----------------------------------------------------------------------------------------


def timeline_url(schedule: Schedule) -> str:
    return settings.SITE_URL + reverse("automation:timeline", args=[schedule.pk])


def comparison_text(one: dict, *, label: bool = True) -> str:
    """“p95 TTFT 412 ms vs 350 ms (Mann-Whitney U, p = 0.003)”."""
    unit = f" {one['unit']}" if one.get("unit") else ""
    text = f"{number_text(one.get('current'))}{unit} vs {number_text(one.get('baseline'))}{unit}"
    test = one.get("test") or ""
    if test or one.get("p_value") is not None:
        text += f" ({test}{', ' if test else ''}p = {p_value_text(one.get('p_value'))})"
    return f"{one.get('label') or one.get('name')} {text}" if label else text


def run_title_safe(kind: str, run_id: int | None) -> str:
    fallback = f"{KIND_LABELS.get(kind, kind)} #{run_id}"
    if run_id is None:
        return ""
    return _safe(lambda: runkinds.run_title(runkinds.RunRef(kind=kind, run_id=run_id)), fallback)[:300] or fallback


def run_url_safe(kind: str, run_id: int | None) -> str:
    if run_id is None:
        return ""
    return _safe(lambda: runkinds.run_url(runkinds.RunRef(kind=kind, run_id=run_id)), "")


def _safe(read, default):
    try:
        return read()
    except Exception:
        logger.exception("automation: reading a run failed")
        return default


def _plain(value) -> dict:
    """A Figure or Comparison as JSON: its fields, non-finite numbers as null (PostgreSQL's jsonb has no NaN)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = dataclasses.asdict(value)
    elif isinstance(value, dict):
        data = dict(value)
    else:
        data = dict(vars(value))
    return {key: None if isinstance(v, float) and not math.isfinite(v) else v for key, v in data.items()}
