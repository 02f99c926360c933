"""Pages of the model catalog: leaderboard, quantization view, score import, variants."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import ProtectedError
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.models import Membership
from apps.accounts.permissions import require_role, team_view
from apps.accounts.simulated import include_simulated
from apps.providers.models import ProviderEndpoint
from apps.scores.cache import cached_answer
from apps.scores.filters import ModelVariantFilter
from apps.scores.forms import LeaderboardQueryForm, QuantizationQueryForm, ScoreImportForm
from apps.scores.importers import ScoreFileError
from apps.scores.models import Benchmark, ModelVariant, Score, ServedVariant
from apps.scores.selectors import RANKING_RULE, leaderboard, quantization_report
from apps.scores.services import scores_import_apply, scores_import_plan, served_variants_set

PAGE_SIZE = 50


def _page(request, items):
    return Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))


@team_view()
def leaderboard_page(request):
    names = list(Benchmark.objects.filter(team=request.team).values_list("name", flat=True))
    form = LeaderboardQueryForm(request.GET, benchmark_names=names)
    with_simulated = include_simulated(request)
    context = {
        "form": form,
        "include_simulated": with_simulated,
        "ranking_rule": RANKING_RULE,
        "benchmark_names": names,
    }
    status = 200 if form.is_valid() else 400

    def results() -> str:
        board, page, hidden_simulated = None, None, False
        if status == 200:
            board = leaderboard(team=request.team, include_simulated=with_simulated, **form.selector_kwargs())
            page = _page(request, board.rows)
            hidden_simulated = not board.rows and not with_simulated and _has_simulated_scores(request.team)
        extra = {"board": board, "page": page, "hidden_simulated": hidden_simulated}
        return render_to_string("scores/leaderboard.html#results", {**context, **extra}, request)

    # The results are cached (apps/scores/cache.py); a bad query is cheap and answered fresh.
    parts = (request.get_full_path(), with_simulated, _role(request))
    html = mark_safe(cached_answer("leaderboard", request.team, parts, results) if status == 200 else results())
    if request.htmx:
        return HttpResponse(html, status=status)
    # The filters' choices, in one query.
    options = set(ModelVariant.objects.filter(team=request.team).values_list("family", "quantization").distinct())
    context |= {
        "results_html": html,
        "families": sorted({family for family, _ in options if family}),
        "quantizations": sorted({quantization for _, quantization in options}),
    }
    return render(request, "scores/leaderboard.html", context, status=status)


def _role(request) -> str:
    """The user's role in the team: the results show role-dependent links (import), so it is part of the key."""
    membership = getattr(request, "membership", None)
    return membership.role if membership else ""


def _has_simulated_scores(team) -> bool:
    """Whether an empty page is empty only because simulated scores are left out."""
    return Score.objects.filter(team=team, is_simulated=True).exists()


@team_view()
def quantization_page(request):
    if "flipped" in request.GET:
        return _flipped_items(request)
    form = QuantizationQueryForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest(f"family: {' '.join(form.errors['family'])}")
    family = form.cleaned_data["family"].strip() or None
    with_simulated = include_simulated(request)
    context = {"family": family or "", "include_simulated": with_simulated}

    def results() -> str:
        report = quantization_report(team=request.team, family=family, include_simulated=with_simulated)
        hidden = not report.rows and not with_simulated and _has_simulated_scores(request.team)
        extra = {"report": report, "hidden_simulated": hidden}
        return render_to_string("scores/quantization.html#results", {**context, **extra}, request)

    parts = (request.get_full_path(), with_simulated, _role(request))
    html = mark_safe(cached_answer("quantization", request.team, parts, results))  # apps/scores/cache.py
    if request.htmx:
        return HttpResponse(html)
    return render(request, "scores/quantization.html", {**context, "results_html": html})


def _flipped_items(request):
    """The flipped items of one paired comparison (?flipped=<quantized variant id>&benchmark=<name>), fetched
    when its list on the quantization page is opened."""
    raw, benchmark = request.GET.get("flipped", ""), request.GET.get("benchmark", "").strip()
    problems = []
    if not raw.isdigit():
        problems.append(f'flipped: a model variant id (a whole number), not "{raw}"')
    if not benchmark:
        problems.append("benchmark: the name of a benchmark is required")
    if problems:
        return HttpResponseBadRequest("; ".join(problems), content_type="text/plain; charset=utf-8")
    variant = get_object_or_404(ModelVariant, pk=int(raw), team=request.team)
    report = quantization_report(team=request.team, model_name=variant.model_name,
                                 include_simulated=include_simulated(request))  # fmt: skip
    row = next((r for r in report.rows if r.variant_id == variant.pk), None)
    delta = row.deltas.get(benchmark) if row else None
    if not delta or not delta["paired"]:
        raise Http404(f"{variant} has no item-by-item comparison on {benchmark}.")
    context = {"row": row, "benchmark": benchmark, "paired": delta["paired"]}
    return render(request, "scores/partials/_flipped_items.html", context)


