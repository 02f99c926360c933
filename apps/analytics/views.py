"""Analytics pages: an index and one page per view (filters, charts, summary, sections, downloads)."""

from django.http import Http404
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.safestring import mark_safe

from apps.accounts.permissions import team_view
from apps.accounts.simulated import include_simulated
from apps.analytics import decision
from apps.analytics.catalog import VIEWS, ParameterError, params_for
from apps.analytics.filters import EXPERIMENT_TYPES, GRANULARITIES, TIMEFRAMES
from apps.analytics.outputs import FORMATS, download
from apps.analytics.presentation import SIMULATED, cell_text, words
from apps.analytics.selectors import DIMENSIONS
from apps.batches.selectors import METRIC_LABELS, QUALITY_METRICS
from llmbench.throttling import page_throttle

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
@page_throttle("exports")
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


# --- the capacity answer (issue 14): curves, Pareto frontier, cost at the SLO ---------------------

DECISION_TABS = (("curves", "Latency against throughput"), ("pareto", "Throughput per GPU against interactivity"),
                 ("cost", "Cost at the SLO"))  # fmt: skip


PAGE_ROWS = 200  # rows of a table on a decision page, as in its PDF; every row is in the CSV, JSON and Excel files


def _table_body(section, badge: str) -> str:
    """A section's first PAGE_ROWS rows as <tr>s. Written here rather than by the template engine: the Pareto page's
    table of 500 runs × 9 cells took 200 ms in {% for %} loops. Every cell is escaped."""
    columns = [(column, f' class="{column.css}"' if column.css else "") for column in section.page_columns()]
    rows = []
    for row in section.rows[:PAGE_ROWS]:
        simulated = bool(row.get(SIMULATED))
        cells = [f"<td{attrs}>{escape(cell_text(column, row))}</td>" for column, attrs in columns]
        if simulated and cells:
            cells[0] = cells[0][: -len("</td>")] + f" {badge}</td>"
        rows.append(('<tr data-simulated="1">' if simulated else "<tr>") + "".join(cells) + "</tr>")
    if not rows:
        rows.append(f'<tr><td class="text" colspan="{len(columns)}">{escape(section.empty)}</td></tr>')
    if len(section.rows) > PAGE_ROWS:
        more = f"{len(section.rows) - PAGE_ROWS:,} more rows in the CSV, JSON and Excel downloads."
        rows.append(f'<tr><td class="text" colspan="{len(columns)}">{more}</td></tr>')
    return mark_safe("".join(rows))  # each cell escaped above; the badge is our own template


@team_view()
def decision_index(request):
    return redirect("analytics:decision", kind="curves")


@team_view()
def decision_page(request, kind: str):
    """One decision view over the query string; a bad parameter is shown above the form (status 400)."""
    if kind not in decision.KINDS:
        raise Http404("No such decision view.")
    view = decision.DECISION_VIEWS[decision.KINDS[kind]]
    params = params_for(request)
    context = {
        "kind": kind, "view": view, "tabs": DECISION_TABS, "params": params, "formats": FORMATS,
        "query": params.urlencode(), "include_simulated": include_simulated(request),
        "chosen": params.getlist("deployments"),
        "throughputs": list(decision.CURVE_THROUGHPUTS.items()),
        "latencies": [(k, label) for k, (label, _, _) in decision.CURVE_LATENCIES.items()],
    }  # fmt: skip

    def compute():
        result = decision.decision_result(kind, request.team, params)
        badge = render_to_string("partials/_simulated_badge.html").strip()
        return result, [_table_body(section, badge) for section in result.sections]

    try:  # the rendered tables are cached with the result: writing 200 rows of cells is half the page's CPU
        result, bodies = decision.cached(kind, "page", request.team, params, compute)
    except ParameterError as exc:
        context["error"] = str(exc)
        return render(request, "analytics/decision.html", context, status=400)
    context["result"] = result
    context["data"] = result.data
    context["charts"] = [(caption, mark_safe(chart)) for caption, chart in result.charts]  # llmbench.svg escapes text
    context["sections"] = list(zip(result.sections, bodies, strict=True))
    return render(request, "analytics/decision.html", context)


@team_view()
@page_throttle("exports")
def decision_export(request, kind: str, fmt: str):
    if kind not in decision.KINDS or fmt not in FORMATS:
        raise Http404("No such decision view or format.")
    params = params_for(request)
    try:
        result = decision.decision_result(kind, request.team, params)
    except ParameterError as exc:
        return render(request, "analytics/decision.html", {"kind": kind, "tabs": DECISION_TABS, "error": str(exc),
                                                           "params": params}, status=400)  # fmt: skip
    return download(result, fmt, team=request.team)
