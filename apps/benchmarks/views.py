"""Pages of standard benchmarks: the list of suites and runs, importing a suite, a suite's task definition and
items, one item with its answers across runs, the new-run form with its estimate, the live run page (progress over
the websocket, results per target, the paired comparison of two targets) and a run's answers.

Views are thin: the imports are apps.benchmarks.imports', the runs' operations services', every figure
selectors' (the API and the exports read the same)."""

import json
from dataclasses import dataclass

from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.models import Membership
from apps.accounts.permissions import require_role, team_view
from apps.benchmarks import imports, selectors, services
from apps.benchmarks.engine import stats, taskdefs
from apps.benchmarks.filters import AnswerFilterForm, RunFilter, SuiteFilter
from apps.benchmarks.forms import RunForm, SuiteImportForm
from apps.benchmarks.models import FINISHED, BenchmarkAnswer, BenchmarkItem, BenchmarkRun, BenchmarkSuite, Kind, Status
from apps.providers.budget import BudgetExceeded, refusal_text
from apps.scores.paired import Paired, paired_comparison

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
FIRST_ITEMS = 10
FLIPPED_SHOWN = 200
# Parts of taskdefs.task_definition the suite page lays out itself; any other part is listed after them.
TASK_SHOWN = {"kind", "name", "version", "shots", "reference", "prompt", "extraction", "alternate_extractions",
              "scoring", "metrics", "max_tokens", "temperature", "documentation"}  # fmt: skip
OUTCOME_LABELS = {"correct": "correct", "wrong": "wrong", "no_answer": "no answer", "failed": "failed"}


def _team_suite(request, pk: int) -> BenchmarkSuite:
    return get_object_or_404(BenchmarkSuite.objects.select_related("benchmark", "created_by"), pk=pk, team=request.team)


def _team_run(request, pk: int) -> BenchmarkRun:
    rows = BenchmarkRun.objects.select_related("suite__benchmark", "created_by")
    return get_object_or_404(rows, pk=pk, team=request.team)


def target_label(target) -> str:
    """ "endpoint · model (variant)", as every benchmark page names a target."""
    label = f"{target.endpoint.name} · {target.model}"
    return f"{label} ({target.variant})" if target.variant_id else label


def short_label(target) -> str:
    """The variant a target serves (what a comparison is about), else its endpoint and model."""
    return str(target.variant) if target.variant_id else f"{target.endpoint.name} · {target.model}"


def _targets(run: BenchmarkRun) -> list:
    return list(run.targets.select_related("endpoint", "variant"))


def answer_outcome(answer: BenchmarkAnswer) -> str:
    if answer.error_code:
        return "failed"
    if answer.correct:
        return "correct"
    return "no_answer" if answer.extracted == "" else "wrong"


# The list -------------------------------------------------------------------------------------------------------


def _finished_accuracies(runs: list[BenchmarkRun]) -> dict[int, stats.Accuracy]:
    """Overall accuracy of each target of the finished runs, by target id. A finished run's answers no longer
    change (a resume makes it unfinished, and the key names its counters), so the figures are cached and the
    list reads the answers of the runs it has not seen only, in one query."""
    finished = [r for r in runs if r.status in FINISHED]
    keys = {f"benchmarks:accuracy:{r.pk}:{r.status}:{r.completed_answers}:{r.failed_answers}": r.pk for r in finished}
    cached = cache.get_many(list(keys))
    missing = [pk for key, pk in keys.items() if key not in cached]
    if missing:
        rows = (
            BenchmarkAnswer.objects.filter(run_id__in=missing, correct__isnull=False)
            .values("run_id", "target_id")
            .annotate(
                n=Count("id"),
                right=Count("id", filter=Q(correct=True)),
                none=Count("id", filter=Q(correct=False, extracted="")),
            )
        )
        found: dict[int, dict[int, tuple[int, int, int]]] = {pk: {} for pk in missing}
        for row in rows:
            found[row["run_id"]][row["target_id"]] = (row["right"], row["n"], row["none"])
        cache.set_many({key: found[pk] for key, pk in keys.items() if pk in found}, timeout=24 * 3600)
        cached.update({key: found[pk] for key, pk in keys.items() if pk in found})
    return {
        target_id: stats.accuracy(right, n, none)
        for counts in cached.values()
        for target_id, (right, n, none) in counts.items()
    }


