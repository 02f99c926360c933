"""Test cases API, and the approval queue (seed 003's admin endpoints) for team admins."""

from dataclasses import asdict

from django.db.models import Count
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.accounts.models import Membership
from apps.experiments.api.serializers import (
    ExperimentSerializer,
    RejectSerializer,
    ResponseSerializer,
    TestCaseSerializer,
)
from apps.experiments.forms import ExperimentForm
from apps.experiments.models import Experiment, TestCase
from apps.experiments.models import Response as ResponseModel
from apps.experiments.selectors import experiment_summary
from apps.experiments.services import (
    TransitionRefused,
    experiment_cancel,
    experiment_create,
    experiment_start,
    testcase_approve,
    testcase_create,
    testcase_reject,
    testcase_submit,
    testcase_update,
)
from llmbench.api import raise_form_errors


class TestCaseViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):  # fmt: skip
    """Test cases of the team (latest versions unless `?all_versions=1`). Members create and edit;
    editing an approved test case makes a new pending version."""

    serializer_class = TestCaseSerializer
    queryset = TestCase.objects.none()
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        cases = TestCase.objects.filter(team=self.request.team).select_related("author", "reviewer")
        if self.action == "list" and self.request.query_params.get("all_versions") != "1":
            cases = cases.filter(is_current=True)
        if status_filter := self.request.query_params.get("status"):
            cases = cases.filter(status=status_filter)
        return cases

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        submit = data.pop("submit", False)
        serializer.instance = testcase_create(team=self.request.team, author=self.request.user, submit=submit, **data)

    def update(self, request, *args, **kwargs):
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        data.pop("submit", None)
        try:
            case = testcase_update(testcase=serializer.instance, author=request.user, **data)
        except TransitionRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(case).data)

    @extend_schema(request=None, responses=TestCaseSerializer)
    @action(detail=True, methods=["post"])
    def submit(self, request, pk=None):
        """Send a draft (or a rejected version) for review."""
        try:
            case = testcase_submit(testcase=self.get_object())
        except TransitionRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(case).data)


class ReviewViewSet(viewsets.GenericViewSet):
    """The approval queue: team admins only (reading it too)."""

    serializer_class = TestCaseSerializer
    queryset = TestCase.objects.none()
    read_role = Membership.Role.ADMIN
    write_role = Membership.Role.ADMIN

    def get_queryset(self):
        return TestCase.objects.filter(team=self.request.team).select_related("author", "reviewer")

    @extend_schema(responses=TestCaseSerializer(many=True))
    @action(detail=False, methods=["get"])
    def pending(self, request):
        page = self.paginate_queryset(self.get_queryset().filter(status=TestCase.Status.PENDING).order_by("created_at"))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request=None, responses=TestCaseSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._decide(lambda case: testcase_approve(testcase=case, reviewer=request.user))

    @extend_schema(request=RejectSerializer, responses=TestCaseSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        body = RejectSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._decide(
            lambda case: testcase_reject(testcase=case, reviewer=request.user, reason=body.validated_data["reason"])
        )

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=False, methods=["get"])
    def stats(self, request):
        counts = dict(self.get_queryset().filter(is_current=True).values_list("status").annotate(n=Count("id")))
        return Response({s: counts.get(s, 0) for s in TestCase.Status.values})

    def _decide(self, decide):
        try:
            case = decide(self.get_object())
        except TransitionRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(case).data)


class ExperimentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Experiments of the team. Create with `targets_text` ("<endpoint name>: <model>" per line),
    `prompt` or `test_cases`, sampling parameters and `responses_per_item`; it starts at once."""

    serializer_class = ExperimentSerializer
    queryset = Experiment.objects.none()

    def get_queryset(self):
        return Experiment.objects.filter(team=self.request.team).prefetch_related("targets", "test_cases")

    @extend_schema(request=OpenApiTypes.OBJECT, responses={201: ExperimentSerializer})
    def create(self, request):
        data = request.data.copy() if hasattr(request.data, "copy") else dict(request.data)
        if isinstance(data.get("targets"), list):
            data["targets_text"] = "\n".join(f"{t.get('endpoint')}: {t.get('model')}" for t in data["targets"])
        data.setdefault("responses_per_item", 1)
        form = ExperimentForm(data, team=request.team)
        raise_form_errors(form)
        experiment = experiment_create(team=request.team, user=request.user, **form.create_kwargs())
        experiment_start(experiment=experiment)
        return Response(self.get_serializer(experiment).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=ExperimentSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        try:
            experiment = experiment_start(experiment=self.get_object())
        except TransitionRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(experiment).data)

    @extend_schema(request=None, responses=ExperimentSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return Response(self.get_serializer(experiment_cancel(experiment=self.get_object())).data)

    @extend_schema(responses=ResponseSerializer(many=True))
    @action(detail=True, methods=["get"])
    def responses(self, request, pk=None):
        rows = ResponseModel.objects.filter(experiment=self.get_object()).order_by("id")
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(ResponseSerializer(page, many=True).data)

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def metrics(self, request, pk=None):
        """Per target: pass rate with its Wilson 95% interval, mean score and quality, latency, cost."""
        return Response([asdict(s) for s in experiment_summary(self.get_object())])
