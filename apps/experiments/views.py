"""Experiment pages. Model output is rendered escaped (autoescape, line breaks only): never as
live HTML, scripts or htmx attributes."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.models import Membership
from apps.accounts.permissions import require_role, team_view
from apps.experiments.forms import ExperimentForm
from apps.experiments.models import Experiment, Response
from apps.experiments.selectors import experiment_summary
from apps.experiments.services import TransitionRefused, experiment_cancel, experiment_create, experiment_start


@team_view()
def experiment_list(request):
    experiments = Experiment.objects.filter(team=request.team)
    if query := request.GET.get("q", "").strip():
        experiments = experiments.filter(Q(name__icontains=query) | Q(description__icontains=query))
    if request.GET.get("archived") != "1":
        experiments = experiments.filter(archived=False)
    if request.GET.get("favourite") == "1":
        experiments = experiments.filter(favourite=True)
    page = Paginator(experiments, 50).get_page(request.GET.get("page"))
    return render(request, "experiments/experiment_list.html", {"page": page})


@team_view()
@require_http_methods(["GET", "POST"])
def experiment_new(request):
    if request.method == "POST":
        require_role(request, Membership.Role.MEMBER)
    form = ExperimentForm(request.POST or None, team=request.team)
    if request.method == "POST" and form.is_valid():
        experiment = experiment_create(team=request.team, user=request.user, **form.create_kwargs())
        experiment_start(experiment=experiment)
        return redirect("experiments:detail", pk=experiment.pk)
    return render(
        request, "experiments/experiment_form.html", {"form": form}, status=400 if request.method == "POST" else 200
    )


@team_view()
def experiment_detail(request, pk: int):
    experiment = get_object_or_404(Experiment, pk=pk, team=request.team)
    responses = Response.objects.filter(experiment=experiment).select_related("target__endpoint", "test_case")
    page = Paginator(responses, 50).get_page(request.GET.get("page"))
    context = {"experiment": experiment, "summary": experiment_summary(experiment), "page": page}
    return render(request, "experiments/experiment_detail.html", context)


@team_view(Membership.Role.MEMBER)
@require_POST
def experiment_action(request, pk: int, action: str):
    experiment = get_object_or_404(Experiment, pk=pk, team=request.team)
    try:
        if action == "cancel":
            experiment_cancel(experiment=experiment)
        elif action == "favourite":
            Experiment.objects.filter(pk=pk).update(favourite=not experiment.favourite)
        elif action == "archive":
            Experiment.objects.filter(pk=pk).update(archived=not experiment.archived)
        else:
            experiment_start(experiment=experiment)
    except TransitionRefused as exc:
        messages.error(request, str(exc))
    return redirect("experiments:detail", pk=pk)
