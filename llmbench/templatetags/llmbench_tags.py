"""Template helpers used across apps."""

from django import template

from llmbench.humanize import duration_text

register = template.Library()


@register.filter
def get_item(mapping, key):
    """mapping[key], or None (dicts, and lists by index)."""
    if mapping is None:
        return None
    try:
        return mapping[key]
    except (KeyError, IndexError, TypeError):
        return None


@register.filter
def is_text(value) -> bool:
    """A table cell that is text (left-aligned in a numeric table)."""
    return isinstance(value, str)


@register.filter
def num(value, digits: int = 2):
    """A figure with `digits` decimals and thousands separators; an en dash when missing."""
    if value is None or value == "":
        return "–"
    try:
        return f"{float(value):,.{int(digits)}f}"
    except (TypeError, ValueError):
        return value


@register.filter
def pct(value, digits: int = 1):
    """A 0–1 fraction as a percentage."""
    if value is None:
        return "–"
    return f"{float(value) * 100:.{int(digits)}f}%"


@register.filter
def duration(seconds):
    """Seconds as "42 s", "12 minutes" or "3.5 hours"."""
    return duration_text(None if seconds in (None, "") else float(seconds))
