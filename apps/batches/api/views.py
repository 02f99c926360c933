"""Load sweep API: create, list, detail (the status), start, cancel, progress as Server-Sent Events."""

import asyncio
import json

from asgiref.sync import sync_to_async
from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.accounts.authentication import TokenAuthentication
from apps.batches.forms import LoadSweepForm
from apps.batches.models import LoadSweep
from apps.batches.services import progress_payload, sweep_cancel, sweep_create, sweep_start
from llmbench.api import raise_form_errors

SSE_INTERVAL_S = 0.5
SSE_MAX_S = 3600


class LoadSweepSerializer(serializers.ModelSerializer):
    state = serializers.SerializerMethodField()

    class Meta:
        model = LoadSweep
        fields = [
            "id", "name", "endpoint", "model", "variant", "hardware", "deployment", "mode", "arrivals", "levels",
            "step_duration_s", "step_request_count", "prompt_tokens", "prompt_tokens_stdev", "output_tokens",
            "ignore_eos", "temperature", "seed", "status", "error", "created_at", "started_at", "finished_at", "state",
        ]  # fmt: skip
        read_only_fields = fields

    def get_state(self, sweep) -> dict:
        return progress_payload(sweep)


class LoadSweepViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Load sweeps of the team. The detail is the status endpoint (steps, live figures, runs)."""

    queryset = LoadSweep.objects.all()
    serializer_class = LoadSweepSerializer

    def get_queryset(self):
        return super().get_queryset().filter(team=self.request.team)

    @extend_schema(request=OpenApiTypes.OBJECT, responses={201: LoadSweepSerializer})
    def create(self, request):
        """Create a sweep (and start it with `"start": true`)."""
        form = LoadSweepForm(_with_defaults(request.data), team=request.team)
        raise_form_errors(form)
        sweep = sweep_create(team=request.team, user=request.user, **form.sweep_fields())
        if request.data.get("start") in (True, "true", "1", 1):
            sweep = sweep_start(sweep=sweep)
        return Response(self.get_serializer(sweep).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=LoadSweepSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        """Queue a pending sweep, or resume a failed one (finished steps are kept)."""
        try:
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


def _sse(payload: dict) -> bytes:
    return f"event: progress\ndata: {json.dumps(payload)}\n\n".encode()


async def sweep_progress_sse(request, pk: int):
    """GET /api/v1/sweeps/{id}/progress: Server-Sent Events of the sweep's state, read from the
    database every half second until it finishes. Token or session authentication."""
    user = await sync_to_async(_authenticated_team)(request)
    if user is None:
        return StreamingHttpResponse(iter([b'{"detail": "Authentication required."}']), status=401,
                                     content_type="application/json")  # fmt: skip
    sweep = await LoadSweep.objects.filter(pk=pk, team=request.team).afirst()
    if sweep is None:
        raise Http404("No such sweep in this team.")

    async def events():
        waited = 0.0
        while waited < SSE_MAX_S:
            current = await LoadSweep.objects.aget(pk=pk)
            payload = await sync_to_async(progress_payload)(current)
            yield _sse(payload)
            if current.is_finished:
                return
            await asyncio.sleep(SSE_INTERVAL_S)
            waited += SSE_INTERVAL_S

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def _authenticated_team(request):
    """The session user, or the token's; sets request.team like the API does."""
    try:
        found = TokenAuthentication().authenticate(_DrfShim(request))
    except exceptions.AuthenticationFailed:
        return None
    if found is not None:
        return found[0]
    return request.user if request.user.is_authenticated and request.membership else None


class _DrfShim:
    """Just enough of a DRF request for TokenAuthentication."""

    def __init__(self, request):
        self._request = request
        self.META = request.META
        self.headers = request.headers
