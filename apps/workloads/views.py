"""Workload pages: the list, the editor with its live preview, a workload's page (versions, runs, archive,
delete), and the dataset and tokenizer uploads. Viewers read; members write; another team's is a 404."""

import json
import re

from django.contrib import messages
from django.core.exceptions import FieldDoesNotExist
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.models import Membership
from apps.accounts.permissions import require_role, team_view
from apps.workloads import selectors, services
from apps.workloads.forms import DatasetUploadForm, TokenizerUploadForm, WorkloadForm, spec_initial
from apps.workloads.models import WorkloadVersion
from llmbench.uploads import FileRejected

PAGE_SIZE = 50
ARCHIVED_FILTER = {"": False, "archived": True, "all": None}


@team_view()
def workload_list(request):
    """The team's workloads with their latest version; active ones unless the filter says otherwise."""
    show = request.GET.get("show", "")
    show = show if show in ARCHIVED_FILTER else ""
    workloads = selectors.workloads_for(request.team, archived=ARCHIVED_FILTER[show])
    workloads = workloads.prefetch_related("latest_versions__dataset", "latest_versions__tokenizer")
    page = Paginator(workloads, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [(w, w.latest_versions[0] if w.latest_versions else None) for w in page.object_list]
    return render(request, "workloads/workload_list.html", {"page": page, "rows": rows, "show": show})


def _editor(request, form: WorkloadForm, workload=None, status: int = 200):
    context = {"form": form, "workload": workload, "groups": editor_groups(form)}
    return render(request, "workloads/workload_form.html", context, status=status)


@team_view()
@require_http_methods(["GET", "POST"])
def workload_new(request):
    """The editor for a new workload (version 1)."""
    if request.method == "GET":
        return _editor(request, WorkloadForm(team=request.team))
    require_role(request, Membership.Role.MEMBER)
    form = WorkloadForm(request.POST, team=request.team)
    if form.is_valid():
        data = form.cleaned_data
        try:
            workload = services.workload_create(
                team=request.team,
                user=request.user,
                name=data["name"],
                description=data["description"],
                **form.service_kwargs(),
            )
        except services.SpecInvalid as exc:
            form.add_spec_errors(exc.errors)
        else:
            messages.success(request, f"Created {workload.name} (version 1).")
            return redirect("workloads:detail", pk=workload.pk)
    return _editor(request, form, status=400)


@team_view()
@require_http_methods(["GET", "POST"])
def workload_edit(request, pk: int):
    """The editor for an existing workload: saving adds a version only when the spec or its files changed."""
    workload = selectors.workload_get(request.team, pk)
    latest = workload.latest
    if request.method == "GET":
        initial = {"name": workload.name, "description": workload.description}
        if latest is not None:
            initial |= spec_initial(latest.spec)
            initial["tokenizer"] = latest.tokenizer_id
            initial["trace" if latest.spec.get("source") == "trace" else "dataset"] = latest.dataset_id
        return _editor(request, WorkloadForm(team=request.team, workload=workload, initial=initial), workload)
    require_role(request, Membership.Role.MEMBER)
    form = WorkloadForm(request.POST, team=request.team, workload=workload)
    if form.is_valid():
        data = form.cleaned_data
        before = latest.number if latest else 0
        try:
            version = services.workload_update(
                workload=workload,
                user=request.user,
                name=data["name"],
                description=data["description"],
                **form.service_kwargs(),
            )
        except services.SpecInvalid as exc:
            form.add_spec_errors(exc.errors)
        else:
            if version.number != before:
                messages.success(request, f"Saved {data['name']} as version {version.number}.")
            else:
                messages.info(request, f"Saved. The traffic did not change, so it stays version {version.number}.")
            return redirect("workloads:detail", pk=workload.pk)
    return _editor(request, form, workload, status=400)


@team_view()
@require_POST
def workload_preview(request):
    """The editor's preview (htmx, on every change): what the form's spec would send, or why it cannot."""
    data = request.POST.copy()
    data["name"] = data.get("name") or "preview"
    form = WorkloadForm(data, team=request.team)
    form.is_valid()
    problems = _problems(form, ignore={"name"})
    context: dict = {"problems": problems, "spec_json": _spec_json(form.spec)}
    if not problems:
        kwargs = form.service_kwargs()
        try:
            preview = services.workload_preview(**kwargs)
        except services.SpecInvalid as exc:
            form.add_spec_errors(exc.errors)
            context["problems"] = _problems(form, ignore={"name"})
        else:
            context |= preview_context(preview, kwargs["tokenizer"])
    # always 200: problems are part of the report (a 4xx would also be a console error in the browser)
    return render(request, "workloads/partials/_preview.html", context)


def _problems(form: WorkloadForm, ignore: set[str]) -> list[str]:
    """The form's errors as sentences that start with the field's label."""
    out = []
    for name, errors in form.errors.items():
        if name in ignore:
            continue
        label = form.fields[name].label if name in form.fields else ""
        out += [f"{label}: {e}" if label else str(e) for e in errors]
    return out


def _spec_json(spec: dict | None) -> str:
    return json.dumps(spec, indent=2, ensure_ascii=False) if spec else ""


@team_view()
def workload_detail(request, pk: int):
    """A workload: its spec in words, the preview of its latest version, its versions and the runs that used it."""
    workload = selectors.workload_get(request.team, pk)
    versions = list(workload.versions.select_related("created_by", "dataset", "tokenizer").order_by("-number"))
    latest = versions[0] if versions else None
    context: dict = {"workload": workload, "versions": versions, "latest": latest, "runs": None}
    if latest is not None:
        context["summary"] = spec_words(latest.spec, dataset=latest.dataset, tokenizer=latest.tokenizer)
        context["spec_json"] = _spec_json(latest.spec)
        try:
            context |= preview_context(services.version_preview(latest), latest.tokenizer)
        except (services.SpecInvalid, ValueError) as exc:
            context["problems"] = list(getattr(exc, "errors", None) or [str(exc)])
    context["runs"] = _runs(workload)
    return render(request, "workloads/workload_detail.html", context)


def _runs(workload):
    """The performance runs measured with any version of the workload, when runs record their version (None if
    they do not yet)."""
    try:
        relation = WorkloadVersion._meta.get_field("runs")
    except FieldDoesNotExist:  # the hardware app does not record the workload version
        return None
    runs = relation.related_model.objects.filter(workload_version__workload=workload)
    return list(runs.select_related("workload_version", "variant").order_by("-created_at", "-pk")[:50])


@team_view(Membership.Role.MEMBER)
@require_POST
def workload_archive(request, pk: int, archived: bool):
    workload = selectors.workload_get(request.team, pk)
    services.workload_set_archived(workload=workload, archived=archived)
    if archived:
        messages.success(request, f"Archived {workload.name}: it is hidden from the list and from new sweeps.")
    else:
        messages.success(request, f"{workload.name} is active again.")
    return redirect("workloads:detail", pk=workload.pk)


@team_view(Membership.Role.MEMBER)
@require_POST
def workload_delete(request, pk: int):
    workload = selectors.workload_get(request.team, pk)
    try:
        services.workload_delete(workload=workload)
    except services.WorkloadInUse as exc:
        messages.error(request, f"{workload.name} cannot be deleted: it is {exc}.")
        return redirect("workloads:detail", pk=workload.pk)
    messages.success(request, f"Deleted {workload.name}.")
    return redirect("workloads:list")


# --- uploads ------------------------------------------------------------------------------------------


@team_view()
@require_http_methods(["GET", "POST"])
def dataset_list(request):
    """The team's datasets and traces, and the upload form."""
    form = DatasetUploadForm()
    context: dict = {}
    status = 200
    if request.method == "POST":
        require_role(request, Membership.Role.MEMBER)
        form = DatasetUploadForm(request.POST, request.FILES)
        status = 400
        if form.is_valid():
            try:
                dataset = services.dataset_upload(team=request.team, user=request.user, **form.upload_kwargs())
            except FileRejected as exc:
                context["file_error"] = exc.as_dict()
            except ValueError as exc:
                form.add_error(None, str(exc))
            else:
                kept = f"{dataset.row_count:,} {'requests' if dataset.is_trace else 'conversations'}"
                messages.success(request, f"Uploaded {dataset.name} ({dataset.get_format_display()}): {kept}.")
                return redirect("workloads:datasets")
    datasets = list(selectors.datasets_for(request.team))
    for dataset in datasets:
        dataset.skipped_words = [(_reason_words(r), n) for r, n in sorted((dataset.skipped or {}).items()) if n]
    context |= {"form": form, "datasets": datasets}
    return render(request, "workloads/dataset_list.html", context, status=status)


@team_view()
@require_http_methods(["GET", "POST"])
def tokenizer_list(request):
    """The team's tokenizers and the upload form."""
    form = TokenizerUploadForm(team=request.team)
    context: dict = {}
    status = 200
    if request.method == "POST":
        require_role(request, Membership.Role.MEMBER)
        form = TokenizerUploadForm(request.POST, request.FILES, team=request.team)
        status = 400
        if form.is_valid():
            try:
                tokenizer = services.tokenizer_upload(team=request.team, user=request.user, **form.upload_kwargs())
            except FileRejected as exc:
                context["file_error"] = exc.as_dict()
            except ValueError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Uploaded {tokenizer.name} ({tokenizer.vocab_size:,} tokens).")
                return redirect("workloads:tokenizers")
    tokenizers = selectors.tokenizers_for(request.team)
    context |= {"form": form, "tokenizers": tokenizers}
    return render(request, "workloads/tokenizer_list.html", context, status=status)


def editor_groups(form: WorkloadForm) -> dict:
    """The editor's fields by fieldset, in page order (the template lays each group out)."""

    def pick(*names):
        return [form[n] for n in names if n in form.fields]

    def dist(prefix):
        return pick(
            f"{prefix}_dist",
            *(
                f"{prefix}_{p}"
                for p in ("value", "min", "max", "mean", "stdev", "average", "median_ratio", "edges", "weights")
            ),
        )

    prefix_rows = [pick(f"prefix_{i}_weight", f"prefix_{i}_count", f"prefix_{i}_tokens") for i in range(1, 4)]
    return {
        "about": pick("name", "description", "source", "seed", "tokenizer"),
        "input": dist("input"),
        "output": dist("output"),
        "dataset": pick(
            "dataset",
            "dataset_sample",
            "dataset_min_input_tokens",
            "dataset_max_input_tokens",
            "dataset_max_total_tokens",
            "dataset_min_output_tokens",
            "dataset_output_from",
            "dataset_max_turns",
        ),
        "trace": pick("trace", "trace_speedup", "trace_window_start_s", "trace_window_end_s", "trace_block_size"),
        "prefix_rows": prefix_rows,
        "prefix_placement": form["prefix_placement"],
        "multi_turn": form["multi_turn"],
        "turns": dist("turns"),
        "think": dist("think"),
        "sessions": pick("sessions_mode", "sessions_users", "sessions_turn_gap_s"),
        "request": pick(
            "request_endpoint",
            "request_pin_output",
            "request_stop",
            "request_response_format",
            "request_json_schema",
            "request_top_k",
            "request_min_p",
            "request_repetition_penalty",
        ),
    }


# --- words for specs and previews -------------------------------------------------------------------


def _n(value) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{int(value):,}" if isinstance(value, (int, float)) else str(value)


def dist_words(spec: dict | None, unit: str) -> str:
    """A distribution in words: "uniform from 64 to 256 tokens"."""
    if not spec:
        return "–"
    kind = spec.get("dist")
    if kind == "fixed":
        return f"always {_n(spec['value'])} {unit}"
    if kind == "uniform":
        return f"uniform from {_n(spec['min'])} to {_n(spec['max'])} {unit}"
    bounds = []
    if spec.get("min") is not None:
        bounds.append(f"at least {_n(spec['min'])}")
    if spec.get("max") is not None:
        bounds.append(f"at most {_n(spec['max'])}")
    bounds_text = f" ({', '.join(bounds)})" if bounds else ""
    if kind == "normal":
        return f"normal, mean {_n(spec['mean'])} {unit}, standard deviation {_n(spec['stdev'])}{bounds_text}"
    if kind == "lognormal":
        if "average" in spec:
            return (
                f"lognormal, average {_n(spec['average'])} {unit}, median {_n(spec['median_ratio'])} × the "
                f"average{bounds_text}"
            )
        return f"lognormal, μ {_n(spec['mean'])}, σ {_n(spec['sigma'])} ({unit}){bounds_text}"
    if kind == "empirical":
        edges = spec.get("edges") or [0]
        return f"from a histogram of {len(edges) - 1} bins, {_n(edges[0])} to {_n(edges[-1])} {unit}"
    return str(spec)


SOURCE_WORDS = {"synthetic": "Synthetic", "dataset": "Dataset", "trace": "Trace replay"}
PIN_WORDS = {
    "none": "not pinned (the model may stop early)",
    "ignore_eos": "pinned by ignoring end of sequence",
    "min_tokens": "pinned by a minimum token count",
    "ignore_eos+min_tokens": "pinned by ignoring end of sequence and a minimum token count",
}
OUTPUT_FROM_WORDS = {
    "reference": "the reference answer",
    "file": "the file's output length",
    "distribution": "the output length distribution",
}


def spec_words(spec: dict, *, dataset=None, tokenizer=None) -> list[tuple[str, str]]:
    """(label, words) lines that say what a spec sends."""
    source = spec.get("source")
    lines = [("Source", SOURCE_WORDS.get(source, str(source)) + (f": {dataset.name}" if dataset else ""))]
    if "input_tokens" in spec:
        lines.append(("Input length", dist_words(spec["input_tokens"], "tokens")))
    if ds := spec.get("dataset"):
        lines.append(("Sample", f"{_n(ds['sample'])} conversations, seed {spec.get('seed', 0)}"))
        kept = [
            f"prompts of {_n(ds.get('min_input_tokens') or 1)} to "
            f"{_n(ds['max_input_tokens']) if ds.get('max_input_tokens') else 'any'} tokens"
        ]
        if ds.get("max_total_tokens"):
            kept.append(f"prompt and answer at most {_n(ds['max_total_tokens'])} tokens")
        if ds.get("min_output_tokens"):
            kept.append(f"answers of at least {_n(ds['min_output_tokens'])} tokens")
        lines.append(("Kept", "; ".join(kept)))
        lines.append(("Output length from", OUTPUT_FROM_WORDS.get(ds.get("output_from"), str(ds.get("output_from")))))
    if "output_tokens" in spec:
        lines.append(("Output length", dist_words(spec["output_tokens"], "tokens")))
    if prefix := spec.get("prefix"):
        groups = [
            f"{_n(b['count'])} prefix{'es' if b['count'] != 1 else ''} of {_n(b['tokens'])} tokens "
            f"(weight {_n(b['weight'])})"
            for b in prefix.get("buckets", [])
        ]
        where = "as a system message" if prefix.get("placement") == "system" else "at the start of the first user turn"
        lines.append(("Shared prefixes", f"{'; '.join(groups)}, placed {where}"))
    if sessions := spec.get("sessions"):
        if source == "dataset":
            turns = f"the dataset's own turns, at most {_n(spec.get('dataset', {}).get('max_turns', 8))}"
        else:
            turns = dist_words(sessions.get("turns"), "turns")
        lines.append(("Multi-turn sessions", turns))
        lines.append(("Think time between turns", dist_words(sessions.get("think_time_s"), "s")))
        if sessions.get("mode") == "user_centric":
            lines.append(
                (
                    "Session mode",
                    f"user-centric: {_n(sessions.get('users'))} users, each sending its next "
                    f"turn {_n(sessions.get('turn_gap_s'))} s after its previous one",
                )
            )
        else:
            lines.append(("Session mode", "concurrent: the sweep level is sessions in flight"))
    elif source == "dataset" and spec.get("dataset", {}).get("multi_turn"):
        lines.append(("Multi-turn sessions", "the dataset's own turns"))
    if trace := spec.get("trace"):
        end = f"{_n(trace['window_end_s'])} s" if trace.get("window_end_s") is not None else "the end"
        lines.append(
            (
                "Replay",
                f"{_n(trace.get('speedup', 1))}× speed, from {_n(trace.get('window_start_s', 0))} s "
                f"to {end}, prefix blocks of {_n(trace.get('block_size', 512))} tokens",
            )
        )
    request = spec.get("request") or {}
    parts = [
        "completions (/v1/completions)" if request.get("endpoint") == "completions" else "chat completions",
        f"output length {PIN_WORDS.get(request.get('pin_output'), request.get('pin_output'))}",
    ]
    if request.get("stop"):
        parts.append("stop at " + ", ".join(repr(s) for s in request["stop"]))
    if fmt := request.get("response_format"):
        parts.append("answers in JSON" + (" matching a schema" if fmt.get("type") == "json_schema" else ""))
    for key, label in (("top_k", "top-k"), ("min_p", "min-p"), ("repetition_penalty", "repetition penalty")):
        if request.get(key) is not None:
            parts.append(f"{label} {_n(request[key])}")
    lines.append(("Requests", "; ".join(parts)))
    if tokenizer is not None:
        lines.append(("Tokenizer", tokenizer.name))
    lines.append(("Seed", str(spec.get("seed", 0))))
    return lines


def basis_words(basis, tokenizer) -> str:
    """How input lengths are counted (the plan's "tokenizer", "calibrated" or "estimated"), in words."""
    if basis == "tokenizer":
        return f"exact, counted with tokenizer {tokenizer.name}" if tokenizer is not None else "exact"
    if basis == "calibrated":
        return "calibrated against the server at run time"
    if basis == "estimated":
        return "estimated here (no tokenizer); calibrated against the server at run time"
    return _reason_words(basis or "–")


REASON_WORDS = {
    "input_below_min": "prompt shorter than the shortest kept",
    "input_above_max": "prompt longer than the longest kept",
    "output_below_min": "answer shorter than the shortest kept",
    "total_above_max": "prompt and answer together longer than the longest kept",
    "outside_window": "outside the replay window",
    "no_user_turn": "no user turn",
    "not_alternating": "turns do not alternate between user and assistant",
    "empty_user_turn": "an empty user turn",
}


def _reason_words(reason: str) -> str:
    """Why items were skipped, in words (a reason this page does not know: its name with spaces)."""
    if reason in REASON_WORDS:
        return REASON_WORDS[reason][:1].upper() + REASON_WORDS[reason][1:]
    text = re.sub(r"[_-]+", " ", str(reason)).strip()
    return text[:1].upper() + text[1:]


def preview_context(preview: dict, tokenizer) -> dict:
    """What the preview partial shows, from a preview dict of the services."""

    def histogram(key):
        data = preview.get(key) or {}
        hist = data.get("histogram") or {}
        return {"edges": list(hist.get("edges") or []), "counts": list(hist.get("counts") or [])}, data

    input_hist, input_stats = histogram("input_tokens")
    output_hist, output_stats = histogram("output_tokens")
    skipped = [(_reason_words(reason), n) for reason, n in (preview.get("skipped") or {}).items() if n]
    share = preview.get("prefix_share")
    return {
        "preview": preview,
        "input_hist": input_hist,
        "output_hist": output_hist,
        "input_stats": input_stats,
        "output_stats": output_stats,
        "prefix_share_pct": None if share is None else round(100 * share, 1),
        "basis": basis_words(preview.get("length_basis"), tokenizer),
        "skipped": skipped,
        "turns": preview.get("turns") or {},
        "trace_info": preview.get("trace"),
    }
