"""Batch API: load sweeps (create, list, detail = status, start, cancel, progress as SSE) and parameter
sweeps (the seed's batch surface: create, list, detail, start, status, cancel, delete, results,
heatmap, analysis, optimization, insights, progress as SSE)."""

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import Membership
from apps.batches.exports import FORMATS as EXPORT_FORMATS
from apps.batches.exports import batch_export
from apps.batches.forms import BatchForm, LoadSweepForm
from apps.batches.models import FINISHED, Batch, LoadSweep
from apps.batches.parameters import RangeError
from apps.batches.selectors import (
    QUALITY_METRICS,
    ObjectiveError,
    as_json,
    batch_analysis,
    batch_insights,
    batch_optimization,
    combination_figures,
    default_axes,
    heatmap,
    objective_from,
)
from apps.batches.selectors import results as batch_results
from apps.batches.services import (
    BatchRefused,
    ConfirmationRequired,
    batch_cancel,
    batch_create,
    batch_delete,
    batch_start,
    batch_state,
    progress_payload,
    sweep_cancel,
    sweep_create,
    sweep_start,
)
from apps.experiments.api.serializers import ResponseSerializer
from apps.experiments.services import TransitionRefused
from apps.providers.budget import budget_refusals_as_400
from llmbench.api import raise_form_errors
from llmbench.export_api import ExportNegotiation, export_kind
from llmbench.humanize import duration_text
from llmbench.openapi import file_responses
from llmbench.sse import documented_stream, progress_stream


