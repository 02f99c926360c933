from dataclasses import asdict

from django.http import HttpResponse, HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from apps.accounts.simulated import PARAM as INCLUDE_SIMULATED
from apps.accounts.simulated import include_simulated
from apps.scores.api.serializers import (
    BenchmarkSerializer,
    LeaderboardRowSerializer,
    ModelVariantSerializer,
    QuantizationRowSerializer,
    ScoreImportResultSerializer,
    ScoreSerializer,
)
from apps.scores.cache import cached_answer
from apps.scores.filters import ModelVariantFilter, ScoreFilter
from apps.scores.forms import LeaderboardQueryForm, QuantizationQueryForm, ScoreImportForm
from apps.scores.importers import ScoreFileError
from apps.scores.models import Benchmark, ModelVariant, Score
from apps.scores.selectors import RANKING_RULE, leaderboard, quantization_report
from apps.scores.services import scores_import
from llmbench.api import TeamScopedViewSet, raise_form_errors


class ModelVariantViewSet(TeamScopedViewSet):
    """The model catalog: model name + quantization, family, parameter count."""

    queryset = ModelVariant.objects.all()
    serializer_class = ModelVariantSerializer
    filterset_class = ModelVariantFilter


class BenchmarkViewSet(TeamScopedViewSet):
    """Quality benchmarks with their scale and direction."""

    queryset = Benchmark.objects.all()
    serializer_class = BenchmarkSerializer


INCLUDE_SIMULATED_PARAMETER = OpenApiParameter(
    INCLUDE_SIMULATED,
    OpenApiTypes.BOOL,
    description="Include simulated scores (generated demo data); left out unless this is true or the team's "
    "'show simulated' setting is on. Rows that include one have `simulated: true` and list them in "
    "`simulated_benchmarks`.",
)
LEADERBOARD_PARAMETERS = [
    OpenApiParameter(
        "benchmark", str, description="Comma-separated benchmark names to show; the average is over these."
    ),
    OpenApiParameter("family", str),
    OpenApiParameter("quantization", str),
    OpenApiParameter(
        "sort", str, description=f"'average' (default), 'model' or a benchmark name. By average: {RANKING_RULE}"
    ),
    OpenApiParameter("order", str, enum=["desc", "asc"]),
    INCLUDE_SIMULATED_PARAMETER,
]


def _cached_json(request, what: str, with_simulated: bool, answer) -> HttpResponseBase:
    """The JSON of `answer()` (a paginated Response) cached as bytes per team, absolute URL (the pagination links
    carry the host) and data version (apps/scores/cache.py); the browsable API is answered fresh.

    Rendered in the view, so what is returned holds bytes, not the rows: DRF keeps the view and every Response in
    reference cycles, so what they hold is freed only by a full garbage collection, which for the quantization
    view's thousands of small dicts was the endpoint's p95."""
    if not isinstance(request.accepted_renderer, JSONRenderer):
        return answer()
    body = cached_answer(
        what, request.team, (request.build_absolute_uri(), with_simulated),
        lambda: request.accepted_renderer.render(answer().data, request.accepted_media_type),
    )  # fmt: skip
    return HttpResponse(body, content_type="application/json")


class ScoreViewSet(TeamScopedViewSet):
    """Benchmark scores of model variants (percent), plus import, leaderboard and quantization view."""

    queryset = Score.objects.select_related("variant", "benchmark")
    serializer_class = ScoreSerializer
    filterset_class = ScoreFilter
    # The leaderboard and the quantization view are answered from a cache (apps/scores/cache.py): the per-token rate
    # is enough, unlike the analytics aggregations (llmbench/throttling.py).

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "format": {"type": "string", "enum": ["csv", "lm_eval_json"]},
                    "scale": {"type": "string", "enum": ["auto", "fraction", "percent"]},
                    "column_map": {"type": "string", "description": "JSON object: your column → ours"},
                    "model": {"type": "string"},
                    "quantization": {"type": "string"},
                },
                "required": ["file"],
            }
        },
        responses={201: ScoreImportResultSerializer},
    )
    @action(detail=False, methods=["post"], url_path="import", parser_classes=[MultiPartParser, FormParser])
    def import_file(self, request):
        """Import a long/wide CSV or lm-eval JSON. A bad file is a 400 listing every bad row and
        field, and nothing is written; re-importing the same rows updates them."""
        form = ScoreImportForm(request.data, request.FILES)
        raise_form_errors(form)
        try:
            summary = scores_import(team=request.team, **form.import_kwargs())
        except ScoreFileError as exc:
            return Response(exc.as_dict(), status=400)
        return Response(ScoreImportResultSerializer(asdict(summary)).data, status=201)

    @extend_schema(
        parameters=LEADERBOARD_PARAMETERS,
        responses=LeaderboardRowSerializer(many=True),
        description="Variants ranked by the average of their benchmark scores, or by one benchmark. "
        f"{RANKING_RULE} `coverage_count` of `coverage_total` says how many of the averaged benchmarks a "
        "variant has. Simulated scores are left out unless `include_simulated` is true.",
    )
    @action(detail=False, methods=["get"], filterset_class=None)
    def leaderboard(self, request):
        """Variants ranked by the average of their benchmark scores, or by one benchmark."""
        # One read of the benchmarks serves both the validation of the query and the board.
        benchmarks = list(Benchmark.objects.filter(team=request.team).order_by("name"))
        form = LeaderboardQueryForm(request.query_params, benchmark_names=[b.name for b in benchmarks])
        raise_form_errors(form)
        with_simulated = include_simulated(request)

        def answer():
            board = leaderboard(team=request.team, include_simulated=with_simulated, team_benchmarks=benchmarks,
                                **form.selector_kwargs())  # fmt: skip
            page = self.paginate_queryset(range(len(board.rows)))  # positions: the paginator keeps its page
            # The serializers describe the schema; building plain dicts is many times faster.
            response = self.get_paginated_response([board.rows[i].as_dict() for i in page])
            response.data["benchmarks"] = [b.name for b in board.benchmarks]
            return response

        return _cached_json(request, "leaderboard-api", with_simulated, answer)

    @extend_schema(
        parameters=[OpenApiParameter("family", OpenApiTypes.STR), INCLUDE_SIMULATED_PARAMETER],
        responses=QuantizationRowSerializer(many=True),
    )
    @action(detail=False, methods=["get"], filterset_class=None)
    def quantization(self, request):
        """Each quantized variant against its full-precision base: points lost per benchmark.
        Simulated scores are left out unless `include_simulated` is true."""
        form = QuantizationQueryForm(request.query_params)
        raise_form_errors(form)
        with_simulated = include_simulated(request)

        def answer():
            report = quantization_report(
                team=request.team, family=form.cleaned_data["family"].strip() or None, include_simulated=with_simulated
            )
            page = self.paginate_queryset(range(len(report.rows)))  # positions: the paginator keeps its page
            response = self.get_paginated_response([report.rows[i].as_dict() for i in page])
            response.data["benchmarks"] = [b.name for b in report.benchmarks]
            response.data["without_base"] = report.without_base
            return response

        return _cached_json(request, "quantization-api", with_simulated, answer)
