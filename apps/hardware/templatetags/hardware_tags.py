"""Template helpers of the performance pages."""

from django import template

register = template.Library()


@register.filter
def heat(value, grid) -> str:
    """A background colour from green (best) to red (worst) across the grid's range."""
    low, high = grid.value_range
    share = 0.5 if high == low else (value - low) / (high - low)
    goodness = share if grid.higher_is_better else 1 - share
    hue = int(goodness * 120)  # 0 = red, 120 = green
    return f"hsl({hue}, 65%, 85%)"


@register.filter
def failed_count(planned_run) -> int:
    """Failed requests among a planned run's samples."""
    return sum(1 for s in planned_run.parsed.samples if s.error_code)
