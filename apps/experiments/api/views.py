"""Test cases API, and the approval queue (seed 003's admin endpoints) for team admins;
experiments (executions): create, update, generate, results, progress as SSE."""

from dataclasses import asdict

from django.db import transaction
from django.db.models import Count
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action, api_view, parser_classes
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from apps.accounts.models import Membership
from apps.experiments.api.serializers import (
    ExperimentSerializer,
    ExperimentUpdateSerializer,
    RejectSerializer,
    ResponseSerializer,
    TargetSummarySerializer,
    TestCaseSerializer,
    full_update_data,
)
from apps.experiments.exports import FORMATS as EXPORT_FORMATS
from apps.experiments.exports import experiment_export
from apps.experiments.forms import ExperimentForm
from apps.experiments.models import Experiment, Suite, TestCase
from apps.experiments.models import Response as ResponseModel
from apps.experiments.reviews import testcase_review
from apps.experiments.selectors import compare_targets, experiment_summary, live_lineage, runnable_test_cases
from apps.experiments.services import (
    CONTENT_FIELDS,
    TransitionRefused,
    experiment_cancel,
    experiment_create,
    experiment_progress,
    experiment_start,
    experiment_update,
    suite_publish,
    testcase_create,
    testcase_retire,
    testcase_submit,
    testcase_update,
)
from apps.experiments.testcase_io import export_csv, export_jsonl
from apps.experiments.testcase_io import testcases_import as import_testcases
from apps.providers.budget import budget_refusals_as_400
from llmbench.api import Conflict, raise_form_errors
from llmbench.export_api import ExportNegotiation, export_kind
from llmbench.openapi import file_responses
from llmbench.sse import documented_stream, progress_stream
from llmbench.uploads import FileRejected


class TestCaseViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):  # fmt: skip
    """Test cases of the team (latest versions unless `?all_versions=1`). Members create, edit
    (PATCH, or PUT with the whole test case) and delete; editing an approved test case makes a new
    pending version, deleting retires every version (results keep theirs)."""

    serializer_class = TestCaseSerializer
    queryset = TestCase.objects.none()
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_queryset(self):
        cases = (
            TestCase.objects.filter(team=self.request.team)
            .select_related("author", "reviewer")
            .annotate(lineage_live=live_lineage())
        )
        if self.action == "list" and self.request.query_params.get("all_versions") != "1":
            cases = cases.filter(is_current=True)
        if status_filter := self.request.query_params.get("status"):
            cases = cases.filter(status=status_filter)
        return cases

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        submit = data.pop("submit", False)
        serializer.instance = testcase_create(team=self.request.team, author=self.request.user, submit=submit, **data)

    def update(self, request, *args, partial=False, **kwargs):
        """PATCH changes the fields given; PUT replaces the test case (fields left out take their
        defaults). Either way an approved version is kept and the change becomes a new pending one."""
        body = request.data if partial else full_update_data(request.data, TestCase, CONTENT_FIELDS)
        serializer = self.get_serializer(self.get_object(), data=body, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        data.pop("submit", None)
        try:
            case = testcase_update(testcase=serializer.instance, author=request.user, **data)
        except TransitionRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(case).data)

    def destroy(self, request, pk=None):
        """Retire the test case: every version leaves the lists and every suite; experiments and
        their responses keep the version they ran."""
        try:
            testcase_retire(test_case=self.get_object(), user=request.user)
        except TransitionRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)

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
        return self._decide(lambda case: testcase_review(testcase=case, reviewer=request.user, decision="approve"))

    @extend_schema(request=RejectSerializer, responses=TestCaseSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        body = RejectSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._decide(
            lambda case: testcase_review(
                testcase=case, reviewer=request.user, decision="reject", reason=body.validated_data["reason"]
            )
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


class ExperimentViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):  # fmt: skip
    """Experiments of the team. Create with `targets_text` ("<endpoint name>: <model>" per line),
    `prompt` or `test_cases`, sampling parameters and `responses_per_item`; it starts at once."""

    serializer_class = ExperimentSerializer
    queryset = Experiment.objects.none()
    # Lower rates for what costs (llmbench/throttling.py): creating starts the experiment at once.
    throttle_cost_scope = {
        "create": "run_start", "start": "run_start", "generate": "run_start", "export": "exports", "compare": "analytics",
    }  # fmt: skip

    def get_queryset(self):
        experiments = Experiment.objects.filter(team=self.request.team).prefetch_related("targets", "test_cases")
        if kind := self.request.query_params.get("kind"):
            experiments = experiments.filter(kind=kind)
        return experiments

    def perform_destroy(self, instance):
        if instance.kind != Experiment.Kind.SINGLE:
            raise Conflict("This experiment is a parameter sweep: delete its batch (DELETE /api/v1/batches/{id}).")
        instance.delete()

    @extend_schema(request=OpenApiTypes.OBJECT, responses={201: ExperimentSerializer})
    def create(self, request):
        data = request.data.copy() if hasattr(request.data, "copy") else dict(request.data)
        if isinstance(data.get("targets"), list):
            data["targets_text"] = "\n".join(f"{t.get('endpoint')}: {t.get('model')}" for t in data["targets"])
        data.setdefault("responses_per_item", 1)
        form = ExperimentForm(data, team=request.team)
        raise_form_errors(form)
        with budget_refusals_as_400(), transaction.atomic():  # refused: nothing is created
            experiment = experiment_create(team=request.team, user=request.user, **form.create_kwargs())
            experiment_start(experiment=experiment)
        return Response(self.get_serializer(experiment).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ExperimentUpdateSerializer, responses=ExperimentSerializer)
    def partial_update(self, request, pk=None):
        """Rename, describe, tag, favourite or archive an experiment; change its prompts, parameters
        or responses per item until it has started (409 after)."""
        return self._update(request, partial=True)

    @extend_schema(request=ExperimentUpdateSerializer, responses=ExperimentSerializer)
    def update(self, request, pk=None):
        """Replace what PATCH may change: fields left out take their defaults (same rules as PATCH)."""
        return self._update(request, partial=False)

    def _update(self, request, *, partial: bool):
        experiment = self.get_object()
        body = request.data if partial else full_update_data(
            request.data, Experiment, ExperimentUpdateSerializer.Meta.fields
        )  # fmt: skip
        serializer = ExperimentUpdateSerializer(experiment, data=body, partial=partial)
        serializer.is_valid(raise_exception=True)
        try:
            experiment = experiment_update(experiment=experiment, **serializer.validated_data)
        except TransitionRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(self.get_queryset().get(pk=experiment.pk)).data)

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=list(EXPORT_FORMATS)),
                    OpenApiParameter("type", str, enum=list(EXPORT_FORMATS), description="Older name of format.")],
        responses=file_responses(EXPORT_FORMATS),
    )  # fmt: skip
    @action(detail=True, methods=["get"], content_negotiation_class=ExportNegotiation)
    def export(self, request, pk=None):
        """Responses with their evaluations as CSV, JSON or Excel (with the per-target figures), or the PDF
        report: `?format=csv|json|xlsx|pdf` (`?type=` still works)."""
        field = "format" if "format" in request.query_params else "type"
        kind = export_kind(request.query_params, EXPORT_FORMATS, field=field)
        return experiment_export(experiment=self.get_object(), kind=kind)

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def compare(self, request, pk=None):
        """Two targets of the experiment (`?targets=a,b`, default the first two): pass rates with
        Fisher's exact test, scores with Mann-Whitney U."""
        experiment = self.get_object()
        ids = [int(v) for v in request.query_params.get("targets", "").split(",") if v.strip().isdigit()]
        try:
            return Response(compare_targets(experiment, ids or None))
        except ValueError as exc:
            return Response({"targets": [str(exc)]}, status=status.HTTP_400_BAD_REQUEST)

    @extend_schema(request=None, responses=ExperimentSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        try:
            with budget_refusals_as_400():
                experiment = experiment_start(experiment=self.get_object())
        except TransitionRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(experiment).data)

    @extend_schema(request=None, responses={202: ExperimentSerializer})
    @action(detail=True, methods=["post"])
    def generate(self, request, pk=None):
        """Generate the experiment's responses: queue a pending experiment or resume a failed one
        (stored responses are kept); 409 when it is running, finished or a parameter sweep."""
        try:
            with budget_refusals_as_400():
                experiment = experiment_start(experiment=self.get_object())
        except TransitionRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(experiment).data, status=status.HTTP_202_ACCEPTED)

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

    @extend_schema(
        parameters=[OpenApiParameter("target", int, description="Only this target's responses."),
                    OpenApiParameter("test_case", int, description="Only the responses to this test-case version."),
                    OpenApiParameter("errors", bool, description="Only the responses that failed.")],
        responses=ResponseSerializer(many=True),
    )  # fmt: skip
    @action(detail=True, methods=["get"])
    def results(self, request, pk=None):
        """Every response with its evaluation and text metrics, paginated (the seed's
        `/executions/{id}/results`)."""
        rows = ResponseModel.objects.filter(experiment=self.get_object()).order_by("id")
        for name, field in (("target", "target_id"), ("test_case", "test_case_id")):
            if value := request.query_params.get(name):
                if not value.isdigit():
                    return Response({name: ["A whole number."]}, status=status.HTTP_400_BAD_REQUEST)
                rows = rows.filter(**{field: int(value)})
        errors = request.query_params.get("errors")
        if errors not in (None, "", "0", "1", "true", "false"):
            return Response({"errors": ["One of: true, false."]}, status=status.HTTP_400_BAD_REQUEST)
        if errors in ("1", "true"):
            rows = rows.exclude(error_code="")
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(ResponseSerializer(page, many=True).data)

    @extend_schema(responses=TargetSummarySerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)  # one row per target, never paged
    def metrics(self, request, pk=None):
        """Per target: pass rate with its Wilson 95% interval, mean score and quality, latency, cost."""
        return Response([asdict(s) for s in experiment_summary(self.get_object())])