@team_view()
@require_GET
def benchmark_index(request):
    """The team's suites and runs, filterable; a finished run shows each target's accuracy."""
    suite_filter = SuiteFilter(request.GET, queryset=BenchmarkSuite.objects.filter(team=request.team)
                               .select_related("created_by"))  # fmt: skip
    run_rows = (
        BenchmarkRun.objects.filter(team=request.team)
        .select_related("suite")
        .prefetch_related("targets__endpoint", "targets__variant")
    )
    run_filter = RunFilter(request.GET, queryset=run_rows)
    valid = suite_filter.is_valid() and run_filter.is_valid()
    suites = list(suite_filter.qs) if valid else []
    page = Paginator(run_filter.qs if valid else run_rows.none(), 50).get_page(request.GET.get("page"))
    accuracies = _finished_accuracies(list(page.object_list))
    runs = []
    for run in page.object_list:
        targets = list(run.targets.all())
        total = run.item_count * len(targets)
        runs.append({
            "run": run, "status_label": selectors.status_label(run), "total": total,
            "simulated": any(t.endpoint.is_simulated for t in targets),
            "targets": [{"label": target_label(t), "accuracy": accuracies.get(t.pk)} for t in targets],
        })  # fmt: skip
    problems = {**suite_filter.errors, **run_filter.errors}
    context = {
        "suites": suites, "runs": runs, "page": page, "problems": problems, "filters": request.GET,
        "kinds": Kind.choices, "statuses": selectors.STATUS_LABELS,
        "all_suites": BenchmarkSuite.objects.filter(team=request.team).only("id", "name", "version"),
    }  # fmt: skip
    return render(request, "benchmarks/index.html", context, status=400 if problems else 200)


# Suites ---------------------------------------------------------------------------------------------------------


@team_view()
@require_http_methods(["GET", "POST"])
def suite_import(request):
    """Upload a benchmark's files; every bad row is listed and nothing is stored."""
    if request.method == "GET":
        return render(request, "benchmarks/suite_import.html", {"form": SuiteImportForm()})
    require_role(request, Membership.Role.MEMBER)
    form = SuiteImportForm(request.POST, request.FILES)
    problems: list[str] = []
    if form.is_valid():
        try:
            suite = imports.suite_import(team=request.team, user=request.user, **form.import_kwargs())
        except ValidationError as exc:
            problems = exc.messages
        else:
            extra = f", {suite.fewshot_count:,} worked examples" if suite.fewshot_count else ""
            messages.success(
                request, f"Imported {suite} ({suite.get_kind_display()}): {suite.item_count:,} items{extra}."
            )
            for warning in getattr(suite, "import_warnings", [])[:10]:
                messages.warning(request, warning)
            return redirect("benchmarks:suite-detail", pk=suite.pk)
    return render(request, "benchmarks/suite_import.html", {"form": form, "problems": problems}, status=400)


def task_sections(task: dict) -> list[dict]:
    """The recorded task definition in the order it was written, each part shaped for the page: long text
    (a prompt template) as a block, a list (the extraction patterns, tried in order) numbered, a mapping as
    its own small list of facts."""

    def shaped(key, value) -> dict:
        words = str(key).replace("_", " ")
        words = words[:1].upper() + words[1:]
        if isinstance(value, dict):
            return {"words": words, "shape": "facts", "value": [shaped(k, v) for k, v in value.items()]}
        if isinstance(value, list | tuple):
            parts = [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in value]
            return {"words": words, "shape": "list", "value": parts}
        if isinstance(value, str) and ("\n" in value or len(value) > 80):
            return {"words": words, "shape": "block", "value": value}
        return {"words": words, "shape": "text", "value": value}

    return [shaped(key, value) for key, value in (task or {}).items() if key not in TASK_SHOWN]


