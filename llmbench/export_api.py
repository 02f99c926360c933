"""API endpoints that download an export: `?format=` names the file type (csv, json, xlsx, pdf).

DRF reads `?format=` itself to pick a renderer (URL_FORMAT_OVERRIDE) and answers 404 when none has that name,
so an export endpoint uses `ExportNegotiation`, which ignores it: the export is a plain Django response, and
errors (a bad format, a missing object) answer in JSON.
"""

from collections.abc import Mapping, Sequence

from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import DefaultContentNegotiation


class ExportNegotiation(DefaultContentNegotiation):
    """Always the view's first renderer (JSON), whatever `?format=` says."""

    def select_renderer(self, request, renderers, format_suffix=None):
        renderer = renderers[0]
        return renderer, renderer.media_type


def export_kind(params: Mapping, formats: Sequence[str], *, field: str = "format", default: str = "csv") -> str:
    """The export format asked for in `params[field]` (default `default`); a 400 naming the field otherwise."""
    kind = params.get(field) or default
    if kind not in formats:
        raise ValidationError({field: [f"One of: {', '.join(formats)}."]})
    return kind
