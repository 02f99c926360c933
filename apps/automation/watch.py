"""Run events for every run of every kind (issue 17): finished, failed, error rate over the threshold.

The schedules' every-minute tick calls `runs_watch()`. Each call reads, per run kind, the runs that finished since
the last look (at most a day back, with a few minutes of overlap for transactions that committed late) and the runs
still running, in one query per kind, and their error counts in one aggregate query per kind. Each event is sent
once: notify's dedupe key (`run-<kind>-<id>-<status>-<finished at>`, `error-rate-<kind>-<id>`), and keys already
in the event log are skipped before notify is called, so a run is looked at every minute for a day without sending
anything again.

* completed → RUN_FINISHED ("… finished", with its headline figure); cancelled by a person → RUN_FINISHED
  ("… was cancelled"); failed, or cancelled with a reason (a budget stop) → RUN_FAILED with the run's error.
* ERROR_RATE when the share of failed requests is over NOTIFY_ERROR_RATE_THRESHOLD (default 0.05): for a finished
  run at any count, for a running one once it has made ERROR_RATE_MIN_REQUESTS requests (a first failure out of
  three is no alarm). Once per run.

A failed run that is resumed and fails again is told again: its end has another time, so another key. The error
rate is told once per run, resumes included.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from apps.automation.runkinds import (
    KIND_LABELS,
    KINDS,
    RunRef,
    error_counts,
    run_figures,
    run_title,
    run_url,
    runs_queryset,
)
from apps.notifications import events
from apps.notifications.services import notify
from llmbench.humanize import duration_text

logger = logging.getLogger(__name__)

LOOK_BACK = timedelta(days=1)
OVERLAP = timedelta(minutes=10)  # a run's finished_at is set before its transaction commits
LAST_LOOK_KEY = "automation:runs_watch:last_look"
ERROR_RATE_MIN_REQUESTS = 20
DEFAULT_ERROR_RATE_THRESHOLD = 0.05


def error_rate_threshold() -> float:
    """NOTIFY_ERROR_RATE_THRESHOLD (a share, 0.05 = 5%)."""
    return float(getattr(settings, "NOTIFY_ERROR_RATE_THRESHOLD", DEFAULT_ERROR_RATE_THRESHOLD))


def finished_key(kind: str, run_id: int, status: str, finished_at: datetime | None) -> str:
    """One key per end of a run: a resumed run that ends again is another event."""
    moment = f"-{finished_at:%Y%m%dT%H%M%S.%f}" if finished_at else ""
    return f"run-{kind}-{run_id}-{status}{moment}"


def error_rate_key(kind: str, run_id: int) -> str:
    return f"error-rate-{kind}-{run_id}"


def _told(team_keys: list[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which (team, dedupe key) the event log holds already."""
    from apps.notifications.models import Event

    if not team_keys:
        return set()
    rows = Event.objects.filter(team_id__in={t for t, _ in team_keys}, dedupe_key__in={k for _, k in team_keys})
    return set(rows.values_list("team_id", "dedupe_key"))


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if not unit:  # a share
        return f"{value:.1%}" if value <= 1 else f"{value:,.3g}"
    return f"{value:,.4g} {unit}"


def _headline(ref: RunRef) -> tuple[str, str] | None:
    """(label, "0.93 (95% CI 0.88–0.96)") of the run's headline figure; None when it has none."""
    try:
        figure = next(iter(run_figures(ref).values()), None)
    except Exception:  # a figure that cannot be read must not keep the event from being sent
        logger.exception("runs_watch: the figures of %s %s", ref.kind, ref.run_id)
        return None
    if figure is None or figure.value is None:
        return None
    text = _number(figure.value, figure.unit)
    if figure.ci_low is not None and figure.ci_high is not None:
        text += f" (95% CI {_number(figure.ci_low, figure.unit)} – {_number(figure.ci_high, figure.unit)})"
    return figure.label, text


