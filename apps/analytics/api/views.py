"""Analytics API: the seed's analytics and export endpoints. Every view answers its raw figures as JSON;
the export endpoints answer the same figures as CSV, JSON, Excel or PDF."""

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import api_view, content_negotiation_class
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from apps.accounts.models import Membership
from apps.analytics import decision
from apps.analytics.catalog import VIEWS, ParameterError, params_for
from apps.analytics.custom import FORMATS as CUSTOM_FORMATS
from apps.analytics.custom import CustomExportError, custom_export
from apps.analytics.outputs import FORMATS, download
from llmbench.export_api import ExportNegotiation, export_kind
from llmbench.exports import export_response
from llmbench.openapi import file_responses

FILTER_PARAMETERS = [
    OpenApiParameter("timeframe", str, description="7d | 30d (default) | 90d | custom"),
    OpenApiParameter("start", str, description="YYYY-MM-DD, with timeframe=custom"),
    OpenApiParameter("end", str, description="YYYY-MM-DD (inclusive), with timeframe=custom"),
    OpenApiParameter("granularity", str, description="day | week"),
    OpenApiParameter("experiment_type", str, description="all | single | batch"),
    OpenApiParameter("model", str), OpenApiParameter("tag", str),
    OpenApiParameter("metric", str, description="overall (default), a text metric, score or pass_rate"),
    OpenApiParameter("include_simulated", bool, description="1 | 0: include results of the simulator and demo data "
                     "(default: the team's setting); rows that include them have `simulated: true`"),
]  # fmt: skip


def _run(request, slug: str):
    try:
        return VIEWS[slug].run(request.team, params_for(request))
    except ParameterError as exc:
        raise ValidationError({exc.field: [exc.problem]}) from None


def _endpoint(slug: str, extra: list | None = None):
    @extend_schema(parameters=FILTER_PARAMETERS + (extra or []), responses=OpenApiTypes.OBJECT,
                   summary=VIEWS[slug].title, description=VIEWS[slug].description)  # fmt: skip
    @api_view(["GET"])
    def endpoint(request):
        return Response(_run(request, slug).data)

    endpoint.cls.__name__ = f"Analytics{slug.title().replace('-', '')}"  # one name per view in the OpenAPI schema
    endpoint.cls.throttle_cost_scope = "analytics"  # THROTTLE_RATE_ANALYTICS (llmbench/throttling.py)
    return endpoint


quality_trends = _endpoint("quality-trends")
quality_breakdown = _endpoint(
    "quality-breakdown", [OpenApiParameter("dimension", str, description="model | test_case | tag | evaluator")]
)
model_comparison = _endpoint("model-comparison")
OBJECTIVE = [
    OpenApiParameter("objective", str),
    OpenApiParameter("weights", str),
    OpenApiParameter("quality_metric", str),
]
parameter_optimization = _endpoint("parameter-optimization", OBJECTIVE)
parameter_correlation = _endpoint("parameter-correlation")
parameter_insights = _endpoint("parameter-insights", OBJECTIVE)
regressions = _endpoint("regressions")
leaderboard = _endpoint("leaderboard", [OpenApiParameter("weights", str, description="quality:0.5,speed:0.3,cost:0.2")])


@extend_schema(parameters=[OpenApiParameter("slug", str, OpenApiParameter.PATH, enum=list(VIEWS)),
                           OpenApiParameter("format", str, enum=list(FORMATS)), *FILTER_PARAMETERS],
               responses=file_responses(FORMATS))  # fmt: skip
@api_view(["GET"])
@content_negotiation_class(ExportNegotiation)
def export_analytics(request, slug: str):
    """An analytics view as a file: `format` csv (its first table), json, xlsx (a sheet per table and a summary
    sheet) or pdf (the report)."""
    if slug not in VIEWS:
        raise Http404("No such analytics view.")
    fmt = export_kind(request.query_params, FORMATS)
    return download(_run(request, slug), fmt, team=request.team)


