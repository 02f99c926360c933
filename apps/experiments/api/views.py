"""Test cases API, and the approval queue (seed 003's admin endpoints) for team admins."""

from django.db.models import Count
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.accounts.models import Membership
from apps.experiments.api.serializers import RejectSerializer, TestCaseSerializer
from apps.experiments.models import TestCase
from apps.experiments.services import (
    TransitionRefused,
    testcase_approve,
    testcase_create,
    testcase_reject,
    testcase_submit,
    testcase_update,
)


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
