"""Template helpers used across apps."""

from django import template

from llmbench.humanize import duration_text, number_text, p_value_text, yes_no_text

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
def num(value, digits=None):
    """A figure with thousands separators: `|num` picks a precision that suits its size and shows
    whole numbers without ".0"; `|num:1` always one decimal; an en dash when missing
    (llmbench.humanize.number_text)."""
    return number_text(value, None if digits in (None, "") else int(digits))


@register.filter
def pvalue(p):
    """A p-value: "< 0.001" or three decimals, never "0"."""
    return p_value_text(p)


@register.filter
def yesno_words(value):
    """True/False as "yes"/"no"."""
    return yes_no_text(value)


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
