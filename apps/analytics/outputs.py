"""A computed analytics view as a download: CSV / JSON / Excel through llmbench.exports, PDF through
llmbench.reports. The same Result feeds the page, so every format shows the same figures."""

from django.http import HttpResponse
from django.utils import timezone
from django.utils.safestring import mark_safe

from apps.analytics.catalog import Result
from llmbench.exports import export_response
from llmbench.reports import pdf_response

FORMATS = ("csv", "json", "xlsx", "pdf")
PDF_ROWS = 200  # rows of a table in a PDF; the full table is in the other formats


def download(result: Result, fmt: str, *, team) -> HttpResponse:
    generated_at = timezone.now()
    filename = f"{result.view.slug}-{generated_at:%Y%m%d-%H%M%S}.{fmt}"
    if fmt == "pdf":
        context = {
            "title": result.view.title, "subtitle": result.view.description, "team": team.name,
            "generated_at": generated_at, "filters": result.filters, "methods": result.view.methods,
            "summary": result.summary,
            "tables": [{"name": t.name, "columns": t.columns, "rows": list(t.rows)[:PDF_ROWS], "total": len(t.rows)}
                       for t in result.tables],
            "charts": [(caption, mark_safe(chart)) for caption, chart in result.charts],  # our own SVG, escaped inside
        }  # fmt: skip
        return pdf_response("reports/analytics.html", context, filename=filename)
    meta = {"view": result.view.slug, "title": result.view.title, "team": team.name,
            "generated_at": generated_at, "filters": dict(result.filters)}  # fmt: skip
    return export_response(fmt, filename=filename, title=result.view.title, meta=meta, summary=result.summary,
                           tables=result.tables)  # fmt: skip
