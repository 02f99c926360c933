"""Template helpers of the score pages."""

from functools import cache

from django import template
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from llmbench.humanize import number_text

register = template.Library()


@register.filter
def chart_data(rows, attribute: str) -> list[dict]:
    """Rows → [{label, value}] for a bar chart, e.g. leaderboard rows by average_pct; the label of a
    bar that includes simulated scores says so."""
    return [
        {
            "label": f"{row.model_name.rsplit('/', 1)[-1]} · {row.quantization}"
            + (" (simulated)" if getattr(row, "simulated", False) else ""),
            "value": round(getattr(row, attribute), 2),
        }
        for row in rows
        if getattr(row, attribute) is not None
    ]


@cache
def _simulated_badge() -> str:
    return " " + render_to_string("partials/_simulated_badge.html").strip()


def _marked(row) -> set[str]:
    """The benchmarks whose cell gets its own "simulated" badge: only in a row that mixes simulated
    and measured scores (a wholly simulated row carries one badge, by its name)."""
    if not row.simulated or len(row.simulated_benchmarks) == row.benchmark_count:
        return set()
    return set(row.simulated_benchmarks)


@register.simple_tag
def leaderboard_cells(row) -> str:
    """The benchmark cells of a leaderboard row, in Python: a template loop per cell was most of the
    page's rendering time (20 benchmarks × 50 rows)."""
    marked = _marked(row)
    cells = []
    for name, value in row.scores.items():
        if value is None:
            cells.append('<td><span class="muted">–</span></td>')
        else:
            badge = _simulated_badge() if name in marked else ""
            cells.append(f"<td>{number_text(value, 2)}{badge}</td>")
    return mark_safe("".join(cells))  # number_text gives digits and separators; the badge is fixed markup


@register.simple_tag
def quantization_cells(row, benchmarks) -> str:
    """The points-lost cells of a quantization row, one per benchmark shown (a dash where either
    variant has no score); the title gives both scores."""
    marked = _marked(row)
    cells = []
    for benchmark in benchmarks:
        delta = row.deltas.get(benchmark.name)
        if delta is None:
            cells.append('<td><span class="muted">–</span></td>')
            continue
        lost = delta["points_lost"]
        cells.append(
            format_html(
                '<td><span class="{}" title="{} {} → {} {}">{}</span>{}</td>',
                "worse" if lost > 0 else "better" if lost < 0 else "",
                row.base_quantization,
                number_text(delta["base_pct"], 2),
                row.quantization,
                number_text(delta["quantized_pct"], 2),
                number_text(lost, 2),
                mark_safe(_simulated_badge()) if benchmark.name in marked else "",  # fixed markup
            )
        )
    return mark_safe("".join(cells))  # every cell built by format_html


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
