"""Run kinds: repeat a run (through the apps' own services), its state, error, title and page."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import transaction
from django.urls import reverse

from apps.automation.models import KIND_LABELS
from apps.automation.runkinds.base import RepeatRefused, RunRef, _check_kind, _run, runs_queryset
from apps.providers.budget import BudgetExceeded
from apps.providers.models import ProviderEndpoint

# --- repeat -----------------------------------------------------------------------------------------------------


def _messages(exc: Exception) -> dict | str:
    """A refusal of an app as ValidationError content: by field where the app names fields."""
    if isinstance(exc, ValidationError):
        return exc.message_dict if hasattr(exc, "error_dict") else exc.messages
    errors = getattr(exc, "errors", None)
    if isinstance(errors, dict):
        return errors
    return str(exc)


def _override_endpoint(team, endpoint_id) -> ProviderEndpoint | None:
    if endpoint_id is None:
        return None
    try:
        return ProviderEndpoint.objects.get(team=team, pk=int(endpoint_id))
    except (ProviderEndpoint.DoesNotExist, TypeError, ValueError):
        raise RepeatRefused({"endpoint_id": "No such endpoint in this team."}) from None


def _override_model(model) -> str | None:
    if model is None:
        return None
    model = str(model).strip()
    if not model:
        raise RepeatRefused({"model": "The model name sent to the endpoint must not be empty."})
    if len(model) > 200:
        raise RepeatRefused({"model": "At most 200 characters."})
    return model


def _served(endpoint: ProviderEndpoint, model: str) -> None:
    """An overridden target must be one the endpoint serves (when it lists its models)."""
    names = [str(n).strip() for n in endpoint.model_names or [] if str(n).strip()]
    if names and model not in names and not endpoint.is_simulated:
        raise RepeatRefused({"model": f"{endpoint.name} does not serve “{model}” (it serves: {', '.join(names)})."})


def _targets(pairs: list[tuple[ProviderEndpoint, str]], endpoint: ProviderEndpoint | None, model: str | None):
    """The targets with the overrides applied, each asked once (order kept)."""
    out: list[tuple[ProviderEndpoint, str]] = []
    for e, m in pairs:
        e, m = endpoint or e, model or m
        if any((e.pk, m) == (x.pk, y) for x, y in out):
            continue
        if endpoint is not None or model is not None:
            _served(e, m)
        out.append((e, m))
    return out


def _repeat_experiment(run, user, endpoint, model) -> RunRef:
    from apps.experiments.services import experiment_create, experiment_start

    pairs = [(t.endpoint, t.model) for t in run.targets.select_related("endpoint")]
    experiment = experiment_create(
        team=run.team, user=user, name=run.name, targets=_targets(pairs, endpoint, model),
        test_cases=None if run.suite_id else list(run.test_cases.all()), suite=run.suite,
        description=run.description, tags=list(run.tags or []), system_prompt=run.system_prompt, prompt=run.prompt,
        parameters=dict(run.parameters or {}), responses_per_item=run.responses_per_item,
    )  # fmt: skip
    experiment_start(experiment=experiment)
    return RunRef("experiment", experiment.pk)


def _repeat_sweep(run, user, endpoint, model) -> RunRef:
    from apps.batches.services import batch_create, batch_start

    batch = run.batch
    pairs = [(t.endpoint, t.model) for t in run.targets.select_related("endpoint")]
    new = batch_create(
        team=run.team, user=user, name=run.name, targets=_targets(pairs, endpoint, model),
        parameter_ranges=batch.parameter_ranges, prompt=run.prompt, system_prompt=run.system_prompt,
        test_cases=None if run.suite_id else list(run.test_cases.all()), suite=run.suite,
        description=run.description, repetitions=run.responses_per_item, concurrency=batch.concurrency,
        objective=batch.objective, tags=list(run.tags or []), request_options=dict(run.parameters or {}),
    )  # fmt: skip
    # A sweep over the team's limit that a person confirmed once is confirmed for its repeats too.
    batch_start(batch=new, confirm=batch.confirmed)
    return RunRef("parameter_sweep", new.pk)


def _variant_for(run, endpoint: ProviderEndpoint, model: str):
    """The catalog variant an overridden endpoint · model serves (ServedVariant), else the template's."""
    from apps.scores.models import ServedVariant

    link = ServedVariant.objects.filter(team=run.team, endpoint=endpoint, model=model).first()
    return link.variant if link else run.variant


SWEEP_FIELDS = (
    "name", "endpoint", "model", "variant", "hardware", "deployment", "mode", "arrivals", "levels", "step_duration_s",
    "step_request_count", "prompt_tokens", "prompt_tokens_stdev", "prompts", "output_tokens", "ignore_eos",
    "temperature", "seed", "workload_version", "warmup_requests", "warmup_s", "trials", "shards",
)  # fmt: skip


