"""Carries the queuing request's id (and trace context) into django-q2 tasks. CONTRACT STUB."""


def connect() -> None:
    """Connect the django-q2 signals (stub: nothing)."""
