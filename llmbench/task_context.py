"""Carries the queuing request's id and trace context into django-q2 tasks.

* pre_enqueue, where the task is queued (in a request, often from transaction.on_commit, which still
  runs inside it): the request id (django-guid's) and, when tracing is on, the W3C trace context
  (traceparent) go into the task dict. django-q2 signs and pickles that very dict right after the
  signal, so they travel through the broker with the task, and come again with a retry.
* pre_execute, in the worker just before the function runs: django-guid's id becomes the queuing
  request's (none for a task queued outside a request), so every log line of the task carries it;
  with tracing on, a span "task <function>" (kind CONSUMER) starts as a child of the carried context
  and is current while the task runs, so its database, Redis and provider calls are inside it, and
  so are the tasks it queues in turn.
* post_execute_in_worker, in the worker right after the function returned or raised: the span ends
  (error status when the task failed) and the id and context are put back as they were, so the next
  task of the worker inherits nothing. (django-q2's post_execute fires later in the monitor process,
  where the span does not exist.)

A receiver never raises: an exception in a django-q2 signal would fail the enqueue (and so the
request) or kill the worker.
"""

import logging
import sys
from contextvars import Token
from dataclasses import dataclass
from typing import Any

from django_guid.context import guid
from django_q.signals import post_execute_in_worker, pre_enqueue, pre_execute
from django_q.utils import get_func_repr

from llmbench import telemetry

logger = logging.getLogger(__name__)

TASK_KEY = "llmbench_context"  # in the task dict: {"request_id": "...", "trace": {"traceparent": "..."}}
STATUS_MESSAGE_MAX_CHARS = 300


@dataclass
class _TaskScope:
    """What pre_execute changed for a running task, to undo it in post_execute_in_worker."""

    guid_token: Token
    span: Any = None
    context_token: object = None


_running: dict[str, _TaskScope] = {}  # by task id; one at a time in a worker, nested with sync tasks


def connect() -> None:
    """Connect the django-q2 signals (once, however often it is called)."""
    pre_enqueue.connect(_carry_context, dispatch_uid="llmbench.task_context.carry")
    pre_execute.connect(_enter_context, dispatch_uid="llmbench.task_context.enter")
    post_execute_in_worker.connect(_leave_context, dispatch_uid="llmbench.task_context.leave")


def _carry_context(sender, task: dict, **kwargs) -> None:
    try:
        carried: dict[str, Any] = {}
        if request_id := guid.get():
            carried["request_id"] = request_id
        if telemetry.is_on():
            from opentelemetry import propagate

            trace_context: dict[str, str] = {}
            propagate.inject(trace_context)
            if trace_context:
                carried["trace"] = trace_context
        if carried:
            task[TASK_KEY] = carried
    except Exception:
        logger.exception("Could not attach the request context to task %s.", task.get("id"))


def _enter_context(sender, func, task: dict, **kwargs) -> None:
    try:
        carried = task.get(TASK_KEY) or {}
        scope = _running[task["id"]] = _TaskScope(guid.set(carried.get("request_id")))
        if telemetry.is_on():
            from opentelemetry import context, propagate, trace

            parent = propagate.extract(carried.get("trace") or {})
            name = get_func_repr(func) if func is not None else str(task.get("func"))
            scope.span = trace.get_tracer(__name__).start_span(
                f"task {name}", context=parent, kind=trace.SpanKind.CONSUMER,
                attributes={"messaging.system": "django_q", "messaging.operation.type": "process",
                            "messaging.message.id": task["id"], "django_q.task.name": str(task.get("name")),
                            "llmbench.request_id": carried.get("request_id") or ""},
            )  # fmt: skip
            scope.context_token = context.attach(trace.set_span_in_context(scope.span, parent))
    except Exception:
        logger.exception("Could not enter the request context of task %s.", task.get("id"))


def _leave_context(sender, func, task: dict, **kwargs) -> None:
    scope = _running.pop(task.get("id"), None)
    if scope is None:
        return
    try:
        if scope.span is not None:
            if task.get("success") is not True:  # a sync task that raised has no "success" yet
                _mark_failed(scope.span, task)
            scope.span.end()
        if scope.context_token is not None:
            from opentelemetry import context

            context.detach(scope.context_token)
        guid.reset(scope.guid_token)
    except Exception:
        logger.exception("Could not leave the request context of task %s.", task.get("id"))


def _mark_failed(span, task: dict) -> None:
    from opentelemetry.trace import Status, StatusCode

    raised = sys.exc_info()[1]  # set when a sync task raised: the signal is sent inside the except block
    if raised is not None:
        span.record_exception(raised)
        message = str(raised)
    else:  # django-q2 stored "<message> : <traceback>" as the result
        message, _, stack = str(task.get("result", "")).partition(" : ")
        span.add_event("exception", {"exception.message": message, "exception.stacktrace": stack})
    span.set_status(Status(StatusCode.ERROR, message[:STATUS_MESSAGE_MAX_CHARS]))
