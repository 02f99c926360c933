"""CI gate pages: the team's gates and saved checks, the start form, a gate's page (refreshed until it is judged),
the saved-check form, and the llmbench-gate script as a download."""

from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, permission_classes

from apps.accounts.models import Membership
from apps.accounts.permissions import require_role, team_view
from apps.gates.filters import GateFilter
from apps.gates.forms import GateCheckForm, GateStartForm
from apps.gates.models import Gate, GateCheck
from apps.gates.services import GateRefused, check_delete, check_save, gate_fresh, gate_start, run_link
from apps.providers.budget import BudgetExceeded, refusal_text
from llmbench.api_docs import ApiDocsAccess

SCRIPT = Path(settings.BASE_DIR) / "scripts" / "llmbench-gate"
PAGE_SIZE = 50


def _team_gate(request, pk: int) -> Gate:
    rows = Gate.objects.select_related("saved_check", "created_by", "endpoint")
    return get_object_or_404(rows, pk=pk, team=request.team)


@team_view()
@require_GET
def gate_list(request):
    """The team's gates, newest first (unfinished ones on the page judged now), and its saved checks."""
    rows = Gate.objects.filter(team=request.team).select_related("saved_check")
    filters = GateFilter(request.GET, queryset=rows)
    valid = filters.is_valid()
    page = Paginator(filters.qs if valid else rows.none(), PAGE_SIZE).get_page(request.GET.get("page"))
    for gate in page.object_list:
        gate_fresh(gate)
    context = {
        "page": page, "gates": page.object_list, "filter": filters, "statuses": Gate.Status.choices,
        "status_filter": request.GET.get("status", ""), "checks": GateCheck.objects.filter(team=request.team),
    }  # fmt: skip
    return render(request, "gates/list.html", context, status=200 if valid else 400)


def _start_initial(request) -> dict:
    initial = {}
    for name in ("check", "kind", "run", "baseline", "model"):
        if request.GET.get(name):
            initial[name] = request.GET[name]
    return initial


@team_view()
@require_http_methods(["GET", "POST"])
def gate_new(request):
    """Start a gate: a saved check or a run to repeat, the change under test and the criteria."""
    if request.method == "POST":
        require_role(request, Membership.Role.MEMBER)
    form = GateStartForm(request.POST or None, team=request.team, initial=_start_initial(request))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            gate = gate_start(
                team=request.team, user=request.user, check=data["check"], name=data["name"], kind=data["kind"],
                run_id=data["run"], endpoint_id=data["endpoint"].pk if data["endpoint"] else None,
                model=data["model"], criteria=form.criteria_lines(), baseline_id=data["baseline"],
                alpha=data["alpha"],
            )  # fmt: skip
        except BudgetExceeded as exc:
            form.add_error(None, refusal_text(exc))
        except GateRefused as exc:
            form.add_service_errors(exc.message_dict)
        else:
            messages.success(request, "The gate is started: this page shows its verdict when its run ends.")
            return redirect("gates:detail", pk=gate.pk)
    return render(request, "gates/form.html", {"form": form}, status=400 if request.method == "POST" else 200)


def _detail_context(gate: Gate) -> dict:
    gate = gate_fresh(gate)
    return {"gate": gate, "run": run_link(gate), "results": gate.results or []}


@team_view()
@require_GET
def gate_detail(request, pk: int):
    """A gate: its configuration, its run, and each criterion with its figure, interval, test and verdict."""
    context = _detail_context(_team_gate(request, pk))
    template = "gates/detail.html#verdict" if request.htmx else "gates/detail.html"
    return render(request, template, context)


@team_view()
@require_http_methods(["GET", "POST"])
def check_edit(request, pk: int | None = None):
    """Create or change a saved check."""
    check = get_object_or_404(GateCheck, pk=pk, team=request.team) if pk else None
    if request.method == "POST":
        require_role(request, Membership.Role.MEMBER)
    initial = {}
    if check:
        initial = {"name": check.name, "description": check.description, "kind": check.kind,
                   "run": check.template_run_id, "endpoint": check.endpoint_id, "model": check.model,
                   "criteria": "\n".join(check.criteria), "baseline": check.baseline_run_id, "alpha": check.alpha}  # fmt: skip
    else:
        initial = _start_initial(request)
    form = GateCheckForm(request.POST or None, team=request.team, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            saved = check_save(
                team=request.team, user=request.user, check=check, name=data["name"],
                description=data["description"], kind=data["kind"], run_id=data["run"],
                endpoint_id=data["endpoint"].pk if data["endpoint"] else None, model=data["model"],
                criteria=form.criteria_lines(), baseline_id=data["baseline"], alpha=data["alpha"],
            )  # fmt: skip
        except GateRefused as exc:
            form.add_service_errors(exc.message_dict)
        else:
            messages.success(request, f"The check {saved.name} is saved.")
            return redirect("gates:list")
    context = {"form": form, "check": check}
    return render(request, "gates/check_form.html", context, status=400 if request.method == "POST" else 200)


@team_view(Membership.Role.MEMBER)
@require_POST
def check_remove(request, pk: int):
    check = get_object_or_404(GateCheck, pk=pk, team=request.team)
    check_delete(check=check)
    messages.success(request, f"The check {check.name} is deleted; its gates stay.")
    return redirect("gates:list")


@extend_schema(exclude=True)  # a page's download, not part of the API
@api_view(["GET"])
@permission_classes([ApiDocsAccess])
def script_download(request):
    """scripts/llmbench-gate as a download: for whoever may read the API docs (signed in, an API token, or
    anyone when API_DOCS_PUBLIC)."""
    if not SCRIPT.is_file():
        raise Http404("The script is not installed on this server.")
    response = FileResponse(SCRIPT.open("rb"), as_attachment=True, filename="llmbench-gate",
                            content_type="text/x-python; charset=utf-8")  # fmt: skip
    return response
