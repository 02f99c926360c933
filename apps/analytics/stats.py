"""Statistics of the analytics, pure numpy/scipy over figures the database has already aggregated.

The database sums (count, Σx, Σx²) per group, since SQLite has no standard deviation; the mean,
sample standard deviation and Student t interval follow from those moments exactly. Tests that
need every value (Mann-Whitney) get them back from value counts.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from apps.batches.analysis import ALPHA, t_intervals
from apps.experiments.selectors import wilson_interval

__all__ = ["ALPHA", "wilson_interval"]


@dataclass
class Summary:
    """Mean, sample standard deviation and 95% t interval of n values (None where undefined)."""

    n: int
    mean: float | None
    sd: float | None
    ci_low: float | None
    ci_high: float | None


def from_moments(n: int, total: float | None, total_sq: float | None) -> Summary:
    """The summary of n values from their sum and sum of squares (as numpy's mean and std(ddof=1))."""
    if not n:
        return Summary(0, None, None, None, None)
    mean = float(total) / n
    if n < 2:
        return Summary(n, mean, None, None, None)
    variance = max((float(total_sq) - n * mean * mean) / (n - 1), 0.0)  # rounding can dip below 0
    sd = math.sqrt(variance)
    if sd < 1e-9 * max(1.0, abs(mean)):  # every value the same (up to rounding of the sums)
        sd = 0.0
    low, high = t_intervals(np.array([mean]), np.array([sd]), np.array([n]))
    return Summary(n, mean, sd, float(low[0]), float(high[0]))


def pooled(parts: list[tuple[int, float, float]]) -> tuple[int, float, float]:
    """Moments of the union of groups: counts and sums add."""
    return sum(p[0] for p in parts), sum(p[1] for p in parts), sum(p[2] for p in parts)


# --- trends ---------------------------------------------------------------------------------------


@dataclass
class Trend:
    """A least-squares line through the period means (x in days)."""

    points: int
    slope_per_day: float | None
    intercept: float | None
    r: float | None
    p_value: float | None
    direction: str  # improving | declining | stable
    improvement_per_week: float | None  # slope × 7, in the metric's unit
    note: str = ""


def trend(days: list[float], means: list[float], *, higher_is_better: bool = True) -> Trend:
    """scipy.stats.linregress on (day, mean); the direction is "stable" unless p < 0.05."""
    if len(days) < 3:
        return Trend(len(days), None, None, None, None, "stable", None, "fewer than 3 periods: no trend is claimed")
    x, y = np.asarray(days, dtype=float), np.asarray(means, dtype=float)
    if np.ptp(y) == 0:
        return Trend(len(days), 0.0, float(y[0]), None, None, "stable", 0.0, "every period has the same mean")
    fit = stats.linregress(x, y)
    direction = "stable"
    if fit.pvalue < ALPHA:
        better = fit.slope > 0 if higher_is_better else fit.slope < 0
        direction = "improving" if better else "declining"
    return Trend(len(days), float(fit.slope), float(fit.intercept), float(fit.rvalue), float(fit.pvalue),
                 direction, float(fit.slope) * 7)  # fmt: skip


# --- tests ----------------------------------------------------------------------------------------


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (step-down, made monotone, capped at 1); None stays None."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None and not math.isnan(p)]
    adjusted: list[float | None] = [None] * len(p_values)
    m, running = len(present), 0.0
    for rank, (p, index) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


@dataclass
class TestResult:
    test: str  # wilcoxon | mann_whitney | welch | fisher | none
    statistic: float | None
    p_value: float | None
    n: int  # pairs for a paired test, else both sizes added
    note: str = ""


def _finite_result(name: str, statistic, p_value, n: int, note: str = "") -> TestResult:
    statistic, p_value = float(statistic), float(p_value)
    if math.isnan(p_value):
        return TestResult(name, None, None, n, note or "the test is undefined for these values")
    return TestResult(name, statistic, p_value, n, note)


def mann_whitney_counts(values_a, counts_a, values_b, counts_b) -> TestResult:
    """Two-sided Mann-Whitney U on two samples given as distinct values with their counts."""
    a = np.repeat(np.asarray(values_a, dtype=float), np.asarray(counts_a, dtype=np.int64))
    b = np.repeat(np.asarray(values_b, dtype=float), np.asarray(counts_b, dtype=np.int64))
    if len(a) < 2 or len(b) < 2:
        return TestResult("mann_whitney", None, None, len(a) + len(b), "fewer than 2 values on a side")
    if np.ptp(np.concatenate([a, b])) == 0:
        return TestResult("mann_whitney", None, 1.0, len(a) + len(b), "every value is the same")
    result = stats.mannwhitneyu(a, b, alternative="two-sided")
    return _finite_result("mann_whitney", result.statistic, result.pvalue, len(a) + len(b))


def wilcoxon_paired(a, b) -> TestResult:
    """Two-sided Wilcoxon signed-rank test on paired values (zero differences dropped, scipy's default)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2:
        return TestResult("wilcoxon", None, None, len(a), "fewer than 2 pairs")
    if np.all(a == b):
        return TestResult("wilcoxon", None, 1.0, len(a), "every pair is the same")
    with np.errstate(all="ignore"):
        result = stats.wilcoxon(a, b)
    return _finite_result("wilcoxon", result.statistic, result.pvalue, len(a))


def welch(first: Summary, second: Summary) -> TestResult:
    """Welch's t test from two summaries (scipy.stats.ttest_ind_from_stats, unequal variances)."""
    n = first.n + second.n
    if first.n < 2 or second.n < 2 or first.sd is None or second.sd is None:
        return TestResult("welch", None, None, n, "fewer than 2 values on a side")
    if first.sd == 0 and second.sd == 0:
        return TestResult("welch", None, None if first.mean == second.mean else 0.0, n, "no variation on either side")
    with np.errstate(all="ignore"):
        result = stats.ttest_ind_from_stats(first.mean, first.sd, first.n, second.mean, second.sd, second.n,
                                            equal_var=False)  # fmt: skip
    return _finite_result("welch", result.statistic, result.pvalue, n)


def fisher(passed_a: int, total_a: int, passed_b: int, total_b: int) -> TestResult:
    """Two-sided Fisher exact test of two pass rates."""
    if not total_a or not total_b:
        return TestResult("fisher", None, None, total_a + total_b, "no evaluated responses on a side")
    table = [[passed_a, total_a - passed_a], [passed_b, total_b - passed_b]]
    result = stats.fisher_exact(table)
    return _finite_result("fisher", result.statistic if np.isfinite(result.statistic) else np.inf, result.pvalue,
                          total_a + total_b)  # fmt: skip


# --- leaderboard ----------------------------------------------------------------------------------


def pareto_front(points: list[tuple[float | None, ...]], maximize: tuple[bool, ...]) -> list[bool]:
    """Which points no other point dominates (at least as good on every axis, better on one).
    A point missing an axis is never on the front."""
    signed = []
    for point in points:
        if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in point):
            signed.append(None)
        else:
            signed.append(tuple(v if up else -v for v, up in zip(point, maximize, strict=True)))
    front = []
    for i, a in enumerate(signed):
        if a is None:
            front.append(False)
            continue
        dominated = any(
            b is not None and j != i and all(y >= x for x, y in zip(a, b, strict=True)) and any(y > x for x, y in zip(a, b, strict=True))
            for j, b in enumerate(signed)
        )  # fmt: skip
        front.append(not dominated)
    return front


def min_max(values: list[float | None], *, higher_is_better: bool) -> list[float | None]:
    """Each value scaled to 0–1 over the values present (1 = best); all equal → 1."""
    present = [v for v in values if v is not None]
    if not present:
        return [None] * len(values)
    low, high = min(present), max(present)
    out = []
    for v in values:
        if v is None:
            out.append(None)
        elif high == low:
            out.append(1.0)
        else:
            scaled = (v - low) / (high - low)
            out.append(scaled if higher_is_better else 1.0 - scaled)
    return out
