"""A computed analytics view as a download: CSV / JSON / Excel through llmbench.exports, PDF through
llmbench.reports. The same Result feeds the page, so every format shows the same figures: the files as rounded
numbers under column keys (with a `simulated` column), the PDF in words as on the page."""

from django.http import HttpResponse
from django.utils import timezone
from django.utils.safestring import mark_safe

from apps.analytics.catalog import Result
from llmbench.exports import export_response
from llmbench.reports import pdf_response

FORMATS = ("csv", "json", "xlsx", "pdf")
PDF_ROWS = 200  # rows of a table in a PDF; the full table is in the other formats
PDF_COLUMNS = 11  # columns after the first that fit an A4 page; a wider table is split, the first column repeated


def _pdf_parts(section) -> list[dict]:
    """A section as the PDF shows it (in words, as on the page): at most PDF_ROWS rows, and in parts of
    PDF_COLUMNS columns (each with the row's label) so that it fits the page."""
    table = section.text_table()
    rows = list(table.rows)
    shown = rows[:PDF_ROWS]
    rest = list(range(1, len(table.columns)))
    chunks = [rest[i : i + PDF_COLUMNS] for i in range(0, len(rest), PDF_COLUMNS)] or [[]]
    parts = []
    for number, chunk in enumerate(chunks, start=1):
        name = table.name if len(chunks) == 1 else f"{table.name} ({number} of {len(chunks)})"
        parts.append({"name": name, "question": section.question if number == 1 else "",
                      "columns": [table.columns[0], *(table.columns[i] for i in chunk)],
                      "rows": [[row[0], *(row[i] for i in chunk)] for row in shown], "total": len(rows)})  # fmt: skip
    return parts


def download(result: Result, fmt: str, *, team) -> HttpResponse:
    generated_at = timezone.now()
    filename = f"{result.view.slug}-{generated_at:%Y%m%d-%H%M%S}.{fmt}"
    if fmt == "pdf":
        context = {
            "title": result.view.title, "subtitle": result.view.description, "team": team.name,
            "generated_at": generated_at, "filters": result.filters, "methods": result.view.methods,
            "summary": [(fact.label, fact.text) for fact in result.summary],
            "tables": [part for section in result.sections for part in _pdf_parts(section)],
            "charts": [(caption, mark_safe(chart)) for caption, chart in result.charts],  # our own SVG, escaped inside
        }  # fmt: skip
        return pdf_response("reports/analytics.html", context, filename=filename)
    meta = {"view": result.view.slug, "title": result.view.title, "team": team.name,
            "generated_at": generated_at, "filters": dict(result.filters)}  # fmt: skip
    return export_response(fmt, filename=filename, title=result.view.title, meta=meta, summary=result.summary_pairs,
                           tables=result.tables)  # fmt: skip
