"""PDF reports: a Django template (extending reports/base.html) rendered to HTML, then to PDF by WeasyPrint."""

from django.http import HttpResponse
from django.template.loader import render_to_string
from django.utils.http import content_disposition_header
from weasyprint import HTML
from weasyprint.urls import URLFetcher


def _inline_only_fetcher() -> URLFetcher:
    """A fetcher that loads data: URLs only: a report is self-contained, and text that reached the HTML from
    the database must never make the server fetch a file:// path or an internal http:// address."""
    return URLFetcher(allowed_protocols={"data"}, allow_redirects=False)


def render_pdf(template_name: str, context: dict) -> bytes:
    """The template rendered with `context` (no request, so no context processors), as PDF bytes."""
    html = render_to_string(template_name, context)
    return HTML(string=html, url_fetcher=_inline_only_fetcher()).write_pdf()


def pdf_response(template_name: str, context: dict, *, filename: str) -> HttpResponse:
    """The rendered report as a PDF download."""
    response = HttpResponse(render_pdf(template_name, context), content_type="application/pdf")
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response