@team_view()
@require_GET
def suite_detail(request, pk: int):
    suite = _team_suite(request, pk)
    items = suite.items.filter(split=BenchmarkItem.Split.TEST).order_by("index")[:FIRST_ITEMS]
    runs = list(suite.runs.only("id", "name", "status", "created_at").order_by("-created_at")[:50])
    context = {
        "suite": suite, "items": items, "runs": runs, "task": suite.task or {}, "task_other": task_sections(suite.task),
        "subjects": sorted((suite.subjects or {}).items()), "statuses": selectors.STATUS_LABELS,
        "answer_key_url": f"/api/v1/benchmark-suites/{suite.pk}/answer-key",
    }  # fmt: skip
    return render(request, "benchmarks/suite_detail.html", context)


@team_view(Membership.Role.MEMBER)
@require_POST
def suite_delete(request, pk: int):
    suite = _team_suite(request, pk)
    try:
        imports.suite_delete(suite=suite)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("benchmarks:suite-detail", pk=suite.pk)
    messages.success(request, f"The suite {suite} is deleted.")
    return redirect("benchmarks:index")


@team_view()
@require_GET
def item_detail(request, pk: int, index: int):
    """One question: its choices with the correct one marked, the worked solution, and its answers in runs."""
    suite = _team_suite(request, pk)
    item = get_object_or_404(BenchmarkItem, suite=suite, split=BenchmarkItem.Split.TEST, index=index)
    choices = [{"letter": LETTERS[i], "text": text, "correct": LETTERS[i] == item.answer}
               for i, text in enumerate(item.choices[: len(LETTERS)])]  # fmt: skip
    answers = list(
        BenchmarkAnswer.objects.filter(item=item, run__team=request.team)
        .select_related("run", "target__endpoint", "target__variant")
        .order_by("-run_id", "target_id")[:100]
    )
    rows = [{"answer": a, "target": target_label(a.target), "outcome": answer_outcome(a)} for a in answers]
    neighbours = {
        "previous": index - 1 if index > 0 else None,
        "next": index + 1 if index + 1 < suite.item_count else None,
    }
    context = {"suite": suite, "item": item, "choices": choices, "answers": rows, "outcomes": OUTCOME_LABELS,
               **neighbours}  # fmt: skip
    return render(request, "benchmarks/item.html", context)


# Runs -----------------------------------------------------------------------------------------------------------


def _estimate(request, form: RunForm) -> dict | None:
    """What the run would cost, from the service itself: the run is created and rolled back."""
    try:
        with transaction.atomic():
            run = services.benchmark_run_create(team=request.team, user=request.user, **form.create_kwargs())
            estimate = dict(run.estimate or services.benchmark_run_estimate(run))
            estimate["items"] = run.item_count
            transaction.set_rollback(True)
    except ValidationError as exc:
        form.show_problems(exc)
        return None
    return estimate


def _form_problems(form: RunForm) -> list[str]:
    """Every problem of the form in one list, each naming its field or target row (the estimate box shows it)."""
    problems = [
        " ".join(errors) if name == "__all__" else f"{form[name].label}: {' '.join(errors)}"
        for name, errors in form.errors.items()
    ]
    problems += form.target_errors
    problems += [f"Target {i}: {e}" for i, row in enumerate(form.target_rows, 1) for e in row["errors"]]
    return problems


def _suite_from_query(request) -> BenchmarkSuite | None:
    suite_id = request.GET.get("suite", "")
    if not suite_id.isdigit():
        return None
    return BenchmarkSuite.objects.filter(team=request.team, pk=int(suite_id)).first()


def _run_form_context(form: RunForm, estimate: dict | None = None) -> dict:
    suites = {s.pk: s for s in form.fields["suite"].queryset}
    suite_facts = {
        str(pk): {"kind": s.get_kind_display(), "items": s.item_count, "fewshot": s.fewshot_count,
                  "subjects": len(s.subjects or {}), "max_tokens": _default_max_tokens(s.kind)}
        for pk, s in suites.items()
    }  # fmt: skip
    return {"form": form, "estimate": estimate, "served": form.served, "suite_facts": suite_facts}


