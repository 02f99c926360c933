"""OpenTelemetry tracing when OTEL_EXPORTER_OTLP_ENDPOINT is set. CONTRACT STUB: issue 16 helper fills it."""


def configure() -> bool:
    """Set up tracing once per process; True when it is on (stub: never)."""
    return False