def _finished_event(kind: str, row: dict, counts: tuple[int, int] | None) -> dict:
    """The notify() arguments of a run that ended."""
    ref = RunRef(kind, row["pk"])
    status, error = row["status"], (row["error"] or "").strip()
    failed = status == "failed" or (status == "cancelled" and error)
    title = run_title(ref)
    started, finished = row["started_at"], row["finished_at"]
    took = (finished - started).total_seconds() if started and finished else None
    facts = {"Run": KIND_LABELS[kind], "Status": status, "Duration": duration_text(took)}
    if counts:
        facts["Error rate"] = f"{counts[0] / counts[1]:.1%} of {counts[1]:,} requests"
    if failed:
        event, title = events.RUN_FAILED, f"{title} {'failed' if status == 'failed' else 'stopped'}"
        text = error or "The run failed without saying why."
    elif status == "cancelled":
        event, title, text = events.RUN_FINISHED, f"{title} was cancelled", "What finished before the cancel is kept."
    else:
        event, title = events.RUN_FINISHED, f"{title} finished"
        text = f"Completed in {duration_text(took)}."
        headline = _headline(ref)
        if headline:
            facts[headline[0]] = headline[1]
            text += f" {headline[0]}: {headline[1]}."
    return {"team_id": row["team_id"], "event": event, "title": title, "text": text, "url": run_url(ref),
            "facts": facts, "dedupe_key": finished_key(kind, row["pk"], status, finished)}  # fmt: skip


def _error_rate_event(kind: str, row: dict, counts: tuple[int, int], threshold: float) -> dict:
    ref = RunRef(kind, row["pk"])
    failed, total = counts
    running = row["status"] not in ("completed", "failed", "cancelled")
    text = (f"{failed:,} of {total:,} requests failed ({failed / total:.1%}), over the team's threshold of "
            f"{threshold:.1%}{' so far' if running else ''}.")  # fmt: skip
    return {"team_id": row["team_id"], "event": events.ERROR_RATE, "title": f"{run_title(ref)}: {failed / total:.1%} errors",
            "text": text, "url": run_url(ref),
            "facts": {"Run": KIND_LABELS[kind], "Status": row["status"], "Failed requests": f"{failed:,}",
                      "Requests": f"{total:,}", "Threshold": f"{threshold:.1%}"},
            "dedupe_key": error_rate_key(kind, row["pk"])}  # fmt: skip


def _send(arguments: dict) -> bool:
    try:
        notify(**arguments)
    except Exception:  # one event that cannot be stored must not keep the others from being sent
        logger.exception("runs_watch: notify %s", arguments.get("dedupe_key"))
        return False
    return True


def runs_watch() -> int:
    """Notify the events of runs that finished since the last look (each once: notify's dedupe key) and of running
    runs over the error-rate threshold; the count sent."""
    from django.db.models import Q

    now = timezone.now()
    last_look = cache.get(LAST_LOOK_KEY)
    since = now - LOOK_BACK
    if last_look is not None:
        since = max(since, last_look - OVERLAP)
    threshold = error_rate_threshold()
    sent = 0
    for kind in KINDS:
        rows = list(
            runs_queryset(kind)
            .filter(Q(status="running") | Q(finished_at__gte=since, status__in=("completed", "failed", "cancelled")))
            .order_by("finished_at", "pk")
            .values("pk", "team_id", "status", "error", "started_at", "finished_at")
        )
        if not rows:
            continue
        counts = error_counts(kind, [row["pk"] for row in rows])
        wanted: list[dict] = []
        for row in rows:
            found = counts.get(row["pk"])
            running = row["status"] == "running"
            if not running:
                wanted.append(
                    {
                        "kind": "finished",
                        "row": row,
                        "key": finished_key(kind, row["pk"], row["status"], row["finished_at"]),
                    }
                )
            if found and found[0] / found[1] > threshold and (not running or found[1] >= ERROR_RATE_MIN_REQUESTS):
                wanted.append({"kind": "error_rate", "row": row, "key": error_rate_key(kind, row["pk"])})
        told = _told([(w["row"]["team_id"], w["key"]) for w in wanted])
        for w in wanted:
            row = w["row"]
            if (row["team_id"], w["key"]) in told:
                continue
            if w["kind"] == "finished":
                arguments = _finished_event(kind, row, counts.get(row["pk"]))
            else:
                arguments = _error_rate_event(kind, row, counts[row["pk"]], threshold)
            sent += _send(arguments)
    cache.set(LAST_LOOK_KEY, now, timeout=int(LOOK_BACK.total_seconds()) * 2)
    return sent
