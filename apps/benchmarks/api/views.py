"""Standard benchmark API: suites (list, import, detail, delete, answer key, items) and runs (list, create, estimate,
detail with progress and results, start, cancel, delete, progress as Server-Sent Events, answers, export).

Roles as everywhere in the API: reading needs the viewer role, anything that writes the member role. The answer
key is a read, open to viewers: every item with its correct answer is already readable by them (GET …/items and
the suite's pages), so keeping the key from them would protect nothing; it is the file mockllm's known-answer
mode reads. The estimate is a dry run of create and needs what create needs (member).
"""

import orjson
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Prefetch
from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from apps.benchmarks.api.serializers import (
    BenchmarkAnswerSerializer,
    BenchmarkItemSerializer,
    BenchmarkRunCreateSerializer,
    BenchmarkRunDetailSerializer,
    BenchmarkRunEstimateSerializer,
    BenchmarkRunSerializer,
    BenchmarkSuiteDetailSerializer,
    BenchmarkSuiteImportSerializer,
    BenchmarkSuiteSerializer,
    service_errors,
)
from apps.benchmarks.exports import FORMATS as EXPORT_FORMATS
from apps.benchmarks.exports import benchmark_run_export
from apps.benchmarks.filters import OUTCOMES, AnswerFilterForm, ItemFilter, RunFilter, SuiteFilter
from apps.benchmarks.imports import suite_answer_key, suite_delete, suite_import
from apps.benchmarks.models import FINISHED, BenchmarkItem, BenchmarkRun, BenchmarkSuite, BenchmarkTarget
from apps.benchmarks.selectors import answers_for, progress_payload
from apps.benchmarks.services import (
    BenchmarkRefused,
    benchmark_run_cancel,
    benchmark_run_create,
    benchmark_run_delete,
    benchmark_run_start,
)
from apps.providers.budget import budget_refusals_as_400
from llmbench.api import Conflict, raise_form_errors
from llmbench.export_api import ExportNegotiation, export_kind
from llmbench.openapi import file_responses
from llmbench.parsers import JSONObjectParser
from llmbench.sse import documented_stream, progress_stream

IN_USE = OpenApiResponse(OpenApiTypes.OBJECT, description="Refused: runs of this suite exist; delete them first.")
REFUSED = OpenApiResponse(OpenApiTypes.OBJECT, description='Refused in the run\'s status: {"detail": "…"}.')
IMPORT_REJECTED = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description='Nothing was stored: {"files": ["file x.jsonl, row 12, field \\"answer\\": …", …]} naming every bad '
    'row, or {"<field>": ["message"]} for a bad form field.',
)


def _refused(exc: DjangoValidationError | BenchmarkRefused) -> Conflict:
    return Conflict(" ".join(exc.messages) if isinstance(exc, DjangoValidationError) else str(exc))


