"""What the schedule pages show: the list with each schedule's last firing, the timeline rows in words and the
chart's points."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery

from apps.automation.charts import TimelinePoint, timeline_chart
from apps.automation.models import Schedule, ScheduledRun
from apps.automation.schedule_times import cron_next, interval_next, when_text, zone
from apps.automation.services import comparison_text, run_title_safe, run_url_safe
from llmbench.humanize import number_text

VERDICT_WORDS = {
    "regression": "worse",
    "improvement": "better",
    "no change": "no significant change",
    "no data": "not enough data",
}


def schedules_for_list(team) -> QuerySet[Schedule]:
    """The team's schedules with their last firing's state and time and their count of regressions."""
    last = ScheduledRun.objects.filter(schedule=OuterRef("pk")).order_by("-fired_at", "-id")
    return (
        Schedule.objects.filter(team=team)
        .annotate(
            last_state=Subquery(last.values("state")[:1]),
            last_run_at=Subquery(last.values("fired_at")[:1]),
            regressions=Count("runs", filter=Q(runs__regression=True)),
        )
        .order_by("name", "id")
    )


def local_text(moment: datetime | None, timezone_name: str) -> str:
    """A time on the schedule's clock: “2026-12-05 06:00 CET”; an en dash when there is none."""
    if moment is None:
        return "–"
    try:
        local = moment.astimezone(zone(timezone_name))
    except Exception:
        local = moment
    return local.strftime("%Y-%m-%d %H:%M %Z").strip()


def schedule_when(schedule: Schedule) -> str:
    return when_text(cron=schedule.cron, interval_minutes=schedule.interval_minutes, timezone=schedule.timezone)


def upcoming(schedule: Schedule, count: int = 3) -> list[str]:
    """The next firings on the schedule's clock (none while paused)."""
    if schedule.paused or schedule.next_run_at is None:
        return []
    times = [schedule.next_run_at]
    if schedule.cron:
        times += cron_next(schedule.cron, schedule.timezone, schedule.next_run_at, count - 1)
    else:
        for _ in range(count - 1):
            times.append(interval_next(anchor=times[-1], minutes=schedule.interval_minutes, after=times[-1]))
    return [local_text(moment, schedule.timezone) for moment in times]


def list_rows(schedules) -> list[dict]:
    return [
        {
            "schedule": s,
            "when": schedule_when(s),
            "next": "paused" if s.paused else local_text(s.next_run_at, s.timezone),
            "run_title": run_title_safe(s.kind, s.template_run_id),
            "run_url": run_url_safe(s.kind, s.template_run_id),
            "last": ScheduledRun.State(s.last_state).label if s.last_state else "",
            "last_at": local_text(s.last_run_at, s.timezone) if s.last_run_at else "",
        }
        for s in schedules
    ]


def figure_text(figure: dict) -> str:
    """“0.92 [0.88, 0.95]” or “412 ms”."""
    unit = f" {figure['unit']}" if figure.get("unit") else ""
    text = f"{number_text(figure.get('value'))}{unit}"
    if figure.get("ci_low") is not None and figure.get("ci_high") is not None:
        text += f" [{number_text(figure['ci_low'])}, {number_text(figure['ci_high'])}]"
    return text


def timeline_rows(schedule: Schedule, runs) -> list[dict]:
    """Each firing in words: when, the run (title and link), its state, why (skipped, failed), and each figure
    against the previous completed run with the verdict."""
    rows = []
    for run in runs:
        comparisons = [
            {
                "label": one.get("label") or one.get("name", ""),
                "text": comparison_text(one, label=False),
                "verdict": one.get("verdict", "no data"),
                "verdict_words": VERDICT_WORDS.get(one.get("verdict", ""), one.get("verdict", "")),
            }
            for one in run.comparison or []
        ]
        figures = [
            {"label": figure.get("label") or name, "text": figure_text(figure)}
            for name, figure in (run.figures or {}).items()
        ]
        rows.append({
            "run": run,
            "when": local_text(run.fired_at, schedule.timezone),
            "title": run.run_title or (f"#{run.run_id}" if run.run_id else ""),
            "url": run_url_safe(run.run_kind, run.run_id),
            "state": run.get_state_display(),
            "comparisons": comparisons,
            "figures": [] if comparisons else figures,
            "first": run.state == ScheduledRun.State.COMPLETED and run.baseline_run_id is None,
        })  # fmt: skip
    return rows


def chart_figures(runs: list[ScheduledRun]) -> list[tuple[str, str]]:
    """The figures the completed runs have, (name, label), in the order of the latest run's figures first."""
    seen: dict[str, str] = {}
    for run in runs:
        for name, figure in (run.figures or {}).items():
            seen.setdefault(name, figure.get("label") or name)
    return list(seen.items())


def timeline_svg(schedule: Schedule, runs: list[ScheduledRun], figure: str) -> str:
    """The chart of `figure` over the completed runs, oldest first, regressions of that figure marked."""
    points, label, unit = [], figure, ""
    for run in sorted(runs, key=lambda r: (r.fired_at, r.pk)):
        data = (run.figures or {}).get(figure)
        if run.state != ScheduledRun.State.COMPLETED or not data:
            continue
        label, unit = data.get("label") or figure, data.get("unit") or ""
        worse = any(c.get("name") == figure and c.get("verdict") == "regression" for c in run.comparison or [])
        moment = run.fired_at.astimezone(zone(schedule.timezone))
        points.append(TimelinePoint(moment, data.get("value"), data.get("ci_low"), data.get("ci_high"), worse,
                                    run.run_id))  # fmt: skip
    return timeline_chart(points, label=label, unit=unit)
