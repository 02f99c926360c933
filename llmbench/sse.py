"""Server-Sent Events of a job's progress, one helper for load sweeps, parameter sweeps and
experiments: the stream reads the database every half second until the job finishes, and
`documented_stream` puts such an endpoint into the OpenAPI schema as a `text/event-stream` response.

The views are plain async Django views (DRF has no async views), so authentication runs here with the
API's own authentication classes: a token pins the request to its team, a session uses the active one.
"""

import asyncio
import json
from collections.abc import Callable
from functools import wraps

from channels.db import database_sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.views import APIView

SSE_INTERVAL_S = 0.5
SSE_MAX_S = 3600
EVENT_STREAM = "text/event-stream"


def sse_event(payload: dict, event: str = "progress") -> bytes:
    """One event in the wire format: `event: <name>`, `data: <JSON>`, a blank line."""
    return f"event: {event}\ndata: {json.dumps(payload)}\n\n".encode()


def _authenticated(request: HttpRequest) -> bool:
    """True for a token or session user with a team; sets request.team as the API does."""
    drf_request = Request(request, authenticators=[cls() for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES])
    try:
        user = drf_request.user
    except exceptions.APIException:
        return False
    return bool(user and user.is_authenticated and getattr(request, "team", None) is not None)


async def progress_stream(
    request: HttpRequest, *, exists: Callable[[], bool], read: Callable[[], tuple[dict, bool]],
    refused: Callable[[], str] | None = None,
) -> HttpResponse:  # fmt: skip
    """Server-Sent Events of `read()` -> (payload, finished) every SSE_INTERVAL_S until finished (or
    SSE_MAX_S), for a user whose team `exists()` holds the object: else 401 or 404 as JSON.
    `refused()`, when given, returns why this object has no stream here (a 409), or ''."""
    if not await database_sync_to_async(_authenticated)(request):
        response = JsonResponse({"detail": "Authentication credentials were not provided."}, status=401)
        response["WWW-Authenticate"] = "Token"
        return response
    if not await database_sync_to_async(exists)():
        return JsonResponse({"detail": "No such object in this team."}, status=404)
    if refused is not None and (reason := await database_sync_to_async(refused)()):
        return JsonResponse({"detail": reason}, status=409)

    async def events():
        waited = 0.0
        while True:
            payload, finished = await database_sync_to_async(read)()
            yield sse_event(payload)
            if finished or waited >= SSE_MAX_S:
                return
            await asyncio.sleep(SSE_INTERVAL_S)
            waited += SSE_INTERVAL_S

    response = StreamingHttpResponse(events(), content_type=EVENT_STREAM)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def _event_schema(fields: str) -> dict:
    """One event of the stream (OpenAPI before 3.2 describes an event stream's events with `schema`): its
    `event` name and its `data` line, JSON text."""
    return {
        "type": "object",
        "properties": {
            "event": {"type": "string", "enum": ["progress"]},
            "data": {"type": "string", "description": f"JSON text: an object with {fields}."},
        },
        "required": ["event", "data"],
    }


def documented_stream(*, summary: str, fields: str, example: dict, conflict: str = ""):
    """Decorate an async SSE view so that it answers GET only (a JSON 405 otherwise) and the OpenAPI schema
    lists it: GET answering `text/event-stream`
    (each event `progress` with a JSON `data` object holding `fields`), 401, 404, and 409 when
    `conflict` says when the view refuses.

    drf-spectacular only walks DRF views, so the decorated view carries a DRF class that exists only
    to hold this description (`callback.cls`, as `APIView.as_view()` sets it); requests never reach it.
    """
    wire = sse_event(example).decode()
    refusals = {409: OpenApiResponse(description=conflict)} if conflict else {}
    schema = extend_schema(
        summary=summary,
        description=(
            "Server-Sent Events, read from the database every "
            f"{SSE_INTERVAL_S:g} s until the job finishes; each event is `progress` and its `data` is a JSON "
            f"object with {fields}. Token or session authentication."
        ),
        responses={
            (200, EVENT_STREAM): OpenApiResponse(
                _event_schema(fields), description="A stream of `progress` events.",
                examples=[OpenApiExample("One event", value=wire, media_type=EVENT_STREAM)],
            ),
            401: OpenApiResponse(description="No valid token or session."),
            404: OpenApiResponse(description="No such object in the team."),
            **refusals,
        },
    )  # fmt: skip

    def decorate(view):
        def get(self, request, *args, **kwargs):
            raise NotImplementedError("The async view answers; this class only describes it.")

        # Any other method is a JSON 405, as on the DRF views. Without csrf_exempt, CsrfViewMiddleware would
        # answer a POST first with its HTML 403 page; nothing but GET reaches the stream, and GET changes nothing.
        @csrf_exempt
        @wraps(view)
        async def get_only(request, *args, **kwargs):
            if request.method not in ("GET", "HEAD"):
                refused = JsonResponse({"detail": f'Method "{request.method}" not allowed.'}, status=405)
                refused["Allow"] = "GET, HEAD"
                return refused
            return await view(request, *args, **kwargs)

        get_only.cls = type(f"{view.__name__}_schema", (APIView,), {"get": schema(get), "__doc__": view.__doc__})
        get_only.initkwargs = {}
        return get_only

    return decorate
