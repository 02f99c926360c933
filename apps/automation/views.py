"""Schedule pages: the list, a new schedule from a run's page, edit, pause / resume / delete, the timeline (an SVG
chart of a figure per run with the regressions marked, and each firing in words), and a preview of the next
firings while the form is filled in (htmx)."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.models import Membership
from apps.accounts.permissions import team_view
from apps.automation.forms import ScheduleForm
from apps.automation.models import KIND_LABELS, MAX_RUN_ID, Schedule, ScheduledRun
from apps.automation.schedule_times import next_fire, timezone_names, when_text
from apps.automation.selectors import (
    chart_figures,
    list_rows,
    local_text,
    schedule_when,
    schedules_for_list,
    timeline_rows,
    timeline_svg,
    upcoming,
)
from apps.automation.services import (
    run_title_safe,
    run_url_safe,
    schedule_create,
    schedule_delete,
    schedule_pause,
    schedule_resume,
    schedule_update,
    template_check,
    timing_clean,
)

PAGE_SIZE = 50
CHART_RUNS = 200  # the chart draws the latest this many firings


def _team_schedule(request, pk: int) -> Schedule:
    return get_object_or_404(Schedule.objects.select_related("created_by"), pk=pk, team=request.team)


@team_view()
@require_GET
def schedule_list(request):
    """The team's schedules: what each repeats, when, its next firing and its last one."""
    page = Paginator(schedules_for_list(request.team), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "automation/schedule_list.html", {"page": page, "rows": list_rows(page.object_list)})


def _form_context(form, **extra) -> dict:
    return {"form": form, "timezones": timezone_names(), **extra}


@team_view(Membership.Role.MEMBER)
@require_http_methods(["GET", "POST"])
def schedule_new(request):
    """A new schedule repeating the run named by ?kind=…&run=… (the link on each run's page)."""
    source = request.POST if request.method == "POST" else request.GET
    kind, run = source.get("kind", ""), source.get("run", "")
    problems = {}
    if kind not in KIND_LABELS:
        problems["kind"] = "Open a run's page and use “Repeat on a schedule”: the kind of run is missing or unknown."
    if not (run.isascii() and run.isdigit()) or not 1 <= int(run) <= MAX_RUN_ID:
        problems["run"] = "Open a run's page and use “Repeat on a schedule”: the run is missing."
    if problems:
        return render(request, "automation/schedule_form.html", _form_context(None, problems=problems), status=400)
    try:
        template_check(team=request.team, kind=kind, run_id=int(run))
    except ValidationError:
        raise Http404(f"No {KIND_LABELS[kind].lower()} #{run} in this team.") from None
    run_id = int(run)
    form = ScheduleForm(request.POST or None, initial={"timezone": "UTC", "interval_minutes": 1440})
    context = _form_context(
        form, kind=kind, kind_label=KIND_LABELS[kind], run_id=run_id, run_title=run_title_safe(kind, run_id),
        run_url=run_url_safe(kind, run_id),
    )  # fmt: skip
    if request.method == "POST":
        if form.is_valid():
            try:
                schedule = schedule_create(
                    team=request.team, user=request.user, kind=kind, template_run_id=run_id,
                    timezone_name=form.cleaned_data["timezone"], **form.service_kwargs(),
                )  # fmt: skip
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(request, f"Scheduled: {schedule_when(schedule)}, first at "
                                          f"{local_text(schedule.next_run_at, schedule.timezone)}.")  # fmt: skip
                return redirect("automation:timeline", pk=schedule.pk)
        return render(request, "automation/schedule_form.html", context, status=400)
    return render(request, "automation/schedule_form.html", context)


@team_view(Membership.Role.MEMBER)
@require_http_methods(["GET", "POST"])
def schedule_edit(request, pk: int):
    schedule = _team_schedule(request, pk)
    initial = {
        "name": schedule.name, "cron": schedule.cron, "interval_minutes": schedule.interval_minutes,
        "timezone": schedule.timezone, "max_failures": schedule.max_failures, "alpha": schedule.alpha,
    }  # fmt: skip
    form = ScheduleForm(request.POST or None, initial=initial)
    context = _form_context(
        form, schedule=schedule, kind_label=schedule.kind_label, run_id=schedule.template_run_id,
        run_title=run_title_safe(schedule.kind, schedule.template_run_id),
        run_url=run_url_safe(schedule.kind, schedule.template_run_id),
    )  # fmt: skip
    if request.method == "POST":
        if form.is_valid():
            fields = form.service_kwargs() | {"timezone": form.cleaned_data["timezone"]}
            if not fields["name"].strip():
                fields["name"] = schedule.name
            try:
                schedule_update(schedule=schedule, **fields)
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(request, "The schedule is saved.")
                return redirect("automation:timeline", pk=schedule.pk)
        return render(request, "automation/schedule_form.html", context, status=400)
    return render(request, "automation/schedule_form.html", context)


