"""Log formats and the per-request log line (LOG_FORMAT, LOG_REQUESTS).

LOG_FORMAT=json makes every record one JSON object on one line: time (ISO 8601, UTC), level, logger,
message, request_id (null outside a request), the record's extra fields, and the traceback as
`exception` when there is one. AccessLogMiddleware writes one line per request at INFO on the logger
"llmbench.request"; in the plain format that line reads "GET /path 200 12.3ms user=… team=… ip=…", in
JSON the same facts are fields of their own (docs/observability.md).
"""

import logging
import time
from datetime import UTC, datetime

from django.conf import settings
from django.utils.functional import empty
from django_guid.context import guid
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

from llmbench.clientip import client_ip

DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"
RENAMED_FIELDS = {"asctime": "time", "levelname": "level", "name": "logger", "exc_info": "exception"}
# Left out of the JSON: Django's error records carry the request object itself (its repr says no more
# than the request line does, and would print the query string), uvicorn a colour-coded copy of the message.
LEFT_OUT = [*RESERVED_ATTRS, "request", "color_message", "taskName"]

request_log = logging.getLogger("llmbench.request")
REQUEST_MESSAGE = "%s %s %s %.1fms user=%s team=%s ip=%s"


class JsonFormatter(OrjsonFormatter):
    """One JSON object per record (python-json-logger, encoded by orjson: a few µs per line)."""

    def __init__(self, fmt: str | None = None, *args, **kwargs):
        kwargs.setdefault("rename_fields", RENAMED_FIELDS)
        kwargs.setdefault("reserved_attrs", LEFT_OUT)
        super().__init__(fmt or DEFAULT_FORMAT, *args, **kwargs)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        # ISO 8601 in UTC whatever the server's zone: lines from several hosts sort and compare.
        when = datetime.fromtimestamp(record.created, UTC)
        return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        super().add_fields(log_data, record, message_dict)
        # The request_id filter sits on the console handler and says "-" outside a request; a handler
        # without it (a file handler added by hand) still gets the id. JSON says null for "none".
        request_id = getattr(record, "request_id", None) or guid.get()
        log_data["request_id"] = None if request_id == "-" else request_id


def _username(request) -> str | None:
    """The signed-in user's name, None for anonymous requests. A user nobody looked at (the
    AuthenticationMiddleware's lazy object, still unevaluated: a static file) is not loaded for the log."""
    user = request.__dict__.get("user")
    if user is None or getattr(user, "_wrapped", None) is empty:
        return None
    return user.get_username() if user.is_authenticated else None


def _route(request) -> str | None:
    match = getattr(request, "resolver_match", None)
    # As /metrics labels it: the pattern, or the view's name for the empty one (the home page).
    return (match.route or match.view_name or None) if match is not None else None


class AccessLogMiddleware:
    """One log line per request, once the response is made (LOG_REQUESTS).

    User and team are read after the view ran: API token requests only know them then (DRF's
    authentication sets them on the request when the view asks). The duration is to the response's
    headers; a streamed body is not included."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not (settings.LOG_REQUESTS and request_log.isEnabledFor(logging.INFO)):
            return self.get_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        user = _username(request)
        team = getattr(request, "team", None)
        team = team.slug if team is not None else None
        address = client_ip(request)
        status = response.status_code
        extra = {
            "method": request.method,
            "route": _route(request),
            "path": request.path,
            "status": status,
            "duration_ms": duration_ms,
            "user": user,
            "team": team,
            "client_ip": address,
        }
        args = (request.method, request.path, status, duration_ms, user or "-", team or "-", address or "-")
        # The record made directly rather than by request_log.info(): that would walk the stack to find
        # the caller's file and line (a third of the line's cost), which says nothing here.
        request_log.handle(
            request_log.makeRecord(
                request_log.name, logging.INFO, __file__, 0, REQUEST_MESSAGE, args, None, extra=extra
            )
        )
        return response