class SuiteSerializer(serializers.ModelSerializer):
    # allow_empty=False: a form post leaving the field out reads as an empty list, not a missing field.
    test_cases = serializers.PrimaryKeyRelatedField(many=True, allow_empty=False, queryset=TestCase.objects.none())

    class Meta:
        model = Suite
        fields = ["id", "name", "version", "description", "test_cases", "created_at"]
        read_only_fields = ["version", "created_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None and getattr(request, "team", None) is not None:
            self.fields["test_cases"].child_relation.queryset = runnable_test_cases(request.team)


class SuiteViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    """Named, versioned sets of approved test cases; POSTing a name again publishes its next version."""

    serializer_class = SuiteSerializer
    queryset = Suite.objects.none()

    def get_queryset(self):
        return Suite.objects.filter(team=self.request.team).prefetch_related("test_cases")

    def perform_create(self, serializer):
        data = serializer.validated_data
        try:
            serializer.instance = suite_publish(
                team=self.request.team, name=data["name"], description=data.get("description", ""),
                test_cases=list(data["test_cases"]),
            )  # fmt: skip
        except TransitionRefused as exc:
            raise serializers.ValidationError({"test_cases": [str(exc)]}) from None


@extend_schema(
    parameters=[OpenApiParameter("type", str, enum=["jsonl", "csv"])], responses=file_responses(["jsonl", "csv"])
)
@api_view(["GET"])
def testcases_export(request):
    """The latest version of every test case of the team, as JSON Lines or CSV (`?type=`; DRF keeps
    `?format=` for its renderers)."""
    fmt = request.query_params.get("type", "jsonl")
    if fmt not in ("jsonl", "csv"):
        return Response({"type": ["One of: jsonl, csv."]}, status=status.HTTP_400_BAD_REQUEST)
    cases = TestCase.objects.filter(team=request.team, is_current=True).order_by("title")
    body = export_jsonl(cases) if fmt == "jsonl" else export_csv(cases)
    response = StreamingHttpResponse(body, content_type="application/jsonl" if fmt == "jsonl" else "text/csv")
    response["Content-Disposition"] = f'attachment; filename="testcases.{fmt}"'
    return response


testcases_export.cls.throttle_cost_scope = "exports"


@extend_schema(
    request={"multipart/form-data": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary"}, "type": {"type": "string", "enum": ["jsonl", "csv"]},
        "submit": {"type": "boolean"}}, "required": ["file"]}},
    responses=OpenApiTypes.OBJECT,
)  # fmt: skip
@api_view(["POST"])
@parser_classes([MultiPartParser, FormParser])
def testcases_import(request):
    """Create test cases from a JSON Lines or CSV file; a bad row rejects the file (nothing written)."""
    upload = request.FILES.get("file")
    fmt = request.data.get("type") or ("csv" if upload and upload.name.endswith(".csv") else "jsonl")
    if upload is None or fmt not in ("jsonl", "csv"):
        return Response({"file": ["A .jsonl or .csv file is required."]}, status=status.HTTP_400_BAD_REQUEST)
    try:
        created = import_testcases(team=request.team, author=request.user, content=upload.read(), fmt=fmt,
                                   submit=str(request.data.get("submit", "")).lower() in ("1", "true"))  # fmt: skip
    except FileRejected as exc:
        return Response(exc.as_dict(), status=status.HTTP_400_BAD_REQUEST)
    return Response({"created": created}, status=status.HTTP_201_CREATED)


