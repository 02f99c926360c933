"""Batch pages: the section's list, load sweeps (create, live page, start / cancel / resume) and
parameter sweeps (create with an estimate first, the live page with its heatmap, the table of
combinations, the analysis). Model output is only ever shown escaped."""

import math

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.models import Membership
from apps.accounts.permissions import require_role, team_view
from apps.batches.analysis import format_value
from apps.batches.exports import batch_export as export_batch
from apps.batches.exports import sweep_export as export_sweep
from apps.batches.forms import BatchForm, LoadSweepForm
from apps.batches.models import Batch, LoadSweep
from apps.batches.parameters import RangeError
from apps.batches.selectors import (
    COST_METRICS,
    METRIC_LABELS,
    QUALITY_METRICS,
    ObjectiveError,
    batch_analysis,
    batch_insights,
    batch_optimization,
    combination_figures,
    default_axes,
    heatmap,
    objective_from,
    parameter_label,
    result_rows_latest,
    sweep_trials,
    swept_parameters,
)
from apps.batches.services import (
    BatchRefused,
    batch_cancel,
    batch_create,
    batch_delete,
    batch_start,
    batch_state,
    progress_payload,
    sweep_cancel,
    sweep_create,
    sweep_start,
)
from apps.experiments.models import ExperimentTarget
from apps.experiments.services import TransitionRefused
from apps.providers.budget import BudgetExceeded, refusal_text
from apps.providers.engine.types import Kind
from llmbench.humanize import duration_text
from llmbench.throttling import page_throttle


def _values_text(values: list, limit: int = 12) -> str:
    """Parameter values or levels as the page prints them: 200, not 200.0; the first `limit`, then a count."""
    shown = ", ".join(format_value(v) for v in values[:limit])
    return shown if len(values) <= limit else f"{shown}, … ({len(values):,} values)"


@team_view()
def sweep_list(request):
    """The section: parameter sweeps, then load sweeps; those asking the simulator carry its badge."""
    simulated = ExperimentTarget.objects.filter(experiment_id=OuterRef("pk"), endpoint__kind=Kind.SIM)
    batches = Batch.objects.filter(experiment__team=request.team).select_related("experiment")
    batches = batches.annotate(is_simulated=Exists(simulated)).order_by("-experiment__created_at", "-pk")
    sweeps = LoadSweep.objects.filter(team=request.team, managed_by="").select_related("endpoint", "variant")
    page = Paginator(batches, 50).get_page(request.GET.get("page"))
    rows = [(s, _values_text(s.levels)) for s in sweeps]
    return render(request, "batches/sweep_list.html", {"page": page, "sweeps": rows})


# --- load sweeps --------------------------------------------------------------------------------


@team_view()
@require_http_methods(["GET", "POST"])
def sweep_new(request):
    if request.method == "POST":
        require_role(request, Membership.Role.MEMBER)
    form = LoadSweepForm(request.POST or None, team=request.team, picker=True)
    if request.method == "POST" and form.is_valid():
        sweep = sweep_create(team=request.team, user=request.user, **form.sweep_fields())
        if request.POST.get("start"):
            try:
                sweep_start(sweep=sweep)
            except BudgetExceeded as exc:
                messages.error(request, f"Saved, not started. {refusal_text(exc)}")
        return redirect("batches:sweep", pk=sweep.pk)
    return render(request, "batches/sweep_form.html", {"form": form}, status=400 if request.method == "POST" else 200)


@team_view()
def sweep_detail(request, pk: int):
    sweep = get_object_or_404(
        LoadSweep.objects.select_related("endpoint", "variant", "hardware", "workload_version__workload"),
        pk=pk,
        team=request.team,
    )
    trials = sweep_trials(sweep)
    context = {"sweep": sweep, "state": progress_payload(sweep), "levels_text": _values_text(sweep.levels, 20),
               "trials": trials, "trial_charts": _trial_charts(trials) if trials["repeated"] else []}  # fmt: skip
    return render(request, "batches/sweep_detail.html", context)


@team_view()
@require_GET
@page_throttle("exports")
def sweep_export(request, pk: int, fmt: str):
    """The sweep as CSV (its figures per level across trials), JSON or Excel (and every step)."""
    return export_sweep(sweep=get_object_or_404(LoadSweep, pk=pk, team=request.team), kind=fmt)


# The charts of the trials are drawn here as SVG (the template writes it, escaped): a dot per trial, faint,
# the mean per level joined by a line, and its interval as an error bar. Levels are evenly spaced categories,
# since sweeps usually double their concurrency; the value axis starts at 0 (latency and throughput).
CHART = {"width": 360, "height": 210, "left": 52, "right": 10, "top": 12, "bottom": 40}


def _axis_ticks(top_value: float, count: int = 4) -> list[float]:
    """0 and evenly spaced ticks at a 1, 2, 2.5 or 5 × 10^k step reaching `top_value`."""
    if not top_value > 0:
        return [0.0, 1.0]
    rough = top_value / count
    power = 10 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= rough)
    return [step * i for i in range(math.ceil(top_value / step - 1e-9) + 1)]


