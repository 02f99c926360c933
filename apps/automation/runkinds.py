"""What schedules and CI gates need of each run kind (issue 17): repeat a run, read its state and figures, compare two.

CONTRACT (the gates helper implements it; the schedules helper uses it):

KINDS = ("experiment", "parameter_sweep", "load_sweep", "benchmark_run", "capacity_search")

@dataclass(frozen=True) class RunRef: kind: str; run_id: int
@dataclass(frozen=True) class Figure: name: str; label: str; value: float | None; unit: str;
    ci_low: float | None; ci_high: float | None; n: int; higher_is_better: bool
@dataclass(frozen=True) class Comparison: name: str; label: str; baseline: float | None; current: float | None;
    unit: str; test: str; p_value: float | None; verdict: str  # "regression" | "improvement" | "no change" | "no data"

def template_get(*, team, kind: str, run_id: int)   -> the run model instance of `team` (Http404-able: raises
    ObjectDoesNotExist when it is not the team's)
def run_repeat(*, kind: str, run_id: int, user=None, endpoint_id=None, model=None) -> RunRef   # a new run with the
    same configuration, started (budget_check applies: may raise BudgetExceeded)
def run_state(ref: RunRef) -> str     # "pending" | "running" | "completed" | "failed" | "cancelled"
def run_error(ref: RunRef) -> str     # why it failed/stopped, "" otherwise
def run_title(ref: RunRef) -> str; def run_url(ref: RunRef) -> str
def run_figures(ref: RunRef) -> dict[str, Figure]
def run_compare(baseline: RunRef, current: RunRef, *, alpha: float = 0.05) -> list[Comparison]
def run_error_rate(ref: RunRef) -> float | None

Details (docs/run-figures.md lists every figure, interval and test):

* An unknown kind raises `ValidationError({"kind": …})`. A run that is not the team's (or not of that kind: a
  parameter sweep's experiment is not an "experiment", a capacity search's own load sweep is not a "load_sweep")
  raises the model's DoesNotExist (an ObjectDoesNotExist).
* run_repeat creates the new run and starts it through the app's own services (experiment_create/experiment_start,
  batch_create/batch_start, sweep_create/sweep_start, benchmark_run_create/benchmark_run_start,
  capacity_create/capacity_start), so budgets and the fair queue apply. BudgetExceeded propagates as it is (a
  ValidationError); every other refusal of the apps (a bad override, a retired test case, a sweep over the team's
  limit that was never confirmed …) is raised as `RepeatRefused`, a ValidationError naming the field where there
  is one. Overrides: `endpoint_id` replaces every target's endpoint (it must be the team's), `model` every
  target's model; targets that become the same are asked once.
* run_url is the run's page path ("/experiments/12/"); prefix settings.SITE_URL for links outside the site.
* run_figures: the headline figure first (what a timeline charts). Figure names are stable identifiers (gates'
  criteria and schedules' timelines use them); docs/run-figures.md lists them. Load sweeps name their figures per
  level ("p95_ttft_ms@8": level 8, concurrency or req/s) and, with one level only, also without the suffix.
* run_compare compares each figure both runs have (figures of one run only are "no data"); p-values are
  Holm-adjusted over the figures tested in the comparison; a verdict is "regression" / "improvement" only when the
  adjusted p < alpha (the capacity bracket test has no p-value: brackets that do not overlap decide).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.urls import reverse

from apps.automation.models import KIND_LABELS, RunKind
from apps.providers.budget import BudgetExceeded
from apps.providers.models import ProviderEndpoint

KINDS = tuple(RunKind.values)
STATES = ("pending", "running", "completed", "failed", "cancelled")
FINISHED_STATES = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class RunRef:
    kind: str
    run_id: int


@dataclass(frozen=True)
class Figure:
    name: str
    label: str
    value: float | None
    unit: str
    ci_low: float | None
    ci_high: float | None
    n: int
    higher_is_better: bool


@dataclass(frozen=True)
class Comparison:
    name: str
    label: str
    baseline: float | None
    current: float | None
    unit: str
    test: str
    p_value: float | None
    verdict: str  # "regression" | "improvement" | "no change" | "no data"


class RepeatRefused(ValidationError):
    """The app refused to make or start the repeat (not the budget: BudgetExceeded is raised as it is)."""


# --- the kinds' models ------------------------------------------------------------------------------------------


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValidationError({"kind": f"Unknown run kind “{kind}”: one of {', '.join(KINDS)}."})


def runs_queryset(kind: str):
    """The runs of a kind (every team's)."""
    _check_kind(kind)
    if kind in ("experiment", "parameter_sweep"):
        from apps.experiments.models import Experiment

        wanted = Experiment.Kind.SINGLE if kind == "experiment" else Experiment.Kind.BATCH
        return Experiment.objects.filter(kind=wanted)
    if kind == "load_sweep":
        from apps.batches.models import LoadSweep

        return LoadSweep.objects.filter(managed_by="")
    if kind == "benchmark_run":
        from apps.benchmarks.models import BenchmarkRun

        return BenchmarkRun.objects.all()
    from apps.capacity.models import CapacitySearch

    return CapacitySearch.objects.all()


def template_get(*, team, kind: str, run_id: int):
    """The run `run_id` of `kind` of `team`; DoesNotExist (ObjectDoesNotExist) when the team has no such run."""
    return runs_queryset(kind).get(team=team, pk=run_id)


def _run(ref: RunRef):
    return runs_queryset(ref.kind).get(pk=ref.run_id)


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


# --- figures ----------------------------------------------------------------------------------------------------

CONFIDENCE = 0.95
SCORE_BOUNDS = (0.0, 1.0)
QUALITY_BOUNDS = (0.0, 100.0)
MIN_INTERVAL_N = 3  # fewer values than this: no interval (as the experiments' summaries)
BOOTSTRAP_MAX_N = 5000  # above this, a mean's interval is Student's t (the bootstrap's memory grows with n)


def _finite(values) -> np.ndarray:
    array = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    return array[np.isfinite(array)]


def _share(part: int, whole: int, name: str, label: str, *, higher_is_better: bool) -> Figure:
    """A proportion with Wilson's 95% score interval (scipy's; none below MIN_INTERVAL_N)."""
    from apps.experiments.selectors import wilson_interval

    if not whole:
        return Figure(name, label, None, "", None, None, 0, higher_is_better)
    ci = wilson_interval(part, whole, CONFIDENCE) if whole >= MIN_INTERVAL_N else None
    return Figure(name, label, part / whole, "", *(ci or (None, None)), whole, higher_is_better)


def _mean(values: np.ndarray, name: str, label: str, unit: str, bounds: tuple[float, float]) -> Figure:
    """A bounded mean with the experiments' bootstrap interval (BCa; Wilson when every value sits on a bound)."""
    from apps.experiments.selectors import mean_interval

    if not values.size:
        return Figure(name, label, None, unit, None, None, 0, True)
    if values.size > BOOTSTRAP_MAX_N and np.ptp(values) > 0:
        # A large sweep: the bootstrap's resamples would hold 500 × n values at once; at this n the Student t
        # interval of the mean is what the percentile bootstrap converges to.
        from scipy.stats import sem, t

        low, high = t.interval(CONFIDENCE, values.size - 1, loc=float(np.mean(values)), scale=float(sem(values)))
        ci = (max(bounds[0], float(low)), min(bounds[1], float(high)))
    else:
        ci = mean_interval(values.tolist(), CONFIDENCE, bounds=bounds)
    return Figure(name, label, float(np.mean(values)), unit, *(ci or (None, None)), int(values.size), True)


def quantile_interval(
    values: np.ndarray, q: float, confidence: float = CONFIDENCE
) -> tuple[float | None, float | None]:
    """The distribution-free interval of the q-quantile from order statistics: ranks from the binomial
    distribution of how many values fall below it (exact coverage ≥ `confidence`, no assumption about the
    shape). A side the sample is too small to bound is None (p95 of 20 values has no upper bound)."""
    from scipy.stats import binom

    n = int(values.size)
    if n < MIN_INTERVAL_N:
        return None, None
    ordered = np.sort(values)
    alpha = 1 - confidence
    low_rank = int(binom.ppf(alpha / 2, n, q))  # 1-based rank of the lower bound
    high_rank = int(binom.ppf(1 - alpha / 2, n, q)) + 1
    low = float(ordered[low_rank - 1]) if low_rank >= 1 else None
    high = float(ordered[high_rank - 1]) if high_rank <= n else None
    return low, high


def _percentile(values: np.ndarray, p: int, name: str, label: str, unit: str = "ms") -> Figure:
    """A percentile (numpy's, as the stored summaries) with its order-statistic interval; lower is better."""
    if not values.size:
        return Figure(name, label, None, unit, None, None, 0, False)
    low, high = quantile_interval(values, p / 100)
    return Figure(name, label, float(np.percentile(values, p)), unit, low, high, int(values.size), False)


# -- experiments and parameter sweeps

RESPONSE_COLUMNS = ("error_code", "passed", "score", "quality_overall", "ttft_ms", "latency_ms", "cost_usd")


def _responses(run_id: int) -> dict[str, np.ndarray]:
    """The run's responses, column by column (errors as a boolean column)."""
    from apps.experiments.models import Response

    rows = list(Response.objects.filter(experiment_id=run_id).order_by().values_list(*RESPONSE_COLUMNS))
    error = np.array([bool(r[0]) for r in rows], dtype=bool)
    columns = {"error": error}
    for i, name in enumerate(RESPONSE_COLUMNS[1:], start=1):
        columns[name] = np.array([np.nan if r[i] is None else float(r[i]) for r in rows], dtype=float)
    return columns


def _response_figures(run_id: int) -> dict[str, Figure]:
    """Every response of the run (every target and, for a sweep, every combination) pooled."""
    c = _responses(run_id)
    ok = ~c["error"]
    judged = ok & np.isfinite(c["passed"])
    figures = [
        _share(int(np.count_nonzero(c["passed"][judged] == 1)), int(np.count_nonzero(judged)), "pass_rate",
               "Pass rate", higher_is_better=True),
        _mean(c["score"][ok & np.isfinite(c["score"])], "mean_score", "Mean score", "", SCORE_BOUNDS),
        _mean(c["quality_overall"][ok & np.isfinite(c["quality_overall"])], "mean_quality", "Mean text quality",
              "points", QUALITY_BOUNDS),
        _share(int(np.count_nonzero(c["error"])), len(c["error"]), "error_rate", "Error rate",
               higher_is_better=False),
        _percentile(c["ttft_ms"][ok & np.isfinite(c["ttft_ms"])], 50, "p50_ttft_ms", "TTFT p50"),
        _percentile(c["ttft_ms"][ok & np.isfinite(c["ttft_ms"])], 95, "p95_ttft_ms", "TTFT p95"),
        _percentile(c["latency_ms"][ok & np.isfinite(c["latency_ms"])], 50, "p50_e2e_ms", "Latency p50"),
        _percentile(c["latency_ms"][ok & np.isfinite(c["latency_ms"])], 95, "p95_e2e_ms", "Latency p95"),
        Figure("cost_usd", "Cost", float(np.nansum(c["cost_usd"])) if np.isfinite(c["cost_usd"]).any() else None,
               "USD", None, None, len(c["error"]), False),
    ]  # fmt: skip
    return {f.name: f for f in figures}


# -- load sweeps

LEVEL_FIGURES = (
    # name, label, unit, higher is better, summary metric + stat (or a summary field), percentile of the samples
    ("p95_ttft_ms", "TTFT p95", "ms", False, ("ttft_ms", "p95"), 95),
    ("p50_ttft_ms", "TTFT p50", "ms", False, ("ttft_ms", "p50"), 50),
    ("p99_ttft_ms", "TTFT p99", "ms", False, ("ttft_ms", "p99"), 99),
    ("p50_itl_ms", "ITL p50", "ms", False, ("itl_ms", "p50"), None),
    ("p95_itl_ms", "ITL p95", "ms", False, ("itl_ms", "p95"), None),
    ("p50_e2e_ms", "E2E latency p50", "ms", False, ("e2e_ms", "p50"), 50),
    ("p95_e2e_ms", "E2E latency p95", "ms", False, ("e2e_ms", "p95"), 95),
    ("throughput_rps", "Request throughput", "req/s", True, "request_throughput_rps", None),
    ("output_tps", "Output tokens/s", "tokens/s", True, "output_token_throughput_tps", None),
    ("error_rate", "Error rate", "", False, "error_rate", None),
)
SAMPLE_METRICS = {"ttft_ms": 0, "e2e_ms": 1}


def level_suffix(level: float) -> str:
    """ "@8", "@2.5": a load sweep's figure at one level (concurrency, or request rate in req/s)."""
    return f"@{level:g}"


@dataclass
class _Level:
    level: float
    summaries: list  # RunSummary of each completed trial
    run_ids: list[int]


def _levels(sweep_id: int) -> list[_Level]:
    """The completed trials of each level, in step order."""
    from apps.batches.models import LoadSweepStep, Status

    levels: dict[float, _Level] = {}
    steps = LoadSweepStep.objects.filter(sweep_id=sweep_id).select_related("run__summary").order_by("index")
    for step in steps:
        entry = levels.setdefault(step.level, _Level(step.level, [], []))
        summary = getattr(step.run, "summary", None) if step.run_id else None
        if step.status == Status.COMPLETED and summary is not None:
            entry.summaries.append(summary)
            entry.run_ids.append(step.run_id)
    return list(levels.values())


def _samples(run_ids: list[int]) -> dict[str, np.ndarray]:
    """One value per successful request of the runs' steady windows (as their summaries): TTFT, E2E, the
    request's mean ITL and output tokens/s; and the request and error counts."""
    from apps.hardware.models import RequestSample
    from apps.hardware.selectors import per_request_mean_itl_ms
    from apps.hardware.stats import per_request_output_tps, steady_window

    kept: list[tuple] = []
    for run_id in run_ids:
        rows = list(
            RequestSample.objects.filter(run_id=run_id).order_by("index").values_list(
                "ttft_ms", "e2e_ms", "output_tokens", "itl_ms", "mean_itl_ms", "phase", "error_code")
        )  # fmt: skip
        if any(r[5] is not None for r in rows):
            mask, _ = steady_window(np.array([np.nan if r[5] is None else r[5] for r in rows], dtype=float))
            rows = [r for r, keep in zip(rows, mask, strict=True) if keep]
        kept += [r for r in rows if not r[6]]
    ttft = np.array([np.nan if r[0] is None else r[0] for r in kept], dtype=float)
    e2e = np.array([np.nan if r[1] is None else r[1] for r in kept], dtype=float)
    out = np.array([np.nan if r[2] is None else r[2] for r in kept], dtype=float)
    return {"ttft_ms": ttft, "e2e_ms": e2e, "itl_ms": per_request_mean_itl_ms(kept) if kept else np.array([]),
            "output_tps": per_request_output_tps(e2e, out) if kept else np.array([])}  # fmt: skip


def _summary_value(summary, source) -> float | None:
    if isinstance(source, tuple):
        return summary.stat(*source)
    return getattr(summary, source)


def _poisson_interval(value: float, count: int) -> tuple[float | None, float | None]:
    """Garwood's exact Poisson interval of a rate of `count` events, scaled to `value` (conservative for a closed
    loop, whose completions are more regular than Poisson arrivals)."""
    from scipy.stats import chi2

    if count < MIN_INTERVAL_N:
        return None, None
    alpha = 1 - CONFIDENCE
    low = chi2.ppf(alpha / 2, 2 * count) / 2
    high = chi2.ppf(1 - alpha / 2, 2 * count + 2) / 2
    return float(value * low / count), float(value * high / count)


def _level_figures(entry: _Level) -> list[Figure]:
    """The figures of one level: the mean over its trials; with 2 trials or more the Student t interval across
    them (apps.batches.trials), with one the interval of that run (order statistics of its requests for TTFT and
    E2E percentiles, Garwood for request throughput, Wilson for the error rate; none for ITL and tokens/s)."""
    from apps.batches.trials import t_interval

    suffix = level_suffix(entry.level)
    summaries = entry.summaries
    requests = sum(s.request_count or 0 for s in summaries)
    errors = sum(s.error_count or 0 for s in summaries)
    samples = _samples(entry.run_ids) if len(summaries) == 1 else None
    out = []
    for name, label, unit, higher, source, percentile in LEVEL_FIGURES:
        full_label = f"{label} at {entry.level:g}"
        if name == "error_rate":
            share = _share(errors, requests, name + suffix, full_label, higher_is_better=False)
            out.append(share)
            continue
        values = [v for v in (_summary_value(s, source) for s in summaries) if v is not None and math.isfinite(v)]
        if not values:
            out.append(Figure(name + suffix, full_label, None, unit, None, None, 0, higher))
            continue
        value, low, high = float(np.mean(values)), None, None
        if len(values) >= 2:
            trial = t_interval(values)
            low, high = trial.low, trial.high
        elif samples is not None and percentile is not None:
            metric = source[0]
            low, high = quantile_interval(_finite(samples[metric]), percentile / 100)
        elif name == "throughput_rps":
            low, high = _poisson_interval(value, requests - errors)
        out.append(Figure(name + suffix, full_label, value, unit, low, high, requests - errors, higher))
    return out


def _sweep_figures(sweep_id: int) -> dict[str, Figure]:
    levels = _levels(sweep_id)
    per_level = [_level_figures(entry) for entry in levels]
    figures: dict[str, Figure] = {}
    if len(levels) == 1:  # one level: its figures also without the suffix (the headline first)
        for f in per_level[0]:
            plain = f.name.split("@")[0]
            figures[plain] = Figure(plain, f.label.rsplit(" at ", 1)[0], f.value, f.unit, f.ci_low, f.ci_high, f.n,
                                    f.higher_is_better)  # fmt: skip
    for level_figures in per_level:
        figures.update({f.name: f for f in level_figures})
    return figures


# -- benchmark runs


def _answers(run_id: int) -> list[tuple]:
    """(target position, item id, correct, extracted, latency, error code, cost) of every answer of the run."""
    from apps.benchmarks.models import BenchmarkAnswer, BenchmarkTarget

    positions = {pk: i for i, pk in enumerate(BenchmarkTarget.objects.filter(run_id=run_id).order_by("id")
                                              .values_list("id", flat=True))}  # fmt: skip
    rows = (
        BenchmarkAnswer.objects.filter(run_id=run_id)
        .order_by()
        .values_list("target_id", "item_id", "correct", "extracted", "latency_ms", "error_code", "cost_usd")
    )
    return [(positions.get(r[0], -1), *r[1:]) for r in rows]


def _benchmark_figures(run_id: int) -> dict[str, Figure]:
    """Every target's answers pooled: accuracy over the scored (answered) items, as the run's page."""
    from apps.benchmarks.engine.stats import accuracy

    answers = _answers(run_id)
    scored = [a for a in answers if not a[5]]
    correct = sum(1 for a in scored if a[2])
    no_answer = sum(1 for a in scored if not a[2] and a[3] == "")
    result = accuracy(correct, len(scored), no_answer, confidence=CONFIDENCE)
    latency = _finite(a[4] for a in scored)
    costs = [a[6] for a in answers if a[6] is not None]
    figures = [
        Figure("accuracy", "Accuracy", result.accuracy, "", result.ci_low, result.ci_high, result.n, True),
        _share(no_answer, len(scored), "no_answer_rate", "No answer extracted", higher_is_better=False),
        _share(len(answers) - len(scored), len(answers), "error_rate", "Error rate", higher_is_better=False),
        _percentile(latency, 50, "p50_e2e_ms", "Latency p50"),
        _percentile(latency, 95, "p95_e2e_ms", "Latency p95"),
        Figure("cost_usd", "Cost", float(sum(costs)) if costs else None, "USD", None, None, len(answers), False),
    ]
    return {f.name: f for f in figures}


# -- capacity searches


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _capacity_figures(run_id: int) -> dict[str, Figure]:
    """The search's answer: capacity with its bracket (the highest level that met the SLO, the lowest that did
    not; an open top when every level met it), and the figures at capacity with the t interval across trials."""
    from apps.capacity.models import CapacitySearch

    search = CapacitySearch.objects.get(pk=run_id)
    result = search.result or {}
    probes = int(result.get("probes_used") or 0)
    trials = int(result.get("trials_at_capacity") or 0)
    intervals = result.get("interval") or {}
    rate = search.space == CapacitySearch.Space.RATE
    capacity = _number(result.get("capacity", search.capacity))
    low, high = _number(result.get("low", search.capacity_low)), _number(result.get("high", search.capacity_high))

    def at_capacity(name: str, label: str, unit: str, key: str, higher: bool = True) -> Figure:
        interval = intervals.get(key) or (None, None)
        return Figure(name, label, _number(result.get(key)), unit, _number(interval[0]), _number(interval[1]),
                      trials, higher)  # fmt: skip

    figures = [
        Figure("capacity", "Capacity", capacity, search.unit, low if capacity is not None else None,
               high if capacity is not None else None, probes, True),
        Figure("capacity_rps", "Requests/s at capacity", _number(result.get("capacity_rps")), "req/s",
               low if rate and capacity is not None else None, high if rate and capacity is not None else None,
               probes, True),
        at_capacity("goodput_rps", "Goodput at capacity", "req/s", "goodput_rps"),
        at_capacity("output_tps", "Output tokens/s at capacity", "tokens/s", "output_tps"),
        Figure("cost_per_1m_output_usd", "Cost per 1M output tokens at capacity",
               _number(result.get("cost_per_1m_output_usd")), "USD", None, None, trials, False),
    ]  # fmt: skip
    return {f.name: f for f in figures}


FIGURES: dict[str, Callable[[int], dict[str, Figure]]] = {
    "experiment": _response_figures,
    "parameter_sweep": _response_figures,
    "load_sweep": _sweep_figures,
    "benchmark_run": _benchmark_figures,
    "capacity_search": _capacity_figures,
}


def run_figures(ref: RunRef) -> dict[str, Figure]:
    """The run's headline figures with their 95% intervals, the headline first (see the module docstring)."""
    _check_kind(ref.kind)
    if not runs_queryset(ref.kind).filter(pk=ref.run_id).exists():
        _run(ref)  # raises DoesNotExist
    return FIGURES[ref.kind](ref.run_id)


# --- comparisons ------------------------------------------------------------------------------------------------


@dataclass
class _Test:
    """One figure's test before the Holm adjustment: the test's name and its raw p-value (None: not tested)."""

    test: str
    p_value: float | None
    decided: str = ""  # a verdict a test without a p-value decided (the capacity brackets)


def _mann_whitney(a: np.ndarray, b: np.ndarray) -> _Test:
    """Mann-Whitney U, two-sided, on one value per request (as the performance comparison of apps.hardware)."""
    from apps.analytics.stats import mann_whitney_counts

    a, b = _finite(a), _finite(b)
    result = mann_whitney_counts(a, np.ones(a.size), b, np.ones(b.size))
    note = f" ({result.note})" if result.note else ""
    return _Test(f"Mann-Whitney U on {a.size} and {b.size} requests{note}", result.p_value)


def _fisher(part_a: int, whole_a: int, part_b: int, whole_b: int, what: str) -> _Test:
    from apps.analytics.stats import fisher

    result = fisher(part_a, whole_a, part_b, whole_b)
    return _Test(f"Fisher's exact test on {whole_a} and {whole_b} {what}", result.p_value)


def _welch_values(a: list[float], b: list[float], what: str) -> _Test:
    """Welch's t test of two sets of values (apps.analytics.stats.welch, from their summaries)."""
    from apps.analytics.stats import Summary, welch

    def summary(values: list[float]) -> Summary:
        array = np.asarray(values, dtype=float)
        return Summary(array.size, float(np.mean(array)) if array.size else None,
                       float(np.std(array, ddof=1)) if array.size > 1 else None, None, None)  # fmt: skip

    result = welch(summary(a), summary(b))
    note = f" ({result.note})" if result.note else ""
    return _Test(f"Welch's t test on {len(a)} and {len(b)} {what}{note}", result.p_value)


def _untested(why: str) -> _Test:
    return _Test(f"not tested: {why}", None)


def _compare_responses(baseline: RunRef, current: RunRef) -> dict[str, _Test]:
    """Pass and error rates: Fisher's exact test; mean score and text quality: Welch's t test (as the analytics'
    regressions); latency percentiles: Mann-Whitney U on the responses' latencies."""
    a, b = _responses(baseline.run_id), _responses(current.run_id)
    tests: dict[str, _Test] = {}

    def judged(c):
        mask = ~c["error"] & np.isfinite(c["passed"])
        return int(np.count_nonzero(c["passed"][mask] == 1)), int(np.count_nonzero(mask))

    tests["pass_rate"] = _fisher(*judged(a), *judged(b), "evaluated responses")
    for name, column in (("mean_score", "score"), ("mean_quality", "quality_overall")):
        va = a[column][~a["error"] & np.isfinite(a[column])].tolist()
        vb = b[column][~b["error"] & np.isfinite(b[column])].tolist()
        tests[name] = _welch_values(va, vb, "responses")
    tests["error_rate"] = _fisher(int(a["error"].sum()), a["error"].size, int(b["error"].sum()), b["error"].size,
                                  "responses")  # fmt: skip
    for name, column in (("p50_ttft_ms", "ttft_ms"), ("p95_ttft_ms", "ttft_ms"), ("p50_e2e_ms", "latency_ms"),
                         ("p95_e2e_ms", "latency_ms")):  # fmt: skip
        tests[name] = _mann_whitney(a[column][~a["error"]], b[column][~b["error"]])
    return tests


def _poisson_rate_test(count_a: int, time_a: float, count_b: int, time_b: float) -> _Test:
    """Two request rates compared exactly: given the total, the second run's count is binomial with the share of
    the time it measured (a conditional test of two Poisson rates; conservative for a closed loop)."""
    from scipy.stats import binomtest

    if count_a + count_b == 0 or time_a <= 0 or time_b <= 0:
        return _untested("no completed requests")
    p = float(binomtest(count_b, count_a + count_b, time_b / (time_a + time_b)).pvalue)
    return _Test(f"exact test of two Poisson rates ({count_a} and {count_b} requests)", p)


def _compare_sweeps(baseline: RunRef, current: RunRef) -> dict[str, _Test]:
    """Per level both sweeps ran: latencies by Mann-Whitney U on the requests of the steady windows (ITL: each
    request's mean gap); throughputs by Welch's t test across trials when both have 2 or more, else request
    throughput by an exact test of two Poisson rates and tokens/s by Mann-Whitney U on each request's tokens/s;
    the error rate by Fisher's exact test."""
    a_levels = {e.level: e for e in _levels(baseline.run_id)}
    b_levels = {e.level: e for e in _levels(current.run_id)}
    tests: dict[str, _Test] = {}
    one_level = len(a_levels) == 1 and len(b_levels) == 1 and set(a_levels) == set(b_levels)
    for level in a_levels.keys() & b_levels.keys():
        a, b = a_levels[level], b_levels[level]
        if not a.summaries or not b.summaries:
            continue
        suffix = level_suffix(level)
        sa, sb = _samples(a.run_ids), _samples(b.run_ids)
        for name, _, _, _, source, _ in LEVEL_FIGURES:
            if isinstance(source, tuple):
                test = _mann_whitney(sa[source[0]], sb[source[0]])
            elif name == "error_rate":
                test = _fisher(sum(s.error_count or 0 for s in a.summaries), sum(s.request_count or 0 for s in a.summaries),
                               sum(s.error_count or 0 for s in b.summaries), sum(s.request_count or 0 for s in b.summaries),
                               "requests")  # fmt: skip
            else:
                values_a = [v for v in (getattr(s, source) for s in a.summaries) if v is not None]
                values_b = [v for v in (getattr(s, source) for s in b.summaries) if v is not None]
                if len(values_a) >= 2 and len(values_b) >= 2:
                    test = _welch_values(values_a, values_b, "trials")
                elif name == "throughput_rps":
                    test = _poisson_rate_test(
                        sum((s.request_count or 0) - (s.error_count or 0) for s in a.summaries),
                        sum(s.duration_s or 0 for s in a.summaries),
                        sum((s.request_count or 0) - (s.error_count or 0) for s in b.summaries),
                        sum(s.duration_s or 0 for s in b.summaries),
                    )
                else:
                    test = _mann_whitney(sa["output_tps"], sb["output_tps"])
            tests[name + suffix] = test
            if one_level:
                tests[name] = test
    return tests


def _compare_benchmarks(baseline: RunRef, current: RunRef) -> dict[str, _Test]:
    """Accuracy item by item when both runs asked the same items (same suite; answers paired by target position
    and item): McNemar's exact test (apps.scores.paired); otherwise Fisher's exact test. No-answer and error
    rates: Fisher's exact test; latency: Mann-Whitney U."""
    from apps.benchmarks.models import BenchmarkRun
    from apps.scores.paired import mcnemar_exact_p

    a, b = _answers(baseline.run_id), _answers(current.run_id)
    suites = dict(BenchmarkRun.objects.filter(pk__in=[baseline.run_id, current.run_id]).values_list("pk", "suite_id"))
    sa, sb = [x for x in a if not x[5]], [x for x in b if not x[5]]
    tests: dict[str, _Test] = {}
    right_a = {(x[0], x[1]): bool(x[2]) for x in sa}
    right_b = {(x[0], x[1]): bool(x[2]) for x in sb}
    paired = right_a.keys() & right_b.keys()
    if suites.get(baseline.run_id) == suites.get(current.run_id) and paired:
        a_only = sum(1 for k in paired if right_a[k] and not right_b[k])
        b_only = sum(1 for k in paired if right_b[k] and not right_a[k])
        tests["accuracy"] = _Test(f"McNemar's exact test on {len(paired)} paired items ({a_only} right only in the "
                                  f"baseline, {b_only} only in this run)", mcnemar_exact_p(a_only, b_only))  # fmt: skip
    else:
        tests["accuracy"] = _fisher(sum(right_a.values()), len(sa), sum(right_b.values()), len(sb), "scored items")
    no_answer = [sum(1 for x in side if not x[2] and x[3] == "") for side in (sa, sb)]
    tests["no_answer_rate"] = _fisher(no_answer[0], len(sa), no_answer[1], len(sb), "scored items")
    tests["error_rate"] = _fisher(len(a) - len(sa), len(a), len(b) - len(sb), len(b), "answers")
    latency_a, latency_b = _finite(x[4] for x in sa), _finite(x[4] for x in sb)
    tests["p50_e2e_ms"] = tests["p95_e2e_ms"] = _mann_whitney(latency_a, latency_b)
    return tests


def _compare_capacity(baseline: RunRef, current: RunRef) -> dict[str, _Test]:
    """Capacity: the two brackets (highest level that met the SLO … lowest that did not): a bracket lying wholly
    below the baseline's is a regression, wholly above an improvement, overlapping no change (no p-value), as the
    capacity comparison page. Goodput and tokens/s at capacity: Welch's t test across the trials at capacity
    when each search has 2 or more."""
    from apps.capacity.models import CapacitySearch
    from apps.capacity.selectors import compare_searches

    a, b = CapacitySearch.objects.get(pk=baseline.run_id), CapacitySearch.objects.get(pk=current.run_id)
    found = compare_searches(a, b)
    tests: dict[str, _Test] = {}
    if found["overlap"] is None:
        bracket = _untested(found.get("overlap_text", "no capacity"))
    elif found["overlap"]:
        bracket = _Test("capacity brackets overlap", None, "no change")
    else:
        lower = found["overlap_text"].startswith("A's")  # A (the baseline) lies above: this run is lower
        bracket = _Test("capacity brackets do not overlap", None, "regression" if lower else "improvement")
    tests["capacity"] = tests["capacity_rps"] = bracket

    def trials(search, key: str) -> list[float]:
        level = search.capacity_low if search.capacity_low is not None else search.capacity
        if level is None:
            return []
        return [v for p in search.probes.all() if math.isclose(p.level, level, rel_tol=1e-9, abs_tol=1e-9)
                for v in [_number((p.figures or {}).get(key))] if v is not None]  # fmt: skip

    for key in ("goodput_rps", "output_tps"):
        ta, tb = trials(a, key), trials(b, key)
        if len(ta) >= 2 and len(tb) >= 2:
            tests[key] = _welch_values(ta, tb, "trials at capacity")
        else:
            tests[key] = _untested(f"each search needs 2 or more trials at capacity ({len(ta)} and {len(tb)})")
    return tests


COMPARERS: dict[str, Callable[[RunRef, RunRef], dict[str, _Test]]] = {
    "experiment": _compare_responses,
    "parameter_sweep": _compare_responses,
    "load_sweep": _compare_sweeps,
    "benchmark_run": _compare_benchmarks,
    "capacity_search": _compare_capacity,
}


UNTESTED = frozenset({"cost_usd", "cost_per_1m_output_usd"})  # totals and derived costs: no test applies


def _verdict(baseline: Figure, current: Figure, p_value: float | None, decided: str, alpha: float) -> str:
    if decided:
        return decided
    if p_value is None or p_value >= alpha or current.value == baseline.value:
        return "no change"
    better = current.value > baseline.value if current.higher_is_better else current.value < baseline.value
    return "improvement" if better else "regression"


def run_compare(baseline: RunRef, current: RunRef, *, alpha: float = 0.05) -> list[Comparison]:
    """Each figure of `current` against `baseline` (same kind), in the order of the figures: the test, its
    p-value Holm-adjusted over the figures tested here, and the verdict at `alpha`. A figure missing on a side is
    "no data"; a figure no test applies to (a total cost) is left out."""
    if baseline.kind != current.kind:
        raise ValidationError({"baseline": f"A {KIND_LABELS.get(baseline.kind, baseline.kind).lower()} cannot be "
                                           f"compared with a {KIND_LABELS.get(current.kind, current.kind).lower()}."})  # fmt: skip
    if not 0 < alpha < 1:
        raise ValidationError({"alpha": "Must be between 0 and 1."})
    from apps.analytics.stats import holm

    before, after = run_figures(baseline), run_figures(current)
    names = [n for n in before if n in after] + [n for n in after if n not in before]
    names += [n for n in before if n not in after]
    present = [n for n in names if n in before and n in after and before[n].value is not None
               and after[n].value is not None]  # fmt: skip
    tests = COMPARERS[current.kind](baseline, current) if present else {}
    names = [n for n in names if n not in UNTESTED]
    tested = [n for n in present if n in tests and tests[n].p_value is not None]
    adjusted = dict(zip(tested, holm([tests[n].p_value for n in tested]), strict=True))
    out = []
    for name in names:
        a, b = before.get(name), after.get(name)
        figure = b or a
        if name not in present:
            out.append(Comparison(name, figure.label, a.value if a else None, b.value if b else None, figure.unit, "",
                                  None, "no data"))  # fmt: skip
            continue
        test = tests[name]
        p = adjusted.get(name)
        label = test.test + (f", Holm-adjusted over {len(tested)} figures" if p is not None and len(tested) > 1 else "")
        out.append(Comparison(name, b.label, a.value, b.value, b.unit, label, p,
                              _verdict(a, b, p, test.decided, alpha)))  # fmt: skip
    return out


# --- error rates ------------------------------------------------------------------------------------------------


def error_counts(kind: str, run_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(failed requests, requests) of each run, from one aggregate query: responses of experiments and parameter
    sweeps, answers of benchmark runs, the stored steps' requests of load sweeps and capacity searches (a step
    counts once its performance run is stored). Runs without a request are left out."""
    _check_kind(kind)
    if not run_ids:
        return {}
    if kind in ("experiment", "parameter_sweep"):
        from apps.experiments.models import Response

        rows = (
            Response.objects.filter(experiment_id__in=run_ids).order_by().values("experiment_id")
            .annotate(total=Count("id"), failed=Count("id", filter=~Q(error_code="")))
            .values_list("experiment_id", "failed", "total")
        )  # fmt: skip
    elif kind == "benchmark_run":
        from apps.benchmarks.models import BenchmarkAnswer

        rows = (
            BenchmarkAnswer.objects.filter(run_id__in=run_ids).order_by().values("run_id")
            .annotate(total=Count("id"), failed=Count("id", filter=~Q(error_code="")))
            .values_list("run_id", "failed", "total")
        )  # fmt: skip
    else:
        from apps.batches.models import LoadSweepStep

        if kind == "load_sweep":
            sweeps = {pk: pk for pk in run_ids}
        else:
            from apps.capacity.models import CapacitySearch

            sweeps = dict(CapacitySearch.objects.filter(pk__in=run_ids, sweep__isnull=False)
                          .values_list("sweep_id", "pk"))  # fmt: skip
        stored = (
            LoadSweepStep.objects.filter(sweep_id__in=list(sweeps), run__summary__isnull=False).order_by()
            .values("sweep_id")
            .annotate(total=Sum("run__summary__request_count"), failed=Sum("run__summary__error_count"))
            .values_list("sweep_id", "failed", "total")
        )  # fmt: skip
        rows = [(sweeps[sweep_id], failed, total) for sweep_id, failed, total in stored]
    return {run_id: (int(failed or 0), int(total)) for run_id, failed, total in rows if total}


def run_error_rate(ref: RunRef) -> float | None:
    """The share of the run's requests that failed so far (None before any request)."""
    if not runs_queryset(ref.kind).filter(pk=ref.run_id).exists():
        _run(ref)  # raises DoesNotExist
    counts = error_counts(ref.kind, [ref.run_id]).get(ref.run_id)
    return None if counts is None else counts[0] / counts[1]