@extend_schema_view(destroy=extend_schema(responses={204: None, 409: IN_USE}))
class BenchmarkSuiteViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """Benchmark suites of the team: uploaded GSM8K, MMLU, MMLU-Pro, ARC, HellaSwag and TruthfulQA files, versioned."""

    queryset = BenchmarkSuite.objects.all()
    serializer_class = BenchmarkSuiteSerializer
    filterset_class = SuiteFilter
    throttle_cost_scope = {"answer_key": "exports"}  # llmbench/throttling.py
    parser_classes = [MultiPartParser]
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        return super().get_queryset().filter(team=self.request.team).select_related("benchmark", "created_by")

    def get_serializer_class(self):
        return BenchmarkSuiteDetailSerializer if self.action == "retrieve" else BenchmarkSuiteSerializer

    @extend_schema(request=BenchmarkSuiteImportSerializer,
                   responses={201: BenchmarkSuiteDetailSerializer, 400: IMPORT_REJECTED})  # fmt: skip
    def create(self, request):
        """Import a suite (multipart: `name`, one or more `files`, optional `fewshot_files`, `kind`,
        `description`); importing a name again makes its next version. A bad file is a 400 naming every bad row
        and field, and nothing is stored."""
        body = BenchmarkSuiteImportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            suite = suite_import(team=request.team, user=request.user, **body.import_kwargs())
        except DjangoValidationError as exc:
            raise ValidationError(service_errors(exc, default_field="files")) from None
        return Response(BenchmarkSuiteDetailSerializer(self.get_queryset().get(pk=suite.pk)).data, status=201)

    def destroy(self, request, pk=None):
        """Delete a suite with its items; refused (409) while runs of it exist."""
        try:
            suite_delete(suite=self.get_object())
        except DjangoValidationError as exc:
            raise _refused(exc) from None
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=file_responses(["jsonl"]))
    @action(detail=True, methods=["get"], url_path="answer-key", filterset_class=None,
            content_negotiation_class=ExportNegotiation)  # fmt: skip
    def answer_key(self, request, pk=None):
        """The test split's answers as JSON Lines, one `{"index", "question", "choices", "answer", "subject"}` a
        line: the file mockllm's known-answer mode reads (`--answer-key`)."""
        suite = self.get_object()
        lines = (orjson.dumps(row) + b"\n" for row in suite_answer_key(suite))
        response = StreamingHttpResponse(lines, content_type="application/jsonl")
        name = f"{slugify(suite.name) or 'suite'}-v{suite.version}-answer-key.jsonl"
        response["Content-Disposition"] = content_disposition_header(True, name)
        return response

    @extend_schema(
        parameters=[
            OpenApiParameter("subject", OpenApiTypes.STR, description="One subject or category."),
            OpenApiParameter(
                "split",
                OpenApiTypes.STR,
                enum=list(BenchmarkItem.Split.values),
                description="test (the default) or fewshot (the few-shot examples).",
            ),
        ],
        responses=BenchmarkItemSerializer(many=True),
    )
    @action(detail=True, methods=["get"], filterset_class=None)
    def items(self, request, pk=None):
        """The suite's items in index order (the test split; `?split=fewshot` for the few-shot examples),
        `?subject=` for one subject or category."""
        suite = self.get_object()
        items = ItemFilter(request.query_params, queryset=BenchmarkItem.objects.filter(suite=suite).order_by("index"))
        if not items.is_valid():
            raise ValidationError(items.errors)
        page = self.paginate_queryset(items.qs)
        return self.get_paginated_response(BenchmarkItemSerializer(page, many=True).data)


