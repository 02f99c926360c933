"""Experiment pages. Model output is rendered escaped (autoescape, line breaks only): never as
live HTML, scripts or htmx attributes."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.models import Membership
from apps.accounts.permissions import require_role, team_view
from apps.experiments.evaluators import validate_settings
from apps.experiments.exports import experiment_export as export_experiment
from apps.experiments.forms import ExperimentForm, TestCaseForm
from apps.experiments.models import Experiment, ExperimentTarget, Response, TestCase
from apps.experiments.presentation import (
    evaluation_lines,
    parameter_lines,
    response_parameter_lines,
    settings_lines,
)
from apps.experiments.reviews import VERBS, testcase_review
from apps.experiments.selectors import experiment_summary
from apps.experiments.services import (
    TransitionRefused,
    experiment_cancel,
    experiment_create,
    experiment_start,
    testcase_create,
    testcase_submit,
    testcase_update,
)
from apps.providers.budget import BudgetExceeded, refusal_text
from apps.providers.engine.types import Kind
from llmbench.throttling import page_throttle


@team_view()
def experiment_list(request):
    simulated = ExperimentTarget.objects.filter(experiment=OuterRef("pk"), endpoint__kind=Kind.SIM)
    experiments = Experiment.objects.filter(team=request.team).annotate(has_simulated=Exists(simulated))
    if query := request.GET.get("q", "").strip():
        experiments = experiments.filter(Q(name__icontains=query) | Q(description__icontains=query))
    if request.GET.get("archived") != "1":
        experiments = experiments.filter(archived=False)
    if request.GET.get("favourite") == "1":
        experiments = experiments.filter(favourite=True)
    if tag := request.GET.get("tag", "").strip():
        experiments = [e for e in experiments if tag in e.tags]  # a JSON list: SQLite cannot ask "contains"
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
        try:
            experiment_start(experiment=experiment)
        except BudgetExceeded as exc:
            messages.error(request, f"Saved, not started. {refusal_text(exc)}")
        return redirect("experiments:detail", pk=experiment.pk)
    return render(
        request, "experiments/experiment_form.html", {"form": form}, status=400 if request.method == "POST" else 200
    )


def _case_settings(case: TestCase) -> list[tuple[str, str]]:
    """The evaluator's settings with every default filled in (as the run used them)."""
    try:
        return settings_lines(validate_settings(case.evaluator, case.evaluator_settings))
    except ValueError:
        return settings_lines(case.evaluator_settings)


@team_view()
def experiment_detail(request, pk: int):
    """What was run (prompt or test cases, every parameter, evaluators and their settings), the figures per
    target and every response with its evaluator's detail; the status part refreshes while it runs."""
    experiment = get_object_or_404(Experiment.objects.select_related("suite"), pk=pk, team=request.team)
    responses = Response.objects.filter(experiment=experiment).select_related("target__endpoint", "test_case")
    page = Paginator(responses, 50).get_page(request.GET.get("page"))
    for response in page.object_list:
        response.evaluation_lines = evaluation_lines(response)
        response.parameter_lines = response_parameter_lines(response)
    cases = list(experiment.test_cases.order_by("title", "pk"))
    for case in cases:
        case.settings_lines = _case_settings(case)
    context = {
        "experiment": experiment, "summary": experiment_summary(experiment), "page": page, "cases": cases,
        "parameters": parameter_lines(experiment), "targets": list(experiment.targets.select_related("endpoint")),
    }  # fmt: skip
    template = "experiments/experiment_detail.html#results" if request.htmx else "experiments/experiment_detail.html"
    return render(request, template, context)


@team_view()
@page_throttle("exports")
def experiment_export(request, pk: int, fmt: str):
    """The experiment as CSV (responses), JSON, Excel (responses and targets) or a PDF report."""
    experiment = get_object_or_404(Experiment.objects.select_related("team"), pk=pk, team=request.team)
    return export_experiment(experiment=experiment, kind=fmt)


@team_view()
def experiment_compare(request, pk: int):
    """Two targets' responses to the same test case (or prompt) side by side."""
    experiment = get_object_or_404(Experiment, pk=pk, team=request.team)
    targets = list(experiment.targets.select_related("endpoint"))
    chosen = [t for t in targets if str(t.pk) in request.GET.getlist("target")][:2] or targets[:2]
    rows: dict[tuple[str, int], dict] = {}
    for response in Response.objects.filter(experiment=experiment, target__in=chosen).select_related("test_case"):
        row = rows.setdefault((response.item_key, response.repetition), {"case": response.test_case, "by_target": {}})
        row["by_target"][response.target_id] = response
    context = {
        "experiment": experiment, "targets": targets, "chosen": chosen,
        "rows": [rows[key] for key in sorted(rows)],
    }  # fmt: skip
    return render(request, "experiments/experiment_compare.html", context)


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
    except BudgetExceeded as exc:
        messages.error(request, refusal_text(exc))
    return redirect("experiments:detail", pk=pk)


@team_view(Membership.Role.ADMIN)
@require_POST
def testcase_decide(request, pk: int, decision: str):
    """A team admin approves or rejects (with a reason) a pending test case from its page: the admin
    action's service and admin-log entry (apps.experiments.reviews)."""
    case = get_object_or_404(TestCase, pk=pk, team=request.team)
    reason = request.POST.get("reason", "").strip()
    if decision == "reject" and not reason:
        context = {"form": TestCaseForm(instance=case), "case": case,
                   "review_errors": {"reason": "A rejection needs a reason: say what should change."}}  # fmt: skip
        return render(request, "experiments/testcase_form.html", context, status=400)
    try:
        case = testcase_review(testcase=case, reviewer=request.user, decision=decision, reason=reason)
    except TransitionRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{VERBS[decision]} {case}.")
    return redirect("experiments:testcase", pk=case.pk)


@team_view()
def testcase_list(request):
    cases = TestCase.objects.filter(team=request.team, is_current=True).select_related("author", "reviewer")
    if status := request.GET.get("status"):
        cases = cases.filter(status=status)
    page = Paginator(cases, 50).get_page(request.GET.get("page"))
    return render(request, "experiments/testcase_list.html", {"page": page, "statuses": TestCase.Status.values})


@team_view()
@require_http_methods(["GET", "POST"])
def testcase_edit(request, pk: int | None = None):
    """Write a test case; saving an approved one makes a new version that goes back to review."""
    case = get_object_or_404(TestCase, pk=pk, team=request.team) if pk else None
    if request.method == "POST":
        require_role(request, Membership.Role.MEMBER)
    form = TestCaseForm(request.POST or None, instance=case)
    if request.method == "POST" and form.is_valid():
        submit = bool(request.POST.get("submit"))
        try:
            if case is None:
                case = testcase_create(team=request.team, author=request.user, submit=submit, **form.content())
            else:
                case = testcase_update(testcase=case, author=request.user, **form.content())
                if submit and case.status == TestCase.Status.DRAFT:
                    case = testcase_submit(testcase=case)
        except TransitionRefused as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Saved {case} ({case.status}).")
            return redirect("experiments:testcases")
    status = 400 if request.method == "POST" else 200
    return render(request, "experiments/testcase_form.html", {"form": form, "case": case}, status=status)