@extend_schema(request=OpenApiTypes.OBJECT, responses=file_responses(CUSTOM_FORMATS))
@api_view(["POST"])
@content_negotiation_class(ExportNegotiation)
def export_custom(request):
    """`{"entity": "responses" | "experiments" | "runs" | "samples" | "scores", "fields": [...], "filters": {...},
    "format": "csv" | "json" | "xlsx"}`: one table of the team's rows, streamed (CSV, JSON)."""
    try:
        export = custom_export(request.team, request.data)
    except CustomExportError as exc:
        raise ValidationError({exc.field: [exc.problem]}) from None
    meta = {"entity": export.entity, "fields": export.fields, "filters": export.filters, "team": request.team.name}
    return export_response(export.format, filename=f"{export.entity}.{export.format}", title=f"Custom export: {export.entity}",
                           meta=meta, summary=[("Entity", export.entity)], tables=[export.table])  # fmt: skip


export_custom.cls.write_role = Membership.Role.VIEWER  # a POST that only reads: viewers may export
# Files cost more than answers: THROTTLE_RATE_EXPORTS (llmbench/throttling.py).
export_analytics.cls.throttle_cost_scope = export_custom.cls.throttle_cost_scope = "exports"


# --- the capacity answer (issue 14) ----------------------------------------------------------------

SIMULATED_PARAMETER = FILTER_PARAMETERS[-1]
WORKLOAD_PARAMETERS = [
    OpenApiParameter("workload", str, description="a workload key such as c16-in256-out128 (runs of that load)"),
    OpenApiParameter("workload_version", int, description="runs of this workload version only"),
]
DECISION_PARAMETERS = {
    "curves": [
        OpenApiParameter("x", str, enum=list(decision.CURVE_THROUGHPUTS), description="throughput axis"),
        OpenApiParameter("y", str, enum=list(decision.CURVE_LATENCIES), description="latency axis"),
        OpenApiParameter("slo_ms", float, description="the SLO line in milliseconds (wins over `search`)"),
        OpenApiParameter("search", int, description="a completed capacity search whose p95 objective is the line"),
        OpenApiParameter("deployments", str, description="keys such as v3-h2-d5, comma-separated (default: the "
                         f"{decision.MAX_CURVES} deployments with most runs)"),
        *WORKLOAD_PARAMETERS, SIMULATED_PARAMETER,
    ],
    "pareto": [*WORKLOAD_PARAMETERS, SIMULATED_PARAMETER],
    "cost": [
        OpenApiParameter("timeframe", str, description="7d | 30d (default) | 90d | custom: of the own test-case "
                         "quality, as on the leaderboard"),
        OpenApiParameter("start", str), OpenApiParameter("end", str), SIMULATED_PARAMETER,
    ],
}  # fmt: skip


def _decision(request, kind: str):
    try:
        return decision.decision_result(kind, request.team, params_for(request))
    except ParameterError as exc:
        raise ValidationError({exc.field: [exc.problem]}) from None


def _decision_endpoint(kind: str):
    view = decision.DECISION_VIEWS[decision.KINDS[kind]]

    @extend_schema(parameters=DECISION_PARAMETERS[kind], responses=OpenApiTypes.OBJECT, summary=view.title,
                   description=view.description)  # fmt: skip
    @api_view(["GET"])
    def endpoint(request):
        try:
            return Response(decision.decision_data(kind, request.team, params_for(request)))
        except ParameterError as exc:
            raise ValidationError({exc.field: [exc.problem]}) from None

    endpoint.cls.__name__ = f"AnalyticsDecision{kind.title()}"
    endpoint.cls.throttle_cost_scope = "analytics"
    return endpoint


decision_curves = _decision_endpoint("curves")
decision_pareto = _decision_endpoint("pareto")
decision_cost = _decision_endpoint("cost")


@extend_schema(parameters=[OpenApiParameter("kind", str, OpenApiParameter.PATH, enum=list(decision.KINDS)),
                           OpenApiParameter("format", str, enum=list(FORMATS)), *DECISION_PARAMETERS["curves"]],
               responses=file_responses(FORMATS))  # fmt: skip
@api_view(["GET"])
@content_negotiation_class(ExportNegotiation)
def export_decision(request, kind: str):
    """A decision view as a file: `format` csv (its first table), json, xlsx (a sheet per table and a summary sheet)
    or pdf (the report with its chart); the same figures as the page."""
    if kind not in decision.KINDS:
        raise Http404("No such decision view.")
    fmt = export_kind(request.query_params, FORMATS)
    return download(_decision(request, kind), fmt, team=request.team)


export_decision.cls.throttle_cost_scope = "exports"
