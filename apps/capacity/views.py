"""Capacity search pages: the list, the new-search form, the live detail page (the answer in one sentence, the
figures at capacity, two charts and the probes table, re-rendered on each progress event), start / cancel /
resume / delete, and the comparison of two searches."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.models import Membership
from apps.accounts.permissions import require_role, team_view
from apps.capacity.charts import latency_chart, throughput_chart
from apps.capacity.engine.slo import describe_slo
from apps.capacity.filters import CapacitySearchFilter
from apps.capacity.forms import METRIC_CHOICES, PERCENTILE_CHOICES, CapacitySearchForm
from apps.capacity.models import CapacitySearch
from apps.capacity.selectors import (
    answer_text,
    bracket_text,
    compare_searches,
    cost_text,
    figures_at_capacity,
    level_number,
    level_text,
    limited_by_text,
    probe_rows,
    progress_text,
    undecided_notes,
)
from apps.capacity.services import (
    STATUS_LABELS,
    CapacityRefused,
    capacity_cancel,
    capacity_create,
    capacity_delete,
    capacity_start,
    progress_payload,
)
from apps.providers.budget import BudgetExceeded, refusal_text


def _team_search(request, pk: int) -> CapacitySearch:
    rows = CapacitySearch.objects.select_related(
        "endpoint", "variant", "hardware", "deployment", "workload_version__workload", "sweep"
    )
    return get_object_or_404(rows, pk=pk, team=request.team)


def _capacity_cell(search: CapacitySearch) -> str:
    """The capacity as the list shows it, "41.8 req/s [40.1, 43.5]"; a dash until found."""
    result = search.result or {}
    capacity = result.get("capacity", search.capacity)
    if capacity is None:
        return "–"
    low, high = result.get("low", search.capacity_low), result.get("high", search.capacity_high)
    return f"{level_text(capacity, result.get('unit') or search.unit)} {bracket_text(low, high)}"


@team_view()
@require_GET
def capacity_list(request):
    """The team's searches, newest first, with their answer and its cost; simulated ones carry the badge."""
    rows = CapacitySearch.objects.filter(team=request.team).select_related("endpoint", "variant", "hardware",
                                                                           "deployment")  # fmt: skip
    filters = CapacitySearchFilter(request.GET, queryset=rows)
    page = Paginator(filters.qs if filters.is_valid() else rows.none(), 50).get_page(request.GET.get("page"))
    searches = [{
        "search": s, "slo_text": describe_slo(s.slo), "status_label": STATUS_LABELS.get(s.status, s.status),
        "capacity_text": _capacity_cell(s), "cost_text": cost_text(s) if s.status == "completed" else "",
    } for s in page.object_list]  # fmt: skip
    context = {
        "page": page,
        "searches": searches,
        "statuses": STATUS_LABELS,
        "status_filter": request.GET.get("status"),
    }
    return render(request, "capacity/list.html", context)


@team_view()
@require_http_methods(["GET", "POST"])
def capacity_new(request):
    if request.method == "POST":
        require_role(request, Membership.Role.MEMBER)
    form = CapacitySearchForm(request.POST or None, team=request.team)
    if request.method == "POST" and form.is_valid():
        search = capacity_create(team=request.team, user=request.user, **form.create_kwargs())
        if request.POST.get("start"):
            try:
                capacity_start(search=search)
            except BudgetExceeded as exc:
                messages.error(request, f"Saved, not started. {refusal_text(exc)}")
        return redirect("capacity:detail", pk=search.pk)
    context = {"form": form, "metric_choices": METRIC_CHOICES, "percentile_choices": PERCENTILE_CHOICES}
    return render(request, "capacity/form.html", context, status=400 if request.method == "POST" else 200)


def _live_context(search: CapacitySearch) -> dict:
    state = progress_payload(search)
    rows = probe_rows(state)
    return {
        "search": search, "state": state, "rows": rows, "answer": answer_text(search),
        "figures": figures_at_capacity(search) if state["result"] else [],
        "undecided": undecided_notes(state),
        # llmbench.svg quotes every attribute and escapes every text it draws
        "latency_chart": mark_safe(latency_chart(state, rows)),
        "throughput_chart": mark_safe(throughput_chart(state, rows)),
        "progress": progress_text(state), "limited_by": limited_by_text(state["result"] or {}),
        "running_level": level_number((state["running"] or {}).get("level")),
    }  # fmt: skip


@team_view()
@require_GET
def capacity_detail(request, pk: int):
    return render(request, "capacity/detail.html", _live_context(_team_search(request, pk)))


@team_view()
@require_GET
def capacity_live(request, pk: int):
    """The live part of the detail page, fetched again on each progress event."""
    return render(request, "capacity/partials/_live.html", _live_context(_team_search(request, pk)))


ACTION_DONE = {
    "start": "The search is queued.",
    "resume": "The search is queued again; judged probes are kept.",
    "cancel": "Cancel requested: the probe running stops within a second.",
}


@team_view(Membership.Role.MEMBER)
@require_POST
def capacity_action(request, pk: int, action: str):
    search = _team_search(request, pk)
    try:
        if action == "delete":
            capacity_delete(search=search)
            messages.success(request, f"The search {search.name} is deleted; its performance runs stay.")
            return redirect("capacity:list")
        if action == "cancel":
            capacity_cancel(search=search)
        else:
            capacity_start(search=search)
        messages.success(request, ACTION_DONE[action])
    except CapacityRefused as exc:
        messages.error(request, str(exc))
    except BudgetExceeded as exc:
        messages.error(request, refusal_text(exc))
    return redirect("capacity:detail", pk=search.pk)


@team_view()
@require_GET
def capacity_compare(request):
    """Pick two searches; their capacities side by side, the bracket overlap and the goodput test, in words."""
    searches = list(CapacitySearch.objects.filter(team=request.team).only("id", "name", "status", "created_at"))
    chosen = {name: request.GET.get(name, "") for name in ("a", "b")}
    comparison, problem = None, ""
    if chosen["a"] or chosen["b"]:
        ids = {name: int(v) if v.isdigit() else None for name, v in chosen.items()}
        rows = CapacitySearch.objects.filter(team=request.team).select_related("hardware").prefetch_related("probes")
        found = {s.pk: s for s in rows.filter(pk__in=[v for v in ids.values() if v is not None])}
        if any(v not in found for v in ids.values()):
            problem = "Choose two of the team's capacity searches."
        else:
            comparison = compare_searches(found[ids["a"]], found[ids["b"]])
    context = {"searches": searches, "chosen": chosen, "comparison": comparison, "problem": problem}
    return render(request, "capacity/compare.html", context, status=400 if problem else 200)