class WorkloadRefSerializer(serializers.Serializer):
    """The workload version a sweep sends (fixed when the sweep was made)."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    version = serializers.IntegerField()
    version_id = serializers.IntegerField()


class LoadSweepSerializer(serializers.ModelSerializer):
    state = serializers.SerializerMethodField()
    workload = serializers.SerializerMethodField()

    class Meta:
        model = LoadSweep
        fields = [
            "id", "name", "endpoint", "model", "variant", "hardware", "deployment", "mode", "arrivals", "levels",
            "step_duration_s", "step_request_count", "prompt_tokens", "prompt_tokens_stdev", "output_tokens",
            "ignore_eos", "temperature", "seed", "workload", "warmup_requests", "warmup_s", "token_calibration",
            "trials", "shards", "managed_by", "status", "error", "created_at", "started_at", "finished_at", "state",
        ]  # fmt: skip
        read_only_fields = fields

    def get_state(self, sweep) -> dict:
        return progress_payload(sweep)

    @extend_schema_field(WorkloadRefSerializer(allow_null=True))
    def get_workload(self, sweep) -> dict | None:
        version = sweep.workload_version
        if version is None:
            return None
        return {"id": version.workload_id, "name": version.workload.name, "version": version.number,
                "version_id": version.pk}  # fmt: skip


class LoadSweepViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Load sweeps of the team. The detail is the status endpoint (steps, live figures, runs)."""

    queryset = LoadSweep.objects.select_related("workload_version__workload")
    serializer_class = LoadSweepSerializer
    throttle_cost_scope = {"create": "run_start", "start": "run_start"}  # create may start (llmbench/throttling.py)

    def get_queryset(self):
        return super().get_queryset().filter(team=self.request.team)

    @extend_schema(request=OpenApiTypes.OBJECT, responses={201: LoadSweepSerializer})
    def create(self, request):
        """Create a sweep (and start it with `"start": true`)."""
        form = LoadSweepForm(_with_defaults(request.data), team=request.team)
        raise_form_errors(form)
        with budget_refusals_as_400(), transaction.atomic():  # refused: nothing is created
            sweep = sweep_create(team=request.team, user=request.user, **form.sweep_fields())
            if request.data.get("start") in (True, "true", "1", 1):
                sweep = sweep_start(sweep=sweep)
        return Response(self.get_serializer(sweep).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=LoadSweepSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        """Queue a pending sweep, or resume a failed one (finished steps are kept)."""
        try:
            with budget_refusals_as_400():
                sweep = sweep_start(sweep=self.get_object())
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(sweep).data)

    @extend_schema(request=None, responses=LoadSweepSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Stop a sweep: no new requests, what finished is kept."""
        return Response(self.get_serializer(sweep_cancel(sweep=self.get_object())).data)


def _with_defaults(data) -> dict:
    """API bodies may leave out what has a default, and give `levels` as a JSON list."""
    values = {
        f.name: f.default for f in LoadSweep._meta.fields if f.name in LoadSweepForm.Meta.fields and f.has_default()
    }
    values.update({k: v for k, v in data.items()})
    if isinstance(values.get("levels"), list):
        values["levels"] = ",".join(str(v) for v in values["levels"])
    return values


@documented_stream(
    summary="Live progress of a load sweep",
    fields="`status`, `steps_done`, `steps_total`, `current_step`, `live` figures and `steps` (the detail's `state`)",
    example={"id": 3, "status": "running", "steps_done": 2, "steps_total": 5, "current_step": 2, "steps": []},
)
async def sweep_progress_sse(request, pk: int):
    """GET /api/v1/sweeps/{id}/progress: Server-Sent Events of the sweep's state, read from the
    database every half second until it finishes. Token or session authentication."""

    def read() -> tuple[dict, bool]:
        sweep = LoadSweep.objects.get(pk=pk)
        return progress_payload(sweep), sweep.is_finished

    return await progress_stream(
        request, exists=lambda: LoadSweep.objects.filter(pk=pk, team=request.team).exists(), read=read
    )


# --- parameter sweeps -------------------------------------------------------------------------------


class BatchSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(source="pk")
    name = serializers.CharField(source="experiment.name")
    description = serializers.CharField(source="experiment.description")
    status = serializers.CharField(source="experiment.status")
    prompt = serializers.CharField(source="experiment.prompt")
    system_prompt = serializers.CharField(source="experiment.system_prompt")
    responses_per_combination = serializers.IntegerField(source="experiment.responses_per_item")
    created_at = serializers.DateTimeField(source="experiment.created_at")
    targets = serializers.SerializerMethodField()
    test_cases = serializers.SerializerMethodField()
    total_combinations = serializers.IntegerField(source="combination_count")
    total_results = serializers.IntegerField(source="result_count")
    estimated_duration = serializers.SerializerMethodField()
    state = serializers.SerializerMethodField()

    class Meta:
        model = Batch
        fields = [
            "id", "name", "description", "status", "prompt", "system_prompt", "test_cases", "targets",
            "parameter_ranges", "parameter_values", "total_combinations", "responses_per_combination", "total_results",
            "concurrency", "objective", "estimate", "estimated_duration", "created_at", "state",
        ]  # fmt: skip
        read_only_fields = fields

    def get_targets(self, batch) -> list[dict]:
        return [{"id": t.pk, "endpoint": t.endpoint.name, "model": t.model} for t in batch.experiment.targets.all()]

    def get_test_cases(self, batch) -> list[int]:
        return [c.pk for c in batch.experiment.test_cases.all()]

    def get_estimated_duration(self, batch) -> str:
        return duration_text(batch.estimate.get("duration_s"))

    def get_state(self, batch) -> dict:
        return batch_state(batch)


class BatchStartSerializer(serializers.Serializer):
    confirm = serializers.BooleanField(required=False, default=False)


def _batch_form_data(data) -> dict:
    """An API body as BatchForm data: `targets` as [{endpoint, model}], `parameter_ranges` as an
    object, `responses_per_combination` for the repetitions; defaults for what is left out."""
    values = {"responses_per_item": 1, "concurrency": 4, "objective": Batch.Objective.OVERALL, "description": "",
              "system_prompt": "", "prompt": ""}  # fmt: skip
    values.update({k: v for k, v in data.items()})
    if isinstance(values.get("targets"), list):
        values["targets_text"] = "\n".join(
            f"{t.get('endpoint')}: {t.get('model')}" if isinstance(t, dict) else str(t) for t in values["targets"]
        )
    if "responses_per_combination" in values:
        values["responses_per_item"] = values["responses_per_combination"]
    if "response_count" in values:  # the seed's name
        values["responses_per_item"] = values["response_count"]
    return values


def _batch_error_names(data) -> dict[str, str]:
    """A problem with the repetitions is named by the field the body used."""
    for name in ("response_count", "responses_per_combination"):
        if name in data:
            return {"responses_per_item": name}
    return {}


def _created(form: BatchForm, request) -> Batch:
    try:
        return batch_create(team=request.team, user=request.user, **form.create_kwargs())
    except (TransitionRefused, RangeError) as exc:
        raise exceptions.ValidationError({"detail": [str(exc)]}) from None


class BatchViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Parameter sweeps of the team: create, list, detail, start, status, cancel, delete, and the
    analysis, optimization and insights of their results."""

    queryset = Batch.objects.none()
    serializer_class = BatchSerializer
    # Lower rates for what costs (llmbench/throttling.py); create may start the sweep.
    throttle_cost_scope = {
        "create": "run_start", "start": "run_start", "export": "exports",
        "heatmap": "analytics", "analysis": "analytics", "optimization": "analytics", "insights": "analytics",
    }  # fmt: skip

    def get_queryset(self):
        return (
            Batch.objects.filter(experiment__team=self.request.team)
            .select_related("experiment")
            .prefetch_related("experiment__targets__endpoint", "experiment__test_cases")
            .order_by("-experiment__created_at", "-pk")
        )

    @extend_schema(request=OpenApiTypes.OBJECT, responses={201: BatchSerializer})
    def create(self, request):
        """Create a sweep: `name`, `targets` ([{"endpoint": "<name>", "model": "..."}]), `prompt` or
        `test_cases` (approved ids) or `suite`, `parameter_ranges` (seed format),
        `responses_per_combination`, `concurrency`, `objective`; `"start": true` queues it
        (with `"confirm": true` when it is over the team's limit)."""
        form = BatchForm(_batch_form_data(request.data), team=request.team, api=True)
        raise_form_errors(form, _batch_error_names(request.data))
        start, confirm = _flag(request.data.get("start")), _flag(request.data.get("confirm"))
        with budget_refusals_as_400(), transaction.atomic():  # refused: nothing is created
            batch = _created(form, request)
            if start:
                try:
                    batch_start(batch=batch, confirm=confirm)
                except ConfirmationRequired as exc:
                    transaction.set_rollback(True)
                    raise exceptions.ValidationError({"confirm": [str(exc)]}) from None
        return Response(self.get_serializer(self.get_queryset().get(pk=batch.pk)).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT)
    @action(detail=False, methods=["post"])
    def estimate(self, request):
        """What a sweep would take, without creating it: combinations, requests, duration, cost."""
        form = BatchForm(_batch_form_data(request.data), team=request.team, api=True)
        raise_form_errors(form, _batch_error_names(request.data))
        return Response(form.estimate().as_dict())

    def destroy(self, request, pk=None):
        """Delete a batch that is not running (cancel a running one first), with its results."""
        try:
            batch_delete(batch=self.get_object())
        except BatchRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=BatchStartSerializer, responses=BatchSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        """Queue a pending batch or resume a failed or cancelled one; `confirm` when over the limit."""
        body = BatchStartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            with budget_refusals_as_400():
                batch = batch_start(batch=self.get_object(), confirm=body.validated_data["confirm"])
        except ConfirmationRequired as exc:
            return Response({"detail": str(exc), "confirm": [str(exc)]}, status=status.HTTP_409_CONFLICT)
        except BatchRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(self.get_queryset().get(pk=batch.pk)).data)

    @extend_schema(request=None, responses=BatchSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Stop sending at once; stored results stay."""
        batch = batch_cancel(batch=self.get_object())
        return Response(self.get_serializer(self.get_queryset().get(pk=batch.pk)).data)

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"], url_path="status")
    def status_(self, request, pk=None):
        """Progress, current parameters, estimated completion and `results_preview` (best and
        average of the objective so far, the best parameters)."""
        return Response(batch_state(self.get_object()))

    @extend_schema(
        parameters=[OpenApiParameter("combination", int), OpenApiParameter("target", int),
                    OpenApiParameter("errors", bool)],
        responses=ResponseSerializer(many=True),
    )  # fmt: skip
    @action(detail=True, methods=["get"])
    def results(self, request, pk=None):
        """Every stored result (a response with its evaluation and text metrics), paginated."""
        rows = batch_results(self.get_object()).select_related(None).order_by("id")
        params = request.query_params
        for name, field in (("combination", "combination"), ("target", "target_id")):
            if params.get(name):
                if not params[name].isdigit():
                    return Response({name: ["A whole number."]}, status=status.HTTP_400_BAD_REQUEST)
                rows = rows.filter(**{field: int(params[name])})
        if params.get("errors") in ("1", "true"):
            rows = rows.exclude(error_code="")
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(ResponseSerializer(page, many=True).data)

    @extend_schema(parameters=[OpenApiParameter("metric", str), OpenApiParameter("sort", str)],
                   responses=OpenApiTypes.OBJECT)  # fmt: skip
    @action(detail=True, methods=["get"])
    def combinations(self, request, pk=None):
        """Per combination: its parameters, results, errors, mean of `metric` (default the batch's
        objective), mean latency and cost; `sort` = index | mean | -mean."""
        batch = self.get_object()
        metric = request.query_params.get("metric") or batch.objective
        if metric not in QUALITY_METRICS:
            return Response({"metric": [f"One of: {', '.join(QUALITY_METRICS)}."]}, status=status.HTTP_400_BAD_REQUEST)
        rows = combination_figures(batch, metric)
        sort = request.query_params.get("sort", "index")
        if sort not in ("index", "mean", "-mean"):
            return Response({"sort": ["One of: index, mean, -mean."]}, status=status.HTTP_400_BAD_REQUEST)
        if sort != "index":
            rows.sort(key=lambda r: (r.mean is None, -(r.mean or 0) if sort == "-mean" else (r.mean or 0)))
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(as_json(page))

    @extend_schema(
        parameters=[OpenApiParameter("x", str), OpenApiParameter("y", str), OpenApiParameter("metric", str),
                    OpenApiParameter("target", int)],
        responses=OpenApiTypes.OBJECT,
    )  # fmt: skip
    @action(detail=True, methods=["get"])
    def heatmap(self, request, pk=None):
        """Mean of `metric` per (x, y) value pair over the results so far (default temperature ×
        top_p and the batch's objective); `through_id` is the last result counted."""
        batch = self.get_object()
        x_default, y_default = default_axes(batch.parameter_values)
        params = request.query_params
        metric = params.get("metric") or batch.objective
        if metric not in QUALITY_METRICS:
            return Response({"metric": [f"One of: {', '.join(QUALITY_METRICS)}."]}, status=status.HTTP_400_BAD_REQUEST)
        x = params.get("x") or x_default
        y = params.get("y") if "y" in params else y_default
        target = params.get("target")
        if target and not target.isdigit():
            return Response({"target": ["A whole number."]}, status=status.HTTP_400_BAD_REQUEST)
        try:
            return Response(heatmap(batch, x=x, y=y or None, metric=metric, target_id=int(target) if target else None))
        except ValueError as exc:
            return Response({"x" if x not in batch.parameter_values else "y": [str(exc)]},
                            status=status.HTTP_400_BAD_REQUEST)  # fmt: skip

    @extend_schema(responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def analysis(self, request, pk=None):
        """Per swept parameter and figure: mean with its 95% interval per value, one-way ANOVA and
        Kruskal-Wallis (with p-values); Pearson and Spearman correlations."""
        return Response(batch_analysis(self.get_object()))

    @extend_schema(
        parameters=[OpenApiParameter("objective", str), OpenApiParameter("weights", str),
                    OpenApiParameter("quality_metric", str)],
        responses=OpenApiTypes.OBJECT,
    )  # fmt: skip
    @action(detail=True, methods=["get"])
    def optimization(self, request, pk=None):
        """Best value per parameter for `objective` (a figure) or `weights` (quality:0.6,latency:0.3,
        cost:0.1): confidence, effect in points and percent, recommended range; the best combination."""
        batch = self.get_object()
        try:
            objective = objective_from(request.query_params, batch.objective)
        except ObjectiveError as exc:
            return Response({exc.field: [exc.problem]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(batch_optimization(batch, objective))

    @extend_schema(
        parameters=[OpenApiParameter("objective", str), OpenApiParameter("weights", str),
                    OpenApiParameter("quality_metric", str)],
        responses=OpenApiTypes.OBJECT,
    )  # fmt: skip
    @action(detail=True, methods=["get"])
    def insights(self, request, pk=None):
        """Sentences from the statistics, each citing its numbers and test."""
        batch = self.get_object()
        try:
            objective = objective_from(request.query_params, batch.objective)
        except ObjectiveError as exc:
            return Response({exc.field: [exc.problem]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(batch_insights(batch, objective))

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=list(EXPORT_FORMATS))],
        responses=file_responses(EXPORT_FORMATS),
    )
    @action(detail=True, methods=["get"], content_negotiation_class=ExportNegotiation)
    def export(self, request, pk=None):
        """The batch as `?format=csv` (its combinations), `json`, `xlsx` (summary, combinations and every
        result) or `pdf` (the report)."""
        kind = export_kind(request.query_params, EXPORT_FORMATS)
        return batch_export(batch=self.get_object(), kind=kind)


class BatchExportRequestSerializer(serializers.Serializer):
    batch_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1)  # a larger id overflows the query
    format = serializers.ChoiceField(choices=EXPORT_FORMATS, default="csv")


class BatchExportView(APIView):
    """POST /api/v1/export/batch with `{"batch_id": N, "format": "csv"|"json"|"xlsx"|"pdf"}`: the seed's way to
    download a batch; the same file as GET /api/v1/batches/{id}/export."""

    write_role = Membership.Role.VIEWER  # a POST here only reads, so a viewer may download
    content_negotiation_class = ExportNegotiation
    throttle_cost_scope = "exports"

    @extend_schema(request=BatchExportRequestSerializer, responses=file_responses(EXPORT_FORMATS))
    def post(self, request):
        body = BatchExportRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        batches = Batch.objects.filter(experiment__team=request.team).select_related("experiment__team")
        try:
            batch = batches.get(pk=body.validated_data["batch_id"])
        except Batch.DoesNotExist:
            raise exceptions.NotFound("No batch with that id in this team.") from None
        return batch_export(batch=batch, kind=body.validated_data["format"])


def _flag(value) -> bool:
    return value in (True, "true", "1", 1, "on")


@documented_stream(
    summary="Live progress of a parameter sweep",
    fields="`status`, `progress` (percent), `completed_results`, `failed_results`, `total_results` and the rest "
    "of the status endpoint's body",
    example={"id": 7, "status": "running", "progress": 40.0, "completed_results": 180, "failed_results": 2,
             "total_results": 450},
)  # fmt: skip
async def batch_progress_sse(request, pk: int):
    """GET /api/v1/batches/{id}/progress: Server-Sent Events of the batch's state (the status
    endpoint's body), read from the database every half second until it finishes."""

    def read() -> tuple[dict, bool]:
        batch = Batch.objects.select_related("experiment").get(pk=pk)
        return batch_state(batch), batch.experiment.status in FINISHED

    def exists() -> bool:
        return Batch.objects.filter(pk=pk, experiment__team=request.team).exists()

    return await progress_stream(request, exists=exists, read=read)