@extend_schema_view(destroy=extend_schema(responses={204: None, 409: REFUSED}))
class BenchmarkRunViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """Benchmark runs of the team: a suite asked of one or more endpoints, scored as its reference evaluation."""

    queryset = BenchmarkRun.objects.all()
    serializer_class = BenchmarkRunSerializer
    filterset_class = RunFilter
    # create may start the run (llmbench/throttling.py)
    throttle_cost_scope = {"create": "run_start", "start": "run_start", "export": "exports"}
    parser_classes = [JSONObjectParser]
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        targets = BenchmarkTarget.objects.select_related("endpoint", "variant")
        return (
            super().get_queryset().filter(team=self.request.team)
            .select_related("suite", "created_by")
            .prefetch_related(Prefetch("targets", queryset=targets))
        )  # fmt: skip

    def get_serializer_class(self):
        return BenchmarkRunSerializer if self.action == "list" else BenchmarkRunDetailSerializer

    def _detail(self, run: BenchmarkRun, code: int = status.HTTP_200_OK) -> Response:
        run = self.get_queryset().get(pk=run.pk)
        return Response(BenchmarkRunDetailSerializer(run, context=self.get_serializer_context()).data, status=code)

    def _create_body(self, request) -> BenchmarkRunCreateSerializer:
        body = BenchmarkRunCreateSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        return body

    def _create(self, request, body: BenchmarkRunCreateSerializer) -> BenchmarkRun:
        try:
            return benchmark_run_create(team=request.team, user=request.user, **body.create_kwargs())
        except DjangoValidationError as exc:
            raise ValidationError(service_errors(exc)) from None

    @extend_schema(request=BenchmarkRunCreateSerializer, responses={201: BenchmarkRunDetailSerializer})
    def create(self, request):
        """Create a pending run (and queue it with `"start": true`)."""
        body = self._create_body(request)
        with budget_refusals_as_400(), transaction.atomic():  # refused: nothing is created
            run = self._create(request, body)
            if body.validated_data.get("start"):
                try:
                    run = benchmark_run_start(run=run)
                except BenchmarkRefused as exc:
                    raise _refused(exc) from None
        return self._detail(run, status.HTTP_201_CREATED)

    @extend_schema(request=BenchmarkRunCreateSerializer, responses=BenchmarkRunEstimateSerializer)
    @action(detail=False, methods=["post"], filterset_class=None, pagination_class=None)
    def estimate(self, request):
        """What the run in the body would ask (requests, tokens, cost, time: services.benchmark_run_estimate, as
        create stores it), without storing anything; a bad body is the 400 create would answer."""
        body = self._create_body(request)
        with transaction.atomic():
            run = self._create(request, body)
            figures = {"item_count": run.item_count, **run.estimate}
            transaction.set_rollback(True)  # a dry run: the run, its targets and variant links are not kept
        return Response(BenchmarkRunEstimateSerializer(figures).data)

    def destroy(self, request, pk=None):
        """Delete a run that is not queued or running, with its answers and the measured scores it published."""
        try:
            benchmark_run_delete(run=self.get_object())
        except BenchmarkRefused as exc:
            raise _refused(exc) from None
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: BenchmarkRunDetailSerializer, 409: REFUSED})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        """Queue a pending run; a failed or cancelled one resumes (answers stored are not asked again)."""
        try:
            with budget_refusals_as_400():
                run = benchmark_run_start(run=self.get_object())
        except BenchmarkRefused as exc:
            raise _refused(exc) from None
        return self._detail(run)

    @extend_schema(request=None, responses={200: BenchmarkRunDetailSerializer, 409: REFUSED})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Stop a run: answers stored so far are kept, and starting it again resumes."""
        try:
            run = benchmark_run_cancel(run=self.get_object())
        except BenchmarkRefused as exc:
            raise _refused(exc) from None
        return self._detail(run)

    @extend_schema(
        parameters=[
            OpenApiParameter("target", OpenApiTypes.INT, description="One target of the run (its id)."),
            OpenApiParameter("subject", OpenApiTypes.STR, description="One subject or category."),
            OpenApiParameter(
                "outcome",
                OpenApiTypes.STR,
                enum=list(OUTCOMES),
                description="correct; wrong (an answer, wrong); no_answer (none could be extracted: "
                "counted wrong); failed (the request failed: not scored).",
            ),
        ],
        responses=BenchmarkAnswerSerializer(many=True),
    )
    @action(detail=True, methods=["get"], filterset_class=None)
    def items(self, request, pk=None):
        """The answers, by item then target, filtered by `target`, `subject` and `outcome`."""
        run = self.get_object()
        form = AnswerFilterForm(request.query_params, target_ids=[t.pk for t in run.targets.all()])
        raise_form_errors(form)
        page = self.paginate_queryset(answers_for(run, **form.selector_kwargs()))
        return self.get_paginated_response(BenchmarkAnswerSerializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=list(EXPORT_FORMATS))],
        responses=file_responses(EXPORT_FORMATS),
    )
    @action(detail=True, methods=["get"], filterset_class=None, content_negotiation_class=ExportNegotiation)
    def export(self, request, pk=None):
        """The run as `?format=csv` (every answer), `json` or `xlsx` (the results per target and subject, and
        every answer)."""
        kind = export_kind(request.query_params, EXPORT_FORMATS)
        return benchmark_run_export(run=self.get_object(), kind=kind)


@documented_stream(
    summary="Live progress of a benchmark run",
    fields="`status`, `status_label`, `actions`, `completed`, `failed`, `total`, `progress_pct`, `eta_s` and "
    "`targets` (per target: answered, failed, correct, no_answer, accuracy_pct so far), the detail's `progress`",
    example={"id": 4, "status": "running", "completed": 1200, "failed": 3, "total": 24000, "progress_pct": 5.0,
             "eta_s": 62.5, "targets": [{"id": 7, "answered": 600, "correct": 431, "accuracy_pct": 71.83}]},
)  # fmt: skip
async def benchmark_run_progress_sse(request, pk: int):
    """GET /api/v1/benchmark-runs/{id}/progress: Server-Sent Events of the run's progress, read from the database
    every half second until it finishes. Token or session authentication."""

    def read() -> tuple[dict, bool]:
        run = BenchmarkRun.objects.get(pk=pk)
        return progress_payload(run), run.status in FINISHED

    return await progress_stream(
        request, exists=lambda: BenchmarkRun.objects.filter(pk=pk, team=request.team).exists(), read=read
    )
