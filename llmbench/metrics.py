"""Prometheus metrics: request counts and latencies per route, and the task queue depth.

Each process keeps its own counters. With several web processes, set PROMETHEUS_MULTIPROC_DIR to
an empty folder shared by them and /metrics adds their counters up (prometheus_client's
multiprocess mode).
"""

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

REQUESTS = Counter("llmbench_http_requests_total", "HTTP requests answered.", ["method", "route", "status"])
LATENCY = Histogram(
    "llmbench_http_request_duration_seconds",
    "Time from request to response, in seconds.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def _route(request) -> str:
    # The URL pattern, not the path: one series per route, whatever the ids in it.
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return match.route or match.view_name or "unmatched"


class PrometheusMiddleware:
    """Counts every request and times it, labelled by route pattern."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        route = _route(request)
        LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        return response


class QueueDepthCollector:
    """Reads the django-q2 broker's queue length at scrape time."""

    def collect(self):
        from django_q.brokers import get_broker

        gauge = GaugeMetricFamily("llmbench_task_queue_depth", "Tasks waiting in the broker.")
        try:
            gauge.add_metric([], float(get_broker().queue_size() or 0))
        except Exception:  # an unreachable broker is /ready's business, not a scrape failure
            gauge.add_metric([], float("nan"))
        yield gauge


QUEUE_DEPTH = QueueDepthCollector()
REGISTRY.register(QUEUE_DEPTH)


def render_metrics() -> tuple[bytes, str]:
    """The Prometheus text exposition of this process (or of all processes, in multiprocess mode)."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(QUEUE_DEPTH)
    return generate_latest(registry), CONTENT_TYPE_LATEST
