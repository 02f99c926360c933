"""The every-minute tick: due schedules fire (cron in the schedule's zone, intervals keep their cadence), an overlap
is skipped, finished runs are compared with the previous one, failures pause the schedule and notify."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from apps.automation import services, tasks, watch
from apps.automation.models import Schedule, ScheduledRun
from apps.automation.services import (
    schedule_create,
    schedule_fire,
    schedule_resume,
    scheduled_runs_settle,
    schedules_fire_due,
)
from apps.notifications import events
from apps.providers.budget import BudgetExceeded
from tests.automation.fakes import FakeKinds, latest

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 6, 1, 6, 0, tzinfo=UTC)  # summer: Paris is UTC+2


@pytest.fixture
def kinds(monkeypatch):
    return FakeKinds.install(monkeypatch)


@pytest.fixture
def sent(monkeypatch):
    """What notify was called with (each call's keyword arguments), after the transaction committed."""
    calls = []
    monkeypatch.setattr(services, "notify", lambda **kwargs: calls.append(kwargs))
    return calls


def hourly(team, kinds, user=None, **fields):
    run_id = kinds.add(team)
    fields = {"interval_minutes": 60, "now": T0} | fields
    return schedule_create(team=team, user=user, kind="experiment", template_run_id=run_id, **fields)


def fire(schedule, now):
    return schedule_fire(schedule_id=schedule.pk, now=now)


def test_a_cron_schedule_fires_on_its_time_zones_clock(team, kinds):
    """“0 9 * * *” in Europe/Paris is 07:00 UTC in June and 08:00 UTC in December."""
    summer = hourly(team, kinds, interval_minutes=None, cron="0 9 * * *", timezone_name="Europe/Paris")
    assert summer.next_run_at == datetime(2026, 6, 1, 7, 0, tzinfo=UTC)
    winter = hourly(team, kinds, interval_minutes=None, cron="0 9 * * *", timezone_name="Europe/Paris",
                    now=datetime(2026, 12, 1, 6, 0, tzinfo=UTC))  # fmt: skip
    assert winter.next_run_at == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_a_due_schedule_starts_a_repeat_of_its_run_as_its_creator(team, member, kinds):
    """The firing copies the template run as the schedule's creator, records it running and moves on a slot."""
    schedule = hourly(team, kinds, user=member)
    assert schedules_fire_due(now=T0 + timedelta(minutes=59)) == 0
    assert schedules_fire_due(now=T0 + timedelta(minutes=60, seconds=20)) == 1
    run = latest(schedule)
    assert run.state == "running" and run.run_kind == "experiment" and kinds.runs[run.run_id].copied_from
    assert kinds.repeats == [{"kind": "experiment", "run_id": schedule.template_run_id, "user": member}]
    assert run.run_title == f"Nightly check #{run.run_id}" and run.due_at == T0 + timedelta(hours=1)
    schedule.refresh_from_db()
    assert schedule.next_run_at == T0 + timedelta(hours=2) and schedule.last_fired_at == T0 + timedelta(
        minutes=60, seconds=20
    )


def test_a_slot_fires_once_however_often_it_is_asked(team, kinds):
    """A second firing of the same slot (another worker, a late tick) finds it claimed and does nothing."""
    schedule = hourly(team, kinds)
    now = T0 + timedelta(hours=1)
    assert fire(schedule, now) is not None
    assert fire(schedule, now) is None and schedules_fire_due(now=now) == 0
    assert ScheduledRun.objects.filter(schedule=schedule).count() == 1 and len(kinds.repeats) == 1


def test_an_interval_schedule_down_for_hours_fires_once_and_keeps_its_cadence(team, kinds):
    """Missed slots are not caught up: one firing, and the next slot on the original cadence."""
    schedule = hourly(team, kinds)
    fire(schedule, T0 + timedelta(hours=3, minutes=30))
    schedule.refresh_from_db()
    assert ScheduledRun.objects.count() == 1 and schedule.next_run_at == T0 + timedelta(hours=4)


def test_a_firing_while_the_previous_run_still_runs_is_skipped_not_failed(team, kinds):
    """Overlap: recorded as skipped with the run's number, no run started, the failure count untouched."""
    schedule = hourly(team, kinds)
    first = fire(schedule, T0 + timedelta(hours=1))
    kinds.runs[first.run_id].state = "running"
    skipped = fire(schedule, T0 + timedelta(hours=2))
    assert skipped.state == "skipped" and skipped.run_id is None
    assert skipped.reason == f"Skipped: the previous run #{first.run_id} was still running."
    schedule.refresh_from_db()
    assert schedule.consecutive_failures == 0 and not schedule.paused and len(kinds.repeats) == 1


def test_a_previous_run_that_finished_since_the_last_tick_does_not_block_the_next(team, kinds):
    """The firing settles the previous run first: it completed, so the next run starts."""
    schedule = hourly(team, kinds)
    first = fire(schedule, T0 + timedelta(hours=1))
    kinds.finish(first)
    second = fire(schedule, T0 + timedelta(hours=2))
    first.refresh_from_db()
    assert first.state == "completed" and second.state == "running" and len(kinds.repeats) == 2


def test_a_finished_run_is_compared_with_the_previous_completed_one(
    team, kinds, sent, django_capture_on_commit_callbacks
):
    """Figures stored; the second run's comparison has each figure, its test and p-value; no regression, no event."""
    schedule = hourly(team, kinds)
    first = fire(schedule, T0 + timedelta(hours=1))
    kinds.finish(first)
    assert scheduled_runs_settle() == 1
    first.refresh_from_db()
    assert first.figures["pass_rate"]["value"] == 0.9 and first.comparison == [] and first.baseline_run_id is None
    second = fire(schedule, T0 + timedelta(hours=2))
    kinds.finish(second)
    with django_capture_on_commit_callbacks(execute=True):
        scheduled_runs_settle()
    second.refresh_from_db()
    assert second.baseline_run_id == first.run_id and not second.regression
    assert [(c["name"], c["verdict"], c["test"]) for c in second.comparison] == [
        ("pass_rate", "no change", "two-proportion z-test"), ("p95_ttft_ms", "no change", "Mann-Whitney U"),
    ]  # fmt: skip
    assert second.figures["p95_ttft_ms"] == {"name": "p95_ttft_ms", "label": "p95 TTFT", "value": 350.0, "unit": "ms",
                                              "ci_low": None, "ci_high": None, "n": 100, "higher_is_better": False}  # fmt: skip
    assert sent == []


def test_a_regression_is_flagged_and_notified_once(team, kinds, sent, django_capture_on_commit_callbacks):
    """A pass rate down from 0.9 to 0.6: the run is a regression and the team hears of it with the figures."""
    schedule = hourly(team, kinds, name="Nightly quality")
    first = fire(schedule, T0 + timedelta(hours=1))
    kinds.finish(first)
    scheduled_runs_settle()
    kinds.next_value = 0.6
    second = fire(schedule, T0 + timedelta(hours=2))
    kinds.finish(second)
    with django_capture_on_commit_callbacks(execute=True):
        scheduled_runs_settle()
        scheduled_runs_settle()  # already settled: nothing more
    second.refresh_from_db()
    assert second.regression and second.state == "completed"
    assert len(sent) == 1
    event = sent[0]
    assert event["event"] == events.REGRESSION and event["team_id"] == team.pk
    assert event["dedupe_key"] == f"regression-scheduled-run-{second.pk}"
    assert event["title"] == "Regression in “Nightly quality”: Pass rate"
    assert "Pass rate 0.600 vs 0.900 (two-proportion z-test, p = 0.001)" in event["text"]
    assert event["url"].endswith(f"/automation/schedules/{schedule.pk}/") and event["facts"]["Run"] == second.run_title


def test_failures_in_a_row_pause_the_schedule_which_says_why(team, kinds, sent, django_capture_on_commit_callbacks):
    """Three failed runs (the default limit): paused with the last error, SCHEDULE_PAUSED sent, no more firings."""
    schedule = hourly(team, kinds, name="Nightly")
    assert schedule.max_failures == 3
    with django_capture_on_commit_callbacks(execute=True):
        for hour in (1, 2, 3):
            run = fire(schedule, T0 + timedelta(hours=hour))
            kinds.finish(run, "failed", error=f"Endpoint refused the key ({hour})")
            scheduled_runs_settle()
    schedule.refresh_from_db()
    assert schedule.paused and schedule.consecutive_failures == 3
    assert (
        schedule.paused_reason == "Paused itself after 3 failed runs in a row. The last: Endpoint refused the key (3)"
    )
    assert [e["event"] for e in sent] == [events.SCHEDULE_PAUSED]
    assert sent[0]["title"] == "Schedule “Nightly” paused itself" and sent[0]["facts"]["Failed runs in a row"] == "3"
    assert schedules_fire_due(now=T0 + timedelta(hours=9)) == 0


def test_a_completed_run_resets_the_failure_count_and_a_cancelled_one_counts_for_nothing(team, kinds):
    """fail, cancel, complete: 1, 1, 0."""
    schedule = hourly(team, kinds)
    counts = []
    for hour, state in ((1, "failed"), (2, "cancelled"), (3, "completed")):
        kinds.finish(fire(schedule, T0 + timedelta(hours=hour)), state)
        scheduled_runs_settle()
        schedule.refresh_from_db()
        counts.append(schedule.consecutive_failures)
    assert counts == [1, 1, 0]
    assert list(ScheduledRun.objects.order_by("fired_at").values_list("state", flat=True)) == [
        "failed", "cancelled", "completed",
    ]  # fmt: skip


def test_a_run_the_budget_refuses_is_a_failure_with_the_budgets_words(team, kinds):
    """BudgetExceeded at firing: a failed firing with its message, counted towards the pause."""
    schedule = hourly(team, kinds)
    kinds.refuse = BudgetExceeded("Estimated $4.20, $3.10 left of the $50.00 monthly budget.")
    run = fire(schedule, T0 + timedelta(hours=1))
    schedule.refresh_from_db()
    assert run.state == "failed" and run.run_id is None
    assert run.reason == "Estimated $4.20, $3.10 left of the $50.00 monthly budget."
    assert schedule.consecutive_failures == 1 and not schedule.paused


def test_a_refusal_of_the_run_kind_is_a_failure_and_an_unexpected_error_too(team, kinds):
    """A ValidationError/ValueError from run_repeat: its message; anything else: a plain sentence, logged."""
    schedule = hourly(team, kinds)
    kinds.refuse = ValidationError("The endpoint of this run was deleted.")
    assert fire(schedule, T0 + timedelta(hours=1)).reason == "The endpoint of this run was deleted."
    kinds.refuse = RuntimeError("boom")
    assert fire(schedule, T0 + timedelta(hours=2)).reason == "The run could not be started (the server log has why)."


def test_a_schedule_whose_run_was_deleted_pauses_at_once(team, kinds, sent, django_capture_on_commit_callbacks):
    """The template run is gone: nothing can ever start, so the first failure pauses it and says so."""
    schedule = hourly(team, kinds)
    del kinds.runs[schedule.template_run_id]
    with django_capture_on_commit_callbacks(execute=True):
        run = fire(schedule, T0 + timedelta(hours=1))
    schedule.refresh_from_db()
    assert run.state == "failed" and schedule.paused
    assert f"(experiment #{schedule.template_run_id}) no longer exists" in schedule.paused_reason
    assert [e["event"] for e in sent] == [events.SCHEDULE_PAUSED]


def test_resuming_starts_counting_again_from_the_next_slot_after_now(team, kinds):
    """Resume clears the reason and the count and does not fire the slots missed while paused."""
    schedule = hourly(team, kinds)
    Schedule.objects.filter(pk=schedule.pk).update(paused=True, paused_reason="x", consecutive_failures=3)
    schedule = schedule_resume(schedule=schedule, now=T0 + timedelta(hours=5, minutes=10))
    assert not schedule.paused and schedule.paused_reason == "" and schedule.consecutive_failures == 0
    assert schedule.next_run_at == T0 + timedelta(hours=6, minutes=10)


def test_the_tick_settles_fires_watches_and_calls_the_hooks_even_when_one_step_fails(team, kinds, monkeypatch):
    """One step raising is logged; the others still run; the result says what each did."""
    schedule = hourly(team, kinds)
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=T0)  # due now, whatever the clock says

    def broken():
        raise RuntimeError("watch is down")

    calls = []
    monkeypatch.setattr(watch, "runs_watch", broken)
    monkeypatch.setattr(tasks, "_HOOKS", {})
    tasks.tick_hook_register("gates", lambda: calls.append("gates") or 2)
    assert tasks.automation_tick() == {"settled": 0, "fired": 1, "run_events": "error", "gates": 2}
    assert calls == ["gates"] and latest(schedule).state == "running"


def test_the_migration_schedules_the_tick_every_minute(db):
    """A django-q2 schedule calls automation_tick every minute, for ever."""
    from django_q.models import Schedule as QSchedule

    tick = QSchedule.objects.get(name="llmbench: automation tick")
    assert (tick.func, tick.schedule_type, tick.minutes, tick.repeats) == (
        "apps.automation.tasks.automation_tick", QSchedule.MINUTES, 1, -1,
    )  # fmt: skip


def test_a_run_whose_state_cannot_be_read_stays_running_and_is_asked_again(team, kinds, monkeypatch):
    """An error reading the run is logged and changes nothing; the next settle, with the run readable, settles it."""
    schedule = hourly(team, kinds)
    run = fire(schedule, T0 + timedelta(hours=1))
    kinds.finish(run)
    readable = kinds.run_state

    def broken(ref):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(services.runkinds, "run_state", broken)
    assert scheduled_runs_settle() == 0 and latest(schedule).state == "running"
    monkeypatch.setattr(services.runkinds, "run_state", readable)
    assert scheduled_runs_settle() == 1 and latest(schedule).state == "completed"
