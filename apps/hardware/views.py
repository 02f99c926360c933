"""Serving performance pages: grid, runs, run detail, compare, prediction and upload."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.models import Membership
from apps.accounts.permissions import require_role, team_view
from apps.accounts.simulated import PARAM as SIMULATED_PARAM
from apps.accounts.simulated import include_simulated
from apps.hardware.exports import compare_pdf, run_export
from apps.hardware.filters import PerformanceRunFilter
from apps.hardware.forms import (
    FORMAT_CHOICES,
    CompareQueryForm,
    GridQueryForm,
    PerformanceUploadForm,
    PredictForm,
    RunSloForm,
)
from apps.hardware.importers import PerformanceFileError
from apps.hardware.modeling import NotEnoughData, modeling_configurations, predict
from apps.hardware.models import PerformanceRun, RequestSample
from apps.hardware.selectors import (
    GRID_METRICS,
    SIGNIFICANCE_METHOD,
    compare_runs,
    performance_grid,
    run_distributions,
    run_server_metrics,
    run_workload_figures,
    simulated_left_out,
)
from apps.hardware.services import run_update_slo
from apps.hardware.uploads import performance_import_apply, performance_import_plan
from llmbench.throttling import page_throttle

PAGE_SIZE = 50


def team_runs(request):
    """The active team's runs with everything the pages show about them."""
    return PerformanceRun.objects.filter(team=request.team).select_related(
        "variant", "hardware", "deployment", "summary"
    )


@team_view()
def grid_page(request):
    query = GridQueryForm(request.GET)
    filterset = PerformanceRunFilter(request.GET, queryset=PerformanceRun.objects.filter(team=request.team))
    simulated = include_simulated(request)
    context = {"query": query, "filter": filterset, "grid": None, "metrics": GRID_METRICS,
               "include_simulated": simulated}  # fmt: skip
    if not query.is_valid() or not filterset.is_valid():
        return render(request, "hardware/grid.html", context, status=400)
    context["grid"] = performance_grid(
        team=request.team,
        metric=query.cleaned_data["metric"],
        runs=filterset.qs,
        workload=query.cleaned_data["workload"],
        include_simulated=simulated,
    )
    template = "hardware/grid.html#results" if request.htmx else "hardware/grid.html"
    return render(request, template, context)