def _default_max_tokens(kind: str) -> int | None:
    try:
        return taskdefs.default_max_tokens(kind)
    except (KeyError, ValueError):
        return None


@team_view()
@require_http_methods(["GET", "POST"])
def run_create(request):
    """The new-run form. `preview` (htmx, on every change) shows the estimate; the submit creates the run and,
    with "start", queues it."""
    if request.method == "GET":
        suite = _suite_from_query(request)
        form = RunForm(team=request.team, suite=suite)
        if suite is not None:
            form.initial["max_tokens"] = _default_max_tokens(suite.kind)
        return render(request, "benchmarks/run_form.html", _run_form_context(form))
    require_role(request, Membership.Role.MEMBER)
    form = RunForm(request.POST, team=request.team)
    if request.POST.get("preview"):
        estimate = _estimate(request, form) if form.is_valid() else None
        context = _run_form_context(form, estimate) | {"preview_problems": [] if estimate else _form_problems(form)}
        return render(request, "benchmarks/run_form.html#estimate", context)
    if form.is_valid():
        try:
            run = services.benchmark_run_create(team=request.team, user=request.user, **form.create_kwargs())
        except ValidationError as exc:
            form.show_problems(exc)
        else:
            if request.POST.get("start"):
                try:
                    services.benchmark_run_start(run=run)
                except BudgetExceeded as exc:
                    messages.error(request, f"Saved, not started. {refusal_text(exc)}")
            return redirect("benchmarks:run-detail", pk=run.pk)
    return render(request, "benchmarks/run_form.html", _run_form_context(form), status=400)


@dataclass
class PairedView:
    """Two targets of a run compared on the same items, in the words of the page."""

    a: str
    b: str
    paired: Paired
    verb: str  # "loses" / "gains" / "matches"
    points: float
    ci_low: float
    ci_high: float
    flipped: list[int]  # suite item indices
    more_flipped: int


def _paired(run: BenchmarkRun, targets: list) -> PairedView | None:
    """The paired comparison of a completed run's two targets; the full-precision variant, if one is, is the base."""
    if len(targets) != 2 or run.status != Status.COMPLETED:
        return None
    a, b = targets
    if b.variant_id and b.variant.is_full_precision and not (a.variant_id and a.variant.is_full_precision):
        a, b = b, a
    a_outcomes, a_digests, n = selectors.target_outcomes(a)
    b_outcomes, b_digests, n_b = selectors.target_outcomes(b)
    if n == 0 or n != n_b:
        return None
    paired = paired_comparison(a_outcomes, b_outcomes, n, a_digests=a_digests, b_digests=b_digests)
    order = services.run_item_indices(run)
    flipped = [order[i] if i < len(order) else i for i in paired.flipped]
    diff = paired.difference_pts
    if diff < 0:
        verb, points, low, high = "loses", -diff, -paired.ci_high_pts, -paired.ci_low_pts
    else:
        verb, points, low, high = ("gains" if diff > 0 else "matches"), diff, paired.ci_low_pts, paired.ci_high_pts
    return PairedView(
        a=short_label(a), b=short_label(b), paired=paired, verb=verb, points=points, ci_low=low, ci_high=high,
        flipped=flipped[:FLIPPED_SHOWN], more_flipped=max(0, len(flipped) - FLIPPED_SHOWN),
    )  # fmt: skip


def _unpublished_reasons(run: BenchmarkRun, target, result) -> list[str]:
    """Why a target's result did not become a measured score of its variant."""
    reasons = []
    if run.status != Status.COMPLETED:
        reasons.append("the run has not completed")
    if run.subset_size:
        reasons.append(f"it asked a subset of {run.item_count:,} items (only a full run is published)")
    if result.failed:
        reasons.append(f"{result.failed:,} request{'s' if result.failed != 1 else ''} failed (resume the run to ask "
                       "them again)")  # fmt: skip
    if not target.variant_id:
        reasons.append("the target is not linked to a catalog variant")
    # Every condition held, so it was published; a later run of the same variant and benchmark replaced it since.
    return reasons or ["a later run of this variant has replaced its measured score"]


