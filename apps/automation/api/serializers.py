"""Schedules in the API: the schedule (its run, timing, state) and each firing of it (a scheduled run)."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.automation.models import KIND_CHOICES, MAX_INTERVAL_MINUTES, MAX_RUN_ID, Schedule, ScheduledRun
from apps.automation.schedule_times import when_text
from apps.automation.services import run_title_safe, run_url_safe


class ScheduleSerializer(serializers.ModelSerializer):
    kind = serializers.ChoiceField(choices=KIND_CHOICES, help_text="The kind of run repeated.")
    run_id = serializers.IntegerField(
        source="template_run_id",
        min_value=1,
        max_value=MAX_RUN_ID,
        help_text="The team's run repeated (its setup is copied each time).",
    )
    name = serializers.CharField(
        max_length=200, required=False, allow_blank=True, help_text="Blank: the run's title and the timing."
    )
    cron = serializers.CharField(
        max_length=100, required=False, allow_blank=True,
        help_text='Five cron fields (minute hour day-of-month month day-of-week) on the time zone\'s clock, e.g. '
        '"0 6 * * 1-5", or @hourly/@daily/@weekly/@monthly; blank when an interval is given.',
    )  # fmt: skip
    interval_minutes = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_INTERVAL_MINUTES,
        help_text="Repeat every this many minutes; null when a cron expression is given.",
    )  # fmt: skip
    timezone = serializers.CharField(
        max_length=64, required=False, default="UTC", help_text="IANA time zone of the cron expression."
    )
    alpha = serializers.FloatField(
        required=False, default=0.05, min_value=0.0001, max_value=0.5,
        help_text="Significance level of each comparison with the previous run.",
    )  # fmt: skip
    max_failures = serializers.IntegerField(
        required=False, min_value=1, max_value=100,
        help_text="Failed runs in a row after which the schedule pauses itself (default SCHEDULE_MAX_FAILURES).",
    )  # fmt: skip
    kind_label = serializers.CharField(read_only=True)
    when = serializers.SerializerMethodField(help_text="The timing in words.")
    run_title = serializers.SerializerMethodField()
    run_url = serializers.SerializerMethodField(help_text="The repeated run's page.")
    timeline_url = serializers.SerializerMethodField(help_text="The schedule's timeline page.")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Schedule
        fields = [
            "id", "name", "kind", "kind_label", "run_id", "run_title", "run_url", "cron", "interval_minutes",
            "timezone", "when", "alpha", "max_failures", "paused", "paused_reason", "consecutive_failures",
            "next_run_at", "last_fired_at", "created_by", "created_at", "updated_at", "timeline_url",
        ]  # fmt: skip
        read_only_fields = [
            "paused", "paused_reason", "consecutive_failures", "next_run_at", "last_fired_at", "created_at",
            "updated_at",
        ]  # fmt: skip

    @extend_schema_field(serializers.CharField())
    def get_when(self, schedule: Schedule) -> str:
        return when_text(cron=schedule.cron, interval_minutes=schedule.interval_minutes, timezone=schedule.timezone)

    @extend_schema_field(serializers.CharField())
    def get_run_title(self, schedule: Schedule) -> str:
        return run_title_safe(schedule.kind, schedule.template_run_id)

    @extend_schema_field(serializers.CharField())
    def get_run_url(self, schedule: Schedule) -> str:
        return run_url_safe(schedule.kind, schedule.template_run_id)

    @extend_schema_field(serializers.CharField())
    def get_timeline_url(self, schedule: Schedule) -> str:
        from django.urls import reverse

        return reverse("automation:timeline", args=[schedule.pk])


class ScheduledRunSerializer(serializers.ModelSerializer):
    run_url = serializers.SerializerMethodField(help_text="The run's page; empty when no run was started.")
    state_label = serializers.CharField(source="get_state_display", read_only=True)
    figures = serializers.JSONField(
        help_text='The run\'s headline figures: {"pass_rate": {"label", "value", "unit", "ci_low", "ci_high", "n", '
        '"higher_is_better"}, ...}; {} until it completed.'
    )
    comparison = serializers.JSONField(
        help_text='Each figure against the previous completed run: [{"name", "label", "baseline", "current", "unit", '
        '"test", "p_value", "verdict"}]; verdict is regression, improvement, no change or no data.'
    )

    class Meta:
        model = ScheduledRun
        fields = [
            "id", "due_at", "fired_at", "state", "state_label", "reason", "run_kind", "run_id", "run_title",
            "run_url", "figures", "baseline_run_id", "comparison", "regression", "settled_at",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(serializers.CharField())
    def get_run_url(self, run: ScheduledRun) -> str:
        return run_url_safe(run.run_kind, run.run_id)
