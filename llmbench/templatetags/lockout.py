"""The lockout page's clock: when a sign-in lockout ends."""

from datetime import timedelta

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def from_now(delta: timedelta | None):
    """The time `delta` from now (None stays None)."""
    return None if delta is None else timezone.now() + delta


@register.filter
def minutes(delta: timedelta | None) -> int | None:
    """A duration in whole minutes, rounded up."""
    return None if delta is None else -(-int(delta.total_seconds()) // 60)
