"""Run kinds: a run's headline figures with their 95% intervals (docs/run-figures.md)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from apps.automation.runkinds.base import Figure, RunRef, _check_kind, _run, runs_queryset

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
