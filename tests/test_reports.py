"""PDF reports of llmbench.reports: the base layout, the table include, the response, no fetching."""

import io
from datetime import UTC, datetime

import pytest
from django.utils.safestring import mark_safe
from pypdf import PdfReader

from llmbench.reports import _inline_only_fetcher, pdf_response, render_pdf

REPORT = """{% extends "reports/base.html" %}
{% block content %}<h2>Latency by target</h2>
<div class="chart">{{ chart }}</div>
{% include "reports/_table.html" with table=table caption="Per target" numeric=True total_rows=total_rows %}
{% endblock %}"""


@pytest.fixture
def report(settings) -> str:
    """A small report template extending reports/base.html, served by a locmem loader."""
    engine = settings.TEMPLATES[0]
    loaders = [
        ("django.template.loaders.locmem.Loader", {"reports/test_report.html": REPORT}),
        "django.template.loaders.filesystem.Loader",
        "django.template.loaders.app_directories.Loader",
    ]
    settings.TEMPLATES = [{**engine, "APP_DIRS": False, "OPTIONS": {**engine["OPTIONS"], "loaders": loaders}}]
    return "reports/test_report.html"


def _context(rows: int = 3, total_rows: int | None = None) -> dict:
    return {
        "title": "Latency report",
        "subtitle": "Experiment 12",
        "team": "Alpha",
        "generated_at": datetime(2026, 3, 1, 9, 30, tzinfo=UTC),
        "filters": [("Model", "gpt-4o"), ("Endpoint", "<vllm & co>")],
        "methods": [("p95 latency", "95th percentile of end-to-end latency, numpy's linear method")],
        "chart": mark_safe(
            '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="40"><rect width="50" height="40"/></svg>'
        ),
        "table": {"columns": ["target", "p95 ms"], "rows": [[f"target-{i}", 100 + i] for i in range(rows)]},
        "total_rows": total_rows,
    }


def _pages(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]


def test_render_pdf_returns_a_pdf_document(report):
    """The bytes are a PDF."""
    assert render_pdf(report, _context()).startswith(b"%PDF-")


def test_report_shows_title_page_table_and_methods(report):
    """The title, team, filters (escaped), a table cell and the methods all appear in the PDF's text."""
    text = "\n".join(_pages(render_pdf(report, _context())))
    expected = [
        "Latency report",
        "Experiment 12",
        "Team: Alpha",
        "Generated 2026-03-01",
        "Model",
        "gpt-4o",
        "<vllm & co>",
        "Per target",
        "target-2",
        "102",
        "Methods",
        "p95 latency",
        "numpy's linear method",
    ]
    assert [phrase for phrase in expected if phrase not in text] == []


def test_report_footer_numbers_the_pages(report):
    """Every page's footer says "page N of M" and when the report was generated."""
    pages = _pages(render_pdf(report, _context()))
    assert len(pages) == 2  # the title page, then the section with the methods
    for number, text in enumerate(pages, 1):
        assert f"page {number} of 2" in text
        assert "Generated 2026-03-01" in text


def test_long_table_repeats_its_header_on_each_page(report):
    """A table spanning pages repeats its header row at the top of every page."""
    pages = _pages(render_pdf(report, _context(rows=150)))
    table_pages = [text for text in pages if "target-" in text]
    assert len(table_pages) >= 2
    assert all("p95 ms" in text for text in table_pages)


def test_cut_table_says_where_the_full_table_is(report):
    """A table showing fewer rows than it has gets a note naming the CSV / Excel export."""
    text = " ".join(" ".join(_pages(render_pdf(report, _context(rows=3, total_rows=500)))).split())
    assert "Showing the first 3 of 500 rows; the full table is in the CSV / Excel export" in text


def test_uncut_table_has_no_note(report):
    """A table shown whole says nothing about an export."""
    assert "export" not in " ".join(_pages(render_pdf(report, _context(rows=3, total_rows=3)))).lower()


def test_renderer_refuses_to_fetch_urls():
    """Only data: URLs load: a file:// path or an http:// address in the HTML is never fetched."""
    fetcher = _inline_only_fetcher()
    for url in ["file:///etc/hostname", "http://127.0.0.1:8000/admin/", "https://example.com/a.css"]:
        with pytest.raises(ValueError, match="disallowed protocol"):
            fetcher.fetch(url)
    assert fetcher.fetch("data:text/plain,ok").read() == b"ok"


def test_pdf_response_is_an_attachment(report):
    """The response is application/pdf, downloaded under the given name."""
    response = pdf_response(report, _context(), filename="latency-report.pdf")
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="latency-report.pdf"'
    assert response.content.startswith(b"%PDF-")
