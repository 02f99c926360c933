"""Serving performance API: hardware, deployments, runs and samples, upload, grid, compare, predict."""

from dataclasses import asdict

from django.db.models import Count
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action, api_view, parser_classes
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from apps.accounts.models import Membership
from apps.accounts.simulated import PARAM as SIMULATED_PARAM
from apps.accounts.simulated import include_simulated
from apps.hardware.api.serializers import (
    DeploymentSerializer,
    HardwareProfileSerializer,
    ModelingConfigurationSerializer,
    ModelWithRunsSerializer,
    PerformanceRunDetailSerializer,
    PerformanceRunSerializer,
    PerformanceUploadResultSerializer,
    PredictRequestSerializer,
    RequestSampleSerializer,
    TeamRunRows,
    run_list_representation,
    run_list_rows,
)
from apps.hardware.exports import FORMATS as EXPORT_FORMATS
from apps.hardware.exports import run_export
from apps.hardware.filters import PerformanceRunFilter
from apps.hardware.forms import CompareQueryForm, GridQueryForm, PerformanceUploadForm, PredictForm
from apps.hardware.importers import PerformanceFileError
from apps.hardware.modeling import NotEnoughData, modeling_configurations, predict
from apps.hardware.models import Deployment, HardwareProfile, PerformanceRun, RequestSample
from apps.hardware.selectors import (
    GRID_METRICS,
    SIGNIFICANCE_METHOD,
    compare_runs,
    performance_grid,
    simulated_left_out,
)
from apps.hardware.services import run_summary_compute
from apps.hardware.uploads import performance_import_apply, performance_import_plan
from apps.scores.models import ModelVariant
from llmbench.api import TeamScopedViewSet, raise_form_errors
from llmbench.export_api import ExportNegotiation, export_kind
from llmbench.humanize import p_value_text
from llmbench.openapi import file_responses
from llmbench.pagination import PageNumberPagination
from llmbench.parsers import JSONObjectParser
from llmbench.renderers import OrjsonRenderer


class HardwareProfileViewSet(TeamScopedViewSet):
    """Hardware profiles: accelerators, memory, interconnect, hourly cost."""

    queryset = HardwareProfile.objects.all()
    serializer_class = HardwareProfileSerializer


class DeploymentViewSet(TeamScopedViewSet):
    """Deployments: engine and version, parallelism, batch and cache settings."""

    queryset = Deployment.objects.all()
    serializer_class = DeploymentSerializer


# The query parameters of PerformanceRunFilter (the run list, the grid).
FILTER_PARAMETERS = tuple(PerformanceRunFilter.base_filters)


class PerformanceRunViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Performance runs with their stored summary. PATCH sets name, tags, notes and the goodput
    SLO (the summary is recomputed); runs are created by uploading a file."""

    queryset = PerformanceRun.objects.select_related("variant", "hardware", "deployment", "summary")
    serializer_class = PerformanceRunSerializer
    filterset_class = PerformanceRunFilter
    throttle_cost_scope = {"export": "exports"}  # llmbench/throttling.py
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_queryset(self):
        runs = super().get_queryset().filter(team=self.request.team)
        return runs if self.action == "list" else runs.select_related("workload_version__workload")

    def get_serializer_class(self):
        # One run shows its workload version and lengths; the list (built from values(), see list()) does not.
        return PerformanceRunSerializer if self.action == "list" else PerformanceRunDetailSerializer

    def filter_queryset(self, queryset):
        # django-filter builds and validates a form of ten fields per request; without any of its
        # parameters in the query that is all it would do.
        if self.action == "list" and not any(name in self.request.query_params for name in FILTER_PARAMETERS):
            return queryset
        return super().filter_queryset(queryset)

    def perform_update(self, serializer):
        # The answer shows the summary recomputed under the new SLO (run_summary_compute caches it on the run).
        run_summary_compute(run=serializer.save())

    @extend_schema(responses=RequestSampleSerializer(many=True))
    @action(detail=True, methods=["get"], filterset_class=None)
    def samples(self, request, pk=None):
        """The run's per-request samples, in order (paginated)."""
        run = self.get_object()
        page = self.paginate_queryset(RequestSample.objects.filter(run=run).order_by("index"))
        return self.get_paginated_response(RequestSampleSerializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=list(EXPORT_FORMATS))],
        responses=file_responses(EXPORT_FORMATS),
    )
    @action(detail=True, methods=["get"], filterset_class=None, content_negotiation_class=ExportNegotiation)
    def export(self, request, pk=None):
        """The run as `?format=csv` (its samples), `json` or `xlsx` (summary per metric and samples)."""
        kind = export_kind(request.query_params, EXPORT_FORMATS)
        return run_export(run=self.get_object(), kind=kind)

    def get_renderers(self):
        # The list is written by orjson, which splices each summary's stored metrics in as they are.
        renderers = super().get_renderers()
        if self.action == "list":
            renderers = [OrjsonRenderer() if type(r) is JSONRenderer else r for r in renderers]
        return renderers

    # Defined last: inside the class body this name hides the builtin list() from what follows it.
    def list(self, request, *args, **kwargs):
        """The team's runs, newest first (paginated), each with its summary."""
        # Counted on the plain runs (no joins), then one page of rows as dicts: see run_list_representation.
        # Each summary's metrics (most of the answer) are read as JSON text and copied into it unchanged
        # when orjson writes the answer; the browsable API's renderer gets them decoded.
        plain = PerformanceRun.objects.filter(team=request.team)
        runs = self.filter_queryset(plain)
        as_text = isinstance(getattr(request, "accepted_renderer", None), OrjsonRenderer)
        if runs is plain:  # no filter: the statements compiled once (TeamRunRows)
            page_size = self.paginator.get_page_size(request)
            rows = TeamRunRows(request.team.pk, metrics_as_json_text=as_text, page_size=page_size, alias=runs.db)
        else:
            rows = run_list_rows(runs, metrics_as_json_text=as_text)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(run_list_representation(page))


