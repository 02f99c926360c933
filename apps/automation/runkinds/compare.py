"""Run kinds: two runs of a kind compared figure by figure, Holm-adjusted (docs/run-figures.md)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, Sum

from apps.automation.models import KIND_LABELS
from apps.automation.runkinds.base import Comparison, Figure, RunRef, _check_kind, _run, runs_queryset
from apps.automation.runkinds.figures import (
    LEVEL_FIGURES,
    _answers,
    _finite,
    _levels,
    _number,
    _responses,
    _samples,
    level_suffix,
    run_figures,
)

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
