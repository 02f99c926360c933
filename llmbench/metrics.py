"""Prometheus metrics: request counts and latencies per route, the task queue and its workers.

Each process keeps its own counters. With several web processes, set PROMETHEUS_MULTIPROC_DIR to
an empty folder shared by them and /metrics adds their counters up (prometheus_client's
multiprocess mode).
"""

import glob
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

# Issue 16: provider calls, throttles, sign-ins and lockouts. Provider calls are made in the task workers:
# their counts reach /metrics with PROMETHEUS_MULTIPROC_DIR shared between web and worker processes.
PROVIDER_CALLS = Counter(
    "llmbench_provider_calls_total",
    "Requests sent to provider endpoints, by endpoint and outcome (ok, or the kind of error).",
    ["endpoint", "outcome"],
)
PROVIDER_CALL_LATENCY = Histogram(
    "llmbench_provider_call_duration_seconds",
    "Time from sending a request to a provider endpoint to its last byte (or error), in seconds.",
    ["endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
THROTTLED = Counter("llmbench_api_throttled_total", "API requests refused with 429, by throttle scope.", ["scope"])
LOGINS = Counter(
    "llmbench_logins_total",
    "Sign-in attempts by method (password, sso, api) and outcome (success, failure, locked).",
    ["method", "outcome"],
)
LOCKOUTS = Counter("llmbench_login_lockouts_total", "Sign-ins refused because the user or address is locked out.")


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
    """Reads the task queue and the task cluster's workers at scrape time (llmbench/workers.py)."""

    def describe(self):
        # No names: without describe(), registering calls collect(), which would query the database at
        # import time (before pytest-django has made the test database, and opening a pool on the real one).
        return []

    def collect(self):
        from llmbench.workers import cluster_health

        gauges = {
            "depth": GaugeMetricFamily("llmbench_task_queue_depth", "Tasks waiting in the broker."),
            "oldest": GaugeMetricFamily(
                "llmbench_task_queue_oldest_age_seconds", "How long the oldest waiting task has waited (0: none waits)."
            ),
            "workers": GaugeMetricFamily(
                "llmbench_task_workers", "Live task worker processes, by state.", labels=["state"]
            ),
            "idle": GaugeMetricFamily(
                "llmbench_task_workers_idle_seconds",
                "Since a live worker last took or finished a task (0 while one is busy).",
            ),
            "alive": GaugeMetricFamily(
                "llmbench_task_cluster_alive", "1 while waiting tasks are being taken (or none waits), 0 when stuck."
            ),
        }
        nan = float("nan")
        try:
            health = cluster_health()
        except Exception:  # an unreachable broker or database is /ready's business, not a scrape failure
            health = None
        if health is None:
            for key in ("depth", "oldest", "idle", "alive"):
                gauges[key].add_metric([], nan)
        else:
            gauges["depth"].add_metric([], float(health.waiting))
            gauges["oldest"].add_metric([], health.oldest_wait_s or 0.0)
            gauges["workers"].add_metric(["busy"], float(health.workers_busy))
            gauges["workers"].add_metric(["idle"], float(health.workers_live - health.workers_busy))
            gauges["idle"].add_metric([], nan if health.idle_for_s is None else health.idle_for_s)
            gauges["alive"].add_metric([], 1.0 if health.ok else 0.0)
        yield from gauges.values()


QUEUE_DEPTH = QueueDepthCollector()
REGISTRY.register(QUEUE_DEPTH)


class _FoldersCollector(multiprocess.MultiProcessCollector):
    """prometheus_client's multiprocess collector over several folders: this host's processes write to
    PROMETHEUS_MULTIPROC_DIR, and PROMETHEUS_EXTRA_DIRS are other hosts' (the compose file's task worker
    container, whose process ids may be the same as the web container's, so it keeps a folder of its own)."""

    def __init__(self, registry, folders: list[str]):
        self.folders = folders
        super().__init__(registry, path=folders[0])

    def collect(self):
        files = [path for folder in self.folders for path in glob.glob(os.path.join(folder, "*.db"))]
        return self.merge(files, accumulate=True)


def render_metrics() -> tuple[bytes, str]:
    """The Prometheus text exposition of this process (or of all processes, in multiprocess mode)."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        extra = [folder.strip() for folder in os.environ.get("PROMETHEUS_EXTRA_DIRS", "").split(",") if folder.strip()]
        _FoldersCollector(registry, [os.environ["PROMETHEUS_MULTIPROC_DIR"], *extra])
        registry.register(QUEUE_DEPTH)
    return generate_latest(registry), CONTENT_TYPE_LATEST
