"""Analytics pages: an index and one page per view (filters, charts, summary, tables, downloads)."""

from django.http import Http404
from django.shortcuts import render
from django.utils.safestring import mark_safe

from apps.accounts.permissions import team_view
from apps.analytics.catalog import VIEWS, ParameterError
from apps.analytics.filters import EXPERIMENT_TYPES, GRANULARITIES, TIMEFRAMES
from apps.analytics.outputs import FORMATS, download
from apps.analytics.selectors import DIMENSIONS
from apps.batches.selectors import QUALITY_METRICS


def _view(slug: str):
    if slug not in VIEWS:
        raise Http404("No such analytics view.")
    return VIEWS[slug]


@team_view()
def analytics_index(request):
    return render(request, "analytics/index.html", {"views": VIEWS.values()})


@team_view()
def analytics_page(request, slug: str):
    """One view over the query string's filters; a bad parameter is shown above the form (status 400)."""
    view = _view(slug)
    context = {
        "view": view, "views": VIEWS.values(), "params": request.GET, "formats": FORMATS,
        "timeframes": [*TIMEFRAMES, "custom"], "granularities": GRANULARITIES, "experiment_types": EXPERIMENT_TYPES,
        "metrics": QUALITY_METRICS, "dimensions": DIMENSIONS, "query": request.GET.urlencode(),
    }  # fmt: skip
    try:
        result = view.run(request.team, request.GET)
    except ParameterError as exc:
        context["error"] = str(exc)
        return render(request, "analytics/view.html", context, status=400)
    context["result"] = result
    context["charts"] = [(caption, mark_safe(chart)) for caption, chart in result.charts]  # llmbench.svg escapes text
    return render(request, "analytics/view.html", context)


@team_view()
def analytics_export(request, slug: str, fmt: str):
    view = _view(slug)
    if fmt not in FORMATS:
        raise Http404("No such format.")
    try:
        result = view.run(request.team, request.GET)
    except ParameterError as exc:
        return render(request, "analytics/view.html", {"view": view, "error": str(exc), "params": request.GET},
                      status=400)  # fmt: skip
    return download(result, fmt, team=request.team)
