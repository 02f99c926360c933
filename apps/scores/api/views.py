from dataclasses import asdict

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from apps.scores.api.serializers import (
    BenchmarkSerializer,
    LeaderboardRowSerializer,
    ModelVariantSerializer,
    QuantizationRowSerializer,
    ScoreImportResultSerializer,
    ScoreSerializer,
)
from apps.scores.filters import ModelVariantFilter, ScoreFilter
from apps.scores.forms import LeaderboardQueryForm, ScoreImportForm
from apps.scores.importers import ScoreFileError
from apps.scores.models import Benchmark, ModelVariant, Score
from apps.scores.selectors import leaderboard, quantization_report
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


LEADERBOARD_PARAMETERS = [
    OpenApiParameter("benchmark", str, description="Comma-separated benchmark names to show."),
    OpenApiParameter("family", str),
    OpenApiParameter("quantization", str),
    OpenApiParameter("sort", str, description="'average' (default), 'model' or a benchmark name."),
    OpenApiParameter("order", str, enum=["desc", "asc"]),
]


class ScoreViewSet(TeamScopedViewSet):
    """Benchmark scores of model variants (percent), plus import, leaderboard and quantization view."""

    queryset = Score.objects.select_related("variant", "benchmark")
    serializer_class = ScoreSerializer
    filterset_class = ScoreFilter

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

    @extend_schema(parameters=LEADERBOARD_PARAMETERS, responses=LeaderboardRowSerializer(many=True))
    @action(detail=False, methods=["get"], filterset_class=None)
    def leaderboard(self, request):
        """Variants ranked by the average of their benchmark scores, or by one benchmark."""
        names = list(Benchmark.objects.filter(team=request.team).values_list("name", flat=True))
        form = LeaderboardQueryForm(request.query_params, benchmark_names=names)
        raise_form_errors(form)
        board = leaderboard(team=request.team, **form.selector_kwargs())
        page = self.paginate_queryset(board.rows)
        # The serializers describe the schema; building plain dicts is many times faster.
        response = self.get_paginated_response([row.as_dict() for row in page])
        response.data["benchmarks"] = [b.name for b in board.benchmarks]
        return response

    @extend_schema(
        parameters=[OpenApiParameter("family", OpenApiTypes.STR)],
        responses=QuantizationRowSerializer(many=True),
    )
    @action(detail=False, methods=["get"], filterset_class=None)
    def quantization(self, request):
        """Each quantized variant against its full-precision base: points lost per benchmark."""
        report = quantization_report(team=request.team, family=request.query_params.get("family") or None)
        page = self.paginate_queryset(report.rows)
        response = self.get_paginated_response([row.as_dict() for row in page])
        response.data["benchmarks"] = [b.name for b in report.benchmarks]
        response.data["without_base"] = report.without_base
        return response
