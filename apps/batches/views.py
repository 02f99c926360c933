"""Load sweep pages: list, create, the live page, and start / cancel / resume."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.models import Membership
from apps.accounts.permissions import require_role, team_view
from apps.batches.forms import LoadSweepForm
from apps.batches.models import LoadSweep
from apps.batches.services import progress_payload, sweep_cancel, sweep_create, sweep_start


@team_view()
def sweep_list(request):
    sweeps = LoadSweep.objects.filter(team=request.team).select_related("endpoint", "variant")
    return render(request, "batches/sweep_list.html", {"sweeps": sweeps})


@team_view()
@require_http_methods(["GET", "POST"])
def sweep_new(request):
    if request.method == "POST":
        require_role(request, Membership.Role.MEMBER)
    form = LoadSweepForm(request.POST or None, team=request.team)
    if request.method == "POST" and form.is_valid():
        sweep = sweep_create(team=request.team, user=request.user, **form.sweep_fields())
        if request.POST.get("start"):
            sweep_start(sweep=sweep)
        return redirect("batches:sweep", pk=sweep.pk)
    return render(request, "batches/sweep_form.html", {"form": form}, status=400 if request.method == "POST" else 200)


@team_view()
def sweep_detail(request, pk: int):
    sweep = get_object_or_404(
        LoadSweep.objects.select_related("endpoint", "variant", "hardware"), pk=pk, team=request.team
    )
    return render(request, "batches/sweep_detail.html", {"sweep": sweep, "state": progress_payload(sweep)})


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
    return redirect("batches:sweep", pk=sweep.pk)