def _results_context(run: BenchmarkRun, targets: list) -> dict:
    """A finished run's results: a row per target, the subjects with each target's accuracy side by side, and the
    alternate extractions (GSM8K's flexible-extract) as extra columns."""
    by_target = {r.target.pk: r for r in selectors.run_results(run)}
    results = [by_target[t.pk] for t in targets if t.pk in by_target]
    alternate_names = list(dict.fromkeys(name for r in results for name in r.alternates))
    rows = [{
        "target": r.target, "label": target_label(r.target), "result": r,
        "no_answer_rate": r.overall.no_answer / r.overall.n if r.overall.n else None,
        "alternates": [r.alternates.get(name) for name in alternate_names],
        "unpublished": None if r.measured_score else _unpublished_reasons(run, r.target, r),
    } for r in results]  # fmt: skip
    subjects = sorted({subject for r in results for subject, _ in r.by_subject})
    per_subject = [dict(r.by_subject) for r in results]
    subject_rows = [(subject, [figures.get(subject) for figures in per_subject]) for subject in subjects]
    words = [name.replace("_", " ").replace("-", " ").capitalize() for name in alternate_names]
    return {"results": rows, "subject_rows": subject_rows, "alternate_names": words}


def _live_context(run: BenchmarkRun) -> dict:
    state = selectors.progress_payload(run)
    targets = _targets(run)
    context = {"run": run, "state": state, "targets": targets, "finished": run.status in FINISHED,
               "simulated": any(t.endpoint.is_simulated for t in targets)}  # fmt: skip
    if run.status in FINISHED:
        context |= _results_context(run, targets) | {"paired": _paired(run, targets)}
    return context


@team_view()
@require_GET
def run_detail(request, pk: int):
    return render(request, "benchmarks/run_detail.html", _live_context(_team_run(request, pk)))


@team_view()
@require_GET
def run_live(request, pk: int):
    """The live part of the run page, fetched again when the progress says something changed."""
    return render(request, "benchmarks/partials/_run_live.html", _live_context(_team_run(request, pk)))


ACTION_DONE = {
    "start": "The run is queued.",
    "resume": "The run is queued again; the answers already checkpointed are kept.",
    "cancel": "Cancel requested: the requests in flight finish, then the run stops.",
}


@team_view(Membership.Role.MEMBER)
@require_POST
def run_action(request, pk: int, action: str):
    run = _team_run(request, pk)
    try:
        if action == "delete":
            services.benchmark_run_delete(run=run)
            messages.success(request, f"The run {run.name} is deleted.")
            return redirect("benchmarks:index")
        if action == "cancel":
            services.benchmark_run_cancel(run=run)
        else:
            services.benchmark_run_start(run=run)
        messages.success(request, ACTION_DONE[action])
    except services.BenchmarkRefused as exc:
        messages.error(request, str(exc))
    except BudgetExceeded as exc:
        messages.error(request, refusal_text(exc))
    return redirect("benchmarks:run-detail", pk=run.pk)


@team_view()
@require_GET
def run_answers(request, pk: int):
    """A run's answers, filterable by target, subject and outcome, fifty a page."""
    run = _team_run(request, pk)
    targets = _targets(run)
    form = AnswerFilterForm(request.GET, target_ids=[t.pk for t in targets])
    rows, page = [], None
    if form.is_valid():
        answers = selectors.answers_for(run, **form.selector_kwargs()).select_related("item", "target")
        page = Paginator(answers, 50).get_page(request.GET.get("page"))
        labels = {t.pk: target_label(t) for t in targets}
        rows = [{"answer": a, "target": labels.get(a.target_id, ""), "outcome": answer_outcome(a)}
                for a in page.object_list]  # fmt: skip
    context = {
        "run": run, "targets": [(t.pk, target_label(t)) for t in targets], "form": form, "rows": rows,
        "page": page, "subjects": sorted(run.suite.subjects or {}), "outcomes": OUTCOME_LABELS,
        "chosen": {name: request.GET.get(name, "") for name in ("target", "subject", "outcome")},
    }  # fmt: skip
    return render(request, "benchmarks/run_answers.html", context, status=200 if form.is_valid() else 400)