@team_view()
@require_http_methods(["GET", "POST"])
def import_page(request):
    """Upload a score file: the preview (htmx) shows what would change, the submit writes it."""
    if request.method == "GET":
        return render(request, "scores/import.html", {"form": ScoreImportForm()})
    require_role(request, Membership.Role.MEMBER)
    form = ScoreImportForm(request.POST, request.FILES)
    context: dict = {"form": form}
    if form.is_valid():
        try:
            plan = scores_import_plan(team=request.team, **form.import_kwargs())
        except ScoreFileError as exc:
            context["file_error"] = exc.as_dict()
        else:
            if request.POST.get("preview"):
                context["plan"] = plan
                context["preview_rows"] = plan.rows[:20]
                return render(request, "scores/import.html#preview", context)
            summary = scores_import_apply(plan=plan)
            messages.success(
                request,
                f"Imported {summary.rows} scores read as {summary.scale}s: {summary.scores_created} new, "
                f"{summary.scores_updated} updated, {summary.variants_created} new model variants, "
                f"{summary.benchmarks_created} new benchmarks.",
            )
            return redirect("scores:leaderboard")
    template = "scores/import.html#preview" if request.POST.get("preview") else "scores/import.html"
    return render(request, template, context, status=400)


@team_view()
def variant_list(request):
    variants = ModelVariant.objects.filter(team=request.team)
    filterset = ModelVariantFilter(request.GET, queryset=variants)
    page = _page(request, filterset.qs)
    template = "scores/variant_list.html#results" if request.htmx else "scores/variant_list.html"
    return render(request, template, {"filter": filterset, "page": page})


@team_view()
def variant_detail(request, pk: int):
    variant = get_object_or_404(ModelVariant, pk=pk, team=request.team)
    # Every score of the variant is listed, simulated ones with their badge; the comparison with
    # the base follows the include-simulated choice like the quantization page.
    # The per-item outcomes of measured scores (tens of kB each) are for the quantization view, not this page.
    scores = variant.scores.select_related("benchmark").defer("outcomes", "answer_digests")
    scores = scores.order_by("benchmark__name", "-origin")  # measured before imported
    base = None
    if not variant.is_full_precision:
        report = quantization_report(
            team=request.team, model_name=variant.model_name, include_simulated=include_simulated(request)
        )
        base = next((row for row in report.rows if row.variant_id == variant.pk), None)
    return render(request, "scores/variant_detail.html", {"variant": variant, "scores": scores, "base": base})


@team_view(Membership.Role.MEMBER)
@require_POST
def variant_delete(request, pk: int):
    variant = get_object_or_404(ModelVariant, pk=pk, team=request.team)
    try:
        variant.delete()
    except ProtectedError:
        # Performance runs are measurements; deleting a catalog entry must not take them along.
        count = variant.performance_runs.count()
        messages.error(request, f"{variant} has {count} performance run(s); delete those first.")
        return redirect("scores:variant", pk=variant.pk)
    messages.success(request, f"Deleted {variant} and its scores.")
    return redirect("scores:variants")


@team_view()
@require_http_methods(["GET", "POST"])
def served_variants(request, endpoint_pk: int):
    """Which catalog variant (model + quantization) the endpoint serves under each of its model names: a
    benchmark run of that endpoint and model then publishes its measured score to that variant. Members set
    it (a run's target form sets it too); viewers read it."""
    endpoint = get_object_or_404(ProviderEndpoint, pk=endpoint_pk, team=request.team)
    variants = list(ModelVariant.objects.filter(team=request.team).order_by("model_name", "quantization"))
    by_id = {str(v.pk): v for v in variants}
    linked = dict(ServedVariant.objects.filter(team=request.team, endpoint=endpoint).values_list("model", "variant_id"))
    models = list(dict.fromkeys([*endpoint.model_names, *linked]))  # a link to a name no longer listed shows too
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        require_role(request, Membership.Role.MEMBER)
        links = {}
        for index, model in enumerate(models):
            chosen = request.POST.get(f"variant-{index}", "")
            if chosen and chosen not in by_id:
                errors[model] = f"Model {model}: choose one of the team's catalog variants."
            links[model] = by_id.get(chosen)
        if not errors:
            served_variants_set(team=request.team, endpoint=endpoint, links=links)
            messages.success(request, f"Saved which catalog variants {endpoint.name} serves.")
            return redirect("scores:served", endpoint_pk=endpoint.pk)
        status = 400
        linked = {m: (v.pk if v else None) for m, v in links.items()}
    rows = [
        {"index": i, "model": m, "variant_id": linked.get(m), "error": errors.get(m, "")} for i, m in enumerate(models)
    ]
    context = {"endpoint": endpoint, "rows": rows, "variants": variants}
    return render(request, "scores/served.html", context, status=status)
