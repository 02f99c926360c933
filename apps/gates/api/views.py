"""CI gates API: POST /api/v1/gates starts one, GET /api/v1/gates/{id} answers pending / running / passed / failed /
error with each criterion; saved checks under /api/v1/gate-checks."""

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from apps.gates.api.serializers import GateCheckSerializer, GateCreateSerializer, GateSerializer
from apps.gates.filters import GateFilter
from apps.gates.models import Gate, GateCheck
from apps.gates.services import GateRefused, check_delete, check_save, gate_fresh, gate_start
from apps.providers.budget import budget_refusals_as_400

FRESH_ON_LIST = 50  # unfinished gates of a listed page judged before answering (a read is a look too)


def _refused_as_400(exc: GateRefused):
    return ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages})


class GateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """CI gates of the team, newest first. A gate repeats a check's run against the change under test (an endpoint
    or model) and judges it by its criteria; reading a gate whose run has ended judges it. Filters: status, kind,
    check (a saved check's name)."""

    queryset = Gate.objects.none()
    serializer_class = GateSerializer
    filterset_class = GateFilter
    throttle_cost_scope = {"create": "run_start"}
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        return Gate.objects.filter(team=self.request.team).select_related("saved_check", "created_by")

    def list(self, request, *args, **kwargs):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        rows = page if page is not None else list(queryset)
        for gate in [g for g in rows if not g.is_finished][:FRESH_ON_LIST]:
            gate_fresh(gate)
        data = self.get_serializer(rows, many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    def retrieve(self, request, *args, **kwargs):
        """A gate with each criterion: its figure, interval, test, p-value and verdict (judged now if its run has
        ended)."""
        return Response(self.get_serializer(gate_fresh(self.get_object())).data)

    @extend_schema(request=GateCreateSerializer, responses={201: GateSerializer})
    def create(self, request):
        """Start a gate: `check` (a saved check's name), or `kind` + `run`; optionally `endpoint` / `model` (the
        change under test), `criteria`, `baseline`, `alpha` (given values replace the check's). 201 with its id and
        status; 400 naming the field, or with the budget's figures when the run would exceed it."""
        body = GateCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        check = None
        if data.get("check"):
            check = GateCheck.objects.filter(team=request.team, name=data["check"]).first()
            if check is None:
                raise ValidationError({"check": [f"The team has no saved check named “{data['check']}”."]})
        try:
            with budget_refusals_as_400(), transaction.atomic():
                gate = gate_start(
                    team=request.team, user=request.user, check=check, name=data.get("name", ""),
                    kind=data.get("kind", ""), run_id=data.get("run"), endpoint_id=data.get("endpoint"),
                    model=data.get("model", ""), criteria=data.get("criteria"), baseline_id=data.get("baseline"),
                    alpha=data.get("alpha"),
                )  # fmt: skip
        except GateRefused as exc:
            raise _refused_as_400(exc) from None
        return Response(self.get_serializer(gate).data, status=status.HTTP_201_CREATED)


class GateCheckViewSet(viewsets.ModelViewSet):
    """Saved checks of the team: a named configuration a pipeline starts with `{"check": "<name>"}`. Deleting one
    keeps its gates."""

    queryset = GateCheck.objects.none()
    serializer_class = GateCheckSerializer
    lookup_value_regex = r"\d+"
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return GateCheck.objects.filter(team=self.request.team)

    def _save(self, serializer, check=None):
        data = serializer.validated_data
        current = {
            "name": check.name, "description": check.description, "kind": check.kind, "run_id": check.template_run_id,
            "endpoint_id": check.endpoint_id, "model": check.model, "criteria": check.criteria,
            "baseline_id": check.baseline_run_id, "alpha": check.alpha,
        } if check else {}  # fmt: skip
        given = {
            "name": data.get("name"), "description": data.get("description"), "kind": data.get("kind"),
            "run_id": data.get("template_run_id"), "endpoint_id": data.get("endpoint_id", ...),
            "model": data.get("model"), "criteria": data.get("criteria"), "baseline_id": data.get("baseline_run_id", ...),
            "alpha": data.get("alpha"),
        }  # fmt: skip
        merged = {**current, **{k: v for k, v in given.items() if v is not None and v is not ...}}
        for key in ("endpoint_id", "baseline_id"):  # null clears
            if given[key] is None:
                merged[key] = None
        merged.setdefault("alpha", 0.05)
        try:
            return check_save(team=self.request.team, user=self.request.user, check=check, **merged)
        except GateRefused as exc:
            errors = exc.message_dict
            names = {"run": "run", "baseline": "baseline", "endpoint": "endpoint"}
            raise ValidationError({names.get(k, k): v for k, v in errors.items()}) from None

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        check = self._save(serializer)
        return Response(self.get_serializer(check).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        check = self.get_object()
        serializer = self.get_serializer(check, data=request.data, partial=kwargs.get("partial", False))
        serializer.is_valid(raise_exception=True)
        return Response(self.get_serializer(self._save(serializer, check)).data)

    def perform_destroy(self, instance):
        check_delete(check=instance)
