"""Analytics pages: an index and one page per view (filters, charts, summary, sections, downloads)."""

from django.http import Http404
from django.shortcuts import render
from django.utils.safestring import mark_safe

from apps.accounts.permissions import team_view
from apps.accounts.simulated import include_simulated
from apps.analytics.catalog import VIEWS, ParameterError, params_for
from apps.analytics.filters import EXPERIMENT_TYPES, GRANULARITIES, TIMEFRAMES
from apps.analytics.outputs import FORMATS, download
from apps.analytics.presentation import words
from apps.analytics.selectors import DIMENSIONS
from apps.batches.selectors import METRIC_LABELS, QUALITY_METRICS

TIMEFRAME_WORDS = {"7d": "Last 7 days", "30d": "Last 30 days", "90d": "Last 90 days", "custom": "Dates below"}
TYPE_WORDS = {"all": "All experiments", "single": "Single experiments", "batch": "Parameter sweeps"}
OBJECTIVE_VIEWS = ("parameter-optimization", "parameter-insights")


def _view(slug: str):
    if slug not in VIEWS:
        raise Http404("No such analytics view.")
    return VIEWS[slug]


@team_view()
def analytics_index(request):
    return render(request, "analytics/index.html", {"views": VIEWS.values()})


def _choices(values, names: dict | None = None) -> list[tuple[str, str]]:
    return [(v, (names or {}).get(v) or words(v).capitalize()) for v in values]


@team_view()
def analytics_page(request, slug: str):
    """One view over the query string's filters; a bad parameter is shown above the form (status 400)."""
    view = _view(slug)
    params = params_for(request)
    context = {
        "view": view, "views": VIEWS.values(), "params": params, "formats": FORMATS,
        "timeframes": _choices([*TIMEFRAMES, "custom"], TIMEFRAME_WORDS), "granularities": _choices(GRANULARITIES),
        "experiment_types": _choices(EXPERIMENT_TYPES, TYPE_WORDS), "metrics": _choices(QUALITY_METRICS, METRIC_LABELS),
        "dimensions": _choices(DIMENSIONS), "query": params.urlencode(), "include_simulated": include_simulated(request),
        "objective_view": slug in OBJECTIVE_VIEWS,
    }  # fmt: skip
    try:
        result = view.run(request.team, params)
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
    params = params_for(request)
    try:
        result = view.run(request.team, params)
    except ParameterError as exc:
        return render(request, "analytics/view.html", {"view": view, "error": str(exc), "params": params},
                      status=400)  # fmt: skip
    return download(result, fmt, team=request.team)
