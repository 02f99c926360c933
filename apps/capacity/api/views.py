"""Capacity search API: list, create, detail (with progress), start, cancel, resume, delete, progress as
Server-Sent Events, and the comparison of two searches."""

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from apps.capacity.api.serializers import (
    CapacitySearchCreateSerializer,
    CapacitySearchDetailSerializer,
    CapacitySearchSerializer,
)
from apps.capacity.filters import CapacitySearchFilter
from apps.capacity.models import CapacitySearch
from apps.capacity.selectors import compare_searches
from apps.capacity.services import (
    CapacityRefused,
    capacity_cancel,
    capacity_create,
    capacity_delete,
    capacity_start,
    progress_payload,
    search_actions,
)
from apps.providers.budget import budget_refusals_as_400
from llmbench.sse import documented_stream, progress_stream


class CapacitySearchViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """Capacity searches of the team: how much traffic a deployment serves within an SLO, and at what cost."""

    queryset = CapacitySearch.objects.all()
    serializer_class = CapacitySearchSerializer
    filterset_class = CapacitySearchFilter
    # create may start the search (llmbench/throttling.py)
    throttle_cost_scope = {"create": "run_start", "start": "run_start", "resume": "run_start", "compare": "analytics"}
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        rows = super().get_queryset().filter(team=self.request.team)
        if self.action in ("retrieve", "start", "cancel", "resume"):
            rows = rows.select_related("sweep")
        return rows

    def get_serializer_class(self):
        if self.action == "list":
            return CapacitySearchSerializer
        return CapacitySearchDetailSerializer

    def _detail(self, search: CapacitySearch, code: int = status.HTTP_200_OK) -> Response:
        search = self.get_queryset().select_related("sweep").get(pk=search.pk)
        return Response(CapacitySearchDetailSerializer(search, context=self.get_serializer_context()).data, status=code)

    @extend_schema(request=CapacitySearchCreateSerializer, responses={201: CapacitySearchDetailSerializer})
    def create(self, request):
        """Create a pending search (and queue it with `"start": true`)."""
        body = CapacitySearchCreateSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        with budget_refusals_as_400(), transaction.atomic():  # refused: nothing is created
            search = capacity_create(team=request.team, user=request.user, **body.validated_data)
            if request.data.get("start") in (True, "true", "1", 1):
                search = capacity_start(search=search)
        return self._detail(search, status.HTTP_201_CREATED)

    def destroy(self, request, pk=None):
        """Delete a search that is not running, with its probes (their performance runs stay)."""
        try:
            capacity_delete(search=self.get_object())
        except CapacityRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=CapacitySearchDetailSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        """Queue a pending search (a failed or cancelled one resumes at the probe it lost)."""
        try:
            with budget_refusals_as_400():
                search = capacity_start(search=self.get_object())
        except CapacityRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return self._detail(search)

    @extend_schema(request=None, responses=CapacitySearchDetailSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Resume a failed or cancelled search: judged probes are kept and not run again."""
        search = self.get_object()
        if not search_actions(search.status)["resume"]:
            return Response({"detail": f"The search is {search.status}; only a failed or cancelled search resumes."},
                            status=status.HTTP_409_CONFLICT)  # fmt: skip
        try:
            with budget_refusals_as_400():
                search = capacity_start(search=search)
        except CapacityRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return self._detail(search)

    @extend_schema(request=None, responses=CapacitySearchDetailSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Stop a search: the probe running stops within half a second and is kept."""
        return self._detail(capacity_cancel(search=self.get_object()))

    @extend_schema(
        parameters=[OpenApiParameter("a", int, required=True), OpenApiParameter("b", int, required=True)],
        responses=OpenApiTypes.OBJECT,
    )
    @action(detail=False, methods=["get"], filterset_class=None, pagination_class=None)
    def compare(self, request):
        """Two searches side by side: capacities, whether their brackets overlap (in words) and, when both have 2
        or more trials at their capacity level, Welch's t-test of goodput at capacity across trials."""
        ids, errors = {}, {}
        for name in ("a", "b"):
            raw = request.query_params.get(name, "")
            if not raw.isdigit():
                errors[name] = ["The id of one of the team's capacity searches (a whole number)."]
            else:
                ids[name] = int(raw)
        if errors:
            raise ValidationError(errors)
        rows = self.get_queryset().select_related("hardware").prefetch_related("probes")
        found = {s.pk: s for s in rows.filter(pk__in=ids.values())}
        missing = [name for name, pk in ids.items() if pk not in found]
        if missing:
            raise NotFound(f"No capacity search {', '.join(str(ids[n]) for n in missing)} in this team.")
        return Response(compare_searches(found[ids["a"]], found[ids["b"]]))


@documented_stream(
    summary="Live progress of a capacity search",
    fields="`status`, `phase`, `actions`, `bracket`, `probes_used`, `running` (the probe in flight with its live "
    "figures), `probes` and, once found, `result` (the detail's `state`)",
    example={"id": 3, "status": "running", "phase": "ramp", "bracket": {"low": 8, "high": None}, "probes_used": 4,
             "probes": [], "result": {}},
)  # fmt: skip
async def capacity_progress_sse(request, pk: int):
    """GET /api/v1/capacity/{id}/progress: Server-Sent Events of the search's progress, read from the database
    every half second until it finishes. Token or session authentication."""

    def read() -> tuple[dict, bool]:
        search = CapacitySearch.objects.select_related("sweep").get(pk=pk)
        return progress_payload(search), search.is_finished

    return await progress_stream(
        request, exists=lambda: CapacitySearch.objects.filter(pk=pk, team=request.team).exists(), read=read
    )
