"""Template helpers of the score pages."""

from django import template
from django.utils.html import format_html

register = template.Library()


@register.filter
def chart_data(rows, attribute: str) -> list[dict]:
    """Rows → [{label, value}] for a bar chart, e.g. leaderboard rows by average_pct."""
    return [
        {
            "label": f"{row.model_name.rsplit('/', 1)[-1]} · {row.quantization}",
            "value": round(getattr(row, attribute), 2),
        }
        for row in rows
        if getattr(row, attribute) is not None
    ]


@register.simple_tag(takes_context=True)
def sort_link(context, key: str, label: str, form) -> str:
    """A column header that sorts by `key`, toggling the order when it is already the sort key."""
    request = context["request"]
    params = request.GET.copy()
    current = (form.data.get("sort") or "average").lower()
    current_order = form.data.get("order") or ("asc" if current == "model" else "desc")
    default_order = "asc" if key == "model" else "desc"
    order = ("asc" if current_order == "desc" else "desc") if current == key.lower() else default_order
    params["sort"], params["order"] = key, order
    params.pop("page", None)
    arrow = ""
    if current == key.lower():
        arrow = " ▼" if current_order == "desc" else " ▲"
    return format_html('<a href="?{}">{}{}</a>', params.urlencode(), label, arrow)