@team_view(Membership.Role.MEMBER)
@require_POST
def schedule_action(request, pk: int, action: str):
    """Pause, resume or delete; back to the page the button was on (the list or the timeline)."""
    schedule = _team_schedule(request, pk)
    if action == "delete":
        schedule_delete(schedule=schedule)
        messages.success(request, f"The schedule “{schedule.name}” is deleted; the runs it started stay.")
        return redirect("automation:list")
    if action == "pause":
        schedule_pause(schedule=schedule, user=request.user)
        messages.success(request, f"“{schedule.name}” is paused; a run already going finishes.")
    else:
        schedule = schedule_resume(schedule=schedule)
        messages.success(request, f"“{schedule.name}” is running again; next at "
                                  f"{local_text(schedule.next_run_at, schedule.timezone)}.")  # fmt: skip
    if request.POST.get("from") == "list":
        return redirect("automation:list")
    return redirect("automation:timeline", pk=schedule.pk)


@team_view()
@require_GET
def schedule_timeline(request, pk: int):
    """The schedule's history: the chart of one figure per run (regressions marked) and each firing in words;
    the table filters by state through htmx (the `runs` partial)."""
    schedule = _team_schedule(request, pk)
    state = request.GET.get("state", "")
    if state and state not in ScheduledRun.State.values:
        state_error = "Choose a state from the list."
        rows_qs = ScheduledRun.objects.none()
    else:
        state_error = ""
        rows_qs = schedule.runs.all() if not state else schedule.runs.filter(state=state)
    page = Paginator(rows_qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "schedule": schedule, "page": page, "rows": timeline_rows(schedule, page.object_list), "state": state,
        "states": ScheduledRun.State.choices, "state_error": state_error, "upcoming": upcoming(schedule),
    }  # fmt: skip
    status = 400 if state_error else 200
    if request.htmx and request.htmx.target == "runs":
        return render(request, "automation/schedule_timeline.html#runs", context, status=status)
    recent = list(schedule.runs.all()[:CHART_RUNS])
    figures = chart_figures(recent)
    figure = request.GET.get("figure") or (figures[0][0] if figures else "")
    if figures and figure not in dict(figures):
        figure = figures[0][0]
    context |= {
        "when": schedule_when(schedule),
        "run_title": run_title_safe(schedule.kind, schedule.template_run_id),
        "run_url": run_url_safe(schedule.kind, schedule.template_run_id),
        "figures": figures, "figure": figure,
        # llmbench.svg quotes every attribute and escapes every text it draws
        "chart": mark_safe(timeline_svg(schedule, recent, figure)) if figures else "",
        "regressions": sum(1 for run in recent if run.regression),
    }  # fmt: skip
    return render(request, "automation/schedule_timeline.html", context, status=status)


@team_view(Membership.Role.MEMBER)
@require_GET
def schedule_preview(request):
    """The next three firings for the timing typed so far (the form's preview, fetched by htmx)."""
    try:
        interval = request.GET.get("interval_minutes", "").strip()
        timing = timing_clean(
            cron=request.GET.get("cron", ""), interval_minutes=int(interval) if interval.isascii() and interval.isdigit() else None,
            timezone_name=request.GET.get("timezone", "UTC").strip() or "UTC",
        )  # fmt: skip
    except ValidationError as exc:
        problems = [message for messages_ in exc.message_dict.values() for message in messages_]
        return render(request, "automation/partials/_preview.html", {"problems": problems})
    now, times = timezone.now(), []
    for _ in range(3):
        now = next_fire(
            cron=timing["cron"], interval_minutes=timing["interval_minutes"], timezone=timing["timezone"], after=now,
        )  # fmt: skip
        times.append(local_text(now, timing["timezone"]))
    return render(request, "automation/partials/_preview.html", {"when": when_text(**timing), "times": times})