def _trial_charts(trials: dict) -> list[dict]:
    """Per figure: the points, error bars, mean line and axes of its chart across levels, in pixels."""
    w, h = CHART["width"], CHART["height"]
    left, right, top, bottom = CHART["left"], w - CHART["right"], CHART["top"], h - CHART["bottom"]
    levels = trials["levels"]
    band = (right - left) / max(len(levels), 1)
    label_every = max(1, math.ceil(30 / band))  # level labels need about 30 px each; many levels: every n-th
    charts = []
    for figure in trials["figures"]:
        cells = [entry["figures"][figure["key"]] for entry in levels]
        values = [v for c in cells for v in (c["high"], c["mean"], *(t["value"] for t in c["trials"])) if v is not None]
        if not values:
            continue
        ticks = _axis_ticks(max(values))

        def y(value, ticks=ticks) -> float:
            return round(bottom - (bottom - top) * value / ticks[-1], 2)

        columns, line = [], []
        for i, (entry, cell) in enumerate(zip(levels, cells, strict=True)):
            x = round(left + band * (i + 0.5), 2)
            # The trials sit just right of the error bar, side by side, within 40% of the level's band.
            step = min(5.0, band * 0.4 / max(len(cell["trials"]), 1))
            dots = [{"x": round(x + 7 + j * step, 2), "y": y(t["value"]), "trial": t["trial"] + 1,
                     "value": t["value"]} for j, t in enumerate(cell["trials"])]  # fmt: skip
            label = format_value(entry["level"]) if i % label_every == 0 else ""
            column = {"x": x, "caps": (x - 5, x + 5), "label": label, "dots": dots, "cell": cell}
            if cell["mean"] is not None:
                column["mean_y"] = y(cell["mean"])
                line.append(f"{x},{column['mean_y']}")
            if cell["low"] is not None:
                column["low_y"], column["high_y"] = y(cell["low"]), y(cell["high"])
            columns.append(column)
        charts.append({
            "figure": figure, "columns": columns, "line": " ".join(line), "size": CHART,
            "ticks": [{"y": y(t), "label": format_value(round(t, 10))} for t in ticks],
            "left": left, "right": right, "top": top, "bottom": bottom, "tick_x": left - 6, "level_y": bottom + 16,
            "axis_x": (left + right) / 2, "axis_y": h - 6,
        })  # fmt: skip
    return charts


@team_view(Membership.Role.MEMBER)
@require_POST
def sweep_action(request, pk: int, action: str):
    sweep = get_object_or_404(LoadSweep, pk=pk, team=request.team)
    try:
        if action == "cancel":
            sweep_cancel(sweep=sweep)
            messages.success(request, "Cancel requested: the sweep stops within a second.")
        else:
            sweep_start(sweep=sweep)
            messages.success(request, "The sweep is queued.")
    except ValueError as exc:
        messages.error(request, str(exc))
    except BudgetExceeded as exc:
        messages.error(request, refusal_text(exc))
    return redirect("batches:sweep", pk=sweep.pk)


# --- parameter sweeps ---------------------------------------------------------------------------


def _team_batch(request, pk: int) -> Batch:
    batches = Batch.objects.select_related("experiment__team")
    return get_object_or_404(batches, pk=pk, experiment__team=request.team)


@team_view()
@require_http_methods(["GET", "POST"])
def batch_new(request):
    """Create a sweep; its combinations, requests, duration and cost are shown as the form is
    filled in (see batch_estimate), and one over the team's limit starts only when confirmed."""
    if request.method == "POST":
        require_role(request, Membership.Role.MEMBER)
    initial = {"temperature": "0.1:1.0:0.1", "top_p": "0.8:1.0:0.05", "max_tokens": "150, 300, 500"}
    form = BatchForm(request.POST or None, team=request.team, initial=initial)
    choices = form.fields["target_pairs"].choices
    if choices:  # the first endpoint's first model, picked already
        form.initial["target_pairs"] = [choices[0][1][0][0]]
    estimate = None
    if request.method == "POST" and form.is_valid():
        estimate = form.estimate()
        start, confirm = bool(request.POST.get("start")), form.cleaned_data["confirm"]
        if start and estimate.over_limit and not confirm:
            form.add_error("confirm", f"{estimate.limit_reason}: tick this box to start it anyway.")
        else:
            try:
                with transaction.atomic():
                    batch = batch_create(team=request.team, user=request.user, **form.create_kwargs())
                    if start:
                        batch_start(batch=batch, confirm=confirm)
            except (TransitionRefused, RangeError, BatchRefused) as exc:
                form.add_error(None, str(exc))
            except BudgetExceeded as exc:
                form.add_error(None, refusal_text(exc))
            else:
                return redirect("batches:batch", pk=batch.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "batches/batch_form.html", {"form": form, "estimate": estimate}, status=status)


@team_view()
@require_GET
def batch_estimate(request):
    """The estimate partial of the form (htmx, on every change); the name does not matter to it."""
    data = request.GET.copy()
    data["name"] = data.get("name") or "estimate"
    form = BatchForm(data, team=request.team)
    estimate = form.estimate() if form.is_valid() else None
    return render(request, "batches/partials/_estimate.html", {"form": form, "estimate": estimate})


