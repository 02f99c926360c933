"""The id of the request being served (django-guid keeps it in a context variable), for log records
and error bodies. Imports nothing of Django's, so the logging configuration can load it early."""

import logging

from django_guid.context import guid


def current_request_id() -> str | None:
    """The X-Request-ID of the request this code runs for; None outside a request (tasks, commands)."""
    return guid.get()


class RequestIdLogFilter(logging.Filter):
    """Adds `request_id` to every log record: the request's id, or "-" outside a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = guid.get() or "-"
        return True