@team_view()
def run_list(request):
    filterset = PerformanceRunFilter(request.GET, queryset=team_runs(request))
    page = Paginator(filterset.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    template = "hardware/run_list.html#results" if request.htmx else "hardware/run_list.html"
    return render(request, template, {"filter": filterset, "page": page}, status=200 if filterset.is_valid() else 400)


@team_view()
@require_http_methods(["GET", "POST"])
def run_detail(request, pk: int):
    run = get_object_or_404(team_runs(request).select_related("workload_version__workload"), pk=pk)
    slo_form = RunSloForm(instance=run)
    status = 200
    if request.method == "POST":
        require_role(request, Membership.Role.MEMBER)
        slo_form = RunSloForm(request.POST, instance=run)
        if slo_form.is_valid():
            data = slo_form.cleaned_data
            run_update_slo(run=run, ttft_ms=data["slo_ttft_ms"], tpot_ms=data["slo_tpot_ms"], e2e_ms=data["slo_e2e_ms"])
            messages.success(request, "Goodput SLO saved; the summary was recomputed.")
            return redirect("hardware:run", pk=run.pk)
        status = 400
    summary = getattr(run, "summary", None)
    context = {
        "run": run,
        "summary": summary,
        "distributions": (distributions := run_distributions(run=run)),
        "distribution_requests": next(iter(distributions.values()))["requests"] if distributions else 0,
        "sample_count": RequestSample.objects.filter(run=run).count(),
        "slo_form": slo_form,
        "workload": run_workload_figures(run=run),
        "server": run_server_metrics(run=run),
        "metric_rows": [
            ("ttft_ms", "TTFT", "ms"),
            ("itl_ms", "ITL", "ms"),
            ("tpot_ms", "TPOT", "ms"),
            ("e2e_ms", "E2E latency", "ms"),
            ("output_tps", "Output tokens/s per request", "tok/s"),
            ("prompt_tps", "Prompt tokens/s per request", "tok/s"),
            ("total_tps", "Prompt and output tokens/s per request", "tok/s"),
            ("input_tokens", "Input tokens", "tokens"),
            ("output_tokens", "Output tokens", "tokens"),
        ],
    }
    return render(request, "hardware/run_detail.html", context, status=status)


@team_view()
@page_throttle("exports")
def run_samples_csv(request, pk: int):
    """The run's samples as CSV (the same file as export.csv)."""
    return run_export(run=get_object_or_404(team_runs(request), pk=pk), kind="csv")


@team_view()
@page_throttle("exports")
def run_export_view(request, pk: int, fmt: str):
    """The run as CSV (its samples), JSON or Excel (summary and samples)."""
    run = get_object_or_404(team_runs(request).select_related("team"), pk=pk)
    return run_export(run=run, kind=fmt)


@team_view(Membership.Role.MEMBER)
@require_POST
def run_delete(request, pk: int):
    run = get_object_or_404(PerformanceRun, pk=pk, team=request.team)
    run.delete()
    messages.success(request, f"Deleted run {pk} and its samples.")
    return redirect("hardware:runs")


def _compared_runs(request, ids: list[int]) -> list[PerformanceRun]:
    """The team's runs with these ids, in that order; 404 when any is missing or another team's."""
    runs = {r.pk: r for r in team_runs(request).filter(pk__in=ids)}
    if len(runs) != len(ids):
        raise Http404("No run with one of those ids in this team.")
    return [runs[i] for i in ids]


@team_view()
def compare_page(request):
    form = CompareQueryForm(request.GET)
    simulated = include_simulated(request)
    context: dict = {"form": form, "comparison": None, "include_simulated": simulated,
                     "significance_method": SIGNIFICANCE_METHOD}  # fmt: skip
    if not form.is_valid():
        return render(request, "hardware/compare.html", context, status=400 if request.GET else 200)
    runs = _compared_runs(request, form.cleaned_data["runs"])
    if problem := simulated_left_out(runs, simulated):
        form.add_error("runs", problem)
        return render(request, "hardware/compare.html", context, status=400)
    comparison = compare_runs(runs=runs)
    context["comparison"] = comparison
    context["radar"] = {
        "indicators": comparison.radar,
        "series": [
            {"name": f"#{r.pk}{' (simulated)' if r.is_simulated else ''}", "values": v}
            for r, v in zip(comparison.runs, comparison.radar_values, strict=True)
        ],
    }
    return render(request, "hardware/compare.html", context)


@team_view()
@page_throttle("exports")
def compare_export_pdf(request):
    """The comparison of the runs in `?runs=` as a PDF: the page's figures, tests and bar charts."""
    form = CompareQueryForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest(" ".join(form.errors.get("runs", ["Choose two to four runs."])))
    runs = _compared_runs(request, form.cleaned_data["runs"])
    if problem := simulated_left_out(runs, include_simulated(request)):
        return HttpResponseBadRequest(problem)
    comparison = compare_runs(runs=runs)
    return compare_pdf(comparison=comparison, team_name=request.team.name, query=form.data["runs"])


@team_view()
def predict_page(request):
    simulated = include_simulated(request)
    asked = {k: v for k, v in request.GET.items() if k != SIMULATED_PARAM}
    form = PredictForm(request.GET if asked else None, team=request.team)
    context: dict = {
        "form": form,
        "configurations": modeling_configurations(team=request.team, include_simulated=simulated),
        "include_simulated": simulated,
    }
    status = 200
    if asked:
        if form.is_valid():
            data = form.cleaned_data
            try:
                context["prediction"] = predict(
                    team=request.team, variant_id=data["variant"].pk, hardware_id=data["hardware"].pk,
                    input_tokens=data["input_tokens"], output_tokens=data["output_tokens"],
                    concurrency=data["concurrency"], include_simulated=simulated,
                )  # fmt: skip
            except NotEnoughData as exc:
                context["not_enough"] = str(exc)
        else:
            status = 400
    return render(request, "hardware/predict.html", context, status=status)


@team_view()
@require_http_methods(["GET", "POST"])
def upload_page(request):
    """Upload a result file: the preview (htmx) shows the runs found, the submit stores them."""
    if request.method == "GET":
        return render(request, "hardware/upload.html", {"form": PerformanceUploadForm(team=request.team)})
    require_role(request, Membership.Role.MEMBER)
    form = PerformanceUploadForm(request.POST, request.FILES, team=request.team)
    preview = bool(request.POST.get("preview"))
    context: dict = {"form": form}
    if form.is_valid():
        try:
            plan = performance_import_plan(team=request.team, **form.plan_kwargs())
        except PerformanceFileError as exc:
            context["file_error"] = exc.as_dict()
        else:
            if preview:
                context["plan"] = plan
                context["plan_format"] = dict(FORMAT_CHOICES).get(plan.file_format, plan.file_format)
                return render(request, "hardware/upload.html#preview", context)
            runs = performance_import_apply(plan=plan, user=request.user)
            messages.success(request, f"Stored {len(runs)} run(s) with {plan.sample_count:,} request samples.")
            if len(runs) == 1:
                return redirect("hardware:run", pk=runs[0].pk)
            return redirect("hardware:runs")
    return render(request, "hardware/upload.html#preview" if preview else "hardware/upload.html", context, status=400)
