"""Log formats and the per-request log line (LOG_FORMAT, LOG_REQUESTS). CONTRACT STUB: issue 16 helper fills it."""

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter


class JsonFormatter(_BaseJsonFormatter):
    """One JSON object per record."""


class AccessLogMiddleware:
    """One log line per request (stub: passes through)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)
