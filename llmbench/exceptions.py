"""API errors are JSON and name the request: DRF's exception handler plus the request id, and the
few failures DRF never sees (an unknown URL, an uncaught exception) answered as JSON under /api/."""

import logging

from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated
from rest_framework.response import Response
from rest_framework.views import exception_handler

from llmbench.request_id import current_request_id
from llmbench.throttling import RateLimited, note_anonymous_refusal, note_auth_failure

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"


def is_api_request(request) -> bool:
    return request.path.startswith(API_PREFIX)


def with_request_id(body) -> dict:
    """An error body as an object carrying `request_id` (a bare list of messages becomes its `detail`)."""
    body = dict(body) if isinstance(body, dict) else {"detail": body}
    body["request_id"] = current_request_id()
    return body


def api_exception_handler(exc, context):
    """DRF's handler, with the request id in the body. Python's recursion limit, reached only by input
    nested past what the parsers check (JSON inside a form field), is the client's 400, logged with
    its traceback in case it is ours; anything else unhandled goes on to handler500 (a JSON 500).
    A 401 counts against the caller's address (bad credentials: "auth_failure"; none: "anon"), and
    becomes a 429 once that address is over its rate."""
    if isinstance(exc, AuthenticationFailed | NotAuthenticated) and (request := context.get("request")):
        try:
            (note_auth_failure if isinstance(exc, AuthenticationFailed) else note_anonymous_refusal)(request)
        except RateLimited as limited:
            exc = limited
    if isinstance(exc, RecursionError):
        logger.warning("Input nested too deeply to process", exc_info=exc)
        detail = "The request is nested too deeply to process; flatten its JSON (see the JSON_MAX_DEPTH setting)."
        return Response(with_request_id({"detail": detail}), status=400)
    response = exception_handler(exc, context)
    if response is not None:
        response.data = with_request_id(response.data)
    return response
