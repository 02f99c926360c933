"""Every request sent to a provider endpoint, counted and timed for /metrics.

The adapters (adapters.Adapter.generate, sim.SimAdapter.generate) are the one place every run kind's
requests go through: experiments, parameter sweeps, load sweeps, capacity searches and benchmark runs.
Each records its outcome here: `ok`, or the ErrorKind the adapter classified the failure as
(rate_limited, auth, bad_request, server, timeout, connection, protocol, cancelled). A retried request
counts once per attempt; one the circuit breaker refused was never sent and does not count.

The load generator sends thousands of requests a second, so the labelled series of an endpoint are
looked up once and kept: recording a call is one histogram observation and one counter increment
(about 1-2 µs).
"""

import threading

from apps.providers.engine.types import ErrorKind, RequestError
from llmbench.metrics import PROVIDER_CALL_LATENCY, PROVIDER_CALLS

UNNAMED = "unnamed"  # a configuration made without an endpoint (scripts, benches)


class CallMetrics:
    """The series of one endpoint."""

    __slots__ = ("_errors", "_latency", "_name", "_ok")

    def __init__(self, name: str):
        self._name = name
        self._latency = PROVIDER_CALL_LATENCY.labels(name)
        self._ok = PROVIDER_CALLS.labels(name, "ok")
        self._errors: dict[ErrorKind, object] = {}

    def record(self, error: RequestError | None, seconds: float) -> None:
        """One call that ended after `seconds`, with `error` (None: it succeeded)."""
        self._latency.observe(seconds)
        if error is None:
            self._ok.inc()
            return
        self.failed(error.kind, seconds=None)

    def failed(self, kind: ErrorKind, seconds: float | None) -> None:
        """One call that failed with `kind` (timed here when `seconds` is given)."""
        if seconds is not None:
            self._latency.observe(seconds)
        counter = self._errors.get(kind)
        if counter is None:
            counter = self._errors[kind] = PROVIDER_CALLS.labels(self._name, kind.value)
        counter.inc()


_by_name: dict[str, CallMetrics] = {}
_lock = threading.Lock()


def call_metrics(name: str) -> CallMetrics:
    """The series of the endpoint called `name` (shared by every adapter of it in this process)."""
    name = name or UNNAMED
    metrics = _by_name.get(name)
    if metrics is None:
        with _lock:
            metrics = _by_name.get(name)
            if metrics is None:
                metrics = _by_name[name] = CallMetrics(name)
    return metrics