UPLOAD_SCHEMA = {
    "multipart/form-data": {
        "type": "object",
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "summary_file": {"type": "string", "format": "binary", "description": "LLMPerf *_summary.json"},
            "format": {
                "type": "string",
                "enum": ["seed_csv", "llmbench_json", "llmperf", "vllm", "guidellm", "aiperf", "llama_bench"],
            },
            "variant": {"type": "integer"},
            "model_name": {"type": "string"},
            "quantization": {"type": "string"},
            "hardware": {"type": "integer"},
            "deployment": {"type": "integer"},
            "concurrency": {"type": "integer"},
            "request_rate_rps": {"type": "number"},
            "duration_s": {"type": "number"},
            "name": {"type": "string"},
            "tags": {"type": "string"},
            "slo_ttft_ms": {"type": "number"},
            "slo_tpot_ms": {"type": "number"},
            "slo_e2e_ms": {"type": "number"},
        },
        "required": ["file"],
    }
}


@extend_schema(request=UPLOAD_SCHEMA, responses={201: PerformanceUploadResultSerializer})
@api_view(["POST"])
@parser_classes([MultiPartParser, FormParser])
def upload(request):
    """Upload a result file (format detected from the content unless given). What the file lacks
    (model, quantization, hardware, concurrency) comes from the fields; a bad file is a 400
    naming every row and field, and nothing is written."""
    form = PerformanceUploadForm(request.data, request.FILES, team=request.team)
    raise_form_errors(form)
    try:
        plan = performance_import_plan(team=request.team, **form.plan_kwargs())
    except PerformanceFileError as exc:
        return Response(exc.as_dict(), status=400)
    runs = performance_import_apply(plan=plan, user=request.user)
    runs = list(PerformanceRun.objects.filter(pk__in=[r.pk for r in runs]).select_related("summary", "variant"))
    body = {"format": plan.file_format, "runs": runs, "samples": plan.sample_count}
    return Response(PerformanceUploadResultSerializer(body).data, status=201)


@extend_schema(responses=ModelWithRunsSerializer(many=True))
@api_view(["GET"])
def models_with_runs(request):
    """Model variants that have performance runs, with how many."""
    variants = (
        ModelVariant.objects.filter(team=request.team, performance_runs__isnull=False)
        .annotate(run_count=Count("performance_runs"))
        .order_by("model_name", "quantization")
    )
    return Response(
        [
            {"id": v.pk, "model_name": v.model_name, "quantization": v.quantization, "run_count": v.run_count}
            for v in variants
        ]
    )


@extend_schema(responses=PerformanceRunSerializer(many=True))
@api_view(["GET"])
def model_runs(request, variant_id: int):
    """The runs of one model variant (paginated)."""
    variant = get_object_or_404(ModelVariant, pk=variant_id, team=request.team)
    runs = PerformanceRun.objects.filter(team=request.team, variant=variant).select_related(
        "variant", "hardware", "deployment", "summary"
    )
    paginator = PageNumberPagination()
    page = paginator.paginate_queryset(runs, request)
    return paginator.get_paginated_response(PerformanceRunSerializer(page, many=True).data)


# drf-spectacular pages a list answer (and documents `page`, `page_size`) when the view names a paginator.
model_runs.cls.pagination_class = PageNumberPagination


INCLUDE_SIMULATED = OpenApiParameter(
    SIMULATED_PARAM,
    bool,
    description="Include runs of the built-in simulator and generated demo data (default: the team's setting, "
    "off unless the team turned it on).",
)