@team_view()
def batch_detail(request, pk: int):
    """The live page: progress, ETA, current parameters, the heatmap, best so far, latest results."""
    batch = _team_batch(request, pk)
    values = batch.parameter_values
    x, y = default_axes(values)
    targets = list(batch.experiment.targets.select_related("endpoint"))
    context = {
        "batch": batch, "experiment": batch.experiment, "state": batch_state(batch), "targets": targets,
        "simulated": any(t.endpoint.is_simulated for t in targets),
        "heatmap": heatmap(batch, x=x, y=y, metric=batch.objective), "latest": result_rows_latest(batch, 10),
        "parameters": [{"name": name, "label": parameter_label(name), "values": values[name],
                        "text": _values_text(values[name])} for name in values],
        "metrics": QUALITY_METRICS, "metric_labels": METRIC_LABELS,
        "estimated": duration_text(batch.estimate.get("duration_s")),
    }  # fmt: skip
    return render(request, "batches/batch_detail.html", context)


@team_view(Membership.Role.MEMBER)
@require_POST
def batch_action(request, pk: int, action: str):
    batch = _team_batch(request, pk)
    try:
        if action == "cancel":
            batch_cancel(batch=batch)
            messages.success(request, "Cancelled: nothing more is sent; stored results stay.")
        elif action == "delete":
            batch_delete(batch=batch)
            messages.success(request, f"Deleted {batch.experiment.name} and its results.")
            return redirect("batches:sweeps")
        else:
            batch_start(batch=batch, confirm=bool(request.POST.get("confirm")))
            messages.success(request, "The batch is queued.")
    except BatchRefused as exc:
        messages.error(request, str(exc))
    except BudgetExceeded as exc:
        messages.error(request, refusal_text(exc))
    return redirect("batches:batch", pk=pk)


@team_view()
def batch_combinations(request, pk: int):
    """Every combination with results: parameters, counts, mean of a figure, latency and cost."""
    batch = _team_batch(request, pk)
    metric = request.GET.get("metric") if request.GET.get("metric") in QUALITY_METRICS else batch.objective
    rows = combination_figures(batch, metric)
    sort = request.GET.get("sort", "-mean")
    if sort in ("mean", "-mean"):
        rows.sort(key=lambda r: (r.mean is None, -(r.mean or 0) if sort == "-mean" else (r.mean or 0)))
    page = Paginator(rows, 100).get_page(request.GET.get("page"))
    names = list(batch.parameter_values)
    context = {"batch": batch, "page": page, "metric": metric, "metrics": QUALITY_METRICS, "sort": sort, "names": names,
               "labels": {n: parameter_label(n) for n in names}, "metric_labels": METRIC_LABELS}  # fmt: skip
    return render(request, "batches/batch_combinations.html", context)


@team_view()
@require_GET
@page_throttle("exports")
def batch_export(request, pk: int, fmt: str):
    """The batch as CSV (its combinations), JSON, Excel (combinations and results) or a PDF report."""
    return export_batch(batch=_team_batch(request, pk), kind=fmt)


@team_view()
def batch_analysis_page(request, pk: int):
    """Effects per parameter, optimization for a chosen objective, correlations and insights."""
    batch = _team_batch(request, pk)
    error = ""
    try:
        objective = objective_from(request.GET, batch.objective)
    except ObjectiveError as exc:
        error, objective = str(exc), objective_from({}, batch.objective)
    context = {
        "batch": batch, "error": error, "objective": objective,
        "optimization": batch_optimization(batch, objective), "insights": batch_insights(batch, objective)["insights"],
        "objectives": [m for m in (*QUALITY_METRICS, *COST_METRICS) if m != "output_tokens"],
        "swept": swept_parameters(batch.parameter_values), "metric_labels": METRIC_LABELS,
        "parameter_labels": {name: parameter_label(name) for name in batch.parameter_values},
    }  # fmt: skip
    if request.htmx:
        return render(request, "batches/batch_analysis.html#optimization", context)
    chart_metric = objective.quality_metric if objective.weights else objective.metric
    context["analysis"] = batch_analysis(batch)
    context["charts"] = _effect_charts(context["analysis"], chart_metric)
    context["chart_metric_label"] = METRIC_LABELS.get(chart_metric, chart_metric).lower()
    context["simulated"] = batch.experiment.targets.filter(endpoint__kind=Kind.SIM).exists()
    return render(request, "batches/batch_analysis.html", context)


def _effect_charts(report: dict, metric: str) -> list[dict]:
    """Per swept parameter: mean of `metric` with its 95% interval at each value (for the charts)."""
    charts = []
    for effect in report["effects"]:
        if effect["metric"] == metric:
            charts.append({
                "parameter": effect["parameter"], "label": parameter_label(effect["parameter"]),
                "x": [v["value"] for v in effect["values"]], "mean": [v["mean"] for v in effect["values"]],
                "low": [v["ci_low"] for v in effect["values"]], "high": [v["ci_high"] for v in effect["values"]],
                "kruskal_p": effect["kruskal_p"],
            })  # fmt: skip
    return charts