def _repeat_load_sweep(run, user, endpoint, model) -> RunRef:
    from apps.batches.services import sweep_create, sweep_start

    fields = {name: getattr(run, name) for name in SWEEP_FIELDS}
    if endpoint is not None or model is not None:
        fields["endpoint"], fields["model"] = endpoint or run.endpoint, model or run.model
        _served(fields["endpoint"], fields["model"])
        fields["variant"] = _variant_for(run, fields["endpoint"], fields["model"])
    sweep = sweep_create(team=run.team, user=user, **fields)
    sweep_start(sweep=sweep)
    return RunRef("load_sweep", sweep.pk)


def _repeat_benchmark(run, user, endpoint, model) -> RunRef:
    from apps.benchmarks.services import TargetSpec, benchmark_run_create, benchmark_run_start

    specs: list = []
    for target in run.targets.select_related("endpoint", "variant"):
        e, m = endpoint or target.endpoint, model or target.model
        overridden = endpoint is not None or model is not None
        if any((s.endpoint.pk, s.model) == (e.pk, m) for s in specs):
            continue
        if overridden:
            _served(e, m)
        # An overridden target takes the variant linked to it before (None: the one linked, else none).
        specs.append(TargetSpec(endpoint=e, model=m, variant=None if overridden else target.variant))
    new = benchmark_run_create(
        team=run.team, user=user, suite=run.suite, targets=specs, name=run.name, shots=run.shots,
        temperature=run.temperature, max_tokens=run.max_tokens, concurrency=run.concurrency,
        subset_size=run.subset_size, subset_seed=run.subset_seed,
    )  # fmt: skip
    benchmark_run_start(run=new)
    return RunRef("benchmark_run", new.pk)


CAPACITY_FIELDS = (
    "name", "endpoint", "model", "variant", "hardware", "deployment", "workload_version", "prompt_tokens",
    "output_tokens", "slo", "space", "arrivals", "start_level", "max_level", "tolerance", "probe_duration_s",
    "warmup_s", "repetitions", "max_extra_trials", "max_probes", "shards", "seed",
)  # fmt: skip


def _repeat_capacity(run, user, endpoint, model) -> RunRef:
    from apps.capacity.services import capacity_create, capacity_start

    fields = {name: getattr(run, name) for name in CAPACITY_FIELDS}
    if endpoint is not None or model is not None:
        fields["endpoint"], fields["model"] = endpoint or run.endpoint, model or run.model
        _served(fields["endpoint"], fields["model"])
        fields["variant"] = _variant_for(run, fields["endpoint"], fields["model"])
    search = capacity_create(team=run.team, user=user, **fields)
    capacity_start(search=search)
    return RunRef("capacity_search", search.pk)


REPEATERS: dict[str, Callable] = {
    "experiment": _repeat_experiment,
    "parameter_sweep": _repeat_sweep,
    "load_sweep": _repeat_load_sweep,
    "benchmark_run": _repeat_benchmark,
    "capacity_search": _repeat_capacity,
}


def run_repeat(*, kind: str, run_id: int, user=None, endpoint_id=None, model=None) -> RunRef:
    """A new run of `kind` with the configuration of run `run_id` (its targets, or the endpoint and/or model given
    instead), created and started through the app's services in one transaction: BudgetExceeded as the budget
    check raises it, RepeatRefused for any other refusal (nothing is created then)."""
    run = _run(RunRef(kind, run_id))
    try:
        with transaction.atomic():
            endpoint, model = _override_endpoint(run.team, endpoint_id), _override_model(model)
            return REPEATERS[kind](run, user, endpoint, model)
    except (BudgetExceeded, RepeatRefused):
        raise
    except ObjectDoesNotExist:
        raise
    except (ValidationError, ValueError) as exc:  # TransitionRefused, BatchRefused, BenchmarkRefused, Capacity…
        raise RepeatRefused(_messages(exc)) from exc


# --- state, error, title, url -----------------------------------------------------------------------------------


def run_state(ref: RunRef) -> str:
    """pending | running | completed | failed | cancelled (a benchmark run that is queued is "pending")."""
    status = runs_queryset(ref.kind).filter(pk=ref.run_id).values_list("status", flat=True).get()
    return "pending" if status == "queued" else status


def run_error(ref: RunRef) -> str:
    """Why the run failed or stopped ("" when it says nothing)."""
    return runs_queryset(ref.kind).filter(pk=ref.run_id).values_list("error", flat=True).get() or ""


def run_title(ref: RunRef) -> str:
    """“Experiment #12 · nightly check”."""
    name = runs_queryset(ref.kind).filter(pk=ref.run_id).values_list("name", flat=True).first()
    label = f"{KIND_LABELS[ref.kind]} #{ref.run_id}"
    return f"{label} · {name}" if name else label


URL_NAMES = {
    "experiment": "experiments:detail",
    "parameter_sweep": "batches:batch",
    "load_sweep": "batches:sweep",
    "benchmark_run": "benchmarks:run-detail",
    "capacity_search": "capacity:detail",
}


def run_url(ref: RunRef) -> str:
    """The run's page, as a path ("/experiments/12/"): prefix settings.SITE_URL outside the site."""
    _check_kind(ref.kind)
    return reverse(URL_NAMES[ref.kind], args=[ref.run_id])
