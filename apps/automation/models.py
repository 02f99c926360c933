"""Schedules (issue 17): any run repeated on a cron expression or an interval, in a time zone, each repeat compared
with the previous completed one.

A Schedule names a template run (kind + id, apps.automation.runkinds) and when to repeat it. The every-minute tick
(apps.automation.tasks.automation_tick) fires the schedules that are due and records each firing as a ScheduledRun:
a run started, or a firing skipped because the previous run was still going, or a failure to start (the budget
refused it). When the run finishes the tick stores its figures and its comparison with the previous completed run.
"""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from apps.accounts.models import TeamOwned


class RunKind(models.TextChoices):
    """The kinds of run schedules and gates repeat (apps/automation/runkinds/ knows how)."""

    EXPERIMENT = "experiment", "Experiment"
    PARAMETER_SWEEP = "parameter_sweep", "Parameter sweep"
    LOAD_SWEEP = "load_sweep", "Load sweep"
    BENCHMARK_RUN = "benchmark_run", "Benchmark run"
    CAPACITY_SEARCH = "capacity_search", "Capacity search"


KIND_LABELS: dict[str, str] = dict(RunKind.choices)
KIND_CHOICES = RunKind.choices
MAX_INTERVAL_MINUTES = 366 * 24 * 60  # a year and a day
MAX_RUN_ID = 2**63 - 1  # the largest id a database stores


def default_max_failures() -> int:
    """SCHEDULE_MAX_FAILURES, read when a schedule is created (a callable: changing the setting needs no migration)."""
    return settings.SCHEDULE_MAX_FAILURES


class Schedule(TeamOwned):
    """Repeat one run of the team on a cron expression (in `timezone`) or every `interval_minutes`."""

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=KIND_CHOICES)
    template_run_id = models.PositiveBigIntegerField(help_text="The run repeated: each firing copies its setup.")
    cron = models.CharField(max_length=100, blank=True, help_text='Five fields, e.g. "0 6 * * 1-5"; or blank.')
    interval_minutes = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(MAX_INTERVAL_MINUTES)]
    )
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA name; the cron expression's clock.")
    alpha = models.FloatField(
        default=0.05,
        validators=[MinValueValidator(0.0001), MaxValueValidator(0.5)],
        help_text="Significance level of the comparison with the previous run.",
    )
    paused = models.BooleanField(default=False)
    paused_reason = models.TextField(blank=True)
    max_failures = models.PositiveSmallIntegerField(
        default=default_max_failures,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Failed runs in a row after which the schedule pauses itself.",
    )
    consecutive_failures = models.PositiveSmallIntegerField(default=0)
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_fired_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["paused", "next_run_at"], name="automation_schedule_due")]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(cron="") & models.Q(interval_minutes__isnull=False))
                | (~models.Q(cron="") & models.Q(interval_minutes__isnull=True)),
                name="automation_schedule_cron_xor_interval",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)


class ScheduledRun(models.Model):
    """One firing of a schedule: the run it started (or why none was), and once that run finished its figures and
    their comparison with the previous completed run of the schedule."""

    class State(models.TextChoices):
        RUNNING = "running", "running"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"
        SKIPPED = "skipped", "skipped"

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="runs")
    run_kind = models.CharField(max_length=20, choices=KIND_CHOICES)
    run_id = models.PositiveBigIntegerField(null=True, blank=True, help_text="Empty when no run was started.")
    run_title = models.CharField(max_length=300, blank=True)
    due_at = models.DateTimeField(help_text="When the schedule was due.")
    fired_at = models.DateTimeField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING, db_index=True)
    reason = models.TextField(blank=True, help_text="Why it was skipped, failed or cancelled.")
    # {"pass_rate": {"label", "value", "unit", "ci_low", "ci_high", "n", "higher_is_better"}, ...}: run_figures.
    figures = models.JSONField(default=dict, blank=True)
    baseline_run_id = models.PositiveBigIntegerField(null=True, blank=True, help_text="The run compared with.")
    # [{"name", "label", "baseline", "current", "unit", "test", "p_value", "verdict"}, ...]: run_compare.
    comparison = models.JSONField(default=list, blank=True)
    regression = models.BooleanField(default=False, db_index=True)
    settled_at = models.DateTimeField(null=True, blank=True, help_text="When its outcome was recorded.")

    class Meta:
        ordering = ["-fired_at", "-id"]
        indexes = [models.Index(fields=["schedule", "-fired_at"], name="automation_run_timeline")]
        constraints = [
            # Two ticks can never fire the same slot twice, whatever the database's locking.
            models.UniqueConstraint(fields=["schedule", "due_at"], name="automation_run_unique_slot")
        ]

    def __str__(self) -> str:
        return f"{self.schedule} at {self.fired_at:%Y-%m-%d %H:%M}"

    @property
    def is_finished(self) -> bool:
        return self.state != self.State.RUNNING