@extend_schema(request=OpenApiTypes.OBJECT, responses={201: ExperimentSerializer})
@api_view(["POST"])
def testcase_run(request, pk: int):
    """Run one approved test case against `targets` ([{"endpoint": "<name>", "model": "..."}]): an
    experiment (an execution) of that single case."""
    case = get_object_or_404(TestCase.objects.annotate(lineage_live=live_lineage()), pk=pk, team=request.team)
    if not case.lineage_live:
        raise Conflict("This test case is retired (deleted); its earlier results stay.")
    targets = request.data.get("targets") or []
    data = {"name": f"Run of {case}", "targets_text": "\n".join(f"{t.get('endpoint')}: {t.get('model')}" for t in targets
                                                                if isinstance(t, dict)),
            "test_cases": [case.pk], "responses_per_item": request.data.get("responses_per_item", 1)}  # fmt: skip
    form = ExperimentForm(data, team=request.team)
    raise_form_errors(form)
    with budget_refusals_as_400(), transaction.atomic():  # refused: nothing is created
        experiment = experiment_create(team=request.team, user=request.user, **form.create_kwargs())
        experiment_start(experiment=experiment)
    return Response(ExperimentSerializer(experiment).data, status=status.HTTP_201_CREATED)


testcase_run.cls.throttle_cost_scope = "run_start"


class ResponseViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """One response with its evaluation and text-quality metrics."""

    serializer_class = ResponseSerializer
    queryset = ResponseModel.objects.none()

    def get_queryset(self):
        return ResponseModel.objects.filter(experiment__team=self.request.team)


@documented_stream(
    summary="Live progress of an experiment",
    fields="`status`, `done` (responses stored), `failed` (of those, the ones with an error), `total`, "
    "`progress` (percent), `error` and `finished`",
    example={"id": 12, "status": "running", "error": "", "done": 8, "failed": 1, "total": 20, "progress": 40.0,
             "finished": False},
    conflict="The experiment is a parameter sweep: its progress is at /api/v1/batches/{id}/progress.",
)  # fmt: skip
async def experiment_progress_sse(request, pk: int):
    """GET /api/v1/experiments/{id}/progress: Server-Sent Events of how far the experiment is, read
    from the database every half second until it finishes."""

    def read() -> tuple[dict, bool]:
        progress = experiment_progress(Experiment.objects.get(pk=pk))
        return dict(progress), progress["finished"]

    def refused() -> str:
        if Experiment.objects.filter(pk=pk, kind=Experiment.Kind.BATCH).exists():
            return f"This experiment is a parameter sweep: follow /api/v1/batches/{pk}/progress."
        return ""

    return await progress_stream(
        request, exists=lambda: Experiment.objects.filter(pk=pk, team=request.team).exists(), read=read,
        refused=refused,
    )  # fmt: skip
