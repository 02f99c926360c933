"""Template filters of the batch pages."""

from django import template

from apps.batches.analysis import format_value

register = template.Library()


@register.filter
def param(value) -> str:
    """A parameter value or load level as it was set: 200 (not 200.0), 0.7 (not 0.700), 1,000; an en dash
    when missing (apps.batches.analysis.format_value)."""
    return format_value(value)
