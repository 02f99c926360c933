"""OpenTelemetry tracing, on when OTEL_EXPORTER_OTLP_ENDPOINT is set (docs/observability.md).

One trace per request or task: Django's request span, the database (PostgreSQL or SQLite) and Redis
calls made for it, the django-q2 tasks it queued (llmbench/task_context.py carries the trace
context through the broker) and their outbound aiohttp calls to provider endpoints. Spans go in
batches to an OTLP/HTTP collector from a background thread: a collector that is down costs a
warning in the log, never a failed request or a failed start.

configure() runs once per process, from LlmbenchConfig.ready(), before the request handler builds
its middleware chain (DjangoInstrumentor puts its middleware first). Worker processes forked by
django-q2 inherit the set-up: the SDK restarts its export thread in the child, the exporter's HTTP
connections are dropped there (a socket shared with the parent would mix both processes' bytes),
and a child flushes its last spans when it ends (multiprocessing children skip atexit).
"""

import logging
import multiprocessing.util
import os

from django.conf import settings

logger = logging.getLogger(__name__)

# Requests nobody wants traced, unless OTEL_PYTHON_DJANGO_EXCLUDED_URLS says otherwise: probes and
# scrapes every few seconds, and static files.
EXCLUDED_URLS = "/health$,/ready$,/metrics$,/static/"
# How long a forked worker that is ending waits for its last spans to be sent.
CHILD_FLUSH_TIMEOUT_MS = 3000

_configured: bool | None = None  # None: not tried yet in this process


def is_on() -> bool:
    """Whether configure() turned tracing on in this process."""
    return _configured is True


def configure() -> bool:
    """Set up tracing once per process; True when it is on. Never raises: a tracing set-up that
    fails is logged and the site runs untraced."""
    global _configured
    if _configured is None:
        _configured = False
        if settings.OTEL_EXPORTER_OTLP_ENDPOINT:
            try:
                _configure(settings.OTEL_EXPORTER_OTLP_ENDPOINT, settings.OTEL_SERVICE_NAME)
                _configured = True
            except Exception:
                logger.exception("Tracing is off: setting it up failed.")
    return _configured


def _configure(endpoint: str, service_name: str) -> None:
    import requests
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.sampler = _entry_point_sampler(provider.sampler)  # wraps the one OTEL_TRACES_SAMPLER chose
    session = requests.Session()
    os.register_at_fork(after_in_child=session.close)  # the child opens connections of its own
    # The setting is the collector's base URL (as the OTLP convention has it); the SDK's own
    # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, when set, is the full URL and wins.
    traces_url = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or f"{endpoint.rstrip('/')}/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url, session=session)))
    trace.set_tracer_provider(provider)
    multiprocessing.util.register_after_fork(provider, _flush_when_the_child_ends)

    excluded = None if os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS") is not None else EXCLUDED_URLS
    DjangoInstrumentor().instrument(tracer_provider=provider, excluded_urls=excluded)
    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

        PsycopgInstrumentor().instrument(tracer_provider=provider)
    else:
        from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor

        SQLite3Instrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    # Without the query string: some providers take the API key there.
    AioHttpClientInstrumentor().instrument(tracer_provider=provider, url_filter=lambda url: str(url.with_query(None)))
    logger.info("Tracing to %s as %r.", traces_url, service_name)


def _flush_when_the_child_ends(provider) -> None:
    """In a multiprocessing child (a django-q2 worker): send the spans still waiting when it ends,
    since it ends with os._exit and the SDK's atexit flush never runs there."""
    multiprocessing.util.Finalize(
        provider, provider.force_flush, kwargs={"timeout_millis": CHILD_FLUSH_TIMEOUT_MS}, exitpriority=10
    )


def _entry_point_sampler(sampler):
    """Starts traces at requests and tasks only. A database or Redis call with nothing around it
    (the task cluster polling its broker, heartbeats) would otherwise be a trace of its own, several a
    second; inside a request or a task every span is kept or dropped as `sampler` (OTEL_TRACES_SAMPLER,
    by default parent-based, always on) decides."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class EntryPointSampler(Sampler):
        def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
                          trace_state=None):  # fmt: skip
            if kind == trace.SpanKind.CLIENT and not trace.get_current_span(parent_context).get_span_context().is_valid:
                return SamplingResult(Decision.DROP)
            return sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

        def get_description(self) -> str:
            return f"EntryPointSampler{{{sampler.get_description()}}}"

    return EntryPointSampler()