@extend_schema(
    parameters=[
        OpenApiParameter("metric", str, enum=list(GRID_METRICS)),
        OpenApiParameter(
            "workload",
            str,
            description="The one workload the cells show, e.g. c16-in256-out128 (concurrency 16, 256 input / 128 "
            "output tokens) or r2.5-in512-out128 (2.5 requests/s); default: the most common workload of the "
            "filtered runs. `workloads` in the answer lists every key.",
        ),
        INCLUDE_SIMULATED,
        *[OpenApiParameter(name, str) for name in PerformanceRunFilter.base_filters],
    ],
    responses=OpenApiTypes.OBJECT,
)
@api_view(["GET"])
def grid(request):
    """Model variants × hardware for one metric and one workload (`workload`, the answer's
    `workload` says which); each cell the mean over the matching runs."""
    query = GridQueryForm(request.query_params)
    raise_form_errors(query)
    runs = PerformanceRun.objects.filter(team=request.team)
    if any(name in request.query_params for name in FILTER_PARAMETERS):  # else the FilterSet's form is all it costs
        filterset = PerformanceRunFilter(request.query_params, queryset=runs)
        raise_form_errors(filterset.form)
        runs = filterset.qs
    result = performance_grid(
        team=request.team,
        metric=query.cleaned_data["metric"],
        runs=runs,
        workload=query.cleaned_data["workload"],
        include_simulated=include_simulated(request),
    )
    return Response(result.as_dict())


@extend_schema(
    parameters=[OpenApiParameter("runs", str, required=True), INCLUDE_SIMULATED], responses=OpenApiTypes.OBJECT
)
@api_view(["GET"])
def compare(request):
    """Two to four runs side by side: figures, differences against the first, radar values, and
    a Mann-Whitney U test per latency metric on one value per request (ITL: the request's mean
    gap). A simulated run is compared only with `include_simulated`."""
    form = CompareQueryForm(request.query_params)
    raise_form_errors(form)
    ids = form.cleaned_data["runs"]
    runs = {
        r.pk: r
        for r in PerformanceRun.objects.filter(team=request.team, pk__in=ids).select_related("summary", "variant")
    }
    missing = [i for i in ids if i not in runs]
    if missing:
        raise NotFound(f"No run {', '.join(map(str, missing))} in this team.")
    simulated = simulated_left_out([runs[i] for i in ids], include_simulated(request))
    if simulated:
        raise ValidationError({"runs": [simulated]})
    comparison = compare_runs(runs=[runs[i] for i in ids])
    return Response(
        {
            "runs": [{"id": r.pk, "label": r.label, "is_simulated": r.is_simulated} for r in comparison.runs],
            "figures": comparison.rows,
            "radar": {"indicators": comparison.radar, "values": comparison.radar_values},
            "significance_method": SIGNIFICANCE_METHOD,
            "significance": {
                str(run_id): [
                    {
                        "metric": t.metric,
                        "label": t.label,
                        "test": "mann-whitney-u",
                        "values": "one per successful request" + (" (its mean ITL)" if t.metric == "itl_ms" else ""),
                        "n_first": t.n_first,
                        "n_other": t.n_other,
                        "p_value": t.p_value,
                        "p_value_text": p_value_text(t.p_value),
                        "statistic": t.statistic,
                        "significant": t.significant,
                        "note": t.note,
                    }
                    for t in tests
                ]
                for run_id, tests in comparison.significance.items()
            },
        }
    )


@extend_schema(parameters=[INCLUDE_SIMULATED], responses=ModelingConfigurationSerializer(many=True))
@api_view(["GET"])
def modeling_models(request):
    """Model variant × hardware configurations with runs, and whether they have enough for predictions."""
    return Response(modeling_configurations(team=request.team, include_simulated=include_simulated(request)))


@extend_schema(request=PredictRequestSerializer, parameters=[INCLUDE_SIMULATED], responses=OpenApiTypes.OBJECT)
@api_view(["POST"])
@parser_classes([JSONObjectParser, FormParser, MultiPartParser])
def predict_view(request):
    """Predict TTFT, TPOT, E2E and throughput for a workload, with 95% prediction intervals (log-scale
    fit, so positive) and a confidence score; 422 with the reason when the team's runs are not enough.
    Simulated runs count only with `include_simulated`."""
    form = PredictForm(request.data, team=request.team)
    raise_form_errors(form)
    data = form.cleaned_data
    try:
        prediction = predict(
            team=request.team, variant_id=data["variant"].pk, hardware_id=data["hardware"].pk,
            input_tokens=data["input_tokens"], output_tokens=data["output_tokens"], concurrency=data["concurrency"],
            include_simulated=include_simulated(request),
        )  # fmt: skip
    except NotEnoughData as exc:
        return Response({"detail": str(exc), "enough_data": False}, status=422)
    return Response({"enough_data": True, **asdict(prediction)})


# A prediction changes nothing, so a viewer may ask for one despite the POST.
predict_view.cls.write_role = Membership.Role.VIEWER
# Answers computed across many runs get the lower analytics rate (llmbench/throttling.py).
grid.cls.throttle_cost_scope = compare.cls.throttle_cost_scope = predict_view.cls.throttle_cost_scope = "analytics"
