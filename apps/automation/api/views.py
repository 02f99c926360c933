"""Schedules API: /api/v1/schedules (list, create, read, change, delete), /pause, /resume and /runs (the timeline)."""

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from apps.automation.api.serializers import ScheduledRunSerializer, ScheduleSerializer
from apps.automation.models import Schedule, ScheduledRun
from apps.automation.services import (
    EDITABLE_FIELDS,
    schedule_create,
    schedule_delete,
    schedule_pause,
    schedule_resume,
    schedule_update,
)

API_NAMES = {"template_run_id": "run_id", "timezone_name": "timezone"}


def _api_error(exc: DjangoValidationError) -> ValidationError:
    """A service's ValidationError as a DRF 400 naming the body's fields."""
    if hasattr(exc, "error_dict"):
        return ValidationError({API_NAMES.get(name, name): messages for name, messages in exc.message_dict.items()})
    return ValidationError({"detail": exc.messages})


class ScheduleViewSet(viewsets.ModelViewSet):
    """Schedules of the team: a run repeated on a cron expression (in a time zone) or an interval, each repeat
    compared with the previous completed one. Viewers read; members create, change, pause, resume and delete."""

    queryset = Schedule.objects.select_related("created_by")
    serializer_class = ScheduleSerializer
    lookup_value_regex = r"\d+"
    filterset_fields = ["kind", "paused"]
    # resuming lets the schedule start runs again: counted with the run starts
    throttle_cost_scope = {"resume": "run_start"}

    def get_queryset(self):
        return super().get_queryset().filter(team=self.request.team)

    def create(self, request, *args, **kwargs):
        """Create a schedule for one of the team's runs (`kind` + `run_id`) with `cron` or `interval_minutes`."""
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            schedule = schedule_create(
                team=request.team, user=request.user, kind=data["kind"], template_run_id=data["template_run_id"],
                cron=data.get("cron", ""), interval_minutes=data.get("interval_minutes"),
                timezone_name=data.get("timezone", "UTC"), name=data.get("name", ""),
                max_failures=data.get("max_failures"), alpha=data.get("alpha", 0.05),
            )  # fmt: skip
        except DjangoValidationError as exc:
            raise _api_error(exc) from None
        return Response(self.get_serializer(schedule).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        """Change the name, timing, significance level or failure limit; the run and its kind stay."""
        schedule = self.get_object()
        body = self.get_serializer(schedule, data=request.data, partial=kwargs.get("partial", False))
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        fixed = {"kind": schedule.kind, "template_run_id": schedule.template_run_id}
        changed = [name for name, value in fixed.items() if name in data and data.pop(name) != value]
        if changed:
            raise ValidationError(
                {API_NAMES.get(name, name): ["A schedule's run cannot change: create another schedule."]
                 for name in changed}
            )  # fmt: skip
        if data.get("cron") and "interval_minutes" not in data:
            data["interval_minutes"] = None  # a cron expression given alone replaces the interval
        if data.get("interval_minutes") and "cron" not in data:
            data["cron"] = ""  # and an interval given alone replaces the cron expression
        try:
            schedule = schedule_update(schedule=schedule, **{k: v for k, v in data.items() if k in EDITABLE_FIELDS})
        except DjangoValidationError as exc:
            raise _api_error(exc) from None
        return Response(self.get_serializer(schedule).data)

    def destroy(self, request, *args, **kwargs):
        """Delete the schedule and its timeline; the runs it started stay."""
        schedule_delete(schedule=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=ScheduleSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        """Stop firing until resumed (a run already going finishes and is compared)."""
        return Response(self.get_serializer(schedule_pause(schedule=self.get_object(), user=request.user)).data)

    @extend_schema(request=None, responses=ScheduleSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Fire again from the next slot after now; the count of failed runs in a row starts again."""
        return Response(self.get_serializer(schedule_resume(schedule=self.get_object())).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("state", str, enum=ScheduledRun.State.values, description="Only firings in this state."),
            OpenApiParameter("regression", bool, description="true: only runs with a regression."),
        ],
        responses=ScheduledRunSerializer(many=True),
    )
    @action(detail=True, methods=["get"], filterset_fields=None)
    def runs(self, request, pk=None):
        """The schedule's firings, newest first: the run each started (or why none), its figures and each figure
        against the previous completed run with the test, p-value and verdict."""
        schedule = self.get_object()
        rows = ScheduledRun.objects.filter(schedule=schedule)
        state, regression = request.query_params.get("state"), request.query_params.get("regression")
        if state:
            if state not in ScheduledRun.State.values:
                raise ValidationError({"state": [f"One of: {', '.join(ScheduledRun.State.values)}."]})
            rows = rows.filter(state=state)
        if regression:
            if regression.lower() not in ("true", "false", "1", "0"):
                raise ValidationError({"regression": ["true or false."]})
            rows = rows.filter(regression=regression.lower() in ("true", "1"))
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(ScheduledRunSerializer(page, many=True).data)
